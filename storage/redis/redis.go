// Package redis is the Redis-protocol storage backend (Redis, Valkey,
// KeyDB, ...), in the key layout of upstream Trustee, so an existing
// upstream instance is used unchanged.
//
// # Layout
//
// Key k of namespace ns is the Redis string "<ns>:<k>" holding the raw value
// bytes. Namespaces cannot contain ':', so prefixes of different namespaces
// never overlap ("kbs:" does not match "kbs_protocol_session:x").
//
// # Invariants
//
//   - Insert-if-absent is SETNX: the server makes exactly one of several
//     concurrent inserters, in any process, win.
//   - Delete is DEL; its count says whether the key existed.
//   - List SCANs with MATCH "<ns>:*" (namespace glob-escaped), removes the
//     duplicates SCAN may return, and sorts. It is O(keyspace) on the
//     server, like upstream's KEYS.
//   - Durability is the server's: a Set that returned is acknowledged, and
//     survives a server restart as far as its persistence (RDB/AOF) is
//     configured.
//
// The URL's password is never part of an error or of Config's String.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/go-trustee/go-trustee/storage"
)

// EnvURL names the environment variable whose value, when set, is the URL
// used instead of Config.URL (as upstream).
const EnvURL = "REDIS_URL"

// DefaultURL is upstream's default url.
const DefaultURL = "redis://127.0.0.1:6379"

// scanCount is the COUNT hint of each SCAN call.
const scanCount = 1000

// Config is [storage_backend.backends.redis] of the KBS configuration.
type Config struct {
	// URL is redis://[[user]:password@]host[:port][/db] or rediss:// for
	// TLS. Empty means DefaultURL.
	URL string `toml:"url" json:"url"`
}

// DefaultConfig returns upstream's defaults.
func DefaultConfig() Config { return Config{URL: DefaultURL} }

// String describes c without the URL's password.
func (c Config) String() string {
	raw := c.URL
	if raw == "" {
		raw = DefaultURL
	}
	return "redis " + redact(raw)
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// redact returns raw with its password hidden; unparsable input is hidden
// whole.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// Store is a storage.Store on a Redis-protocol server.
type Store struct {
	client *goredis.Client

	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open connects to the server of cfg, or of $REDIS_URL when that is set,
// and checks that it answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	raw := cfg.URL
	if raw == "" {
		raw = DefaultURL
	}
	if env := os.Getenv(EnvURL); env != "" {
		raw = env
	}
	return OpenURL(ctx, raw)
}

// OpenURL connects to the server at rawURL and checks that it answers. The
// environment is not consulted.
func OpenURL(ctx context.Context, rawURL string) (*Store, error) {
	opt, err := goredis.ParseURL(rawURL)
	if err != nil {
		// url.Parse errors quote the whole URL, password included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("opening redis storage %s: %w", redact(rawURL), err)
	}
	// A plain key-value client: no cluster maintenance push notifications.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	client := goredis.NewClient(opt)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("opening redis storage %s: %w", redact(rawURL), err)
	}
	return &Store{client: client}, nil
}

// Client returns the underlying client.
func (s *Store) Client() *goredis.Client { return s.client }

// Key returns the Redis key of (ns, key).
func Key(ns, key string) string { return ns + ":" + key }

// escapeGlob escapes the characters special in a Redis MATCH pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return false, err
	}
	if len(value) > storage.MaxValueSize {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if value == nil {
		value = []byte{}
	}
	if overwrite {
		if err := s.client.Set(ctx, Key(ns, key), value, 0).Err(); err != nil {
			return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
		}
		return true, nil
	}
	ok, err := s.client.SetNX(ctx, Key(ns, key), value, 0).Result()
	if err != nil {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
	}
	return ok, nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return nil, err
	}
	v, err := s.client.Get(ctx, Key(ns, key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, err)
	}
	if len(v) > storage.MaxValueSize {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, ns string) ([]string, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	prefix := ns + ":"
	match := escapeGlob(prefix) + "*"
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		batch, next, err := s.client.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", ns, err)
		}
		for _, k := range batch {
			key, ok := strings.CutPrefix(k, prefix)
			if ok && storage.ValidateKey(ns, key) == nil {
				seen[key] = struct{}{}
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, ns, key string) error {
	if err := storage.ValidateKey(ns, key); err != nil {
		return err
	}
	n, err := s.client.Del(ctx, Key(ns, key)).Result()
	if err != nil {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, err)
	}
	if n == 0 {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	return nil
}

// Close implements storage.Store: it closes the client. Later calls return
// the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.client.Close() })
	return s.closeErr
}
