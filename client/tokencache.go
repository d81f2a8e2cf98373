package client

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultTokenRefreshMargin is the refresh margin of a TokenCache whose
// owner has no setting of its own: a cached token is reused until this long
// before its exp, then replaced. It leaves room for the clock skew between
// guest and KBS and for the time a request spends on its way, so that a
// token sent is still valid when the KBS verifies it.
const DefaultTokenRefreshMargin = 30 * time.Second

// DefaultTokenFetchTimeout bounds one fetch of a TokenCache whose options
// set no FetchTimeout: the RCAR handshake with its retries fits, a hung
// KBS does not.
const DefaultTokenFetchTimeout = 2 * time.Minute

// TokenCacheOptions configure a TokenCache. Zero values take the
// documented defaults.
type TokenCacheOptions struct {
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Margin is the refresh margin: a cached token is reused while
	// TokenTimes.UsableAt(now, Margin), i.e. until Margin before its exp.
	// 0 reuses it up to exp itself; an owner without a setting passes
	// DefaultTokenRefreshMargin. Negative is invalid.
	Margin time.Duration
	// ReuseWithoutExp keeps a token that has no exp claim until Invalidate
	// drops it. Set it only when the owner invalidates the token on the
	// KBS's refusal; otherwise such a token is fetched anew by every Get.
	ReuseWithoutExp bool
	// Disabled reuses nothing: every Get fetches, though callers arriving
	// while a fetch is in flight share it.
	Disabled bool
	// FetchTimeout bounds one fetch; 0 is DefaultTokenFetchTimeout.
	// Negative is invalid.
	FetchTimeout time.Duration
}

// TokenFetchFunc obtains a fresh value (the token itself, or something
// holding it) and the validity window of its token.
type TokenFetchFunc[T any] func(ctx context.Context) (T, TokenTimes, error)

// TokenCache holds the last value obtained with an attestation token and
// reuses it while the token is usable (see TokenCacheOptions.Margin).
//
// # Invariants
//
//   - At most one fetch runs at a time; callers that arrive while it runs
//     wait for it and share its outcome.
//   - A failed fetch is never cached: every caller waiting on it gets its
//     error, and the next Get fetches again.
//   - Each successful fetch replaces the cached value (or drops it, when
//     the new one may not be reused) and gets a new generation, so that
//     Invalidate of a value a later fetch has replaced keeps the newer one.
//
// A TokenCache is safe for concurrent use. It returns the cached value
// itself, not a copy: a T with shared state (a slice) must be cloned or
// treated as read-only by the callers.
type TokenCache[T any] struct {
	opts TokenCacheOptions

	mu       sync.Mutex // guards the fields below
	val      T
	times    TokenTimes
	has      bool   // val holds a reusable value
	gen      uint64 // generation of the last successful fetch
	inflight *tokenFlight[T]
}

// tokenFlight is one fetch; its fields are set before done is closed.
type tokenFlight[T any] struct {
	done chan struct{}
	val  T
	gen  uint64
	err  error
}

// NewTokenCache validates opts and returns an empty TokenCache.
func NewTokenCache[T any](opts TokenCacheOptions) (*TokenCache[T], error) {
	if opts.Margin < 0 || opts.FetchTimeout < 0 {
		return nil, errors.New("client: token cache: negative margin or fetch timeout")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = DefaultTokenFetchTimeout
	}
	return &TokenCache[T]{opts: opts}, nil
}

// keep reports whether a value whose token has times may be reused at all.
// A value that may not is not kept: the cache holds no key or token it
// will never return.
func (c *TokenCache[T]) keep(times TokenTimes) bool {
	return !c.opts.Disabled && (c.opts.ReuseWithoutExp || !times.Exp.IsZero())
}

// reusable reports whether the cached value may be returned at now.
// c.mu must be held.
func (c *TokenCache[T]) reusable(now time.Time) bool {
	return c.has && c.times.UsableAt(now, c.opts.Margin)
}

// Get returns the cached value while its token is usable, with its
// generation for Invalidate. Otherwise it calls fetch, once for all the
// callers that arrive while it runs.
//
// The fetch runs detached from ctx (keeping ctx's values), bounded by
// FetchTimeout, so that a caller giving up does not fail the others
// waiting on it; a caller whose ctx ends returns ctx.Err() at once.
func (c *TokenCache[T]) Get(ctx context.Context, fetch TokenFetchFunc[T]) (T, uint64, error) {
	c.mu.Lock()
	if c.reusable(c.opts.Now()) {
		v, gen := c.val, c.gen
		c.mu.Unlock()
		return v, gen, nil
	}
	f := c.inflight
	if f == nil {
		f = &tokenFlight[T]{done: make(chan struct{})}
		c.inflight = f
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
		go func() {
			defer cancel()
			v, times, err := fetch(fctx)
			c.mu.Lock()
			if err == nil {
				c.gen++
				f.val, f.gen = v, c.gen
				var zero T
				c.val, c.times, c.has = zero, TokenTimes{}, false
				if c.keep(times) {
					c.val, c.times, c.has = v, times, true
				}
			} else {
				f.err = err
			}
			c.inflight = nil
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			var zero T
			return zero, 0, f.err
		}
		return f.val, f.gen, nil
	case <-ctx.Done():
		var zero T
		return zero, 0, ctx.Err()
	}
}

// Invalidate drops the cached value if it is still that of generation gen,
// typically after the KBS refused its token; the next Get fetches again.
func (c *TokenCache[T]) Invalidate(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.has && c.gen == gen {
		var zero T
		c.val, c.times, c.has = zero, TokenTimes{}, false
	}
}
