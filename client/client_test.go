package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

var secret = []byte("top secret resource \x00\xff")

func TestGetResourceHappyPaths(t *testing.T) {
	keys := []struct {
		name string
		alg  protocol.KeyAlgorithm
	}{
		{"EC P-256", protocol.KeyEC256},
		{"EC P-521", protocol.KeyEC521},
		{"RSA 2048", protocol.KeyRSA2048},
	}
	extras := []struct {
		name  string
		extra json.RawMessage
	}{
		{"extra-params string", json.RawMessage(`""`)},
		{"extra-params object sha512", json.RawMessage(`{"selected-hash-algorithm":"SHA512"}`)},
		{"extra-params object sha256", json.RawMessage(`{"selected-hash-algorithm":"sha256"}`)},
	}
	for _, k := range keys {
		for _, bearer := range []bool{false, true} {
			for _, x := range extras {
				name := k.name + "/" + map[bool]string{false: "cookie", true: "bearer"}[bearer] + "/" + x.name
				t.Run(name, func(t *testing.T) {
					e := newEnv(t, fakekbs.Options{ExtraParams: x.extra}, func(o *Options) {
						o.KeyAlgorithm = k.alg
						o.Bearer = bearer
					})
					e.kbs.SetResource("default/key/1", secret)
					got, err := e.c.GetResource(ctxT(t), "kbs:///default/key/1")
					if err != nil {
						t.Fatalf("GetResource: %v", err)
					}
					if !bytes.Equal(got, secret) {
						t.Fatalf("resource = %q, want %q", got, secret)
					}
					if e.c.KeyPair().Algorithm() != k.alg {
						t.Errorf("key algorithm = %v, want %v", e.c.KeyPair().Algorithm(), k.alg)
					}
					var get fakekbs.Record
					for _, r := range e.kbs.Requests() {
						if r.Method == http.MethodGet {
							get = r
						}
					}
					if bearer {
						if get.Bearer == "" || get.Cookie != "" {
							t.Errorf("bearer mode sent cookie %q, bearer set %v", get.Cookie, get.Bearer != "")
						}
					} else if get.Cookie == "" || get.Bearer != "" {
						t.Errorf("cookie mode sent cookie %q, bearer set %v", get.Cookie, get.Bearer != "")
					}
					if n := e.kbs.Count(http.MethodPost, "/kbs/v0/auth"); n != 1 {
						t.Errorf("auth requests = %d, want 1", n)
					}
				})
			}
		}
	}
}

