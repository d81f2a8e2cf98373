package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

func TestParseTokenTimes(t *testing.T) {
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	tests := []struct {
		name  string
		token string
		want  TokenTimes
		ok    bool
	}{
		{"valid", jwt(`{"exp":1800000060,"nbf":1800000000,"iat":1800000000}`), TokenTimes{Exp: at(1800000060), Nbf: at(1800000000)}, true},
		{"no exp", jwt(`{"nbf":1800000000}`), TokenTimes{Nbf: at(1800000000)}, true},
		{"no claims", jwt(`{}`), TokenTimes{}, true},
		{"nbf in future", jwt(`{"exp":1900000000,"nbf":1850000000}`), TokenTimes{Exp: at(1900000000), Nbf: at(1850000000)}, true},
		{"fractional exp", jwt(`{"exp":1800000000.25}`), TokenTimes{Exp: time.Unix(1800000000, 250_000_000)}, true},
		{"exp at the epoch", jwt(`{"exp":0}`), TokenTimes{Exp: at(0)}, true},
		{"exponent exp", jwt(`{"exp":1.8e9}`), TokenTimes{Exp: at(1800000000)}, true},
		{"padded claims whitespace", jwt(" \n{\"exp\":1800000000}"), TokenTimes{Exp: at(1800000000)}, true},
		{"non-number exp", jwt(`{"exp":"1800000000"}`), TokenTimes{}, false},
		{"null exp", jwt(`{"exp":null}`), TokenTimes{}, false},
		{"boolean nbf", jwt(`{"nbf":true}`), TokenTimes{}, false},
		{"object exp", jwt(`{"exp":{"t":1}}`), TokenTimes{}, false},
		{"negative exp", jwt(`{"exp":-1}`), TokenTimes{}, false},
		{"exp beyond 2^40", jwt(`{"exp":1099511627777}`), TokenTimes{}, false},
		{"exp out of float range", jwt(`{"exp":1e400}`), TokenTimes{}, false},
		{"oversized", "e30." + b64url(`{"exp":1}`) + "." + strings.Repeat("a", limits.MaxTokenBytes), TokenTimes{}, false},
		{"empty", "", TokenTimes{}, false},
		{"two parts", "eyJhbGciOiJub25lIn0." + b64url(`{"exp":1}`), TokenTimes{}, false},
		{"four parts", jwt(`{"exp":1}`) + ".x", TokenTimes{}, false},
		{"bad base64", "a.!!.c", TokenTimes{}, false},
		{"padded base64", "a." + b64url(`{"exp":1}`) + "==.c", TokenTimes{}, false},
		{"claims an array", jwt(`[{"exp":1}]`), TokenTimes{}, false},
		{"claims null", jwt(`null`), TokenTimes{}, false},
		{"claims not JSON", jwt(`{"exp":1`), TokenTimes{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokenTimes(tt.token)
			if !tt.ok {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("ParseTokenTimes = %+v, %v; want ErrInvalidToken", got, err)
				}
				if got != (TokenTimes{}) {
					t.Fatalf("times %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Exp.Equal(tt.want.Exp) || !got.Nbf.Equal(tt.want.Nbf) || got.Exp.IsZero() != tt.want.Exp.IsZero() || got.Nbf.IsZero() != tt.want.Nbf.IsZero() {
				t.Fatalf("ParseTokenTimes = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTokenTimesUsableAt(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := func(d time.Duration) TokenTimes { return TokenTimes{Exp: now.Add(d)} }
	tests := []struct {
		name   string
		times  TokenTimes
		margin time.Duration
		want   bool
	}{
		{"no claims", TokenTimes{}, time.Hour, true},
		{"exp beyond the margin", exp(31 * time.Second), 30 * time.Second, true},
		{"exp at the margin", exp(30 * time.Second), 30 * time.Second, true},
		{"exp within the margin", exp(29 * time.Second), 30 * time.Second, false},
		{"exp now, no margin", exp(0), 0, true},
		{"expired", exp(-time.Second), 0, false},
		{"nbf within the leeway", TokenTimes{Nbf: now.Add(nbfLeeway)}, 0, true},
		{"nbf in future", TokenTimes{Nbf: now.Add(nbfLeeway + time.Second), Exp: now.Add(time.Hour)}, 0, false},
	}
	for _, tt := range tests {
		if got := tt.times.UsableAt(now, tt.margin); got != tt.want {
			t.Errorf("%s: UsableAt = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fakeTime is an injected clock.
type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeTime) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeTime) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// issuer is a TokenFetchFunc counting its calls; each answers the call
// number and a token valid for life (none when life is 0) from the clock.
type issuer struct {
	clk   *fakeTime
	life  time.Duration
	calls atomic.Int32
}

func (s *issuer) fetch(context.Context) (int, TokenTimes, error) {
	n := int(s.calls.Add(1))
	if s.life == 0 {
		return n, TokenTimes{}, nil
	}
	return n, TokenTimes{Exp: s.clk.Now().Add(s.life)}, nil
}

func newTestCache(t *testing.T, opts TokenCacheOptions) *TokenCache[int] {
	t.Helper()
	c, err := NewTokenCache[int](opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// get calls c.Get and checks it answered call number want.
func get(t *testing.T, c *TokenCache[int], s *issuer, want int) uint64 {
	t.Helper()
	v, gen, err := c.Get(context.Background(), s.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if v != want {
		t.Fatalf("Get = value of fetch %d, want %d (%d fetches)", v, want, s.calls.Load())
	}
	return gen
}

func TestTokenCacheReusesUntilMargin(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &issuer{clk: clk, life: 5 * time.Minute}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now, Margin: DefaultTokenRefreshMargin})
	get(t, c, s, 1)
	clk.Add(4 * time.Minute) // 60 s left
	get(t, c, s, 1)
	clk.Add(30 * time.Second) // exactly the margin left: still reused
	get(t, c, s, 1)
	clk.Add(time.Second) // 29 s left, under the margin
	get(t, c, s, 2)
	get(t, c, s, 2)
}

func TestTokenCacheWithoutExp(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &issuer{clk: clk}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	get(t, c, s, 1)
	get(t, c, s, 2)

	s = &issuer{clk: clk}
	c = newTestCache(t, TokenCacheOptions{Now: clk.Now, ReuseWithoutExp: true})
	gen := get(t, c, s, 1)
	clk.Add(24 * time.Hour)
	get(t, c, s, 1)
	c.Invalidate(gen)
	get(t, c, s, 2)
}

func TestTokenCacheDisabled(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &issuer{clk: clk, life: time.Hour}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now, Disabled: true, ReuseWithoutExp: true})
	for i := 1; i <= 3; i++ {
		get(t, c, s, i)
	}
}

func TestTokenCacheNotYetValid(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	var calls atomic.Int32
	fetch := func(context.Context) (int, TokenTimes, error) {
		return int(calls.Add(1)), TokenTimes{Exp: clk.Now().Add(time.Hour), Nbf: clk.Now().Add(time.Hour / 2)}, nil
	}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	for i := 1; i <= 2; i++ {
		if v, _, err := c.Get(context.Background(), fetch); err != nil || v != i {
			t.Fatalf("Get = %d, %v; want %d (a token not valid yet is not reused)", v, err, i)
		}
	}
}

func TestTokenCacheInvalidate(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &issuer{clk: clk, life: time.Hour}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	g1 := get(t, c, s, 1)
	c.Invalidate(g1)
	g2 := get(t, c, s, 2)
	if g2 == g1 {
		t.Fatal("a new fetch kept the generation")
	}
	c.Invalidate(g1) // stale: the newer value stays
	get(t, c, s, 2)
}

func TestTokenCacheSharesOneFetch(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	fetch := func(context.Context) (int, TokenTimes, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		return 7, TokenTimes{Exp: clk.Now().Add(time.Hour)}, nil
	}
	const n = 8
	errs := make(chan error, n)
	first := func() {
		v, _, err := c.Get(context.Background(), fetch)
		if err == nil && v != 7 {
			err = errors.New("wrong value")
		}
		errs <- err
	}
	go first()
	<-entered
	for range n - 1 {
		go first()
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d fetches for %d concurrent callers, want 1", got, n)
	}
}

func TestTokenCacheFailureNotCached(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	boom := errors.New("kbs down")
	var calls atomic.Int32
	fetch := func(context.Context) (int, TokenTimes, error) {
		if calls.Add(1) == 1 {
			return 0, TokenTimes{}, boom
		}
		return 2, TokenTimes{Exp: clk.Now().Add(time.Hour)}, nil
	}
	if _, _, err := c.Get(context.Background(), fetch); !errors.Is(err, boom) {
		t.Fatalf("Get = %v, want the fetch's error", err)
	}
	if v, _, err := c.Get(context.Background(), fetch); err != nil || v != 2 {
		t.Fatalf("Get after a failure = %d, %v; want a new fetch", v, err)
	}
}

func TestTokenCacheCallerGivesUp(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	c := newTestCache(t, TokenCacheOptions{Now: clk.Now})
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context) (int, TokenTimes, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return 0, TokenTimes{}, ctx.Err()
		}
		return 1, TokenTimes{Exp: clk.Now().Add(time.Hour)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(ctx, fetch); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v", err)
	}
	// The fetch outlives the caller that started it; the next caller
	// waits for it rather than starting another.
	close(release)
	if v, _, err := c.Get(context.Background(), fetch); err != nil || v != 1 {
		t.Fatalf("Get = %d, %v", v, err)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d fetches, want 1", got)
	}
}

func TestTokenCacheFetchTimeout(t *testing.T) {
	c := newTestCache(t, TokenCacheOptions{FetchTimeout: 10 * time.Millisecond})
	fetch := func(ctx context.Context) (int, TokenTimes, error) {
		<-ctx.Done()
		return 0, TokenTimes{}, ctx.Err()
	}
	if _, _, err := c.Get(context.Background(), fetch); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want the fetch bounded by FetchTimeout", err)
	}
}

func TestNewTokenCacheOptions(t *testing.T) {
	for _, o := range []TokenCacheOptions{{Margin: -time.Second}, {FetchTimeout: -time.Second}} {
		if _, err := NewTokenCache[int](o); err == nil {
			t.Errorf("NewTokenCache(%+v) accepted", o)
		}
	}
}
