// Package cdh is the confidential-data-hub: the guest service kata-agent
// asks, over ttRPC, for KBS resources (GetResource), for the plaintext of
// sealed secrets (UnsealSecret) and for the keys of encrypted image layers
// (KeyProviderService.UnWrapKey). It is wire-compatible with upstream's
// confidential-data-hub: same proto names, socket, config file and
// keyprovider JSON.
//
// # Invariants
//
//   - Resources come from one KBC: cc_kbc (the KBS, with a token from the
//     attestation-agent, see CCKBC) or offline_fs_kbc (local files).
//   - cc_kbc reuses one attested client: a token is fetched again only when
//     it is about to expire or the KBS says it is invalid; a policy deny is
//     reported at once, never retried.
//   - Every RPC runs under a deadline; errors crossing to the caller are
//     terse categories (rpcError); details go to the guest log only.
//   - [[credentials]] paths are checked before anything is fetched, all are
//     fetched before anything is written, and writes stay inside the
//     credential directory (os.Root), so a bad entry writes nothing.
//   - Secrets, keys and tokens are never logged.
//
// # Concurrency
//
// A Hub is safe for concurrent use.
package cdh

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/go-trustee/go-trustee/sealedsecret"
)

// Options configure a Hub. Zero values take the documented defaults.
type Options struct {
	// Tokens supplies KBS tokens for cc_kbc; required with cc_kbc.
	Tokens TokenSource
	// KBC, when set, replaces the KBC the configuration selects.
	KBC KBC
	// HTTPClient is cc_kbc's HTTP client (nil: its own).
	HTTPClient *http.Client
	// CC tunes cc_kbc (retries, back-off, token refresh); its URL,
	// RootCAs, Tokens, HTTPClient and Logger come from the configuration
	// and the fields above.
	CC CCOptions
	// OfflineFiles are offline_fs_kbc's files; nil is OfflineFiles(os.Getenv).
	OfflineFiles []string
	// CredentialDir bounds [[credentials]] paths; "" is DefaultCredentialDir.
	CredentialDir string
	// SealedSecretKeyDir holds local sealed-secret keys; "" is
	// sealedsecret.DefaultKeyDir.
	SealedSecretKeyDir string
	// Vaults and KMSes add sealed-secret and layer-key providers besides
	// the built-in "kbs".
	Vaults map[string]sealedsecret.Vault
	KMSes  map[string]sealedsecret.KMS
	// ResourceCacheTTL keeps resources in memory this long; 0 disables the
	// cache (a KBS-side change is then seen at once).
	ResourceCacheTTL time.Duration
	// ResourceCacheBytes bounds the cache; 0 is 4 MiB.
	ResourceCacheBytes int
	// ReplyShape of KeyProviderService.UnWrapKey; the zero value is
	// ReplyRust.
	ReplyShape ReplyShape
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger receives guest-side records; nil discards them.
	Logger *slog.Logger
}

// Hub serves resources, sealed secrets and layer keys.
type Hub struct {
	kbc        KBC
	cache      *resourceCache
	unsealer   *sealedsecret.Unsealer
	kmses      map[string]sealedsecret.KMS
	replyShape ReplyShape
	log        *slog.Logger
	cfg        *Config
}

// New builds the hub of cfg and fetches its [[credentials]].
func New(ctx context.Context, cfg *Config, opts Options) (*Hub, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil configuration", ErrInvalidConfig)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CredentialDir == "" {
		opts.CredentialDir = DefaultCredentialDir
	}
	h := &Hub{kbc: opts.KBC, replyShape: opts.ReplyShape, log: opts.Logger, cfg: cfg}
	for _, c := range cfg.Credentials {
		if err := ValidateCredentialPath(opts.CredentialDir, c.Path); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if !isResourceURI(c.ResourceURI) {
			return nil, fmt.Errorf("%w: credential resource_uri %q is not a kbs:// URI", ErrInvalidConfig, c.ResourceURI)
		}
	}
	if h.kbc == nil {
		kbc, err := newKBC(cfg, opts)
		if err != nil {
			return nil, err
		}
		h.kbc = kbc
	}
	if opts.ResourceCacheTTL > 0 {
		h.cache = newResourceCache(opts.ResourceCacheTTL, opts.ResourceCacheBytes, opts.Now)
	}
	u, err := sealedsecret.New(sealedsecret.Options{
		KBS: h, KeyDir: opts.SealedSecretKeyDir, SkipVerification: cfg.SkipSealedSecretVerification,
		Vaults: opts.Vaults, KMSes: opts.KMSes,
	})
	if err != nil {
		return nil, err
	}
	h.unsealer = u
	h.kmses = map[string]sealedsecret.KMS{}
	for name, k := range opts.KMSes {
		h.kmses[name] = k
	}
	if cfg.SkipSealedSecretVerification {
		h.log.Warn("sealed secret signature verification is disabled (skip_sealed_secret_verification)")
	}
	if err := h.fetchCredentials(ctx, opts.CredentialDir); err != nil {
		return nil, err
	}
	return h, nil
}