func TestGetResourceWithDevice(t *testing.T) {
	e := newEnv(t, fakekbs.Options{}, func(o *Options) {
		o.Attester = attester.WithDevices(&sample.Attester{}, &sample.Device{})
	})
	e.kbs.SetResource("a/b/c", secret)
	if _, err := e.c.GetResource(ctxT(t), "a/b/c"); err != nil {
		t.Fatalf("GetResource: %v", err)
	}
	var att protocol.Attestation
	for _, r := range e.kbs.Requests() {
		if r.Path == "/kbs/v0/attest" {
			if err := json.Unmarshal(r.Body, &att); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.HasPrefix(att.TeeEvidence.AdditionalEvidence, `{"sampledevice":{"svn":"2","report_data":"`) {
		t.Errorf("additional evidence = %q", att.TeeEvidence.AdditionalEvidence)
	}
}

// failFirst answers the first n requests matching method+path with status
// and an ErrorInformation of kind.
func failFirst(n int, method, path string, status int, kind, detail string) func(http.ResponseWriter, *http.Request) bool {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if n > 0 && r.Method == method && strings.HasPrefix(r.URL.Path, path) {
			n--
			fakekbs.WriteError(w, status, kind, detail)
			return true
		}
		return false
	}
}

func TestGetResourceStatusHandling(t *testing.T) {
	tests := []struct {
		name      string
		kopts     fakekbs.Options
		uri       string
		wantErr   []error
		notErr    []error
		wantGets  int
		wantAuths int
		detail    string
	}{
		{
			name:      "401 once then success",
			kopts:     fakekbs.Options{Hook: failFirst(1, "GET", "/kbs/v0/resource/", 401, "TokenVerifierError", "token expired")},
			uri:       "default/key/1",
			wantGets:  2,
			wantAuths: 2,
		},
		{
			name:      "401 twice then success on the last attempt",
			kopts:     fakekbs.Options{Hook: failFirst(2, "GET", "/kbs/v0/resource/", 401, "TokenVerifierError", "token expired")},
			uri:       "default/key/1",
			wantGets:  3,
			wantAuths: 3,
		},
		{
			name:      "401 always gives up after 3 attempts",
			kopts:     fakekbs.Options{Hook: failFirst(100, "GET", "/kbs/v0/resource/", 401, "TokenVerifierError", "token expired")},
			uri:       "default/key/1",
			wantErr:   []error{ErrUnauthorized},
			notErr:    []error{ErrPolicyDeny},
			wantGets:  3,
			wantAuths: 3,
			detail:    "token expired",
		},
		{
			name:      "PolicyDeny stops after one request",
			kopts:     fakekbs.Options{Deny: func(string, []string) bool { return true }},
			uri:       "default/key/1",
			wantErr:   []error{ErrPolicyDeny},
			notErr:    []error{ErrUnauthorized, ErrResourceNotFound},
			wantGets:  1,
			wantAuths: 1,
			detail:    "Access denied by policy",
		},
		{
			name:      "404 unknown plugin is not retried",
			uri:       "kbs+nosuch:///x/y",
			wantErr:   []error{ErrResourceNotFound},
			notErr:    []error{ErrUnauthorized},
			wantGets:  1,
			wantAuths: 1,
			detail:    "Plugin nosuch not found",
		},
		{
			name:      "500 is a server error, not retried",
			kopts:     fakekbs.Options{Hook: failFirst(100, "GET", "/kbs/v0/resource/", 500, "InternalError", "storage down")},
			uri:       "default/key/1",
			wantErr:   []error{ErrServer},
			notErr:    []error{ErrUnauthorized},
			wantGets:  1,
			wantAuths: 1,
			detail:    "storage down",
		},
		{
			name:      "missing resource is upstream's 401, retried",
			uri:       "default/key/missing",
			wantErr:   []error{ErrUnauthorized},
			wantGets:  3,
			wantAuths: 3,
			detail:    "resource not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.kopts, nil)
			e.kbs.SetResource("default/key/1", secret)
			got, err := e.c.GetResource(ctxT(t), tt.uri)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("GetResource: %v", err)
				}
				if !bytes.Equal(got, secret) {
					t.Fatalf("resource = %q", got)
				}
			} else if err == nil {
				t.Fatal("GetResource succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !errors.Is(err, w) {
					t.Errorf("error %v is not %v", err, w)
				}
			}
			for _, w := range tt.notErr {
				if errors.Is(err, w) {
					t.Errorf("error %v is %v", err, w)
				}
			}
			if tt.detail != "" && !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q lacks the server detail %q", err, tt.detail)
			}
			if n := e.kbs.Count("GET", "/kbs/v0/"); n != tt.wantGets {
				t.Errorf("resource requests = %d, want %d", n, tt.wantGets)
			}
			if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != tt.wantAuths {
				t.Errorf("auth requests = %d, want %d", n, tt.wantAuths)
			}
		})
	}
}

