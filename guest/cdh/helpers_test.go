package cdh

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var (
	gcTestdata   = testvectors.Path("guest-components/")
	kataTestdata = testvectors.Path("kata/")
	secretTests  = gcTestdata + "confidential-data-hub/hub/src/secret/tests/"
	offlineFiles = gcTestdata + "image-rs/test_data/offline-fs-kbc/"
)

// attestingTokens plays the attestation-agent's GetToken("kbs"): every
// call runs a real RCAR handshake with the (fake) KBS using the sample
// attester and a new key pair, exactly as upstream's AA does.
type attestingTokens struct {
	url   string
	calls atomic.Int32
	fail  error
}

func (a *attestingTokens) Token(ctx context.Context) (string, []byte, error) {
	a.calls.Add(1)
	if a.fail != nil {
		return "", nil, a.fail
	}
	c, err := client.New(client.Options{URL: a.url, Attester: sample.New(false), MaxAttestRetries: 1})
	if err != nil {
		return "", nil, err
	}
	tok, kp, err := c.Token(ctx)
	if err != nil {
		return "", nil, err
	}
	pem, err := kp.MarshalPEM()
	if err != nil {
		return "", nil, err
	}
	return tok, pem, nil
}

// kbsEnv is a fake KBS on loopback with its token source.
type kbsEnv struct {
	kbs    *fakekbs.KBS
	srv    *httptest.Server
	tokens *attestingTokens
}

func newKBS(t testing.TB, opts fakekbs.Options) *kbsEnv {
	t.Helper()
	k := fakekbs.New(opts)
	srv := httptest.NewServer(k)
	t.Cleanup(srv.Close)
	return &kbsEnv{kbs: k, srv: srv, tokens: &attestingTokens{url: srv.URL}}
}

// testClock is a settable test clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sleeps records back-off waits without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}
