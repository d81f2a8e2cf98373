package client

import (
	"context"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/protocol"
)

// env is a fake KBS behind an httptest server and a client for it.
type env struct {
	kbs    *fakekbs.KBS
	srv    *httptest.Server
	c      *Client
	sleeps atomic.Int32
}

func loadKey(t testing.TB, name string) *protocol.KeyPair {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := protocol.KeyPairFromPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// newEnv starts a fake KBS configured by kopts and a client configured by
// mut on top of: sample attester, no-op sleep, 5 s request timeout.
func newEnv(t *testing.T, kopts fakekbs.Options, mut func(*Options)) *env {
	t.Helper()
	e := &env{kbs: fakekbs.New(kopts)}
	e.srv = httptest.NewServer(e.kbs)
	t.Cleanup(e.srv.Close)
	opts := Options{
		URL:            e.srv.URL + "/",
		Attester:       &sample.Attester{},
		RequestTimeout: 5 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.sleeps.Add(1)
			return ctx.Err()
		},
	}
	if mut != nil {
		mut(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.c = c
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
