package sealedsecret

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var (
	vectors = testvectors.Path("guest-components/confidential-data-hub/hub/src/secret/tests/")
	kata    = testvectors.Path("kata/")
)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resources is a ResourceGetter over a map, counting reads.
type resources struct {
	m     map[string][]byte
	reads int
}

func (r *resources) GetResource(_ context.Context, uri string) ([]byte, error) {
	r.reads++
	b, ok := r.m[uri]
	if !ok {
		return nil, fmt.Errorf("no resource %s", uri)
	}
	return append([]byte(nil), b...), nil
}

func TestParsePayloadUpstreamVectors(t *testing.T) {
	tests := []struct {
		file string
		want *Secret
	}{
		{"envelope-1.json", &Secret{Version: "0.1.0", Envelope: &EnvelopeSecret{
			KeyID: "xxx", EncryptedKey: "yyy", EncryptedData: "zzz", WrapType: WrapA256GCM, IV: "www",
			Provider: "aliyun", ProviderSettings: Map{}, Annotations: Map{}}}},
		{"vault-1.json", &Secret{Version: "0.1.0", Vault: &VaultSecret{
			Name: "xxx", Provider: "aliyun", ProviderSettings: Map{}, Annotations: Map{}}}},
		{"vault-2.json", &Secret{Version: "0.1.0", Vault: &VaultSecret{
			Name: "kbs:///one/2/trois", Provider: "kbs", ProviderSettings: Map{}, Annotations: Map{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := read(t, vectors+tt.file)
			got, err := ParsePayload(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePayload = %+v, want %+v", got, tt.want)
			}
			// Serializing gives the same JSON document (upstream's
			// serialize_deserialize test).
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			json.Unmarshal(raw, &a)
			json.Unmarshal(out, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("re-serialized %s, want %s", out, raw)
			}
		})
	}
}

func TestMarshalMatchesUpstreamBytes(t *testing.T) {
	// The real kata secret's payload is exactly what serde writes.
	s, err := Parse(bytes.TrimSpace(read(t, kata+"sealed-secret.txt")))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := ParsePayload(s.Payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, s.Payload) {
		t.Fatalf("payload re-serialized as\n%s\nwant\n%s", out, s.Payload)
	}
}

// keyDir writes test-key.json as the local key "test-key".
func keyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "test-key"), read(t, vectors+"test-key.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func vault2(t *testing.T) *Secret {
	t.Helper()
	s, err := ParsePayload(read(t, vectors+"vault-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	key, err := ParsePrivateJWK(read(t, vectors+"test-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(vault2(t), key, "test-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "=") {
		t.Fatalf("sealed secret has padding: %s", sealed)
	}
	u, err := New(Options{KeyDir: keyDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Open(context.Background(), []byte(sealed))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, vault2(t)) {
		t.Fatalf("Open = %+v", got)
	}
	hdr, _ := b64.DecodeString(strings.Split(strings.TrimPrefix(sealed, Prefix), ".")[0])
	if string(hdr) != `{"b64":true,"alg":"ES256","kid":"test-key"}` {
		t.Fatalf("header %s", hdr)
	}
}

func TestTamperingAndWrongKeyFail(t *testing.T) {
	key, err := ParsePrivateJWK(read(t, vectors+"test-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	key2, err := ParsePrivateJWK(read(t, vectors+"test-key-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(vault2(t), key, "test-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := Seal(vault2(t), key2, "test-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int) string {
		b := []byte(sealed)
		if b[off] == 'X' {
			b[off] = 'Y'
		} else {
			b[off] = 'X'
		}
		return string(b)
	}
	u, err := New(Options{KeyDir: keyDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		secret string
	}{
		// Upstream's check_tampering offsets: header, payload, signature.
		{"header offset 50", flip(50)},
		{"payload offset 200", flip(200)},
		{"signature offset 250", flip(250)},
		{"signed by another key", wrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := u.Open(context.Background(), []byte(tt.secret)); err == nil {
				t.Fatal("tampered secret opened")
			}
		})
	}
	if _, err := u.Open(context.Background(), []byte(wrongKey)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v, want ErrBadSignature", err)
	}
}

func TestRealKataSecret(t *testing.T) {
	sealed := bytes.TrimSpace(read(t, kata+"sealed-secret.txt"))
	kbs := &resources{m: map[string][]byte{
		"kbs:///default/signing-key/sealed-secret": read(t, kata+"sealed-secret-signing-key.pub.jwk"),
		"kbs:///default/sealed-secret/test":        []byte("unsealed-value"),
	}}
	u, err := New(Options{KBS: kbs})
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Unseal(context.Background(), sealed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "unsealed-value" {
		t.Fatalf("Unseal = %q", got)
	}
	// The signature binds the payload: the same secret with another key
	// under the kid fails.
	kbs.m["kbs:///default/signing-key/sealed-secret"] = read(t, vectors+"test-key.json")
	if _, err := u.Unseal(context.Background(), sealed); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("with another key: %v, want ErrBadSignature", err)
	}
}

func TestMalformed(t *testing.T) {
	key, err := ParsePrivateJWK(read(t, vectors+"test-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	enc := b64.EncodeToString
	sig := enc(make([]byte, 64))
	good := enc([]byte(`{"alg":"ES256","kid":"test-key"}`))
	payload := enc(read(t, vectors+"vault-2.json"))
	signed := func(hdr, payload string) string {
		in := enc([]byte(hdr)) + "." + enc([]byte(payload))
		s, err := signES256(key, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		return Prefix + in + "." + enc(s)
	}
	tests := []struct {
		name   string
		secret string
		want   error
	}{
		{"empty", "", ErrMalformed},
		{"no prefix", good + "." + payload + "." + sig, ErrMalformed},
		{"two parts", Prefix + good + "." + payload, ErrMalformed},
		{"four parts", Prefix + good + "." + payload + "." + sig + ".x", ErrMalformed},
		{"padded header", Prefix + base64.URLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"k"}`)) + "." + payload + "." + sig, ErrMalformed},
		{"std alphabet signature", Prefix + good + "." + payload + "." + strings.Repeat("/", 86), ErrMalformed},
		{"header not JSON", Prefix + enc([]byte("nope")) + "." + payload + "." + sig, ErrMalformed},
		{"header array", Prefix + enc([]byte(`[]`)) + "." + payload + "." + sig, ErrMalformed},
		{"no kid", Prefix + enc([]byte(`{"alg":"ES256"}`)) + "." + payload + "." + sig, ErrMalformed},
		{"kid not a string", Prefix + enc([]byte(`{"alg":"ES256","kid":1}`)) + "." + payload + "." + sig, ErrMalformed},
		{"alg none", Prefix + enc([]byte(`{"alg":"none","kid":"k"}`)) + "." + payload + "." + sig, ErrUnsupportedAlgorithm},
		{"alg RS256", Prefix + enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + payload + "." + sig, ErrUnsupportedAlgorithm},
		{"b64 false", Prefix + enc([]byte(`{"b64":false,"alg":"ES256","kid":"k"}`)) + "." + payload + "." + sig, ErrUnsupportedAlgorithm},
		{"crit", Prefix + enc([]byte(`{"crit":["x"],"alg":"ES256","kid":"k"}`)) + "." + payload + "." + sig, ErrUnsupportedAlgorithm},
		{"short signature", Prefix + good + "." + payload + "." + enc(make([]byte, 63)), ErrMalformed},
		{"too large", Prefix + strings.Repeat("A", MaxSealedBytes), ErrTooLarge},
		{"zero signature", Prefix + good + "." + payload + "." + sig, ErrBadSignature},
		{"signed payload not JSON", signed(`{"alg":"ES256","kid":"test-key"}`, "x"), ErrMalformed},
		{"signed payload lacks annotations", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.1.0","type":"vault","name":"kbs:///a/b/c","provider":"kbs","provider_settings":{}}`), ErrMalformed},
		{"signed payload null settings", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.1.0","type":"vault","name":"kbs:///a/b/c","provider":"kbs","provider_settings":null,"annotations":{}}`), ErrMalformed},
		{"signed payload bad type", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.1.0","type":"other","provider":"kbs","provider_settings":{},"annotations":{}}`), ErrMalformed},
		{"signed envelope bad wrap type", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.1.0","type":"envelope","key_id":"k","encrypted_key":"","encrypted_data":"","wrap_type":"A128GCM","iv":"","provider":"kbs","provider_settings":{},"annotations":{}}`), ErrMalformed},
		{"signed version 0.2.0", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.2.0","type":"vault","name":"kbs:///a/b/c","provider":"kbs","provider_settings":{},"annotations":{}}`), ErrUnsupportedVersion},
		{"signed unknown provider", signed(`{"alg":"ES256","kid":"test-key"}`, `{"version":"0.1.0","type":"vault","name":"x","provider":"aliyun","provider_settings":{},"annotations":{}}`), ErrUnknownProvider},
		{"kid escapes key dir", signed(`{"alg":"ES256","kid":"../test-key"}`, string(read(t, vectors+"vault-2.json"))), ErrVerificationKey},
		{"absolute kid", signed(`{"alg":"ES256","kid":"/etc/passwd"}`, string(read(t, vectors+"vault-2.json"))), ErrVerificationKey},
		{"missing local kid", signed(`{"alg":"ES256","kid":"nope"}`, string(read(t, vectors+"vault-2.json"))), ErrVerificationKey},
		{"kbs kid without KBS", signed(`{"alg":"ES256","kid":"kbs:///a/b/c"}`, string(read(t, vectors+"vault-2.json"))), ErrVerificationKey},
	}
	dir := keyDir(t)
	u, err := New(Options{KeyDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := u.Unseal(context.Background(), []byte(tt.secret))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unseal: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKidSymlinkOutOfKeyDir(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "key"), read(t, vectors+"test-key.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "key"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	key, err := ParsePrivateJWK(read(t, vectors+"test-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(vault2(t), key, "link", nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := New(Options{KeyDir: dir})
	if _, err := u.Open(context.Background(), []byte(sealed)); !errors.Is(err, ErrVerificationKey) {
		t.Fatalf("symlink out of the key dir: %v, want ErrVerificationKey", err)
	}
}

func TestSkipVerification(t *testing.T) {
	payload := read(t, vectors+"vault-2.json")
	kbs := &resources{m: map[string][]byte{"kbs:///one/2/trois": []byte("v")}}
	u, err := New(Options{KBS: kbs, SkipVerification: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		secret string
		want   error
	}{
		{"base64url", "sealed.fakejwsheader." + b64.EncodeToString(payload) + ".fakesignature", nil},
		{"legacy padded standard base64", "sealed.fakejwsheader." + base64.StdEncoding.EncodeToString(payload) + ".fakesignature", nil},
		{"three parts", "sealed." + b64.EncodeToString(payload) + ".sig", ErrMalformed},
		{"payload not base64", "sealed.h.!!!.s", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.Unseal(context.Background(), []byte(tt.secret))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unseal: %v, want %v", err, tt.want)
			}
			if err == nil && string(got) != "v" {
				t.Fatalf("Unseal = %q", got)
			}
		})
	}
}

func TestEnvelopeKBS(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	kbs := &resources{m: map[string][]byte{
		"kbs:///default/kek/1":         kek,
		"kbs:///default/signing/key":   read(t, vectors+"test-key.json"),
		"kbs:///default/short-kek/1":   kek[:16],
		"kbs:///default/another-kek/1": bytes.Repeat([]byte{8}, 32),
	}}
	key, err := ParsePrivateJWK(read(t, vectors+"test-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(Options{KBS: kbs})
	if err != nil {
		t.Fatal(err)
	}
	seal := func(keyID string, mutate func(*EnvelopeSecret)) string {
		s, err := NewEnvelope([]byte("top secret"), "kbs", "kbs:///default/kek/1", nil,
			func(dek []byte) ([]byte, Map, error) { return WrapKeyKBS(kek, dek, nil) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Envelope.KeyID = keyID
		if mutate != nil {
			mutate(s.Envelope)
		}
		out, err := Seal(s, key, "kbs:///default/signing/key", nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name   string
		secret string
		want   error
	}{
		{"round trip", seal("kbs:///default/kek/1", nil), nil},
		{"provider name is case-insensitive", seal("kbs:///default/kek/1", func(e *EnvelopeSecret) { e.Provider = "KBS" }), nil},
		{"wrong KEK", seal("kbs:///default/another-kek/1", nil), ErrDecrypt},
		{"short KEK", seal("kbs:///default/short-kek/1", nil), ErrDecrypt},
		{"tampered data", seal("kbs:///default/kek/1", func(e *EnvelopeSecret) {
			b, _ := base64.StdEncoding.DecodeString(e.EncryptedData)
			b[0] ^= 1
			e.EncryptedData = base64.StdEncoding.EncodeToString(b)
		}), ErrDecrypt},
		{"iv annotation missing", seal("kbs:///default/kek/1", func(e *EnvelopeSecret) { e.Annotations = Map{} }), ErrMalformed},
		{"data not base64", seal("kbs:///default/kek/1", func(e *EnvelopeSecret) { e.EncryptedData = "!" }), ErrMalformed},
		{"key_id not a URI", seal("default/kek/1", nil), ErrMalformed},
		{"unknown KMS", seal("kbs:///default/kek/1", func(e *EnvelopeSecret) { e.Provider = "aliyun" }), ErrUnknownProvider},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.Unseal(context.Background(), []byte(tt.secret))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unseal: %v, want %v", err, tt.want)
			}
			if err == nil && string(got) != "top secret" {
				t.Fatalf("Unseal = %q", got)
			}
			if err != nil && strings.Contains(err.Error(), "top secret") {
				t.Fatal("error leaks the plaintext")
			}
		})
	}
}

func TestDecryptCTR(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	iv := bytes.Repeat([]byte{0xff}, 16) // counter wraps: big-endian over all 16 bytes
	pt := bytes.Repeat([]byte("0123456789abcdef"), 3)
	block, _ := aes.NewCipher(key)
	ct := make([]byte, len(pt))
	cipher.NewCTR(block, iv).XORKeyStream(ct, pt)
	got, err := Decrypt(key, iv, ct, WrapA256CTR)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt CTR = %q, %v", got, err)
	}
	if _, err := Decrypt(key, iv[:12], ct, WrapA256CTR); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("short CTR IV: %v", err)
	}
	if _, err := Decrypt(key, iv, ct, "A128CBC"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("unknown wrap type: %v", err)
	}
}

func TestJWK(t *testing.T) {
	priv, pub, err := GenerateJWK("k1", nil)
	if err != nil {
		t.Fatal(err)
	}
	pj, _ := json.Marshal(priv)
	uj, _ := json.Marshal(pub)
	sk, err := ParsePrivateJWK(pj)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicJWK(uj)
	if err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(&sk.PublicKey) {
		t.Fatal("public JWK does not match the private one")
	}
	if _, err := ParsePrivateJWK(uj); err == nil {
		t.Fatal("public JWK parsed as private")
	}
	other, _, _ := GenerateJWK("k2", nil)
	mixed := priv
	mixed.D = other.D
	mj, _ := json.Marshal(mixed)
	if _, err := ParsePrivateJWK(mj); err == nil {
		t.Fatal("JWK whose d does not match x, y parsed")
	}
	for name, in := range map[string]string{
		"RSA":           `{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
		"P-384":         `{"kty":"EC","crv":"P-384","x":"","y":""}`,
		"off curve":     `{"kty":"EC","crv":"P-256","x":"` + b64.EncodeToString(make([]byte, 32)) + `","y":"` + b64.EncodeToString(make([]byte, 32)) + `"}`,
		"short x":       `{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}`,
		"alg ES384":     `{"kty":"EC","crv":"P-256","alg":"ES384","x":"","y":""}`,
		"not an object": `"x"`,
	} {
		if _, err := ParsePublicJWK([]byte(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
