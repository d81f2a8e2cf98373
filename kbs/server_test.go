package kbs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/memory"
)

// clock is an injectable, advanceable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const testConfig = `
[http_server]
insecure_http = true
payload_request_size = 1
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
timeout = 5
[storage_backend]
storage_type = "Memory"
`

type env struct {
	t     testing.TB
	srv   *Server
	ts    *httptest.Server
	clock *clock
	logs  *syncBuffer
	store storage.Store
}

func newEnv(t testing.TB, configTOML string, store storage.Store, clk *clock) *env {
	t.Helper()
	cfg, _, err := ParseConfig([]byte(configTOML))
	if err != nil {
		t.Fatal(err)
	}
	if clk == nil {
		clk = &clock{t: time.Now()}
	}
	if store == nil {
		store = memory.New()
	}
	logs := &syncBuffer{}
	srv, err := New(context.Background(), cfg, Options{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    clk.Now, Store: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return &env{t: t, srv: srv, ts: ts, clock: clk, logs: logs, store: store}
}

// guest is a test guest speaking the protocol by hand with the sample TEE.
type guest struct {
	e     *env
	base  string
	hc    *http.Client
	kp    *protocol.KeyPair
	nonce string
	token string
}

func (e *env) guest(alg protocol.KeyAlgorithm) *guest {
	kp, err := protocol.GenerateKeyPair(alg, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	return &guest{e: e, base: e.ts.URL, hc: &http.Client{Jar: jar}, kp: kp}
}

func (g *guest) do(method, path string, body []byte, hdr map[string]string) (int, []byte) {
	g.e.t.Helper()
	req, err := http.NewRequest(method, g.base+path, bytes.NewReader(body))
	if err != nil {
		g.e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		g.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (g *guest) auth(version string, tee string) (int, []byte) {
	body := fmt.Sprintf(`{"version":%q,"tee":%q,"extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512"]}}`, version, tee)
	code, b := g.do("POST", "/kbs/v0/auth", []byte(body), map[string]string{"Content-Type": "application/json"})
	if code == 200 {
		var ch protocol.Challenge
		if err := json.Unmarshal(b, &ch); err != nil {
			g.e.t.Fatal(err)
		}
		g.nonce = ch.Nonce
	}
	return code, b
}

// attestationBody builds the attest request for nonce, binding rdNonce
// into the sample evidence (normally the same).
func (g *guest) attestationBody(nonce, rdNonce string) []byte {
	g.e.t.Helper()
	pk := g.kp.PublicKey()
	rd, err := protocol.ReportData(protocol.SHA384, rdNonce, pk, "")
	if err != nil {
		g.e.t.Fatal(err)
	}
	ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
	att := protocol.Attestation{
		RuntimeData: protocol.RuntimeData{Nonce: nonce, TeePubKey: pk},
		TeeEvidence: protocol.CompositeEvidence{PrimaryEvidence: ev, AdditionalEvidence: ""},
	}
	b, err := json.Marshal(att)
	if err != nil {
		g.e.t.Fatal(err)
	}
	return b
}

func (g *guest) attest() (int, []byte) {
	code, b := g.do("POST", "/kbs/v0/attest", g.attestationBody(g.nonce, g.nonce), nil)
	if code == 200 {
		var r protocol.AttestationResponse
		json.Unmarshal(b, &r)
		g.token = r.Token
	}
	return code, b
}

func (g *guest) rcar() {
	g.e.t.Helper()
	if code, b := g.auth("0.4.0", "sample"); code != 200 {
		g.e.t.Fatalf("auth: %d %s", code, b)
	}
	if code, b := g.attest(); code != 200 {
		g.e.t.Fatalf("attest: %d %s", code, b)
	}
}

func (g *guest) decrypt(b []byte) []byte {
	g.e.t.Helper()
	r, err := protocol.ParseResponse(b)
	if err != nil {
		g.e.t.Fatalf("parsing JWE %s: %v", b, err)
	}
	pt, err := g.kp.Decrypt(r)
	if err != nil {
		g.e.t.Fatal(err)
	}
	return pt
}

func wantError(t *testing.T, code int, body []byte, wantCode int, wantKind string) protocol.ErrorInformation {
	t.Helper()
	var info protocol.ErrorInformation
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("body %q is not ErrorInformation: %v", body, err)
	}
	if code != wantCode || info.Kind() != wantKind {
		t.Fatalf("got %d %s (%s), want %d %s", code, info.Kind(), info.Detail, wantCode, wantKind)
	}
	return info
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

const allowAllPolicy = "package policy\ndefault allow = false\nallow if { data.plugin == \"resource\" }\n"

func (e *env) admin(method, path string, body []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

// adminDo sends an admin request (the test config allows every caller)
// and returns the status and body.
func (e *env) adminDo(method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) provision(path, secret, policy string) {
	e.admin("POST", "/kbs/v0/resource/"+path, []byte(secret))
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(policy))))
}

func TestRCARCookieAndBearer(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	const secret = "shhhhhhh"
	e.provision("default/test/secret", secret, allowAllPolicy)
	for _, tc := range []struct {
		name string
		alg  protocol.KeyAlgorithm
	}{{"EC P-256", protocol.KeyEC256}, {"EC P-521", protocol.KeyEC521}, {"RSA 2048", protocol.KeyRSA2048}} {
		t.Run(tc.name, func(t *testing.T) {
			g := e.guest(tc.alg)
			g.rcar()
			code, b := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, nil)
			if code != 200 {
				t.Fatalf("cookie GET: %d %s", code, b)
			}
			if got := string(g.decrypt(b)); got != secret {
				t.Fatalf("cookie mode secret = %q", got)
			}
			// Bearer: a client without the cookie.
			b2 := &guest{e: e, base: e.ts.URL, hc: &http.Client{}, kp: g.kp}
			code, b = b2.do("GET", "/kbs/v0/resource/default/test/secret", nil, map[string]string{"Authorization": "Bearer " + g.token})
			if code != 200 {
				t.Fatalf("bearer GET: %d %s", code, b)
			}
			if got := string(g.decrypt(b)); got != secret {
				t.Fatalf("bearer mode secret = %q", got)
			}
			// Re-attesting an attested session returns the same token.
			old := g.token
			if code, b := g.attest(); code != 200 || g.token != old {
				t.Fatalf("re-attest: %d %s", code, b)
			}
		})
	}
	if logs := e.logs.String(); strings.Contains(logs, secret) {
		t.Fatal("the secret appears in the logs")
	}
}

func TestDefaultPolicyDeniesSampleWithReason(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	e.admin("POST", "/kbs/v0/resource/default/test/secret", []byte("x"))
	g := e.guest(protocol.KeyEC256)
	g.rcar()
	code, b := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, nil)
	info := wantError(t, code, b, 401, "PolicyDeny")
	if !strings.Contains(info.Detail, "Access denied by policy") || len(info.Detail) <= len("Access denied by policy: ") {
		t.Fatalf("deny detail names no rule: %q", info.Detail)
	}
	if !strings.Contains(e.logs.String(), `"outcome":"deny"`) {
		t.Fatal("deny not audited")
	}
	if strings.Contains(e.logs.String(), g.token) {
		t.Fatal("the token appears in the logs")
	}
}

func TestBadInputChangesNothingAndServerKeepsServing(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	e.provision("default/test/secret", "s3cret", allowAllPolicy)

	t.Run("wrong version", func(t *testing.T) {
		code, b := e.guest(protocol.KeyEC256).auth("0.3.0", "sample")
		info := wantError(t, code, b, 401, "AttestationError")
		if !strings.Contains(info.Detail, "expect =0.4.0 while the request is 0.3.0") {
			t.Fatalf("detail = %q", info.Detail)
		}
	})
	t.Run("unknown tee", func(t *testing.T) {
		code, b := e.guest(protocol.KeyEC256).auth("0.4.0", "sgx-ish")
		wantError(t, code, b, 401, "SerdeError")
	})
	t.Run("attest without cookie", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		code, b := g.do("POST", "/kbs/v0/attest", g.attestationBody("bm9uY2U=", "bm9uY2U="), nil)
		wantError(t, code, b, 401, "AttestationError")
	})
	t.Run("unknown cookie", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		code, b := g.do("POST", "/kbs/v0/attest", g.attestationBody("bm9uY2U=", "bm9uY2U="),
			map[string]string{"Cookie": "kbs-session-id=0123456789abcdef0123456789abcdef"})
		wantError(t, code, b, 401, "AttestationError")
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.auth("0.4.0", "sample")
		code, b := g.do("POST", "/kbs/v0/attest", g.attestationBody("b3RoZXI=", "b3RoZXI="), nil)
		wantError(t, code, b, 401, "AttestationError")
	})
	t.Run("report data not bound to key", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.auth("0.4.0", "sample")
		other := e.guest(protocol.KeyEC256)
		// Evidence binds other's key; runtime-data claims g's key.
		body := other.attestationBody(g.nonce, g.nonce)
		var att protocol.Attestation
		json.Unmarshal(body, &att)
		att.RuntimeData.TeePubKey = g.kp.PublicKey()
		body, _ = json.Marshal(att)
		code, b := g.do("POST", "/kbs/v0/attest", body, nil)
		wantError(t, code, b, 401, "AttestationError")
	})
	t.Run("evidence replayed on another session", func(t *testing.T) {
		g1 := e.guest(protocol.KeyEC256)
		g1.auth("0.4.0", "sample")
		g2 := &guest{e: e, base: e.ts.URL, kp: g1.kp}
		jar, _ := cookiejar.New(nil)
		g2.hc = &http.Client{Jar: jar}
		g2.auth("0.4.0", "sample")
		// Evidence made for g1's challenge, presented with g2's nonce.
		code, b := g2.do("POST", "/kbs/v0/attest", g2.attestationBody(g2.nonce, g1.nonce), nil)
		wantError(t, code, b, 401, "AttestationError")
	})
	t.Run("forged bearer token", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		code, b := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, map[string]string{"Authorization": "Bearer not.a.jwt"})
		wantError(t, code, b, 401, "TokenVerifierError")
	})
	t.Run("alg none and tampered tokens", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.rcar()
		parts := strings.Split(g.token, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		tampered := bytes.Replace(payload, []byte(`"iss"`), []byte(`"isz"`), 1)
		for name, tok := range map[string]string{
			"alg none": b64url(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".",
			"tampered": parts[0] + "." + base64.RawURLEncoding.EncodeToString(tampered) + "." + parts[2],
			"no sig":   parts[0] + "." + parts[1] + ".",
		} {
			fresh := &guest{e: e, base: e.ts.URL, hc: &http.Client{}, kp: g.kp}
			code, b := fresh.do("GET", "/kbs/v0/resource/default/test/secret", nil, map[string]string{"Authorization": "Bearer " + tok})
			if code != 401 || !strings.Contains(string(b), "TokenVerifierError") {
				t.Errorf("%s: %d %s", name, code, b)
			}
		}
	})
	t.Run("no token", func(t *testing.T) {
		code, b := e.guest(protocol.KeyEC256).do("GET", "/kbs/v0/resource/default/test/secret", nil, nil)
		wantError(t, code, b, 401, "TokenNotFound")
	})
	for _, p := range []string{"/kbs/v0/resource/default/../secret", "/kbs/v0/resource/%2e%2e/test/secret",
		"/kbs/v0/resource/default%2Ftest/secret/x", "/kbs/v0/resource/default/test", "/kbs/v1/resource/a/b/c"} {
		t.Run("path "+p, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.ts.URL+p, nil)
			req.URL.RawPath = p // keep the client from normalising
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, resp.StatusCode, b, 404, "InvalidRequestPath")
		})
	}
	t.Run("admin write with traversal changes nothing", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.ts.URL+"/kbs/v0/resource/%2e%2e/x/y", strings.NewReader("evil"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		keys, _ := e.store.List(context.Background(), storage.NamespaceRepository)
		if len(keys) != 1 {
			t.Fatalf("repository = %v", keys)
		}
	})
	t.Run("unknown plugin", func(t *testing.T) {
		code, b := e.guest(protocol.KeyEC256).do("GET", "/kbs/v0/test/a", nil, nil)
		wantError(t, code, b, 404, "PluginNotFound")
	})
	t.Run("body over limit", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		code, b := g.do("POST", "/kbs/v0/auth", bytes.Repeat([]byte(" "), 2<<20), nil)
		wantError(t, code, b, 413, "PayloadTooLarge")
	})
	t.Run("still serving", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.rcar()
		code, b := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, nil)
		if code != 200 || string(g.decrypt(b)) != "s3cret" {
			t.Fatalf("%d %s", code, b)
		}
	})
}

func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Now()}
	e := newEnv(t, testConfig, nil, clk)
	e.provision("default/test/secret", "s", allowAllPolicy)
	t.Run("expired session", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.auth("0.4.0", "sample")
		clk.Advance(6 * time.Minute)
		code, b := g.attest()
		wantError(t, code, b, 401, "AttestationError")
		if n, _ := e.store.List(context.Background(), storage.NamespaceSession); len(n) != 0 {
			t.Fatalf("expired session not deleted: %v", n)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.rcar()
		clk.Advance(5*time.Minute + 2*time.Minute) // past exp and the 60 s leeway
		fresh := &guest{e: e, base: e.ts.URL, hc: &http.Client{}, kp: g.kp}
		code, b := fresh.do("GET", "/kbs/v0/resource/default/test/secret", nil, map[string]string{"Authorization": "Bearer " + g.token})
		wantError(t, code, b, 401, "TokenVerifierError")
	})
	t.Run("sweep", func(t *testing.T) {
		g := e.guest(protocol.KeyEC256)
		g.auth("0.4.0", "sample")
		clk.Advance(10 * time.Minute)
		n, err := e.srv.sessions.sweep(context.Background())
		if err != nil || n == 0 {
			t.Fatalf("sweep = %d, %v", n, err)
		}
	})
}

func TestAdminDenyAllChangesNothing(t *testing.T) {
	e := newEnv(t, strings.Replace(testConfig, "InsecureAllowAll", "DenyAll", 1), nil, nil)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/kbs/v0/resource/default/test/secret", "x"},
		{"DELETE", "/kbs/v0/resource/default/test/secret", ""},
		{"POST", "/kbs/v0/resource-policy", fmt.Sprintf(`{"policy":%q}`, b64url(allowAllPolicy))},
		{"POST", "/kbs/v0/attestation-policy", fmt.Sprintf(`{"policy_id":"default_cpu","policy":%q}`, b64url("package policy"))},
		{"POST", "/kbs/v0/reference-value", `{"version":"0.1.0","type":"sample","payload":"e30="}`},
		{"GET", "/kbs/v0/resource-policy", ""},
	} {
		req, _ := http.NewRequest(r.method, e.ts.URL+r.path, strings.NewReader(r.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, resp.StatusCode, b, 401, "AdminAuthAccess")
	}
	if keys, _ := e.store.List(context.Background(), storage.NamespaceRepository); len(keys) != 0 {
		t.Fatalf("repository changed: %v", keys)
	}
}

func TestAdminAPI(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	e.admin("POST", "/kbs/v0/reference-value", []byte(`{"version":"0.1.0","type":"sample","payload":"`+
		base64.StdEncoding.EncodeToString([]byte(`{"svn":["1"]}`))+`"}`))
	resp, err := http.Get(e.ts.URL + "/kbs/v0/reference-value/svn")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `["1"]` {
		t.Fatalf("reference value: %d %s", resp.StatusCode, b)
	}
	resp, _ = http.Get(e.ts.URL + "/kbs/v0/reference-value/missing")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, b, 401, "RvpsError")

	resp, _ = http.Get(e.ts.URL + "/kbs/v0/resource-policy")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `["resource-policy"]` {
		t.Fatalf("resource-policy list: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest("POST", e.ts.URL+"/kbs/v0/resource-policy", strings.NewReader(`{"policy":"`+b64url("package policy\nallow if {")+`"}`))
	resp, _ = http.DefaultClient.Do(req)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, b, 401, "ParsePolicyError")

	e.admin("POST", "/kbs/v0/resource/a/b/c", []byte("v"))
	e.admin("DELETE", "/kbs/v0/resource/a/b/c", nil)
	req, _ = http.NewRequest("DELETE", e.ts.URL+"/kbs/v0/resource/a/b/c", nil)
	resp, _ = http.DefaultClient.Do(req)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, b, 401, "PluginInternalError")
}

