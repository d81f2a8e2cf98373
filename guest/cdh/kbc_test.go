package cdh

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client/fakekbs"
)

func newCC(t *testing.T, env *kbsEnv, mutate func(*CCOptions)) *CCKBC {
	t.Helper()
	o := CCOptions{URL: env.srv.URL, Tokens: env.tokens}
	if mutate != nil {
		mutate(&o)
	}
	k, err := NewCC(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCCKBCReusesOneToken(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	env.kbs.SetResource("default/key/1", []byte("k1"))
	k := newCC(t, env, nil)
	for i := range 10 {
		b, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if string(b) != "k1" {
			t.Fatalf("read %d = %q", i, b)
		}
	}
	if n := env.tokens.calls.Load(); n != 1 {
		t.Fatalf("%d tokens fetched for 10 reads, want 1", n)
	}
	if n := env.kbs.Count(http.MethodPost, "/kbs/v0/attest"); n != 1 {
		t.Fatalf("%d attestations, want 1", n)
	}
	for _, r := range env.kbs.Requests() {
		if strings.HasPrefix(r.Path, "/kbs/v0/resource/") && (r.Bearer == "" || r.Cookie != "") {
			t.Fatalf("resource read without Bearer token or with a cookie: %+v", r)
		}
	}
}

func TestCCKBCWithoutCacheAttestsPerRead(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	env.kbs.SetResource("default/key/1", []byte("k1"))
	k := newCC(t, env, func(o *CCOptions) { o.DisableTokenCache = true })
	for range 5 {
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.kbs.Count(http.MethodPost, "/kbs/v0/attest"); n != 5 {
		t.Fatalf("%d attestations, want 5", n)
	}
}

func TestCCKBCRefreshesBeforeExpiry(t *testing.T) {
	env := newKBS(t, fakekbs.Options{TokenLifetime: 5 * time.Minute})
	env.kbs.SetResource("default/key/1", []byte("k1"))
	clk := newClock()
	k := newCC(t, env, func(o *CCOptions) { o.Now = clk.Now })
	read := func() {
		t.Helper()
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); err != nil {
			t.Fatal(err)
		}
	}
	read()
	clk.Add(4 * time.Minute) // 1 min left: still used
	read()
	if n := env.tokens.calls.Load(); n != 1 {
		t.Fatalf("%d tokens before the refresh margin, want 1", n)
	}
	clk.Add(45 * time.Second) // 15 s left, under RefreshBefore (30 s)
	read()
	if n := env.tokens.calls.Load(); n != 2 {
		t.Fatalf("%d tokens after the refresh margin, want 2", n)
	}
}

func TestCCKBCFailures(t *testing.T) {
	t.Run("policy deny is reported at once", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{Deny: func(string, []string) bool { return true }})
		env.kbs.SetResource("default/key/1", []byte("k1"))
		k := newCC(t, env, nil)
		_, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		if !errors.Is(err, ErrPolicyDeny) {
			t.Fatalf("err %v, want ErrPolicyDeny", err)
		}
		if n := env.tokens.calls.Load(); n != 1 {
			t.Fatalf("%d tokens, want 1 (no blind re-attest)", n)
		}
		if n := env.kbs.Count(http.MethodGet, "/kbs/v0/resource/"); n != 1 {
			t.Fatalf("%d reads, want 1", n)
		}
		if strings.Contains(rpcError("get resource", err).Error(), "Access denied by policy") {
			t.Fatal("the server's detail crossed to the ttRPC caller")
		}
	})
	t.Run("missing resource is not found without re-attesting", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{})
		k := newCC(t, env, nil)
		_, err := k.GetResource(context.Background(), "kbs:///default/key/nope")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
		if n := env.tokens.calls.Load(); n != 1 {
			t.Fatalf("%d tokens, want 1", n)
		}
	})
	t.Run("unknown plugin is not found", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{})
		k := newCC(t, env, nil)
		_, err := k.GetResource(context.Background(), "kbs+nope:///a/b")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
	})
	t.Run("an invalid token gets one fresh token", func(t *testing.T) {
		var refused atomic.Bool
		env := newKBS(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/kbs/v0/resource/") && !refused.Swap(true) {
				fakekbs.WriteError(w, http.StatusUnauthorized, "TokenVerifierError", "Token Verifier error: expired")
				return true
			}
			return false
		}})
		env.kbs.SetResource("default/key/1", []byte("k1"))
		k := newCC(t, env, nil)
		b, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		if err != nil || string(b) != "k1" {
			t.Fatalf("GetResource = %q, %v", b, err)
		}
		if n := env.tokens.calls.Load(); n != 2 {
			t.Fatalf("%d tokens, want 2", n)
		}
	})
	t.Run("a token refused twice is unauthorized", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/kbs/v0/resource/") {
				fakekbs.WriteError(w, http.StatusUnauthorized, "TokenVerifierError", "Token Verifier error: bad signature")
				return true
			}
			return false
		}})
		k := newCC(t, env, nil)
		_, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err %v, want ErrUnauthorized", err)
		}
		if n := env.tokens.calls.Load(); n != 2 {
			t.Fatalf("%d tokens, want 2", n)
		}
	})
	t.Run("KBS server error is refused", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/kbs/v0/resource/") {
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			return false
		}})
		k := newCC(t, env, nil)
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); !errors.Is(err, ErrKBSRefused) {
			t.Fatalf("err %v, want ErrKBSRefused", err)
		}
	})
	t.Run("attestation-agent failure", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{})
		env.tokens.fail = errors.New("connection refused")
		k := newCC(t, env, nil)
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); !errors.Is(err, ErrAttestation) {
			t.Fatalf("err %v, want ErrAttestation", err)
		}
	})
}