func TestAttestRetries(t *testing.T) {
	mismatch := "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.4.0"
	tests := []struct {
		name       string
		hook       func(http.ResponseWriter, *http.Request) bool
		wantErr    error
		wantAuths  int
		wantSleeps int32
	}{
		{"succeeds after transient failures", failFirst(3, "POST", "/kbs/v0/auth", 503, "InternalError", "busy"), nil, 4, 3},
		{"gives up after 5 attempts", failFirst(100, "POST", "/kbs/v0/auth", 503, "InternalError", "busy"), ErrServer, 5, 4},
		{"attest 401 is retried", failFirst(2, "POST", "/kbs/v0/attest", 401, "AttestationError", "evidence rejected"), nil, 3, 2},
		{"version mismatch is not retried", failFirst(100, "POST", "/kbs/v0/auth", 401, "AttestationError", mismatch), ErrVersionMismatch, 1, 0},
		{"policy deny is not retried", failFirst(100, "POST", "/kbs/v0/attest", 401, "PolicyDeny", "denied"), ErrPolicyDeny, 1, 0},
		{"malformed challenge", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/kbs/v0/auth" {
				http.SetCookie(w, &http.Cookie{Name: protocol.CookieName, Value: "x"})
				w.Write([]byte(`{"nonce":"","extra-params":""}`))
				return true
			}
			return false
		}, ErrInvalidResponse, 5, 4},
		{"no session cookie", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/kbs/v0/auth" {
				w.Write([]byte(`{"nonce":"bm9uY2U=","extra-params":""}`))
				return true
			}
			return false
		}, ErrInvalidResponse, 5, 4},
		{"unknown hash algorithm", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/kbs/v0/auth" {
				http.SetCookie(w, &http.Cookie{Name: protocol.CookieName, Value: "x"})
				w.Write([]byte(`{"nonce":"bm9uY2U=","extra-params":{"selected-hash-algorithm":"md5"}}`))
				return true
			}
			return false
		}, ErrInvalidResponse, 5, 4},
		{"token is not a JWT", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/kbs/v0/attest" {
				w.Write([]byte(`{"token":"not-a-jwt"}`))
				return true
			}
			return false
		}, ErrInvalidToken, 5, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fakekbs.Options{Hook: tt.hook}, nil)
			tok, err := e.c.Attest(ctxT(t))
			if tt.wantErr == nil {
				if err != nil || tok == "" {
					t.Fatalf("Attest = %q, %v", tok, err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Attest error = %v, want %v", err, tt.wantErr)
			}
			if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != tt.wantAuths {
				t.Errorf("auth requests = %d, want %d", n, tt.wantAuths)
			}
			if n := e.sleeps.Load(); n != tt.wantSleeps {
				t.Errorf("sleeps = %d, want %d", n, tt.wantSleeps)
			}
		})
	}
}

// TestWrongNonce rewrites the challenge so the client binds a nonce the KBS
// did not issue: the KBS must refuse it and the client must fail.
func TestWrongNonce(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kbs/v0/auth" {
			kbs.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		kbs.ServeHTTP(rec, r)
		var ch protocol.Challenge
		if err := json.Unmarshal(rec.Body.Bytes(), &ch); err != nil {
			t.Errorf("challenge: %v", err)
		}
		ch.Nonce = "cmVwbGF5ZWQgbm9uY2U="
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		json.NewEncoder(w).Encode(ch)
	}))
	defer srv.Close()
	c, err := New(Options{URL: srv.URL, Attester: &sample.Attester{}, MaxAttestRetries: 2,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetResource(ctxT(t), "default/key/1")
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "nonce mismatch") {
		t.Fatalf("error = %v, want 401 nonce mismatch", err)
	}
	if n := kbs.Count("GET", "/kbs/v0/resource"); n != 0 {
		t.Errorf("resource requests = %d, want 0", n)
	}
}

func TestBadJWE(t *testing.T) {
	tests := []struct {
		name string
		body func(key protocol.TeePubKey) []byte
	}{
		{"not JSON", func(protocol.TeePubKey) []byte { return []byte("<html>") }},
		{"empty object", func(protocol.TeePubKey) []byte { return []byte("{}") }},
		{"tampered tag", func(key protocol.TeePubKey) []byte {
			r, err := protocol.Encrypt(key, secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			tag := []byte(r.Tag)
			if tag[0] == 'A' {
				tag[0] = 'B'
			} else {
				tag[0] = 'A'
			}
			r.Tag = string(tag)
			b, _ := json.Marshal(r)
			return b
		}},
		{"encrypted to another key", func(protocol.TeePubKey) []byte {
			kp, err := protocol.GenerateKeyPair(protocol.KeyEC256, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := protocol.Encrypt(kp.PublicKey(), secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(r)
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Client
			e := newEnv(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet {
					w.Write(tt.body(c.KeyPair().PublicKey()))
					return true
				}
				return false
			}}, nil)
			c = e.c
			_, err := c.GetResource(ctxT(t), "default/key/1")
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error = %v, want ErrInvalidResponse", err)
			}
			if n := e.kbs.Count("GET", "/kbs/v0/"); n != 1 {
				t.Errorf("resource requests = %d, want 1", n)
			}
		})
	}
}

func TestSlowServerHitsDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	}}, func(o *Options) {
		o.RequestTimeout = 50 * time.Millisecond
		o.MaxAttestRetries = 2
	})
	_, err := e.c.Attest(ctxT(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want a deadline", err)
	}
	if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != 2 {
		t.Errorf("auth requests = %d, want 2", n)
	}
}

func TestCanceledContextStopsRetries(t *testing.T) {
	e := newEnv(t, fakekbs.Options{Hook: failFirst(100, "POST", "/kbs/v0/auth", 503, "InternalError", "busy")}, func(o *Options) {
		o.Sleep = nil // the real sleep, which must notice the cancellation
		o.RetryInterval = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := e.c.Attest(ctx); done <- err }()
	for e.kbs.Count("POST", "/kbs/v0/auth") == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

func TestOversizedResponse(t *testing.T) {
	e := newEnv(t, fakekbs.Options{Hook: func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		for written := 0; written <= limits.MaxResponseBytes; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return true
			}
		}
		return true
	}}, func(o *Options) {
		// 48 MiB through the race detector on a loaded machine can take
		// longer than the helpers' 5 s: the limit, not the clock, must end it.
		o.RequestTimeout = 25 * time.Second
	})
	_, err := e.c.GetResource(ctxT(t), "default/key/1")
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("error = %v, want ErrResponseTooLarge", err)
	}
	if n := e.kbs.Count("GET", "/kbs/v0/"); n != 1 {
		t.Errorf("resource requests = %d, want 1", n)
	}
}

