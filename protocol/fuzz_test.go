package protocol

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fuzzKeys is the fixed key pair set FuzzDecrypt decrypts with.
var fuzzKeys = sync.OnceValues(func() ([]*KeyPair, error) {
	var out []*KeyPair
	for i, alg := range []KeyAlgorithm{KeyEC256, KeyEC521} {
		kp, err := GenerateKeyPair(alg, detRand(byte(20+i)))
		if err != nil {
			return nil, err
		}
		out = append(out, kp)
	}
	rsaKey, err := GenerateKeyPair(KeyRSA2048, nil)
	if err != nil {
		return nil, err
	}
	return append(out, rsaKey), nil
})

// responseSeeds are valid JWE bodies: one per key of fuzzKeys (and RSA1_5),
// plus the golden files and kbs-types' documents.
func responseSeeds(f *testing.F) [][]byte {
	keys, err := fuzzKeys()
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, kp := range keys {
		pubs := []TeePubKey{kp.PublicKey()}
		if kp.rsa != nil {
			legacy := kp.PublicKey()
			legacy.Alg = AlgRSA15
			pubs = append(pubs, legacy)
		}
		for _, pub := range pubs {
			resp, err := Encrypt(pub, []byte("fuzz"), nil)
			if err != nil {
				f.Fatal(err)
			}
			b, _ := json.Marshal(resp)
			seeds = append(seeds, b)
		}
	}
	golden, _ := filepath.Glob(filepath.Join("testdata", "jwe-*.json"))
	for _, g := range golden {
		if b, err := os.ReadFile(g); err == nil {
			seeds = append(seeds, b)
		}
	}
	seeds = append(seeds,
		[]byte(`{"protected":"eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9","encrypted_key":"ZmFrZWtleQ","iv":"cmFuZG9tZGF0YQ","ciphertext":"ZmFrZWVuY291dHB1dA","tag":"ZmFrZXRhZw"}`),
		[]byte(`{"protected":"eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9Cg","encrypted_key":"ZmFrZWtleQ","iv":"cmFuZG9tZGF0YQ","aad":"fakeaad","ciphertext":"ZmFrZWVuY291dHB1dA","tag":"ZmFrZXRhZw"}`),
	)
	return seeds
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range responseSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error %v does not match ErrInvalidResponse", err)
			}
			return
		}
		// A parsed response re-marshals and re-parses to the same value.
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseResponse(again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		if r.Protected != r2.Protected || r.EncryptedKey != r2.EncryptedKey || r.IV != r2.IV ||
			r.Ciphertext != r2.Ciphertext || r.Tag != r2.Tag || (r.AAD == nil) != (r2.AAD == nil) ||
			(r.AAD != nil && *r.AAD != *r2.AAD) {
			t.Fatalf("round trip changed the response: %+v vs %+v", r, r2)
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	for _, s := range responseSeeds(f) {
		f.Add(s)
	}
	keys, err := fuzzKeys()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Decrypt takes a Response however it was built: try the strict
		// parser and the lenient encoding/json path.
		var loose Response
		candidates := []*Response{&loose}
		if json.Unmarshal(b, &loose) != nil {
			candidates = candidates[:0]
		}
		if r, err := ParseResponse(b); err == nil {
			candidates = append(candidates, r)
		}
		for _, r := range candidates {
			for _, kp := range keys {
				pt, err := kp.Decrypt(r)
				if err != nil && !errors.Is(err, ErrDecrypt) {
					t.Fatalf("error %v does not match ErrDecrypt", err)
				}
				if err == nil && pt == nil {
					t.Fatal("nil plaintext without error")
				}
			}
		}
	})
}

func FuzzTeePubKeyUnmarshal(f *testing.F) {
	keys, err := fuzzKeys()
	if err != nil {
		f.Fatal(err)
	}
	for _, kp := range keys {
		b, _ := json.Marshal(kp.PublicKey())
		f.Add(b)
	}
	f.Add([]byte(`{"kty":"EC","kid":"k1","use":"enc","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}`))
	f.Add([]byte(`{"kty":"AKP","alg":"ML-KEM-768+A192KW","pub":"AAAA"}`))
	f.Add([]byte(`{"kty":"RSA","alg":"RSA1_5","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`{"kty":"oct","k":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var k TeePubKey
		if err := json.Unmarshal(b, &k); err != nil {
			return
		}
		out, err := json.Marshal(k)
		if err != nil {
			t.Fatalf("decoded key does not re-marshal: %+v: %v", k, err)
		}
		var back TeePubKey
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("re-marshaled key %s does not decode: %v", out, err)
		}
		if !back.Equal(k) || back != k {
			t.Fatalf("round trip changed the key: %+v vs %+v", k, back)
		}
		// Conversion never panics; success implies a usable key.
		if pub, err := PublicKeyFromTeePubKey(k); err == nil && pub == nil {
			t.Fatal("nil key without error")
		}
		if k.Kty == KtyEC {
			if _, err := Encrypt(k, []byte("x"), nil); err != nil && !errors.Is(err, ErrUnsupportedKey) && !errors.Is(err, ErrInvalidTeePubKey) {
				t.Fatalf("Encrypt error %v matches no sentinel", err)
			}
		}
	})
}

func FuzzAttestationDecode(f *testing.F) {
	keys, err := fuzzKeys()
	if err != nil {
		f.Fatal(err)
	}
	for _, kp := range keys {
		a := Attestation{RuntimeData: RuntimeData{Nonce: "bm9uY2U=", TeePubKey: kp.PublicKey()},
			TeeEvidence: CompositeEvidence{PrimaryEvidence: json.RawMessage(`{"quote":"AA"}`)}}
		b, _ := json.Marshal(a)
		f.Add(b)
	}
	f.Add([]byte(`{"init-data":{"format":"toml","body":"x"},"runtime-data":{"nonce":"n","tee-pubkey":{"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}},"tee-evidence":{"primary_evidence":{},"additional_evidence":""}}`))
	f.Add([]byte(`{"version":"0.4.0","tee":"tdx","extra-params":{"supported-hash-algorithms":["sha384"]}}`))
	f.Add([]byte(`{"version":"0.4.0","tee":"nope","extra-params":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Attestation
		if json.Unmarshal(b, &a) == nil {
			if k := a.RuntimeData.TeePubKey; k.Kty != "" {
				out, err := json.Marshal(k)
				if err != nil {
					t.Fatalf("decoded key does not re-marshal: %+v: %v", k, err)
				}
				var back TeePubKey
				if err := json.Unmarshal(out, &back); err != nil || back != k {
					t.Fatalf("key round trip: %+v vs %+v (%v)", k, back, err)
				}
			}
			if _, err := json.Marshal(a); err != nil && a.RuntimeData.TeePubKey.Kty != "" {
				t.Fatalf("decoded attestation does not re-marshal: %v", err)
			}
		}
		var r Request
		if json.Unmarshal(b, &r) == nil {
			if r.Tee != "" && !r.Tee.Known() {
				t.Fatalf("decoded unknown tee %q", r.Tee)
			}
			if _, err := json.Marshal(r); err != nil && json.Valid(r.ExtraParams) {
				t.Fatalf("decoded request does not re-marshal: %v", err)
			}
		}
	})
}