func TestCCKBCUnreachable(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{})
		env.kbs.SetResource("default/key/1", []byte("k1"))
		var sl sleeps
		k := newCC(t, env, func(o *CCOptions) { o.Sleep = sl.Sleep })
		// Attest while the KBS is up, then take it down.
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); err != nil {
			t.Fatal(err)
		}
		env.srv.Close()
		_, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		if !errors.Is(err, ErrKBSUnreachable) {
			t.Fatalf("err %v, want ErrKBSUnreachable", err)
		}
		if msg := rpcError("get resource", err).Error(); !strings.Contains(msg, env.srv.URL) {
			t.Fatalf("ttRPC error %q does not name the KBS URL", msg)
		}
		want := []time.Duration{500 * time.Millisecond, time.Second}
		if len(sl.d) != len(want) || sl.d[0] != want[0] || sl.d[1] != want[1] {
			t.Fatalf("back-off %v, want %v", sl.d, want)
		}
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		var slow atomic.Bool
		env := newKBS(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
			if slow.Load() && strings.HasPrefix(r.URL.Path, "/kbs/v0/resource/") {
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return true
			}
			return false
		}})
		env.kbs.SetResource("default/key/1", []byte("k1"))
		var sl sleeps
		k := newCC(t, env, func(o *CCOptions) {
			o.Sleep = sl.Sleep
			o.RequestTimeout = 100 * time.Millisecond
			o.MaxAttempts = 2
		})
		if _, err := k.GetResource(context.Background(), "kbs:///default/key/1"); err != nil {
			t.Fatal(err)
		}
		slow.Store(true)
		_, err := k.GetResource(context.Background(), "kbs:///default/key/1")
		var ue *unreachableError
		if !errors.As(err, &ue) || ue.attempts != 2 {
			t.Fatalf("err %v, want unreachable after 2 attempts", err)
		}
	})
	t.Run("caller deadline ends the retries", func(t *testing.T) {
		env := newKBS(t, fakekbs.Options{})
		env.srv.Close()
		k := newCC(t, env, nil) // real sleeps: the deadline must cut them
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := k.GetResource(ctx, "kbs:///default/key/1")
		if err == nil {
			t.Fatal("read succeeded against a closed KBS")
		}
	})
}

func TestNewCCValidates(t *testing.T) {
	tests := []struct {
		name string
		opts CCOptions
	}{
		{"no token source", CCOptions{URL: "http://127.0.0.1:1"}},
		{"no URL", CCOptions{Tokens: &attestingTokens{}}},
		{"bad URL", CCOptions{URL: "http:10.0.0.3:8080", Tokens: &attestingTokens{}}},
		{"negative retries", CCOptions{URL: "http://127.0.0.1:1", Tokens: &attestingTokens{}, MaxAttempts: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCC(tt.opts); err == nil {
				t.Fatal("NewCC accepted bad options")
			}
		})
	}
}

func TestParseKBSToken(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"AA answer", `{"token":"a.b.c","tee_keypair":"-----BEGIN PRIVATE KEY-----"}`, true},
		{"no key", `{"token":"a.b.c"}`, false},
		{"not JSON", `a.b.c`, false},
		{"too large", `{"token":"` + strings.Repeat("a", 1<<20) + `"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseKBSToken([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseKBSToken: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestOfflineFS(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"default/key/1":"not base64!"}`), 0o600)
	o, err := NewOfflineFS([]string{
		offlineFiles + "aa-offline_fs_kbc-keys.json",
		offlineFiles + "aa-offline_fs_kbc-resources.json",
		filepath.Join(t.TempDir(), "missing.json"), // skipped, as upstream
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		uri  string
		want error
		len  int
	}{
		{"key", "kbs:///default/key/key_id1", nil, 32},
		{"resource", "kbs:///default/security-policy/test", nil, -1},
		{"host is ignored", "kbs://kbs.example/default/key/key_id1", nil, 32},
		{"missing", "kbs:///default/key/nope", ErrNotFound, 0},
		{"other plugin", "kbs+pkcs11:///default/key/key_id1", ErrNotFound, 0},
		{"escape", "kbs:///default/../key_id1", ErrInvalidRequest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := o.GetResource(context.Background(), tt.uri)
			if !errors.Is(err, tt.want) {
				t.Fatalf("GetResource: %v, want %v", err, tt.want)
			}
			if err == nil && tt.len >= 0 && len(b) != tt.len {
				t.Fatalf("got %d bytes, want %d", len(b), tt.len)
			}
		})
	}
	if _, err := NewOfflineFS([]string{bad}, nil); err == nil {
		t.Fatal("malformed offline file accepted")
	}
	got := OfflineFiles(func(string) string { return "/a.json,/b.json" })
	if len(got) != 4 || got[2] != "/a.json" || got[3] != "/b.json" {
		t.Fatalf("OfflineFiles = %v", got)
	}
}
