package kbs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/guest/attester"
	guesttdx "github.com/go-trustee/go-trustee/guest/attester/tdx"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/kbs/ita/itatest"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/token"
	"github.com/go-trustee/go-trustee/token/jwt"
)

const itaPolicyID = "4f5ae4d0-2a3b-4c1d-9e8f-0a1b2c3d4e5f"

// itaConfig is upstream's intel-ta configuration (kbs/config/kubernetes/ita)
// pointed at the fake: certs_file and trusted_jwk_sets name the portal
// root, whose JWK set is found by OpenID discovery.
func itaConfig(f *itatest.Server, jwkSet string) string {
	return fmt.Sprintf(`
[http_server]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_token]
trusted_jwk_sets = [%q]
[attestation_service]
type = "intel_ta"
base_url = %q
api_key = %q
certs_file = %q
policy_ids = [%q]
[storage_backend]
storage_type = "Memory"
`, jwkSet, f.URL(), f.APIKey(), f.URL(), itaPolicyID)
}

func newITAEnv(t *testing.T, f *itatest.Server, configTOML string) *env {
	t.Helper()
	cfg, _, err := ParseConfig([]byte(configTOML))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	logs := &syncBuffer{}
	store := memory.New()
	srv, err := New(context.Background(), cfg, Options{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    clk.Now, Store: store, HTTPClient: f.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return &env{t: t, srv: srv, ts: ts, clock: clk, logs: logs, store: store}
}

// tdxAttester is the guest's real tdx attester over a fake configfs-tsm
// whose quote is upstream's recorded TDX quote with REPORT_DATA set to the
// report data asked for (as a TD would; the signature no longer verifies,
// which the fake ITA does not check), and the recorded CCEL.
func tdxAttester(t *testing.T) attester.Attester {
	t.Helper()
	quote, err := os.ReadFile(testvectors.Path("trustee/verifier/tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ccel, err := os.ReadFile(testvectors.Path("trustee/verifier/CCEL_data"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, aael.DefaultCCELPath)
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := os.WriteFile(p, ccel, 0o600); err != nil {
		t.Fatal(err)
	}
	tsm := guesttdx.FakeTSM(guesttdx.Provider, func(in []byte) ([]byte, error) {
		q := append([]byte(nil), quote...)
		copy(q[48+520:48+584], in) // TD report body: REPORT_DATA
		return q, nil
	}, nil)
	a, err := guesttdx.New(guesttdx.Options{TSM: tsm, Root: root, AAELPath: filepath.Join(root, "no-aael")})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// gpuAttester is a test NVIDIA device: evidence in upstream's
// NvDeviceEvidence shape, carrying the nonce it was asked to bind.
type gpuAttester struct{}

func (gpuAttester) Tee() protocol.Tee { return protocol.TeeNvidia }
func (gpuAttester) Evidence(_ context.Context, rd []byte) (json.RawMessage, error) {
	ev := base64.StdEncoding.EncodeToString([]byte("gpu evidence, nonce " + hex.EncodeToString(rd[:32])))
	return json.Marshal(map[string]any{"device_evidence_list": []map[string]string{
		{"evidence": ev, "certificate": base64.StdEncoding.EncodeToString([]byte("gpu cert chain")), "arch": "HOPPER"},
		{"evidence": ev, "certificate": base64.StdEncoding.EncodeToString([]byte("switch cert")), "arch": "LS10"},
	}})
}

const itaResourcePolicy = `package policy
default allow = false
allow if {
	data.plugin == "resource"
	input.tdx.attester_type == "TDX"
	input.tdx.attester_tcb_status == "UpToDate"
	input.nvgpu.attester_type == "NVGPU"
	input.policy_ids_matched[0].id == "` + itaPolicyID + `"
}
`

// TestIntelTrustAuthority: a guest with TDX-shaped evidence (and a GPU)
// attests through the KBS to the fake ITA, gets ITA's token back verbatim,
// and fetches a resource the policy releases on ITA's claims, sealed to
// the TEE key the KBS found in the ITA token (cookie and Bearer). The
// fake checked the request: headers, API key, shape, runtime_data exactly
// the bytes the guest bound into REPORT_DATA (SHA-512, which the ITA
// challenge selected), the gpu_nonce of the device runtime data.
func TestIntelTrustAuthority(t *testing.T) {
	f := itatest.New(itatest.Options{CheckReportData: true})
	defer f.Close()
	e := newITAEnv(t, f, itaConfig(f, f.URL()))
	const secret = "ita-released s3cret"
	e.provision("default/ita/secret", secret, itaResourcePolicy)

	c, err := client.New(client.Options{URL: e.ts.URL, Attester: attester.WithDevices(tdxAttester(t), gpuAttester{}), MaxAttestRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetResource(context.Background(), "kbs:///default/ita/secret")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != secret {
		t.Fatalf("resource = %q", got)
	}
	tok, kp, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if len(reqs) != 1 || reqs[0].Token != tok || reqs[0].Refusal != "" {
		t.Fatalf("ITA saw %d requests; token returned verbatim: %v", len(reqs), len(reqs) == 1 && reqs[0].Token == tok)
	}
	var body map[string]json.RawMessage
	json.Unmarshal(reqs[0].Body, &body)
	if string(body["policy_ids"]) != `["`+itaPolicyID+`"]` || string(body["policy_must_match"]) != "true" || body["nvgpu"] == nil || !strings.Contains(string(body["tdx"]), `"event_log":"`) {
		t.Fatalf("request %.400s", reqs[0].Body)
	}
	if ua := reqs[0].Header.Get("User-Agent"); ua != "Confidential-containers-trustee kbs/"+Version {
		t.Fatalf("User-Agent %q", ua)
	}
	// The TEE key the KBS sealed to is the one in the ITA token.
	claims, err := e.srv.tokens.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	k, err := e.srv.tokens.TeePubKey(claims)
	if err != nil || !k.Equal(kp.PublicKey()) {
		t.Fatalf("tee-pubkey of the ITA token: %+v %v", k, err)
	}
	if p := claims["tdx"].(map[string]any)["attester_runtime_data"].(map[string]any)["tee-pubkey"]; p == nil {
		t.Fatal("no /tdx/attester_runtime_data/tee-pubkey")
	}

	// Passport: the ITA token as Bearer, by a client that cannot attest.
	p, err := client.New(client.Options{URL: e.ts.URL, Token: tok, KeyPair: kp})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.GetResource(context.Background(), "kbs:///default/ita/secret"); err != nil || string(got) != secret {
		t.Fatalf("Bearer ITA token: %q %v", got, err)
	}
	if logs := e.logs.String(); strings.Contains(logs, f.APIKey()) || strings.Contains(logs, secret) {
		t.Fatal("the API key or the secret reached the log")
	}
}

// TestIntelTrustAuthorityChallenge: /auth follows upstream's ITA
// challenge rules.
func TestIntelTrustAuthorityChallenge(t *testing.T) {
	f := itatest.New(itatest.Options{})
	defer f.Close()
	e := newITAEnv(t, f, itaConfig(f, f.URL()))
	g := e.guest(protocol.KeyEC256)
	code, b := g.auth("0.4.0", "tdx")
	var ch protocol.Challenge
	if err := json.Unmarshal(b, &ch); code != 200 || err != nil || string(ch.ExtraParams) != `{"selected-hash-algorithm":"sha512"}` {
		t.Fatalf("tdx: %d %s", code, b)
	}
	if n, err := base64.StdEncoding.DecodeString(ch.Nonce); err != nil || len(n) != 32 {
		t.Fatalf("tdx nonce %q", ch.Nonce)
	}
	code, b = e.guest(protocol.KeyEC256).auth("0.4.0", "snp")
	if info := wantError(t, code, b, 401, "AttestationError"); !strings.Contains(info.Detail, "ITA: Unknown TEE specified") {
		t.Fatalf("snp: %s", info.Detail)
	}
	// sgx and az-tdx-vtpm: sha256, as upstream.
	for _, tee := range []string{"sgx", "az-tdx-vtpm"} {
		code, b = e.guest(protocol.KeyEC256).auth("0.4.0", tee)
		if err := json.Unmarshal(b, &ch); code != 200 || err != nil || string(ch.ExtraParams) != `{"selected-hash-algorithm":"sha256"}` {
			t.Fatalf("%s: %d %s", tee, code, b)
		}
		if n, err := base64.StdEncoding.DecodeString(ch.Nonce); err != nil || len(n) != 32 {
			t.Fatalf("%s nonce %q", tee, ch.Nonce)
		}
	}
	// No hash parameters: upstream's legacy challenge, nothing selected.
	code, b = e.guest(protocol.KeyEC256).do("POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"tdx","extra-params":""}`), nil)
	if err := json.Unmarshal(b, &ch); code != 200 || err != nil || string(ch.ExtraParams) != `""` {
		t.Fatalf("tdx legacy: %d %s", code, b)
	}
	code, b = e.guest(protocol.KeyEC256).auth("0.4.0", "sample")
	if info := wantError(t, code, b, 401, "AttestationError"); !strings.Contains(info.Detail, "ITA: Unknown TEE specified") {
		t.Fatalf("sample: %s", info.Detail)
	}
	// Evidence of a TEE ITA does not appraise (after a legacy challenge,
	// without hash parameters): upstream's refusal, and nothing sent.
	g = e.guest(protocol.KeyEC256)
	code, b = g.do("POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"sample","extra-params":""}`), nil)
	if err := json.Unmarshal(b, &ch); code != 200 || err != nil {
		t.Fatalf("legacy auth: %d %s", code, b)
	}
	g.nonce = ch.Nonce
	code, b = g.attest()
	if info := wantError(t, code, b, 401, "AttestationError"); !strings.Contains(info.Detail, "Intel Trust Authority: TEE Sample is not supported.") {
		t.Fatalf("sample: %s", info.Detail)
	}
	if n := len(f.Requests()); n != 0 {
		t.Fatalf("%d requests reached ITA", n)
	}
}

// TestIntelTrustAuthorityFailures: ITA's refusals reach the guest as
// attestation errors with upstream's text, never with the API key; an ITA
// token is believed on resource requests only through [attestation_token];
// the admin calls ITA has no counterpart for are refused with upstream's
// text.
func TestIntelTrustAuthorityFailures(t *testing.T) {
	f := itatest.New(itatest.Options{CheckReportData: true})
	defer f.Close()
	e := newITAEnv(t, f, itaConfig(f, f.URL()))
	e.provision("default/ita/secret", "x", itaResourcePolicy)
	newGuest := func() *client.Client {
		c, err := client.New(client.Options{URL: e.ts.URL, Attester: tdxAttester(t), MaxAttestRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.SetFailure(itatest.Failure{Status: 401, Error: "Unauthorized: key " + f.APIKey()})
	_, err := newGuest().Attest(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Attestation request failed: response status=401 Unauthorized, message=Unauthorized: key [redacted]") || strings.Contains(err.Error(), f.APIKey()) {
		t.Fatalf("ITA 401: %v", err)
	}
	f.SetFailure(itatest.Failure{Expired: true})
	if _, err := newGuest().Attest(context.Background()); err == nil || !strings.Contains(err.Error(), "Failed to verify attestation token") {
		t.Fatalf("expired ITA token: %v", err)
	}
	f.SetFailure(itatest.Failure{})
	if strings.Contains(e.logs.String(), f.APIKey()) {
		t.Fatal("API key logged")
	}

	// A KBS that trusts another JWK set refuses the ITA token when
	// releasing: ITA's certs_file alone does not make its tokens believed.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := jwt.PublicJWK(&otherKey.PublicKey, "ES256")
	jwk["kid"] = "other"
	set, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	otherSet := filepath.Join(t.TempDir(), "other-jwks.json")
	os.WriteFile(otherSet, set, 0o600)
	e2 := newITAEnv(t, f, itaConfig(f, otherSet))
	e2.provision("default/ita/secret", "x", itaResourcePolicy)
	g, err := client.New(client.Options{URL: e2.ts.URL, Attester: tdxAttester(t), MaxAttestRetries: 1, MaxResourceAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.GetResource(context.Background(), "kbs:///default/ita/secret"); err == nil || !strings.Contains(err.Error(), "TokenVerifierError") {
		t.Fatalf("untrusted ITA token released a resource: %v", err)
	}
	if !strings.Contains(e2.logs.String(), "trusted_jwk_sets does not list certs_file") {
		t.Fatal("no warning about the untrusted certs_file")
	}

	// Admin: attestation policies and reference values live in ITA.
	code, b := e.guest(protocol.KeyEC256).do("POST", "/kbs/v0/attestation-policy", []byte(`{"policy_id":"default","policy":"cGFja2FnZSBwb2xpY3k"}`), nil)
	if info := wantError(t, code, b, 401, "PolicyEngineError"); !strings.Contains(info.Detail, "Set Policy API is unimplemented") {
		t.Fatalf("set-attestation-policy: %s", info.Detail)
	}
	code, b = e.guest(protocol.KeyEC256).do("POST", "/kbs/v0/reference-value", []byte(`{}`), nil)
	if info := wantError(t, code, b, 401, "RvpsError"); !strings.Contains(info.Detail, "Attestation Service does not support reference value configuration.") {
		t.Fatalf("reference-value: %s", info.Detail)
	}
}

// TestIntelTrustAuthorityConfig: the intel_ta keys are required when the
// file is parsed (as upstream's serde struct requires them), and their
// values are checked when the server starts; an unreachable certs_file
// stops the start, as upstream.
func TestIntelTrustAuthorityConfig(t *testing.T) {
	f := itatest.New(itatest.Options{})
	defer f.Close()
	good := itaConfig(f, f.URL())
	for _, key := range []string{"base_url", "api_key", "certs_file"} {
		var lines []string
		for _, l := range strings.Split(good, "\n") {
			if !strings.HasPrefix(l, key+" =") {
				lines = append(lines, l)
			}
		}
		_, _, err := ParseConfig([]byte(strings.Join(lines, "\n")))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "attestation_service."+key+" is required") {
			t.Errorf("without %s: %v", key, err)
		}
	}
	for _, tc := range []struct{ old, new, want string }{
		{"base_url = \"" + f.URL() + "\"", `base_url = "example.io"`, "base_url \"example.io\" is not an absolute URL"},
		{"base_url = \"" + f.URL() + "\"", `base_url = "http://api.example.com"`, "http sends the API key in clear"},
		{"certs_file = \"" + f.URL() + "\"", `certs_file = "/nonexistent/certs.json"`, "certs_file /nonexistent/certs.json"},
	} {
		cfg, _, err := ParseConfig([]byte(strings.Replace(good, tc.old, tc.new, 1)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(context.Background(), cfg, Options{HTTPClient: f.Client(), Store: memory.New()})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), f.APIKey()) {
			t.Errorf("%s: %v, want %q", tc.new, err, tc.want)
		}
	}
	// The token verifier of a passport-only replica trusts ITA's tokens
	// through trusted_jwk_sets alone.
	v, err := token.NewVerifier(context.Background(), token.Config{TrustedJWKSets: []string{f.URL()}}, token.Options{HTTPClient: f.Client()})
	if err != nil || v == nil {
		t.Fatal(err)
	}
}
