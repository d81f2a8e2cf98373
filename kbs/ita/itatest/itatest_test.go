package itatest_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/kbs/ita"
	"github.com/go-trustee/go-trustee/kbs/ita/itatest"
	"github.com/go-trustee/go-trustee/protocol"
	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"
)

var key = protocol.TeePubKey{Kty: protocol.KtyEC, Crv: "P-256", Alg: "ECDH-ES+A256KW", X: "eHh4", Y: "eXl5"}

const nonce = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// validBody is a request the fake accepts: ita.Encode of a recorded TDX
// quote whose REPORT_DATA is SHA-512 of the runtime data.
func validBody(t *testing.T) []byte {
	t.Helper()
	rd, _ := json.Marshal(protocol.PrimaryRuntimeData{Nonce: nonce, TeePubKey: key})
	c, _ := protocol.Canonicalize(rd)
	q, err := os.ReadFile(testvectors.Path("trustee/verifier/tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum512(c)
	copy(q[568:632], h[:])
	ev, _ := (&tdxev.Evidence{Quote: q}).MarshalJSON()
	body, _, err := ita.Encode([]as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: ev, RuntimeData: &as.RuntimeData{Structured: rd}}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(t *testing.T, f *itatest.Server, path string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.URL()+path, bytes.NewReader(body))
	req.Header.Set("User-Agent", "Confidential-containers-trustee kbs/0.1.0")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("x-api-key", f.APIKey())
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := f.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStrictness: the fake accepts upstream's request and refuses every
// departure from its shape with an {"error"} naming it.
func TestStrictness(t *testing.T) {
	f := itatest.New(itatest.Options{CheckReportData: true})
	defer f.Close()
	body := validBody(t)
	if code, b := post(t, f, ita.AttestPath, body, nil); code != 200 || !strings.HasPrefix(b, `{"token":"`) {
		t.Fatalf("valid request: %d %s", code, b)
	}
	var doc map[string]any
	json.Unmarshal(body, &doc)
	tdx := doc["tdx"].(map[string]any)
	rd, _ := base64.StdEncoding.DecodeString(tdx["runtime_data"].(string))
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(body), old, new, 1)) }
	for _, tc := range []struct {
		name string
		path string
		body []byte
		hdr  map[string]string
		code int
		want string
	}{
		{"no api key", ita.AttestPath, body, map[string]string{"x-api-key": ""}, 401, "x-api-key"},
		{"wrong api key", ita.AttestPath, body, map[string]string{"x-api-key": "nope"}, 401, "x-api-key"},
		{"content type", ita.AttestPath, body, map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type"},
		{"accept", ita.AttestPath, body, map[string]string{"Accept": ""}, 415, "Accept"},
		{"user agent", ita.AttestPath, body, map[string]string{"User-Agent": "curl/8"}, 400, "User-Agent"},
		{"not compact", ita.AttestPath, replace(`"policy_ids":[]`, `"policy_ids": []`), nil, 400, "compact"},
		{"unknown member", ita.AttestPath, replace(`{"policy_ids"`, `{"x":1,"policy_ids"`), nil, 400, `unknown member "x"`},
		{"out of order", ita.AttestPath, []byte(`{"policy_must_match":false,"policy_ids":[]}`), nil, 400, "order"},
		{"missing policy_ids", ita.AttestPath, []byte(`{"policy_must_match":false}`), nil, 400, `missing member "policy_ids"`},
		{"must match without ids", ita.AttestPath, replace(`"policy_must_match":false`, `"policy_must_match":true`), nil, 400, "no policy_ids"},
		{"policy id not a UUID", ita.AttestPath, replace(`"policy_ids":[]`, `"policy_ids":["default"]`), nil, 400, "not a UUID"},
		{"no evidence", ita.AttestPath, []byte(`{"policy_ids":[],"policy_must_match":false}`), nil, 400, "no evidence"},
		{"quote not base64", ita.AttestPath, replace(`"quote":"`, `"quote":"!`), nil, 400, `"quote" is not non-empty standard base64`},
		{"runtime data not canonical", ita.AttestPath, replace(tdx["runtime_data"].(string), base64.StdEncoding.EncodeToString(append([]byte(" "), rd...))), nil, 400, "RFC 8785"},
		{"runtime data not bound", ita.AttestPath, replace(tdx["runtime_data"].(string), base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(rd), nonce, "BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1)))), nil, 400, "is not the digest of runtime_data"},
		{"runtime data not the KBS's", ita.AttestPath, replace(tdx["runtime_data"].(string), base64.StdEncoding.EncodeToString([]byte(`{"nonce":"x"}`))), nil, 400, "exactly additional-evidence, nonce and tee-pubkey"},
		{"azure with event_log", ita.AzureAttestPath, body, nil, 400, "/azure"},
		{"GET", ita.AttestPath, nil, nil, 405, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			var b string
			if tc.name == "GET" {
				resp, err := f.Client().Get(f.URL() + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				bb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				code, b = resp.StatusCode, string(bb)
			} else {
				code, b = post(t, f, tc.path, tc.body, tc.hdr)
			}
			var e struct{ Error string }
			if code != tc.code || json.Unmarshal([]byte(b), &e) != nil || !strings.Contains(e.Error, tc.want) {
				t.Fatalf("%d %s, want %d containing %q", code, b, tc.code, tc.want)
			}
		})
	}
	// Discovery and the JWK set.
	resp, err := f.Client().Get(f.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var oidc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	json.NewDecoder(resp.Body).Decode(&oidc)
	resp.Body.Close()
	if oidc.JWKSURI != f.CertsURL() {
		t.Fatalf("jwks_uri %q", oidc.JWKSURI)
	}
	var set struct {
		Keys []struct{ Kid, Alg, Kty string } `json:"keys"`
	}
	if err := json.Unmarshal(f.JWKS(), &set); err != nil || len(set.Keys) != 2 || set.Keys[0].Alg != "PS384" || set.Keys[1].Alg != "RS256" || len(set.Keys[0].Kid) != 96 {
		t.Fatalf("JWKS %+v %v", set, err)
	}
}
