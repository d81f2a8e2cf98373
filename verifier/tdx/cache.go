package tdx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"

	"golang.org/x/sync/singleflight"
)

const (
	// maxCollateralBytes bounds one collateral response (a TCB info is
	// ~10 KiB, a PCK CRL a few KiB).
	maxCollateralBytes = limits.MaxTDXCollateralBytes
	// maxCacheEntries bounds the in-memory cache. Keys are URLs of Intel-
	// signed FMSPCs (the PCK chain is verified before any fetch), so this
	// is only a backstop.
	maxCacheEntries = limits.MaxTDXCollateralCacheEntries
	// defaultCacheMaxAge is how long fetched collateral is used before it
	// is fetched again (earlier when its nextUpdate passes).
	defaultCacheMaxAge = 24 * time.Hour
	// retryBackoff is how long stale collateral is used after a failed
	// refresh before the next attempt.
	retryBackoff = time.Minute
	// fetchTimeout bounds one fetch, which runs on behalf of every caller
	// waiting for it.
	fetchTimeout = 30 * time.Second
)

type fetchFunc func(ctx context.Context) (body, chain []byte, err error)

// buildFunc verifies and decodes fetched collateral and returns when it
// stops being current.
type buildFunc func(body, chain []byte) (item any, nextUpdate time.Time, err error)

type cacheEntry struct {
	fetchedAt  time.Time
	freshUntil time.Time
	item       any
}

// collateralCache is the two-level collateral cache: verified, decoded
// items in memory, and the raw responses in a directory that survives
// restarts. Concurrent misses for one key share one fetch.
type collateralCache struct {
	dir    string
	maxAge time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]*cacheEntry
	group   singleflight.Group
}

// diskEntry is the on-disk form of a fetched response.
type diskEntry struct {
	Key       string    `json:"key"`
	FetchedAt time.Time `json:"fetched_at"`
	Chain     []byte    `json:"chain,omitempty"`
	Body      []byte    `json:"body"`
}

func (c *collateralCache) lookup(key string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key]
}

func (c *collateralCache) store(key string, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxCacheEntries {
		var oldest string
		for k, v := range c.entries {
			if oldest == "" || v.fetchedAt.Before(c.entries[oldest].fetchedAt) {
				oldest = k
			}
		}
		delete(c.entries, oldest)
	}
	c.entries[key] = e
}

func (c *collateralCache) freshUntil(fetchedAt, nextUpdate time.Time) time.Time {
	t := fetchedAt.Add(c.maxAge)
	if !nextUpdate.IsZero() && nextUpdate.Before(t) {
		t = nextUpdate
	}
	return t
}

// get returns the item for key: from memory while fresh, else from disk
// (durable keys) while fresh, else fetched and built. When fetching or
// building fails, stale collateral is used if there is any (its expiry is
// reported in the claims), and the error returned otherwise.
func (c *collateralCache) get(ctx context.Context, key string, durable bool, fetch fetchFunc, build buildFunc) (any, error) {
	if e := c.lookup(key); e != nil && c.now().Before(e.freshUntil) {
		return e.item, nil
	}
	ch := c.group.DoChan(key, func() (any, error) {
		// The fetch serves every waiter: it must not die with the first.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return c.refresh(fctx, key, durable, fetch, build)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		return r.Val, r.Err
	}
}

func (c *collateralCache) refresh(ctx context.Context, key string, durable bool, fetch fetchFunc, build buildFunc) (any, error) {
	now := c.now()
	stale := c.lookup(key)
	if stale != nil && now.Before(stale.freshUntil) {
		return stale.item, nil // refreshed by another caller meanwhile
	}
	if durable && stale == nil {
		if d, err := c.readDisk(key); err == nil {
			if item, next, err := build(d.Body, d.Chain); err == nil {
				e := &cacheEntry{fetchedAt: d.FetchedAt, freshUntil: c.freshUntil(d.FetchedAt, next), item: item}
				c.store(key, e)
				if now.Before(e.freshUntil) {
					return item, nil
				}
				stale = e
			} else {
				c.log.Warn("ignoring unusable cached collateral", "key", key, "error", err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("reading cached collateral", "key", key, "error", err)
		}
	}
	item, next, err := c.fetchAndBuild(ctx, key, durable, now, fetch, build)
	if err == nil {
		c.store(key, &cacheEntry{fetchedAt: now, freshUntil: c.freshUntil(now, next), item: item})
		return item, nil
	}
	if stale != nil {
		c.log.Warn("collateral refresh failed, using cached collateral", "key", key, "fetched_at", stale.fetchedAt, "error", err)
		c.store(key, &cacheEntry{fetchedAt: stale.fetchedAt, freshUntil: now.Add(retryBackoff), item: stale.item})
		return stale.item, nil
	}
	return nil, err
}

func (c *collateralCache) fetchAndBuild(ctx context.Context, key string, durable bool, now time.Time, fetch fetchFunc, build buildFunc) (any, time.Time, error) {
	body, chain, err := fetch(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrCollateral, err)
	}
	item, next, err := build(body, chain)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrCollateral, err)
	}
	if durable {
		if err := c.writeDisk(diskEntry{Key: key, FetchedAt: now, Chain: chain, Body: body}); err != nil {
			c.log.Warn("writing collateral cache", "key", key, "error", err)
		}
	}
	return item, next, nil
}

func (c *collateralCache) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(h[:])+".json")
}

func (c *collateralCache) readDisk(key string) (*diskEntry, error) {
	if c.dir == "" {
		return nil, os.ErrNotExist
	}
	f, err := os.Open(c.path(key))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 2*maxCollateralBytes+4096))
	if err != nil {
		return nil, err
	}
	var d diskEntry
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if d.Key != key {
		return nil, fmt.Errorf("cache file %s holds %q", c.path(key), d.Key)
	}
	return &d, nil
}

// writeDisk replaces the cache file atomically: a synced temporary file
// renamed over it.
func (c *collateralCache) writeDisk(d diskEntry) error {
	if c.dir == "" {
		return nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.dir, ".collateral-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), c.path(d.Key)); err != nil {
		return err
	}
	if dir, err := os.Open(c.dir); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}
