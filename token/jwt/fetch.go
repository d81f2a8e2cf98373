package jwt

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// ErrFetch is returned when key material cannot be read from its source.
var ErrFetch = errors.New("jwt: fetching key material")

// DefaultHTTPTimeout bounds one fetch of remote key material when the
// caller supplies no HTTP client.
const DefaultHTTPTimeout = 10 * time.Second

// maxSourceBytes bounds a fetched JWK set, OpenID configuration or PEM key.
const maxSourceBytes = limits.MaxConfigBytes

// openIDSuffix is appended to a JWK set URL for OpenID discovery.
const openIDSuffix = ".well-known/openid-configuration"

// DefaultClient returns the HTTP client used when none is configured.
func DefaultClient() *http.Client {
	return &http.Client{Timeout: DefaultHTTPTimeout}
}

// ReadSource reads key material from an https:// URL, a file:// URL or a
// local path, at most limits.MaxConfigBytes. Any other scheme (http://
// included) is refused, as upstream does.
func ReadSource(ctx context.Context, client *http.Client, src string) ([]byte, error) {
	kind, loc, err := classify(src)
	if err != nil {
		return nil, err
	}
	if kind == "file" {
		return readFile(loc)
	}
	return httpGet(ctx, client, loc)
}

func classify(src string) (kind, loc string, err error) {
	switch {
	case src == "":
		return "", "", fmt.Errorf("%w: empty source", ErrFetch)
	case strings.HasPrefix(src, "https://"):
		u, err := url.Parse(src)
		if err != nil || u.Host == "" {
			return "", "", fmt.Errorf("%w: invalid URL %q", ErrFetch, src)
		}
		return "https", src, nil
	case strings.HasPrefix(src, "file://"):
		u, err := url.Parse(src)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return "", "", fmt.Errorf("%w: invalid file URL %q", ErrFetch, src)
		}
		return "file", u.Path, nil
	case strings.Contains(src, "://"):
		return "", "", fmt.Errorf("%w: unsupported scheme in %q (use https://, file:// or a path)", ErrFetch, src)
	default:
		return "file", src, nil
	}
}

func readFile(path string) ([]byte, error) {
	// Stat before Open: opening a FIFO would block.
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrFetch, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSourceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrFetch, path, err)
	}
	if len(b) > maxSourceBytes {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrFetch, path, maxSourceBytes)
	}
	return b, nil
}