func TestReplicasShareSessions(t *testing.T) {
	// Each in-process replica has its own ephemeral token key here, so they
	// trust the header JWK (the e2e suite runs replicas with a shared signer
	// and a CA instead).
	cfg := testConfig + "[attestation_token]\ninsecure_header_jwk = true\n"
	store := memory.New()
	a := newEnv(t, cfg, store, nil)
	b := newEnv(t, cfg, store, nil)
	a.provision("default/test/secret", "replicated", allowAllPolicy)
	g := a.guest(protocol.KeyEC256)
	if code, body := g.auth("0.4.0", "sample"); code != 200 {
		t.Fatalf("auth on A: %d %s", code, body)
	}
	g.base = b.ts.URL // the cookie is for 127.0.0.1; both servers share it
	if code, body := g.attest(); code != 200 {
		t.Fatalf("attest on B: %d %s", code, body)
	}
	g.base = a.ts.URL
	code, body := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, nil)
	if code != 200 || string(g.decrypt(body)) != "replicated" {
		t.Fatalf("GET on A: %d %s", code, body)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	g := e.guest(protocol.KeyEC256)
	g.rcar()
	resp, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"kbs_build_info", "kbs_http_requests_total", "kbs_http_request_duration_seconds",
		"kbs_auth_requests_total", "kbs_auth_successes_total", "kbs_attestation_requests_total", "kbs_attestation_successes_total"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("metric %s missing", name)
		}
	}
	resp, _ = http.Post(e.ts.URL+"/metrics", "text/plain", nil)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /metrics = %d", resp.StatusCode)
	}
	resp, _ = http.Get(e.ts.URL + "/healthz")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz = %d", resp.StatusCode)
	}
}

