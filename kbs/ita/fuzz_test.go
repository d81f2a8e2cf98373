package ita

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/token/jwt"
)

// checkDecoded holds for both response decoders: a success agrees with
// encoding/json on the member, and an error never echoes more than the
// body's size allows.
func checkDecoded(t *testing.T, body []byte, name, got string, err error) {
	t.Helper()
	if err != nil {
		if len(err.Error()) > 512 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
		return
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		t.Fatalf("accepted %q, which is not a JSON object", body)
	}
	var want string
	if json.Unmarshal(m[name], &want) != nil || want != got {
		t.Fatalf("decoded %q, encoding/json says %q", got, want)
	}
}

func FuzzDecodeAttestResponse(f *testing.F) {
	for _, s := range []string{`{"token":"a.b.c"}`, ` {"token":"x","other":[1,{}]} `, `{"token":"x","token":"y"}`, `{"token":null}`,
		`{"token":""}`, `{"token":"x"}{}`, `[]`, `{"token":"\u00e9\ud800"}`, `{"error":"no"}`, strings.Repeat("[", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := DecodeAttestResponse(body)
		checkDecoded(t, body, "token", tok, err)
		if err == nil && (tok == "" || len(tok) > limits.MaxTokenBytes) {
			t.Fatalf("token of %d bytes accepted", len(tok))
		}
	})
}

func FuzzDecodeErrorResponse(f *testing.F) {
	for _, s := range []string{`{"error":"Unauthorized"}`, `{"error":""}`, `{"error":1}`, `{"message":"x"}`, `<html>`, `{"error":"a","error":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := DecodeErrorResponse(body)
		checkDecoded(t, body, "error", msg, err)
	})
}

var fuzzToken = sync.OnceValues(func() (string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	return jwt.Sign(map[string]any{"alg": "PS384", "kid": "k1", "typ": "JWT"}, map[string]any{"exp": 1 << 40}, k, nil)
})

// FuzzJWKS: any certs_file document either is refused or yields keys,
// each usable for (and refusing) ITA's token without panicking.
func FuzzJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","alg":"PS384","kid":"k1","n":"sXch","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k1","x":"AA","y":"AA","x5c":["MIIB"]},{"kty":"oct","k":"AA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`<html></html>`))
	tokRaw, err := fuzzToken()
	if err != nil {
		f.Fatal(err)
	}
	tok, err := jwt.Parse(tokRaw)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, _, err := jwt.ParseJWKSet(doc)
		if err != nil {
			return
		}
		for _, k := range keys {
			if k.Key == nil {
				t.Fatal("key without a public key")
			}
			if k.Alg != "" && tok.Verify(k.Key, k.Alg) == nil {
				t.Fatal("a fuzzed key verified a token it did not sign")
			}
		}
	})
}

// FuzzEncode: guest-supplied evidence of every TEE ITA takes either is
// refused or encodes into a body that is one JSON object.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(0), []byte(`{"quote":"AA==","cc_eventlog":null,"user_data":"x"}`), "")
	f.Add(uint8(1), []byte(`{"quote":"AA=="}`), "ae")
	f.Add(uint8(2), []byte(`{"version":"1","hcl_report":"AA","td_quote":"AA"}`), "")
	f.Add(uint8(2), []byte(`{"hcl_report":[1,2],"td_quote":[3]}`), "")
	f.Add(uint8(3), []byte(`{"device_evidence_list":[{"evidence":"e","certificate":"c","arch":"HOPPER"}]}`), "")
	tees := []protocol.Tee{protocol.TeeTdx, protocol.TeeSgx, protocol.TeeAzTdxVtpm, protocol.TeeNvidia, protocol.TeeSnp}
	key := protocol.TeePubKey{Kty: protocol.KtyEC, Crv: "P-256", Alg: "ECDH-ES+A256KW", X: "eHh4", Y: "eXl5"}
	f.Fuzz(func(t *testing.T, tee uint8, ev []byte, ae string) {
		rd, err := json.Marshal(protocol.PrimaryRuntimeData{AdditionalEvidence: ae, Nonce: "bm9uY2U=", TeePubKey: key})
		if err != nil {
			return
		}
		body, _, err := Encode([]as.VerificationRequest{{Tee: tees[int(tee)%len(tees)], Evidence: ev, RuntimeData: &as.RuntimeData{Structured: rd}}}, []string{ae}, true, nil)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("body %q is not JSON: %v", body, err)
		}
	})
}
