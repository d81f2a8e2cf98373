package ita

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/kbs/ita/itatest"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/token"
)

const (
	policyA = "4f5ae4d0-2a3b-4c1d-9e8f-0a1b2c3d4e5f"
	policyB = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

func newFake(t *testing.T, opts itatest.Options) *itatest.Server {
	t.Helper()
	f := itatest.New(opts)
	t.Cleanup(f.Close)
	return f
}

type logBuf struct{ bytes.Buffer }

func newClient(t *testing.T, f *itatest.Server, mod func(*Config), opts Options) (*Client, *logBuf) {
	t.Helper()
	cfg := Config{BaseURL: f.URL(), APIKey: f.APIKey(), CertsFile: f.URL()}
	if mod != nil {
		mod(&cfg)
	}
	logs := &logBuf{}
	if opts.HTTPClient == nil {
		opts.HTTPClient = f.Client()
	}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Version == "" {
		opts.Version = "1.2.3"
	}
	c, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

// boundQuote is the recorded TDX quote with its REPORT_DATA replaced by
// SHA-512 of the runtime data JSON, as a TD would produce for it (the
// signature no longer verifies; the fake does not check it).
func boundQuote(t testing.TB, rd *as.RuntimeData) []byte {
	t.Helper()
	q := readVector(t, "trustee/verifier/tdx_quote_4.dat")
	c, err := protocol.Canonicalize(rd.Structured)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum512(c)
	copy(q[48+520:48+584], h[:])
	return q
}

func tdxRequest(t testing.TB, ae string) as.VerificationRequest {
	rd := primaryRD(t, testNonce, testKey, ae)
	return as.VerificationRequest{Tee: protocol.TeeTdx, Evidence: tdxEvidence(t, boundQuote(t, rd), []byte("ccel")), RuntimeData: rd, HashAlgorithm: protocol.SHA512}
}

// TestEvaluateTDX: the client's request passes every check of the fake
// (headers, API key, member order, base64, runtime data = JCS bound by
// REPORT_DATA); the token comes back verbatim and verified; the KBS's
// token verifier, trusting the same JWK set, finds the TEE key at
// /tdx/attester_runtime_data/tee-pubkey.
func TestEvaluateTDX(t *testing.T) {
	for _, rs256 := range []bool{false, true} {
		t.Run(fmt.Sprintf("RS256=%v", rs256), func(t *testing.T) {
			f := newFake(t, itatest.Options{CheckReportData: true, SignRS256: rs256})
			c, logs := newClient(t, f, nil, Options{})
			tok, err := c.Evaluate(context.Background(), []as.VerificationRequest{tdxRequest(t, "")}, []string{"default"})
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.Requests()
			if len(reqs) != 1 || reqs[0].Token != tok || reqs[0].Path != AttestPath {
				t.Fatalf("requests %+v", reqs)
			}
			h := reqs[0].Header
			if h.Get("User-Agent") != "Confidential-containers-trustee kbs/1.2.3" || h.Get("X-Api-Key") != f.APIKey() ||
				h.Get("Content-Type") != "application/json" || h.Get("Accept") != "application/json" {
				t.Fatalf("headers %v", h)
			}
			if string(reqs[0].RuntimeData) != wantPrimaryRD {
				t.Fatalf("runtime data %s", reqs[0].RuntimeData)
			}
			v, err := token.NewVerifier(context.Background(), token.Config{TrustedJWKSets: []string{f.CertsURL()}}, token.Options{HTTPClient: f.Client()})
			if err != nil {
				t.Fatal(err)
			}
			claims, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			k, err := v.TeePubKey(claims)
			if err != nil || !k.Equal(testKey) {
				t.Fatalf("tee key %+v %v", k, err)
			}
			tdx := claims["tdx"].(map[string]any)
			if tdx["tdx_mrtd"] == "" || tdx["attester_tcb_status"] != "UpToDate" {
				t.Fatalf("tdx claims %v", tdx)
			}
			if strings.Contains(logs.String(), f.APIKey()) || strings.Contains(logs.String(), tok) {
				t.Fatal("API key or token logged")
			}
		})
	}
}

// TestEvaluateAzureAndDevices: az-tdx-vtpm goes to /azure (the fake checks
// the TD quote binds the variable data and user_data is the runtime data);
// a tdx quote with an nvidia device gives an nvgpu the fake checks the
// gpu_nonce of.
func TestEvaluateAzureAndDevices(t *testing.T) {
	f := newFake(t, itatest.Options{})
	c, _ := newClient(t, f, nil, Options{})
	ev := readVector(t, "trustee/verifier/az-tdx-vtpm/evidence-v1.json")
	tok, err := c.Evaluate(context.Background(), []as.VerificationRequest{{Tee: protocol.TeeAzTdxVtpm, Evidence: ev, RuntimeData: primaryRD(t, testNonce, testKey, "")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := token.NewVerifier(context.Background(), token.Config{TrustedJWKSets: []string{f.URL()}}, token.Options{HTTPClient: f.Client()})
	claims, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	// The tee key of an Azure token is in attester_user_data: the vTPM
	// path of the KBS verifier (attester_runtime_data holds the HCL
	// variable data, with no tee-pubkey).
	if k, err := v.TeePubKey(claims); err != nil || !k.Equal(testKey) {
		t.Fatalf("azure tee key %+v %v", k, err)
	}
	if r := f.Requests(); r[len(r)-1].Path != AzureAttestPath {
		t.Fatalf("path %s", r[len(r)-1].Path)
	}

	ae := `{"nvidia":` + string(nvidiaEvidence("HOPPER")) + `}`
	reqs := []as.VerificationRequest{tdxRequest(t, ae), {Tee: protocol.TeeNvidia, Evidence: nvidiaEvidence("HOPPER"), RuntimeData: deviceRD(t, testNonce, testKey)}}
	if _, err := c.Evaluate(context.Background(), reqs, nil); err != nil {
		t.Fatal(err)
	}
	// A wrong device runtime data gives a gpu_nonce the fake refuses.
	reqs[1].RuntimeData = deviceRD(t, "b3RoZXI=", testKey)
	if _, err := c.Evaluate(context.Background(), reqs, nil); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "gpu_nonce") {
		t.Fatalf("wrong device nonce: %v", err)
	}
}

// TestPolicyMustMatch: policy_must_match is true iff policy ids are set and
// allow_unmatched_policy is false, as upstream; the fake refuses a token
// when a policy does not match and must.
func TestPolicyMustMatch(t *testing.T) {
	f := newFake(t, itatest.Options{UnmatchedPolicies: []string{policyB}})
	for _, tc := range []struct {
		ids       []string
		allow     bool
		wantMust  bool
		wantError string
	}{
		{nil, false, false, ""},
		{nil, true, false, ""},
		{[]string{policyA}, false, true, ""},
		{[]string{policyA}, true, false, ""},
		{[]string{policyA, policyB}, false, true, "Attestation request failed: response status=400 Bad Request, message=policy_must_match: policies not matched: " + policyB},
		{[]string{policyA, policyB}, true, false, ""},
	} {
		c, _ := newClient(t, f, func(c *Config) { c.PolicyIDs, c.AllowUnmatchedPolicy = tc.ids, tc.allow }, Options{})
		tok, err := c.Evaluate(context.Background(), []as.VerificationRequest{tdxRequest(t, "")}, nil)
		r := f.Requests()
		var body struct {
			PolicyIDs       []string `json:"policy_ids"`
			PolicyMustMatch bool     `json:"policy_must_match"`
		}
		json.Unmarshal(r[len(r)-1].Body, &body)
		if body.PolicyMustMatch != tc.wantMust || len(body.PolicyIDs) != len(tc.ids) || body.PolicyIDs == nil {
			t.Errorf("%v allow=%v: sent %+v", tc.ids, tc.allow, body)
		}
		if tc.wantError != "" {
			if !errors.Is(err, ErrRefused) || err.Error() != tc.wantError {
				t.Errorf("%v: %v, want %q", tc.ids, err, tc.wantError)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v allow=%v: %v", tc.ids, tc.allow, err)
			continue
		}
		if tc.allow && len(tc.ids) == 2 && !strings.Contains(claimsJSON(t, tok), `"policy_ids_unmatched":[{"id":"`+policyB) {
			t.Errorf("unmatched policy not in the token: %s", claimsJSON(t, tok))
		}
	}
}

func claimsJSON(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFaults: every misbehaviour of ITA gives a clear error of its kind,
// within the deadline, without the API key.
func TestFaults(t *testing.T) {
	f := newFake(t, itatest.Options{})
	var elsewhere atomic.Int32
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Write([]byte(`{"token":"x"}`))
	}))
	defer other.Close()
	c, logs := newClient(t, f, nil, Options{Timeout: 500 * time.Millisecond})
	key := f.APIKey()
	for _, tc := range []struct {
		name string
		fail itatest.Failure
		is   error
		want string
	}{
		{"401 with error body", itatest.Failure{Status: 401, Error: "invalid api key"}, ErrRefused, "Attestation request failed: response status=401 Unauthorized, message=invalid api key"},
		{"500 with error body", itatest.Failure{Status: 500, Error: "appraisal failed"}, ErrRefused, "Attestation request failed: response status=500 Internal Server Error, message=appraisal failed"},
		{"503 without JSON", itatest.Failure{Status: 503, Body: []byte("<html>down</html>")}, ErrRefused, "Attestation request failed: response status=503 Service Unavailable"},
		{"unknown status", itatest.Failure{Status: 599, Error: "odd"}, ErrRefused, "Attestation request failed: response status=599 <unknown status code>, message=odd"},
		{"error echoing the key", itatest.Failure{Status: 403, Error: "key " + key + " is revoked"}, ErrRefused, "message=key [redacted] is revoked"},
		{"200 not JSON", itatest.Failure{Status: 200, Body: []byte("nope")}, ErrInvalidResponse, "Failed to deserialize attestation response: expected a JSON object"},
		{"200 without token", itatest.Failure{Status: 200, Body: []byte(`{"tok":"x"}`)}, ErrInvalidResponse, "Failed to deserialize attestation response: missing field `token`"},
		{"oversized", itatest.Failure{Oversized: true}, ErrInvalidResponse, fmt.Sprintf("Failed to deserialize attestation response: response body exceeds %d bytes", MaxResponseBytes)},
		{"unknown signing key", itatest.Failure{UnknownKey: true}, ErrInvalidToken, "not in the trusted JWK sets"},
		{"header jwk", itatest.Failure{HeaderJWK: true}, ErrInvalidToken, "Failed to verify attestation token: token: invalid attestation token: token: untrusted token signing key: header jwk cannot be endorsed"},
		{"expired", itatest.Failure{Expired: true}, ErrInvalidToken, "token expired"},
		{"slow", itatest.Failure{Delay: 30 * time.Second}, ErrUnavailable, "no answer within the deadline (500ms)"},
		{"redirect elsewhere", itatest.Failure{RedirectTo: other.URL + "/appraisal/v2/attest"}, ErrRefused, "Attestation request failed: response status=307 Temporary Redirect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.SetFailure(tc.fail)
			defer f.SetFailure(itatest.Failure{})
			start := time.Now()
			_, err := c.Evaluate(context.Background(), []as.VerificationRequest{tdxRequest(t, "")}, nil)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %v containing %q", err, tc.is, tc.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("API key in %q", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	if elsewhere.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
	// The caller's context bounds the call too.
	f.SetFailure(itatest.Failure{Delay: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Evaluate(ctx, []as.VerificationRequest{tdxRequest(t, "")}, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("caller deadline: %v", err)
	}
	f.SetFailure(itatest.Failure{})
	// ITA down.
	f2 := itatest.New(itatest.Options{})
	c2, _ := newClient(t, f2, nil, Options{})
	f2.Close()
	if _, err := c2.Evaluate(context.Background(), []as.VerificationRequest{tdxRequest(t, "")}, nil); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "Failed to POST attestation HTTP request") {
		t.Fatalf("down: %v", err)
	}
	if strings.Contains(logs.String(), key) {
		t.Fatal("API key logged")
	}
}

// TestWrongAPIKey: the fake refuses another key with 401 and its error.
func TestWrongAPIKey(t *testing.T) {
	f := newFake(t, itatest.Options{})
	c, _ := newClient(t, f, func(c *Config) { c.APIKey = "wrong-key" }, Options{})
	_, err := c.Evaluate(context.Background(), []as.VerificationRequest{tdxRequest(t, "")}, nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "response status=401 Unauthorized, message=Unauthorized") || strings.Contains(err.Error(), "wrong-key") {
		t.Fatalf("%v", err)
	}
}

// TestNew: configuration checks and certs_file sources.
func TestNew(t *testing.T) {
	f := newFake(t, itatest.Options{})
	dir := t.TempDir()
	jwks := filepath.Join(dir, "certs.json")
	os.WriteFile(jwks, f.JWKS(), 0o600)
	notJWKS := filepath.Join(dir, "not.json")
	os.WriteFile(notJWKS, []byte(`{"keys":[]}`), 0o600)
	good := Config{BaseURL: f.URL() + "/", APIKey: "s3cret-key", CertsFile: f.CertsURL()}
	for _, certs := range []string{f.URL(), f.CertsURL(), jwks, "file://" + jwks} {
		cfg := good
		cfg.CertsFile = certs
		c, err := New(context.Background(), cfg, Options{HTTPClient: f.Client()})
		if err != nil {
			t.Fatalf("certs_file %s: %v", certs, err)
		}
		if c.BaseURL() != f.URL() {
			t.Fatalf("base %s", c.BaseURL())
		}
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.BaseURL = "" }, "base_url is empty"},
		{func(c *Config) { c.BaseURL = "example.io" }, "is not an absolute URL"},
		{func(c *Config) { c.BaseURL = "http://api.example.com" }, "http sends the API key in clear"},
		{func(c *Config) { c.BaseURL = "ftp://api.example.com" }, "scheme must be https"},
		{func(c *Config) { c.BaseURL = "https://api.example.com/?k=v" }, "without user info, query or fragment"},
		{func(c *Config) { c.APIKey = "" }, "api_key is empty"},
		{func(c *Config) { c.CertsFile = "" }, "certs_file is empty"},
		{func(c *Config) { c.CertsFile = filepath.Join(dir, "absent.json") }, "certs_file"},
		{func(c *Config) { c.CertsFile = notJWKS }, "no trusted certificates, JWK sets or keys"},
		{func(c *Config) { c.CertsFile = "http://" + strings.TrimPrefix(f.URL(), "https://") }, "unsupported scheme"},
		{func(c *Config) { c.PolicyIDs = []string{""} }, "policy_ids[0] is empty"},
	} {
		cfg := good
		tc.mod(&cfg)
		_, err := New(context.Background(), cfg, Options{HTTPClient: f.Client()})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret-key") {
			t.Errorf("%+v: %v, want %q", cfg, err, tc.want)
		}
	}
	// Loopback http is accepted (a local proxy or sidecar).
	cfg := good
	cfg.BaseURL = "http://127.0.0.1:1"
	if _, err := New(context.Background(), cfg, Options{HTTPClient: f.Client()}); err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", good, good, good, good); strings.Contains(s, "s3cret-key") {
		t.Fatalf("Config prints its key: %s", s)
	}
}

// TestChallenge: upstream's generate_challenge cases (its rstest table)
// and their KBS form: a nonce for tdx with SHA-512 (the KBS then selects
// sha512), "" otherwise.
func TestChallenge(t *testing.T) {
	algs := func(a ...string) string {
		if a == nil {
			a = []string{}
		}
		b, _ := json.Marshal(map[string]any{"supported-hash-algorithms": a})
		return string(b)
	}
	for _, tc := range []struct {
		tee    protocol.Tee
		params string
		want   protocol.HashAlgorithm
		err    string
	}{
		{protocol.TeeTdx, `{}`, "", ""},
		{protocol.TeeTdx, `null`, "", ""},
		{protocol.TeeTdx, ``, "", ""},
		{protocol.TeeTdx, `""`, "", ""},
		{protocol.TeeTdx, algs(), "", "ITA: TEE does not support any hash algorithms"},
		{protocol.TeeSgx, `{}`, "", ""},
		{protocol.TeeSgx, `null`, "", ""},
		{protocol.TeeSgx, `""`, "", ""},
		{protocol.TeeSgx, algs(), "", "ITA: TEE does not support any hash algorithms"},
		{protocol.TeeTdx, algs("sha256"), "", "ITA: TDX TEE does not support sha512"},
		{protocol.TeeSgx, algs("sha512"), "", "ITA: SGX TEE does not support sha256"},
		{protocol.TeeAzTdxVtpm, algs("sha384"), "", "ITA: SGX TEE does not support sha256"},
		{protocol.TeeTdx, algs("sha512"), protocol.SHA512, ""},
		{protocol.TeeTdx, algs("sha256", "SHA512"), protocol.SHA512, ""},
		{protocol.TeeSgx, algs("sha256"), protocol.SHA256, ""},
		{protocol.TeeSgx, algs("sha256", "sha512"), protocol.SHA256, ""},
		{protocol.TeeAzTdxVtpm, algs("sha256", "sha384", "sha512", "sm3"), protocol.SHA256, ""},
		{protocol.TeeSnp, algs("sha256", "sha384", "sha512", "sm3"), "", "ITA: Unknown TEE specified"},
		{protocol.TeeSnp, `{}`, "", ""},
		{protocol.TeeTdx, `{"supported-hash-algorithms":"sha512"}`, "", `ITA: expected array, found String("sha512")`},
		{protocol.TeeTdx, `{"supported-hash-algorithms":null}`, "", `ITA: expected array, found Null`},
		{protocol.TeeTdx, `{"supported-hash-algorithms":[1,true]}`, "", "ITA: TEE does not support any hash algorithms"},
	} {
		got, err := SelectHashAlgorithm(tc.tee, tc.params)
		if (tc.err == "") != (err == nil) || (err != nil && err.Error() != tc.err) || got != tc.want {
			t.Errorf("%s %s: %q %v, want %q %q", tc.tee, tc.params, got, err, tc.want, tc.err)
		}
	}
	f := newFake(t, itatest.Options{})
	c, _ := newClient(t, f, nil, Options{})
	for tee, want := range map[protocol.Tee]protocol.HashAlgorithm{protocol.TeeTdx: protocol.SHA512, protocol.TeeSgx: protocol.SHA256, protocol.TeeAzTdxVtpm: protocol.SHA256} {
		if got, err := c.ChallengeHashAlgorithm(tee, algs("sha256", "sha384", "sha512")); got != want || err != nil {
			t.Errorf("%s: %q %v, want %q", tee, got, err, want)
		}
		// The nonce is the KBS's.
		if n, err := c.GenerateSupplementalChallenge(context.Background(), tee, algs("sha256", "sha512")); n != "" || err != nil {
			t.Errorf("%s: supplemental challenge %q %v", tee, n, err)
		}
	}
	if _, err := c.ChallengeHashAlgorithm(protocol.TeeSe, algs("sha256")); !errors.Is(err, ErrUnsupportedTee) {
		t.Fatalf("se: %v", err)
	}
}

// TestNotSupported: attestation policies and reference values are refused
// with upstream's texts.
func TestNotSupported(t *testing.T) {
	f := newFake(t, itatest.Options{})
	c, _ := newClient(t, f, nil, Options{})
	if err := c.SetPolicy(context.Background(), "default", []byte("package policy")); !errors.Is(err, ErrNotSupported) || err.Error() != "Set Policy API is unimplemented" {
		t.Fatalf("SetPolicy: %v", err)
	}
	if err := c.RVPS().Register(context.Background(), []byte("{}")); !errors.Is(err, ErrNotSupported) || err.Error() != "Attestation Service does not support reference value configuration." {
		t.Fatalf("Register: %v", err)
	}
	if _, _, err := c.RVPS().Query(context.Background(), "x"); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Query: %v", err)
	}
}