// TestAttestationErrorsVersusFailures pins the one rule of the two
// counters: an /attest that fails before a session names its TEE counts as
// an attestation error; once the TEE is known, any failure counts as a
// failure of that TEE.
func TestAttestationErrorsVersusFailures(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	m := e.srv.metrics
	errs := func() float64 { return promtestutil.ToFloat64(m.attestationErrors) }
	fails := func() float64 { return promtestutil.ToFloat64(m.attestationFailures.WithLabelValues("sample")) }

	g := e.guest(protocol.KeyEC256)
	if code, _ := g.do("POST", "/kbs/v0/attest", g.attestationBody("n", "n"), nil); code == 200 {
		t.Fatal("attest without a session succeeded")
	}
	if errs() != 1 || fails() != 0 {
		t.Fatalf("no cookie: errors %v, failures %v; want 1, 0", errs(), fails())
	}
	if code, b := g.auth("0.4.0", "sample"); code != 200 {
		t.Fatalf("auth: %d %s", code, b)
	}
	// Evidence bound to another nonce: the session's TEE is known.
	if code, _ := g.do("POST", "/kbs/v0/attest", g.attestationBody(g.nonce, "other"), nil); code == 200 {
		t.Fatal("attest with evidence bound to another nonce succeeded")
	}
	if errs() != 1 || fails() != 1 {
		t.Fatalf("bad evidence: errors %v, failures %v; want 1, 1", errs(), fails())
	}
}

// A configuration that fails after the stores are opened makes New return
// an error, and the half-built server is closed (it once panicked, closing
// a nil server).
func TestNewFailsLateWithoutPanic(t *testing.T) {
	cfg, _, err := ParseConfig([]byte("[http_server]\ninsecure_http = true\n[admin]\nauthorization_mode = \"DenyAll\"\n[storage_backend]\nstorage_type = \"Memory\"\n[[plugins]]\nname = \"nonsense\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(cfg); err == nil || !strings.Contains(err.Error(), `plugin "nonsense" is not supported`) {
		t.Fatalf("CheckConfig = %v", err)
	}
	srv, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || srv != nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("New = %v, %v", srv, err)
	}
}
