package as

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRESTAttestation(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	rd, digest := kbsRuntimeData(t, "")
	ev := sampleEvidence("1", digest)
	individual := func(extra string) string {
		return `{"tee":"sample","evidence":"` + b64url(ev) + `"` + extra + `}`
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   string // substring
	}{
		{"structured runtime data", `{"verification_requests":[` + individual(`,"runtime_data":{"structured":`+string(rd)+`}`) + `],"policy_ids":[]}`, 200, ""},
		{"raw runtime data", `{"verification_requests":[` + individual(`,"runtime_data":{"raw":"`+b64url(digest)+`"},"runtime_data_hash_algorithm":"SHA384"`) + `],"policy_ids":["default"]}`, 200, ""},
		{"init-data digest", `{"verification_requests":[` + individual(`,"runtime_data":null,"init_data":{"init_data_digest":"`+b64url([]byte{1, 2})+`"}`) + `],"policy_ids":[]}`, 200, ""},
		{"init-data toml", `{"verification_requests":[` + individual(`,"init_data":{"init_data_toml":"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"}`) + `],"policy_ids":[]}`, 200, ""},
		{"report data mismatch", `{"verification_requests":[` + individual(`,"runtime_data":{"raw":"AAAA"}`) + `],"policy_ids":[]}`, 500, "REPORT_DATA is different"},
		{"evidence not base64url", `{"verification_requests":[{"tee":"sample","evidence":"e30="}],"policy_ids":[]}`, 500, "base64 decode evidence"},
		{"evidence not json", `{"verification_requests":[{"tee":"sample","evidence":"` + b64url([]byte("svn")) + `"}],"policy_ids":[]}`, 500, "failed to parse evidence as JSON"},
		{"unknown tee", `{"verification_requests":[{"tee":"nvidia","evidence":"` + b64url(ev) + `"}],"policy_ids":[]}`, 500, "tee `nvidia not supported`"},
		{"raw runtime data not base64url", `{"verification_requests":[` + individual(`,"runtime_data":{"raw":"A+A="}`) + `],"policy_ids":[]}`, 500, "base64 decode raw runtime data"},
		{"unknown hash algorithm", `{"verification_requests":[` + individual(`,"runtime_data_hash_algorithm":"md5"`) + `],"policy_ids":[]}`, 500, "HashAlgorithm"},
		{"unknown policy", `{"verification_requests":[` + individual(``) + `],"policy_ids":["nope"]}`, 500, "An internal error occured: \n0: "},
		{"no requests", `{"verification_requests":[],"policy_ids":[]}`, 500, "no verification requests"},
		{"missing policy_ids", `{"verification_requests":[]}`, 400, "missing field `policy_ids`"},
		{"missing tee", `{"verification_requests":[{"evidence":"e30"}],"policy_ids":[]}`, 400, "missing field `tee`"},
		{"unknown runtime data variant", `{"verification_requests":[` + individual(`,"runtime_data":{"cooked":"x"}`) + `],"policy_ids":[]}`, 400, "unknown variant `cooked`"},
		{"two runtime data variants", `{"verification_requests":[` + individual(`,"runtime_data":{"raw":"","structured":{}}`) + `],"policy_ids":[]}`, 400, "exactly one"},
		{"not json", `{`, 400, ""},
		{"too large", `{"x":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, 413, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, srv, "POST", "/attestation", tc.body)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("status %d body %q; want %d containing %q", status, body, tc.wantStatus, tc.wantBody)
			}
			if status == 200 {
				pt := verifyToken(t, body)
				if pt.submod(t, "cpu0")["ear.appraisal-policy-id"] != "default" {
					t.Errorf("policy id = %v", pt.submod(t, "cpu0")["ear.appraisal-policy-id"])
				}
			}
		})
	}
}

func TestRESTPolicy(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	policy := trustPolicy("hardware := 2\n")
	status, body := do(t, srv, "POST", "/policy", `{"policy_id":"mine_cpu","policy":"`+b64url([]byte(policy))+`"}`)
	if status != 200 || body != "" {
		t.Fatalf("set policy: %d %q", status, body)
	}
	got, err := s.GetPolicy(context.Background(), "mine_cpu")
	if err != nil || string(got) != policy {
		t.Fatalf("stored policy %q, %v", got, err)
	}
	status, body = do(t, srv, "GET", "/policy", "")
	want := `[{"policy-id":"default_cpu"},{"policy-id":"default_gpu"},{"policy-id":"default_ppcie"},{"policy-id":"default_switch"},{"policy-id":"mine_cpu"}]`
	if status != 200 || body != want {
		t.Fatalf("list: %d %s\nwant %s", status, body, want)
	}
	for name, tc := range map[string]struct {
		body   string
		status int
		want   string
	}{
		"padded base64":      {`{"policy_id":"p","policy":"` + base64.URLEncoding.EncodeToString([]byte("package policy\n\n")) + `"}`, 500, "base64"},
		"does not compile":   {`{"policy_id":"p","policy":"` + b64url([]byte("package policy\nx := {")) + `"}`, 500, "invalid policy"},
		"missing policy":     {`{"policy_id":"p"}`, 400, "missing field `policy`"},
		"policy not string":  {`{"policy_id":"p","policy":1}`, 400, "expected a string"},
		"illegal policy id":  {`{"policy_id":"../p","policy":"` + b64url([]byte("package policy\n")) + `"}`, 500, "illegal policy id"},
		"body not an object": {`[]`, 400, ""},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := do(t, srv, "POST", "/policy", tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %q; want %d containing %q", status, body, tc.status, tc.want)
			}
		})
	}
}

func TestRESTChallengeJWKSHealth(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for name, tc := range map[string]struct {
		body   string
		status int
		want   string
	}{
		"sample":         {`{"tee":"sample","tee_params":""}`, 200, ""},
		"se unsupported": {`{"tee":"se","tee_params":"{}"}`, 500, "not supported"},
		"missing params": {`{"tee":"sample"}`, 500, "tee_params"},
		"missing tee":    {`{"tee_params":""}`, 500, "inner tee"},
		"unknown tee":    {`{"tee":"tpm","tee_params":""}`, 500, "tee `tpm not supported`"},
		"non-string":     {`{"tee":"sample","tee_params":{}}`, 400, ""},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := do(t, srv, "POST", "/challenge", tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) || (tc.status == 200 && body != "") {
				t.Fatalf("%d %q; want %d containing %q", status, body, tc.status, tc.want)
			}
		})
	}
	status, body := do(t, srv, "GET", "/.well-known/jwks.json", "")
	if status != 200 || body != string(s.JWKS()) {
		t.Fatalf("jwks: %d %s", status, body)
	}
	var jwks struct{ Keys []json.RawMessage }
	if json.Unmarshal([]byte(body), &jwks) != nil || len(jwks.Keys) != 1 {
		t.Fatalf("jwks %s", body)
	}
	if status, _ := do(t, srv, "GET", "/healthz", ""); status != 200 {
		t.Fatalf("healthz: %d", status)
	}
	if status, _ := do(t, srv, "GET", "/attestation", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /attestation: %d", status)
	}
}

func FuzzDecodeAttestationRequest(f *testing.F) {
	f.Add([]byte(`{"verification_requests":[{"tee":"sample","evidence":"e30","runtime_data":{"raw":"AA"},"init_data":{"init_data_toml":"x"},"runtime_data_hash_algorithm":"sha384"}],"policy_ids":["default"]}`))
	f.Add([]byte(`{"verification_requests":[{"tee":"sample","evidence":"e30","runtime_data":{"structured":{"nonce":"n"}},"init_data":{"init_data_digest":"AQ"}}],"policy_ids":[]}`))
	f.Add([]byte(`{"verification_requests":null,"policy_ids":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeAttestationRequest(body)
		if err != nil {
			if !errors.Is(err, errDecode) {
				t.Fatalf("decode error of the wrong class: %v", err)
			}
			return
		}
		reqs, ids, err := req.toService()
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("conversion error of the wrong class: %v", err)
			}
			return
		}
		if len(ids) == 0 || len(reqs) != len(req.VerificationRequests) {
			t.Fatalf("ids %v reqs %d/%d", ids, len(reqs), len(req.VerificationRequests))
		}
		for _, r := range reqs {
			if !json.Valid(r.Evidence) || !r.Tee.Known() {
				t.Fatalf("accepted %+v", r)
			}
			if r.RuntimeData != nil && (r.RuntimeData.Raw == nil) == (r.RuntimeData.Structured == nil) {
				t.Fatalf("runtime data with both or neither form: %+v", r.RuntimeData)
			}
		}
	})
}

func FuzzDecodeSmallRequests(f *testing.F) {
	f.Add([]byte(`{"policy_id":"a","policy":"cGFja2FnZSBwb2xpY3k"}`))
	f.Add([]byte(`{"tee":"se","tee_params":"{}"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := DecodeSetPolicyRequest(body); err == nil {
			if _, err := decodeB64URL(r.Policy); err == nil {
				_, _ = policyKey(r.PolicyID)
			}
		} else if !errors.Is(err, errDecode) {
			t.Fatalf("wrong error class: %v", err)
		}
		if m, err := DecodeChallengeRequest(body); err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}