func httpGet(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	if client == nil {
		client = DefaultClient()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json, application/x-pem-file, */*")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %v", ErrFetch, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: status %s", ErrFetch, u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSourceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %v", ErrFetch, u, err)
	}
	if len(b) > maxSourceBytes {
		return nil, fmt.Errorf("%w: GET %s: body exceeds %d bytes", ErrFetch, u, maxSourceBytes)
	}
	return b, nil
}

// ReadPublicKey reads a PEM public key from a source (see ReadSource).
func ReadPublicKey(ctx context.Context, client *http.Client, src string) (crypto.PublicKey, error) {
	b, err := ReadSource(ctx, client, src)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return k, nil
}

// FetchJWKSet loads a JWK set from a source. A file:// URL or a path is read
// as a JWK set. An https:// URL is first read as a JWK set; when that fails
// or yields no keys, OpenID discovery is tried at
// {url}/.well-known/openid-configuration and its "jwks_uri" (https only) is
// loaded instead.
func FetchJWKSet(ctx context.Context, client *http.Client, src string) ([]*JWK, []error, error) {
	kind, loc, err := classify(src)
	if err != nil {
		return nil, nil, err
	}
	if kind == "file" {
		b, err := readFile(loc)
		if err != nil {
			return nil, nil, err
		}
		keys, skipped, err := ParseJWKSet(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src, err)
		}
		return keys, skipped, nil
	}
	b, direct := httpGet(ctx, client, loc)
	if direct == nil {
		keys, skipped, err := ParseJWKSet(b)
		if err == nil && len(keys) > 0 {
			return keys, skipped, nil
		}
		if err != nil {
			direct = err
		} else {
			direct = errors.New("no usable keys")
		}
	}
	disc, err := OpenIDConfigURL(loc)
	if err != nil {
		return nil, nil, err
	}
	cb, err := httpGet(ctx, client, disc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: as a JWK set: %v; OpenID discovery: %w", src, direct, err)
	}
	var cfg struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(cb, &cfg); err != nil || cfg.JWKSURI == "" {
		return nil, nil, fmt.Errorf("%w: %s: OpenID configuration has no jwks_uri", ErrFetch, disc)
	}
	if !strings.HasPrefix(cfg.JWKSURI, "https://") {
		return nil, nil, fmt.Errorf("%w: %s: jwks_uri %q is not https", ErrFetch, disc, cfg.JWKSURI)
	}
	jb, err := httpGet(ctx, client, cfg.JWKSURI)
	if err != nil {
		return nil, nil, err
	}
	keys, skipped, err := ParseJWKSet(jb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.JWKSURI, err)
	}
	return keys, skipped, nil
}

// OpenIDConfigURL returns {base}/.well-known/openid-configuration, keeping
// the last path segment of base (a trailing slash is added first), and
// dropping any query or fragment.
func OpenIDConfigURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%w: invalid URL %q", ErrFetch, base)
	}
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	p := u.Path
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	u.Path = p + openIDSuffix
	u.RawPath = ""
	return u.String(), nil
}

// KeySetOptions tunes a KeySet. Zero values mean the documented defaults.
type KeySetOptions struct {
	HTTPClient *http.Client     // nil: DefaultClient()
	Now        func() time.Time // nil: time.Now
	Logger     *slog.Logger     // nil: discard
	// MinRefresh is the least time between two reloads triggered by an
	// unknown kid (default 1 min), so a flood of forged kids cannot turn
	// into a flood of fetches.
	MinRefresh time.Duration
	// MaxAge is the age after which a lookup reloads the sets (default 1 h),
	// so rotated keys are picked up.
	MaxAge time.Duration
}

// KeySet is a cached union of JWK sets from several sources. It is loaded
// once by NewKeySet (which fails when any source fails, as upstream refuses
// to start), then reloaded on demand: when a kid is unknown (at most once
// per MinRefresh) or the cache is older than MaxAge. A failed reload keeps
// the previous keys. Safe for concurrent use.
type KeySet struct {
	sources []string
	opts    KeySetOptions
	state   atomic.Pointer[keySetState]
	mu      sync.Mutex // held during a reload
}

type keySetState struct {
	keys        []*JWK
	loaded      time.Time // last successful load
	lastAttempt time.Time
}

// NewKeySet loads every source. With no sources it returns an empty set.
func NewKeySet(ctx context.Context, sources []string, opts KeySetOptions) (*KeySet, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = DefaultClient()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = time.Minute
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = time.Hour
	}
	ks := &KeySet{sources: append([]string(nil), sources...), opts: opts}
	keys, err := ks.load(ctx)
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	ks.state.Store(&keySetState{keys: keys, loaded: now, lastAttempt: now})
	return ks, nil
}

func (ks *KeySet) load(ctx context.Context) ([]*JWK, error) {
	var all []*JWK
	for _, src := range ks.sources {
		keys, skipped, err := FetchJWKSet(ctx, ks.opts.HTTPClient, src)
		if err != nil {
			return nil, err
		}
		for _, s := range skipped {
			ks.opts.Logger.Debug("skipping unusable key in JWK set", "source", src, "reason", s.Error())
		}
		all = append(all, keys...)
	}
	return all, nil
}

// Len returns the number of usable keys currently cached.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.state.Load().keys)
}

// Lookup returns the first key whose kid equals kid, reloading the sources
// first when the cache is stale, or when kid is unknown and the last
// attempt is older than MinRefresh.
func (ks *KeySet) Lookup(ctx context.Context, kid string) (*JWK, bool) {
	if ks == nil || kid == "" {
		return nil, false
	}
	st := ks.state.Load()
	now := ks.opts.Now()
	k, found := find(st.keys, kid)
	stale := now.Sub(st.loaded) >= ks.opts.MaxAge
	if (found && !stale) || len(ks.sources) == 0 || now.Sub(st.lastAttempt) < ks.opts.MinRefresh {
		return k, found
	}
	ks.refresh(ctx)
	return find(ks.state.Load().keys, kid)
}

func (ks *KeySet) refresh(ctx context.Context) {
	if !ks.mu.TryLock() {
		return // another request is reloading; use what we have
	}
	defer ks.mu.Unlock()
	old := ks.state.Load()
	now := ks.opts.Now()
	if now.Sub(old.lastAttempt) < ks.opts.MinRefresh {
		return
	}
	keys, err := ks.load(ctx)
	if err != nil {
		ks.opts.Logger.Warn("reloading JWK sets failed, keeping cached keys", "error", err.Error())
		ks.state.Store(&keySetState{keys: old.keys, loaded: old.loaded, lastAttempt: now})
		return
	}
	ks.state.Store(&keySetState{keys: keys, loaded: now, lastAttempt: now})
}

func find(keys []*JWK, kid string) (*JWK, bool) {
	for _, k := range keys {
		if k.Kid == kid {
			return k, true
		}
	}
	return nil, false
}