func newKBC(cfg *Config, opts Options) (KBC, error) {
	switch cfg.KBC.Name {
	case KBCCC:
		cc := opts.CC
		cc.URL, cc.Tokens, cc.HTTPClient, cc.Logger = cfg.KBC.URL, opts.Tokens, opts.HTTPClient, opts.Logger
		if cc.Now == nil {
			cc.Now = opts.Now
		}
		if strings.TrimSpace(cfg.KBC.KBSCert) != "" && opts.HTTPClient == nil {
			pool, err := CertPool(cfg.KBC.KBSCert)
			if err != nil {
				return nil, fmt.Errorf("%w: kbs_cert: %v", ErrInvalidConfig, err)
			}
			cc.RootCAs = pool
		}
		return NewCC(cc)
	case KBCOfflineFS:
		files := opts.OfflineFiles
		if files == nil {
			files = OfflineFiles(os.Getenv)
		}
		return NewOfflineFS(files, opts.Logger)
	}
	return nil, fmt.Errorf("%w: unknown kbc %q", ErrInvalidConfig, cfg.KBC.Name)
}

// Config returns the configuration the hub was built from.
func (h *Hub) Config() *Config { return h.cfg }

// GetResource returns the resource at a kbs:// URI.
func (h *Hub) GetResource(ctx context.Context, uri string) ([]byte, error) {
	if !isResourceURI(uri) {
		return nil, fmt.Errorf("%w: %q is not a kbs:// resource URI", ErrInvalidRequest, uri)
	}
	if h.cache != nil {
		if b, ok := h.cache.get(uri); ok {
			return b, nil
		}
	}
	b, err := h.kbc.GetResource(ctx, uri)
	if err != nil {
		return nil, err
	}
	if h.cache != nil {
		h.cache.put(uri, b)
	}
	return b, nil
}

// UnsealSecret verifies a sealed secret and returns its plaintext.
func (h *Hub) UnsealSecret(ctx context.Context, secret []byte) ([]byte, error) {
	return h.unsealer.Unseal(ctx, secret)
}

// fetchCredentials reads every credential, then writes them all below dir.
func (h *Hub) fetchCredentials(ctx context.Context, dir string) error {
	if len(h.cfg.Credentials) == 0 {
		return nil
	}
	contents := make([][]byte, len(h.cfg.Credentials))
	defer func() {
		for _, c := range contents {
			clear(c)
		}
	}()
	for i, c := range h.cfg.Credentials {
		b, err := h.GetResource(ctx, c.ResourceURI)
		if err != nil {
			return fmt.Errorf("fetching credential %s for %s: %w", c.ResourceURI, c.Path, err)
		}
		contents[i] = b
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer root.Close()
	for i, c := range h.cfg.Credentials {
		rel := strings.TrimPrefix(c.Path, strings.TrimSuffix(dir, "/")+"/")
		if d := path.Dir(rel); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("writing credential %s: %w", c.Path, err)
			}
		}
		tmp := rel + ".tmp"
		if err := root.WriteFile(tmp, contents[i], 0o600); err != nil {
			return fmt.Errorf("writing credential %s: %w", c.Path, err)
		}
		if err := root.Rename(tmp, rel); err != nil {
			root.Remove(tmp)
			return fmt.Errorf("writing credential %s: %w", c.Path, err)
		}
		h.log.Info("credential written", "resource", c.ResourceURI, "path", c.Path)
	}
	return nil
}

// resourceCache keeps resources for a TTL, bounded in bytes; the oldest
// entry goes first when full.
type resourceCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	size    int
	now     func() time.Time
	entries map[string]cacheEntry
}

type cacheEntry struct {
	data []byte
	at   time.Time
}

func newResourceCache(ttl time.Duration, max int, now func() time.Time) *resourceCache {
	if max <= 0 {
		max = limits.MaxResourceCacheBytes
	}
	return &resourceCache{ttl: ttl, max: max, now: now, entries: map[string]cacheEntry{}}
}

func (c *resourceCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	if c.now().Sub(e.at) >= c.ttl {
		c.dropLocked(key)
		return nil, false
	}
	return append([]byte(nil), e.data...), true
}

func (c *resourceCache) put(key string, b []byte) {
	if len(b) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(key)
	for c.size+len(b) > c.max {
		oldest, first := "", true
		var at time.Time
		for k, e := range c.entries {
			if first || e.at.Before(at) {
				oldest, at, first = k, e.at, false
			}
		}
		c.dropLocked(oldest)
	}
	c.entries[key] = cacheEntry{data: append([]byte(nil), b...), at: c.now()}
	c.size += len(b)
}

func (c *resourceCache) dropLocked(key string) {
	if e, ok := c.entries[key]; ok {
		clear(e.data)
		c.size -= len(e.data)
		delete(c.entries, key)
	}
}
