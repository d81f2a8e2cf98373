package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestRestfulAS runs the standalone Attestation Service binary with a
// LocalFs store and drives upstream's REST API: set a policy, list it,
// attest sample evidence with raw runtime data, and verify the token with
// the published JWKS.
func TestRestfulAS(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "as.json")
	os.WriteFile(cfg, []byte(`{"storage_backend":{"storage_type":"LocalFs","backends":{"local_fs":{"dir_path":"`+filepath.Join(dir, "store")+`"}}},
"rvps_config":{"type":"BuiltIn"},"attestation_token_broker":{"type":"Ear","duration_min":5}}`), 0o600)
	_, addr := startProc(t, dir, bin.restfulAS, "--socket", "127.0.0.1:0", "-c", cfg)
	base := "http://" + addr
	post := func(path string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp.Body)
	}

	policy := "package policy\nimport rego.v1\ndefault executables := 33\nexecutables := 3 if input.sample.launch_digest == \"abcde\"\n" +
		"trust_claims := {\"executables\": executables, \"hardware\": 2, \"configuration\": 2}\n"
	if code, b := post("/policy", map[string]string{"policy_id": "e2e_cpu", "policy": base64.RawURLEncoding.EncodeToString([]byte(policy))}); code != 200 {
		t.Fatalf("POST /policy: %d %s", code, b)
	}
	if code, b := post("/policy", map[string]string{"policy_id": "broken_cpu", "policy": base64.RawURLEncoding.EncodeToString([]byte("package policy\nx := {"))}); code == 200 {
		t.Fatalf("a policy that does not compile was accepted: %s", b)
	}
	resp, err := http.Get(base + "/policy")
	if err != nil {
		t.Fatal(err)
	}
	list := string(readAll(t, resp.Body))
	resp.Body.Close()
	if !strings.Contains(list, `"e2e_cpu"`) || !strings.Contains(list, `"default_cpu"`) || strings.Contains(list, "broken") {
		t.Fatalf("GET /policy = %s", list)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "attestation_service_policy", "e2e_cpu.rego")); err != nil {
		t.Fatalf("policy not stored in upstream's LocalFs layout: %v", err)
	}

	rd := []byte("challenge")
	ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
	mkReq := func(runtimeData []byte) map[string]any {
		return map[string]any{
			"verification_requests": []map[string]any{{
				"tee": "sample", "evidence": base64.RawURLEncoding.EncodeToString(ev),
				"runtime_data": map[string]string{"raw": base64.RawURLEncoding.EncodeToString(runtimeData)},
			}},
			"policy_ids": []string{"e2e"},
		}
	}
	code, tok := post("/attestation", mkReq(rd))
	if code != 200 {
		t.Fatalf("POST /attestation: %d %s", code, tok)
	}
	resp, err = http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(readAll(t, resp.Body), &jwks); err != nil || len(jwks.Keys) == 0 {
		t.Fatalf("JWKS: %v", err)
	}
	resp.Body.Close()
	jws, err := jose.ParseSignedCompact(string(tok), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(jwks.Keys[0].Key)
	if err != nil {
		t.Fatalf("token does not verify with the published JWKS: %v", err)
	}
	var claims struct {
		Submods map[string]map[string]any `json:"submods"`
	}
	json.Unmarshal(payload, &claims)
	cpu := claims.Submods["cpu0"]
	if cpu["ear.status"] != "affirming" || cpu["ear.appraisal-policy-id"] != "e2e" {
		t.Fatalf("cpu0 = %v", cpu)
	}

	// Report data not bound: 401-class error, and the service keeps serving.
	if code, b := post("/attestation", mkReq([]byte("other"))); code == 200 || !strings.Contains(strings.ToLower(string(b)), "report") {
		t.Fatalf("mismatched report data: %d %s", code, b)
	}
	if code, _ := post("/attestation", mkReq(rd)); code != 200 {
		t.Fatalf("service stopped serving: %d", code)
	}
}