func TestTokenCaching(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, fakekbs.Options{Now: clock, TokenLifetime: time.Minute}, func(o *Options) { o.Now = clock })
	t1, kp, err := e.c.Token(ctxT(t))
	if err != nil || kp != e.c.KeyPair() {
		t.Fatalf("Token: %v", err)
	}
	t2, _, err := e.c.Token(ctxT(t))
	if err != nil || t2 != t1 {
		t.Fatalf("second Token = %v, want the cached token", err)
	}
	if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != 1 {
		t.Fatalf("auth requests = %d, want 1", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	t3, _, err := e.c.Token(ctxT(t))
	if err != nil || t3 == t1 {
		t.Fatalf("Token after expiry = %v; same token %v", err, t3 == t1)
	}
	if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != 2 {
		t.Fatalf("auth requests = %d, want 2", n)
	}
}

func TestTokenValidity(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name   string
		claims string
		valid  bool
	}{
		{"no times", `{}`, true},
		{"future exp", `{"exp":1800000060}`, true},
		{"past exp", `{"exp":1799999999}`, false},
		{"exp now", `{"exp":1800000000}`, true},
		{"nbf within the skew leeway", `{"nbf":1800000060}`, true},
		{"future nbf", `{"nbf":1800000061}`, false},
		{"past nbf", `{"nbf":1799999999,"exp":1800000001}`, true},
		{"fractional exp", `{"exp":1799999999.5}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			times, err := ParseTokenTimes(jwt(tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			if got := times.UsableAt(now, 0); got != tt.valid {
				t.Errorf("valid = %v, want %v", got, tt.valid)
			}
		})
	}
	for _, bad := range []string{"", "a.b", "a.b.c.d", "a.!!.c", jwt(`[]`), jwt(`{"exp":"soon"}`), jwt(`{"exp":-1}`), jwt(`{"nbf":1e300}`), strings.Repeat("a", limits.MaxTokenBytes+1)} {
		if _, err := ParseTokenTimes(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ParseTokenTimes(%.20q) = %v, want ErrInvalidToken", bad, err)
		}
	}
}

func jwt(claims string) string {
	return "eyJhbGciOiJub25lIn0." + b64url(claims) + ".c2ln"
}

func b64url(s string) string {
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(stdB64(s)), "=")
}

func TestStaticToken(t *testing.T) {
	kp := loadKey(t, "tee-key-rsa.pem")
	// A first client attests to obtain a token for kp (passport mode's
	// first KBS); a second uses it without an attester.
	e := newEnv(t, fakekbs.Options{}, func(o *Options) { o.KeyPair = kp })
	e.kbs.SetResource("default/key/1", secret)
	token, err := e.c.Attest(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{URL: e.srv.URL, KeyPair: kp, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetResource(ctxT(t), "default/key/1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("GetResource = %q, %v", got, err)
	}
	if tok, k, err := c.Token(ctxT(t)); err != nil || tok != token || k != kp {
		t.Fatalf("Token = %v", err)
	}

	// A token the KBS does not know: one request, then ErrUnauthorized.
	before := e.kbs.Count("GET", "/kbs/v0/")
	c, err = New(Options{URL: e.srv.URL, KeyPair: kp, Token: jwt(`{"exp":4000000000}`)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetResource(ctxT(t), "default/key/1")
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "invalid or expired token") {
		t.Fatalf("error = %v, want ErrUnauthorized with the server detail", err)
	}
	if n := e.kbs.Count("GET", "/kbs/v0/") - before; n != 1 {
		t.Errorf("resource requests = %d, want 1", n)
	}

	// With an attester, a refused static token leads to a new handshake.
	c, err = New(Options{URL: e.srv.URL, KeyPair: kp, Token: jwt(`{}`), Attester: &sample.Attester{}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetResource(ctxT(t), "default/key/1"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("GetResource with attester = %q, %v", got, err)
	}
}

func TestNoAttester(t *testing.T) {
	e := newEnv(t, fakekbs.Options{}, func(o *Options) { o.Attester = nil })
	if _, err := e.c.GetResource(ctxT(t), "default/key/1"); !errors.Is(err, ErrNoAttester) {
		t.Fatalf("GetResource error = %v, want ErrNoAttester", err)
	}
	if _, err := e.c.Attest(ctxT(t)); !errors.Is(err, ErrNoAttester) {
		t.Fatalf("Attest error = %v, want ErrNoAttester", err)
	}
	if len(e.kbs.Requests()) != 0 {
		t.Error("requests were sent")
	}
}

// TestConcurrentReadsAttestOnce: many readers, one handshake; a 401 seen
// by all of them for the same token leads to one more handshake at most
// per generation.
func TestConcurrentReadsAttestOnce(t *testing.T) {
	e := newEnv(t, fakekbs.Options{}, nil)
	e.kbs.SetResource("default/key/1", secret)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			got, err := e.c.GetResource(ctxT(t), "default/key/1")
			if err == nil && !bytes.Equal(got, secret) {
				err = errors.New("wrong plaintext")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != 1 {
		t.Errorf("auth requests = %d, want 1", n)
	}
}

// TestJarIgnored: a jar on the given HTTP client must not add a second
// session cookie (a shared jar would mix the sessions of two clients).
func TestJarIgnored(t *testing.T) {
	jar, _ := cookiejar.New(nil)
	e := newEnv(t, fakekbs.Options{}, func(o *Options) { o.HTTPClient = &http.Client{Jar: jar} })
	e.kbs.SetResource("default/key/1", secret)
	if _, err := e.c.GetResource(ctxT(t), "default/key/1"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	h := func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Values("Cookie")
		e.kbs.ServeHTTP(w, r)
	}
	srv := httptest.NewServer(http.HandlerFunc(h))
	defer srv.Close()
	c, err := New(Options{URL: srv.URL, Attester: &sample.Attester{}, HTTPClient: &http.Client{Jar: jar}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetResource(ctxT(t), "default/key/1"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || strings.Count(seen[0], protocol.CookieName) != 1 {
		t.Errorf("Cookie headers = %q, want exactly one session cookie", seen)
	}
	if n := len(jar.Cookies(mustURL(t, srv.URL))); n != 0 {
		t.Errorf("jar holds %d cookies, want 0", n)
	}
}

func TestNewValidates(t *testing.T) {
	kp := loadKey(t, "tee-key-p256.pem")
	tests := []struct {
		name string
		opts Options
	}{
		{"no URL", Options{}},
		{"bad scheme", Options{URL: "ftp://kbs"}},
		{"no host", Options{URL: "http://"}},
		{"query", Options{URL: "http://kbs:8080/?a=b"}},
		{"userinfo", Options{URL: "http://u:p@kbs"}},
		{"token without key", Options{URL: "http://kbs", Token: jwt(`{}`)}},
		{"token not a JWT", Options{URL: "http://kbs", Token: "x", KeyPair: kp}},
		{"root CAs with a client", Options{URL: "https://kbs", HTTPClient: &http.Client{}, RootCAs: mustPool()}},
		{"negative retries", Options{URL: "http://kbs", MaxAttestRetries: -1}},
		{"unknown key algorithm", Options{URL: "http://kbs", KeyAlgorithm: 42}},
		{"huge init-data", Options{URL: "http://kbs", InitDataTOML: strings.Repeat("a", limits.MaxConfigBytes+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.opts); err == nil {
				t.Fatalf("New succeeded: %+v", c)
			}
		})
	}
	c, err := New(Options{URL: "https://kbs.example:8080/prefix/", RootCAs: mustPool()})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://kbs.example:8080/prefix" {
		t.Errorf("base = %q", c.base)
	}
}

func TestErrorMapping(t *testing.T) {
	info := func(kind, detail string) protocol.ErrorInformation {
		return protocol.ErrorInformation{Type: protocol.ErrorTypePrefix + kind, Detail: detail}
	}
	all := []error{ErrUnauthorized, ErrPolicyDeny, ErrResourceNotFound, ErrVersionMismatch, ErrServer}
	tests := []struct {
		name string
		err  error
		want []error
	}{
		{"401 token", &Error{Status: 401, Info: info("TokenVerifierError", "bad")}, []error{ErrUnauthorized}},
		{"401 deny", &Error{Status: 401, Info: info("PolicyDeny", "Access denied by policy")}, []error{ErrPolicyDeny}},
		{"wrapped deny", fmt.Errorf("ctx: %w", &Error{Status: 401, Info: info("PolicyDeny", "")}), []error{ErrPolicyDeny}},
		{"version", &Error{Status: 401, Info: info("AttestationError", "KBS Client Protocol Version Mismatch: expect =0.4.0")}, []error{ErrVersionMismatch}},
		{"404", &Error{Status: 404, Info: info("PluginNotFound", "")}, []error{ErrResourceNotFound}},
		{"500 plain body", &Error{Status: 500, Body: "oops"}, []error{ErrServer}},
		{"413", &Error{Status: 413}, []error{ErrServer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range all {
				want := false
				for _, w := range tt.want {
					want = want || w == s
				}
				if got := errors.Is(tt.err, s); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, s, got, want)
				}
			}
		})
	}
	e := statusError("auth", &response{status: 502, body: []byte("\x1b[31mbad\ngateway\xff")})
	if strings.ContainsAny(e.Error(), "\x1b\n") || !strings.Contains(e.Error(), "bad gateway") {
		t.Errorf("unsanitized error text %q", e.Error())
	}
}

func mustPool() *x509.CertPool { return x509.NewCertPool() }

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func stdB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestClockSkew: a token our clock calls expired right after the KBS
// issued it is still used once, not re-attested in a loop.
func TestClockSkew(t *testing.T) {
	kbsNow := func() time.Time { return time.Unix(1_700_000_000, 0) }
	e := newEnv(t, fakekbs.Options{Now: kbsNow, TokenLifetime: time.Minute}, func(o *Options) {
		o.Now = func() time.Time { return time.Unix(1_800_000_000, 0) }
		o.Bearer = true
	})
	e.kbs.SetResource("default/key/1", secret)
	if _, err := e.c.GetResource(ctxT(t), "default/key/1"); err != nil {
		t.Fatal(err)
	}
	if n := e.kbs.Count("POST", "/kbs/v0/auth"); n != 1 {
		t.Errorf("auth requests = %d, want 1", n)
	}
}
