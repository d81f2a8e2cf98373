package protocol

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/ecdh"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	josecipher "github.com/go-jose/go-jose/v4/cipher"

	"github.com/go-trustee/go-trustee/internal/limits"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// detRand returns a deterministic reader for reproducible keys and JWEs.
func detRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	copy(s[1:], "go-trustee protocol test seed")
	return rand.NewChaCha8(s)
}

func TestProtectedHeaderCanonical(t *testing.T) {
	tests := []struct {
		name    string
		header  ProtectedHeader
		want    string // canonical JSON
		wantAAD string // base64url, when checked
		wantErr bool
	}{
		{
			name:    "kbs-types generate_aad vector",
			header:  ProtectedHeader{Alg: "fakealg", Enc: "fakeenc"},
			want:    `{"alg":"fakealg","enc":"fakeenc"}`,
			wantAAD: "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9",
		},
		{
			name: "ECDH header with epk",
			header: ProtectedHeader{Alg: AlgECDHESA256KW, Enc: EncA256GCM, Other: map[string]any{
				"epk": map[string]any{"y": "YY", "x": "XX", "kty": "EC", "crv": "P-256"},
			}},
			want: `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"XX","y":"YY"}}`,
		},
		{
			name:   "RSA header",
			header: ProtectedHeader{Alg: AlgRSAOAEP256, Enc: EncA256GCM},
			want:   `{"alg":"RSA-OAEP-256","enc":"A256GCM"}`,
		},
		{
			name: "other members sorted after alg and enc",
			header: ProtectedHeader{Alg: "z", Enc: "y", Other: map[string]any{
				"kid": "k", "apu": "", "cty": nil, "b": true, "a": []any{json.Number("1"), "x", map[string]string{"q": "r", "p": "s"}},
			}},
			want: `{"alg":"z","enc":"y","a":[1,"x",{"p":"s","q":"r"}],"apu":"","b":true,"cty":null,"kid":"k"}`,
		},
		{
			name:   "serde_json string escaping",
			header: ProtectedHeader{Alg: "a\"b\\c", Enc: "\n\t\r\b\f\x01\x1f\x7f<>&é\u2028"},
			want:   `{"alg":"a\"b\\c","enc":"\n\t\r\b\f\u0001\u001f` + "\x7f<>&é\u2028" + `"}`,
		},
		{
			name:   "integers",
			header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": []any{json.Number("-7"), json.Number("0"), json.Number("18446744073709551615"), 3, int64(-4), uint64(5)}}},
			want:   `{"alg":"a","enc":"e","n":[-7,0,18446744073709551615,3,-4,5]}`,
		},
		{name: "float refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("1.5")}}, wantErr: true},
		{name: "u64 overflow refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("18446744073709551616")}}, wantErr: true},
		{name: "negative zero refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("-0")}}, wantErr: true},
		{name: "leading zero refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("01")}}, wantErr: true},
		{name: "plus sign refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("+1")}}, wantErr: true},
		{name: "empty number refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"n": json.Number("")}}, wantErr: true},
		{name: "alg in Other refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"alg": "b"}}, wantErr: true},
		{name: "invalid UTF-8 refused", header: ProtectedHeader{Alg: "\xff", Enc: "e"}, wantErr: true},
		{name: "unsupported type refused", header: ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"f": 1.5}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.header.MarshalCanonical()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("MarshalCanonical() = %s, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("MarshalCanonical() =\n%s\nwant\n%s", got, tc.want)
			}
			aad, err := tc.header.AAD()
			if err != nil {
				t.Fatal(err)
			}
			if aad != base64.RawURLEncoding.EncodeToString([]byte(tc.want)) {
				t.Fatalf("AAD() = %s, want base64url of %s", aad, tc.want)
			}
			if tc.wantAAD != "" && aad != tc.wantAAD {
				t.Fatalf("AAD() = %s, want %s", aad, tc.wantAAD)
			}
		})
	}
}

func TestProtectedHeaderDeepNestingRefused(t *testing.T) {
	var v any = "leaf"
	for range limits.MaxJSONDepth + 1 {
		v = []any{v}
	}
	if _, err := (ProtectedHeader{Alg: "a", Enc: "e", Other: map[string]any{"d": v}}).MarshalCanonical(); err == nil {
		t.Fatal("MarshalCanonical accepted nesting deeper than limits.MaxJSONDepth")
	}
}

// TestParseProtectedHeaderReserializes uses kbs-types' nested-header vector:
// a header that is not in canonical form (epk member order, trailing
// newline) re-serializes to the canonical form the Rust guest would hash.
func TestParseProtectedHeaderReserializes(t *testing.T) {
	const protected = "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImVwayI6eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ4IjoiaFNEd0NZa3dwMVIwaTMzY3RENzNXZzJfT2cwbU9CcjA2NlNwanFxYlRtbyJ9fQo"
	h, err := ParseProtectedHeader(protected)
	if err != nil {
		t.Fatal(err)
	}
	if h.Alg != "fakealg" || h.Enc != "fakeenc" {
		t.Fatalf("alg, enc = %q, %q", h.Alg, h.Enc)
	}
	got, err := h.MarshalCanonical()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"alg":"fakealg","enc":"fakeenc","epk":{"crv":"X25519","kty":"OKP","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}}`
	if string(got) != want {
		t.Fatalf("canonical = %s, want %s", got, want)
	}
}

func TestParseProtectedHeaderErrors(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name      string
		protected string
	}{
		{"not base64", "!!!"},
		{"padded", base64.URLEncoding.EncodeToString([]byte(`{"alg":"a","enc":"ee"}`))},
		{"line break", enc(`{"alg":"a","enc":"e"}`)[:8] + "\n" + enc(`{"alg":"a","enc":"e"}`)[8:]},
		{"not an object", enc(`["alg","enc"]`)},
		{"missing alg", enc(`{"enc":"e"}`)},
		{"missing enc", enc(`{"alg":"a"}`)},
		{"alg not a string", enc(`{"alg":1,"enc":"e"}`)},
		{"enc null", enc(`{"alg":"a","enc":null}`)},
		{"duplicate alg", enc(`{"alg":"a","alg":"b","enc":"e"}`)},
		{"duplicate enc", enc(`{"alg":"a","enc":"e","enc":"e"}`)},
		{"case-sensitive names", enc(`{"ALG":"a","enc":"e"}`)},
		{"trailing data", enc(`{"alg":"a","enc":"e"}x`)},
		{"two objects", enc(`{"alg":"a","enc":"e"}{}`)},
		{"truncated", enc(`{"alg":"a","enc":"e"`)},
		{"too large", strings.Repeat("A", limits.MaxJWEProtectedBytes+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseProtectedHeader(tc.protected); !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("ParseProtectedHeader() error = %v, want ErrInvalidResponse", err)
			}
		})
	}
}

// TestParseResponseKbsTypesVectors decodes the response documents of the
// kbs-types unit tests.
func TestParseResponseKbsTypesVectors(t *testing.T) {
	fakeaad := "fakeaad"
	tests := []struct {
		name      string
		doc       string
		wantAlg   string
		wantOther map[string]any
		wantAAD   *string
	}{
		{
			name: "parse_response",
			doc: `{
            "protected": "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9",
            "encrypted_key": "ZmFrZWtleQ",
            "iv": "cmFuZG9tZGF0YQ",
            "ciphertext": "ZmFrZWVuY291dHB1dA",
            "tag": "ZmFrZXRhZw"
        }`,
			wantAlg: "fakealg", wantOther: map[string]any{},
		},
		{
			name: "parse_response_nested_protected_header",
			doc: `{
            "protected": "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImVwayI6eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ4IjoiaFNEd0NZa3dwMVIwaTMzY3RENzNXZzJfT2cwbU9CcjA2NlNwanFxYlRtbyJ9fQo",
            "encrypted_key": "ZmFrZWtleQ",
            "iv": "cmFuZG9tZGF0YQ",
            "ciphertext": "ZmFrZWVuY291dHB1dA",
            "tag": "ZmFrZXRhZw"
        }`,
			wantAlg: "fakealg",
			wantOther: map[string]any{"epk": map[string]any{
				"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo",
			}},
		},
		{
			name: "parse_response_with_aad",
			doc: `{
            "protected": "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9Cg",
            "encrypted_key": "ZmFrZWtleQ",
            "iv": "cmFuZG9tZGF0YQ",
            "aad": "fakeaad",
            "ciphertext": "ZmFrZWVuY291dHB1dA",
            "tag": "ZmFrZXRhZw"
        }`,
			wantAlg: "fakealg", wantOther: map[string]any{}, wantAAD: &fakeaad,
		},
		{
			name: "parse_response_with_protectedheader",
			doc: `{
            "protected": "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImZha2VmaWVsZCI6ImZha2V2YWx1ZSJ9",
            "encrypted_key": "ZmFrZWtleQ",
            "iv": "cmFuZG9tZGF0YQ",
            "aad": "fakeaad",
            "ciphertext": "ZmFrZWVuY291dHB1dA",
            "tag": "ZmFrZXRhZw"
        }`,
			wantAlg: "fakealg", wantOther: map[string]any{"fakefield": "fakevalue"}, wantAAD: &fakeaad,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResponse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			dec := func(s string) string {
				b, err := decodeB64(s)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			if got := dec(r.EncryptedKey); got != "fakekey" {
				t.Errorf("encrypted_key = %q", got)
			}
			if got := dec(r.IV); got != "randomdata" {
				t.Errorf("iv = %q", got)
			}
			if got := dec(r.Ciphertext); got != "fakeencoutput" {
				t.Errorf("ciphertext = %q", got)
			}
			if got := dec(r.Tag); got != "faketag" {
				t.Errorf("tag = %q", got)
			}
			if (r.AAD == nil) != (tc.wantAAD == nil) || (r.AAD != nil && *r.AAD != *tc.wantAAD) {
				t.Errorf("aad = %v, want %v", r.AAD, tc.wantAAD)
			}
			h, err := ParseProtectedHeader(r.Protected)
			if err != nil {
				t.Fatal(err)
			}
			if h.Alg != tc.wantAlg || h.Enc != "fakeenc" {
				t.Errorf("header alg, enc = %q, %q", h.Alg, h.Enc)
			}
			gotOther, _ := json.Marshal(h.Other)
			wantOther, _ := json.Marshal(tc.wantOther)
			if !bytes.Equal(gotOther, wantOther) {
				t.Errorf("other header members = %s, want %s", gotOther, wantOther)
			}
		})
	}
}

// TestResponseMarshalKbsTypes checks the serialization of kbs-types'
// serialize_response vector (field order aside, which JSON ignores).
func TestResponseMarshalKbsTypes(t *testing.T) {
	aad := "fakeaad"
	r := Response{
		Protected:    "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImZha2VmaWVsZCI6ImZha2V2YWx1ZSJ9",
		EncryptedKey: "ZmFrZWtleQ", IV: "cmFuZG9tZGF0YQ", Ciphertext: "ZmFrZWVuY291dHB1dA", Tag: "ZmFrZXRhZw", AAD: &aad,
	}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"protected":"eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImZha2VmaWVsZCI6ImZha2V2YWx1ZSJ9","encrypted_key":"ZmFrZWtleQ","iv":"cmFuZG9tZGF0YQ","ciphertext":"ZmFrZWVuY291dHB1dA","tag":"ZmFrZXRhZw","aad":"fakeaad"}`
	if string(got) != want {
		t.Fatalf("json = %s\nwant %s", got, want)
	}
	r.AAD = nil
	got, _ = json.Marshal(r)
	if bytes.Contains(got, []byte("aad")) {
		t.Fatalf("nil AAD serialized: %s", got)
	}
}

func TestParseResponseErrors(t *testing.T) {
	const p = "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
	valid := map[string]any{"protected": p, "encrypted_key": "ZmFrZWtleQ", "iv": "cmFuZG9tZGF0YQ", "ciphertext": "ZmFrZWVuY291dHB1dA", "tag": "ZmFrZXRhZw"}
	with := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	if _, err := ParseResponse([]byte(with("x-unknown", 5))); err != nil {
		t.Fatalf("unknown member refused: %v", err)
	}
	tests := []struct {
		name string
		doc  string
	}{
		{"empty", ``},
		{"not an object", `[]`},
		{"null", `null`},
		{"missing protected", with("protected", nil)},
		{"missing encrypted_key", with("encrypted_key", nil)},
		{"missing iv", with("iv", nil)},
		{"missing ciphertext", with("ciphertext", nil)},
		{"missing tag", with("tag", nil)},
		{"iv is a number", with("iv", 5)},
		{"tag is an object", with("tag", map[string]any{})},
		{"iv padded", with("iv", "cmFuZG9tZGF0YQ==")},
		{"iv standard alphabet", with("iv", "a+b/")},
		{"ciphertext with line break", with("ciphertext", "ZmFr\nZWVu")},
		{"non-zero trailing bits", with("tag", "ZmFrZXRhZx")},
		{"protected header missing enc", with("protected", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"a"}`)))},
		{"protected not base64", with("protected", "***")},
		{"aad is a number", with("aad", 5)},
		{"aad null", `{"protected":"` + p + `","encrypted_key":"","iv":"","ciphertext":"","tag":"","aad":null}`},
		{"iv null", `{"protected":"` + p + `","encrypted_key":"","iv":null,"ciphertext":"","tag":""}`},
		{"duplicate tag", `{"protected":"` + p + `","encrypted_key":"","iv":"","ciphertext":"","tag":"","tag":""}`},
		{"case-insensitive name", `{"PROTECTED":"` + p + `","encrypted_key":"","iv":"","ciphertext":"","tag":""}`},
		{"trailing garbage", with("iv", "") + "x"},
		{"truncated", with("iv", "")[:20]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseResponse([]byte(tc.doc)); !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("ParseResponse() error = %v, want ErrInvalidResponse", err)
			}
		})
	}
	t.Run("trailing whitespace accepted", func(t *testing.T) {
		if _, err := ParseResponse([]byte(with("iv", "") + " \n")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := make([]byte, limits.MaxResponseBytes+1)
		if _, err := ParseResponse(big); !errors.Is(err, ErrInvalidResponse) {
			t.Fatalf("ParseResponse() error = %v, want ErrInvalidResponse", err)
		}
	})
}

// TestAESKeyWrapRFC3394 checks RFC 3394 §4.6 (256-bit key data with a
// 256-bit KEK) and cross-checks against go-jose's independent key wrap.
func TestAESKeyWrapRFC3394(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want, _ := hex.DecodeString("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	got, err := aesKeyWrap(kek, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("wrap = %X, want %X", got, want)
	}
	unwrapped, err := aesKeyUnwrap(kek, want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unwrapped, key) {
		t.Fatalf("unwrap = %X, want %X", unwrapped, key)
	}
	for i := range len(want) * 8 {
		bad := bytes.Clone(want)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := aesKeyUnwrap(kek, bad); err == nil {
			t.Fatalf("unwrap accepted a flipped bit %d", i)
		}
	}
	for _, n := range []int{0, 8, 16, 41} {
		if _, err := aesKeyUnwrap(kek, make([]byte, n)); err == nil {
			t.Fatalf("unwrap accepted %d bytes", n)
		}
	}
	if _, err := aesKeyWrap(kek, make([]byte, 12)); err == nil {
		t.Fatal("wrap accepted a 12-byte key")
	}

	r := detRand(9)
	for range 50 {
		kek, cek := make([]byte, 32), make([]byte, 8*(2+int(r.Uint64()%6)))
		r.Read(kek)
		r.Read(cek)
		block, _ := aes.NewCipher(kek)
		theirs, err := josecipher.KeyWrap(block, cek)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := aesKeyWrap(kek, cek)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("wrap differs from go-jose: %x vs %x", ours, theirs)
		}
	}
}

// TestConcatKDF checks RFC 7518 Appendix C and cross-checks the
// ECDH-ES+A256KW parameters against go-jose's Concat KDF.
func TestConcatKDF(t *testing.T) {
	z := []byte{158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156,
		251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196}
	got := concatKDFWith(z, "A128GCM", []byte("Alice"), []byte("Bob"), 128)
	if enc := base64.RawURLEncoding.EncodeToString(got); enc != "VqqN6vgjbSBcIijNcacQGg" {
		t.Fatalf("RFC 7518 C derived key = %s, want VqqN6vgjbSBcIijNcacQGg", enc)
	}

	r := detRand(10)
	for _, size := range []int{32, 66} {
		zz := make([]byte, size)
		r.Read(zz)
		algID := append([]byte{0, 0, 0, 14}, AlgECDHESA256KW...)
		kdf := josecipher.NewConcatKDF(crypto.SHA256, zz, algID, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, []byte{0, 0, 1, 0}, nil)
		want := make([]byte, 32)
		if _, err := kdf.Read(want); err != nil {
			t.Fatal(err)
		}
		if got := concatKDF(zz); !bytes.Equal(got, want) {
			t.Fatalf("concatKDF = %x, go-jose = %x", got, want)
		}
	}
}

// testKeyPairs returns one key pair per algorithm, generated once.
var testKeys = map[KeyAlgorithm]*KeyPair{}

func testKeyPair(t testing.TB, alg KeyAlgorithm) *KeyPair {
	t.Helper()
	if k, ok := testKeys[alg]; ok {
		return k
	}
	k, err := GenerateKeyPair(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	testKeys[alg] = k
	return k
}

// keyCases are the four (key, key-management) combinations Encrypt emits.
func keyCases(t testing.TB) []struct {
	name string
	kp   *KeyPair
	pub  TeePubKey
} {
	rsaKey := testKeyPair(t, KeyRSA2048)
	legacy := rsaKey.PublicKey()
	legacy.Alg = AlgRSA15
	return []struct {
		name string
		kp   *KeyPair
		pub  TeePubKey
	}{
		{"P256", testKeyPair(t, KeyEC256), testKeyPair(t, KeyEC256).PublicKey()},
		{"P521", testKeyPair(t, KeyEC521), testKeyPair(t, KeyEC521).PublicKey()},
		{"RSA-OAEP-256", rsaKey, rsaKey.PublicKey()},
		{"RSA1_5", rsaKey, legacy},
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	for _, kc := range keyCases(t) {
		t.Run(kc.name, func(t *testing.T) {
			for _, size := range []int{0, 1, 15, 16, 17, 4096} {
				pt := make([]byte, size)
				crand.Read(pt)
				resp, err := Encrypt(kc.pub, pt, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, err := json.Marshal(resp)
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := ParseResponse(body)
				if err != nil {
					t.Fatal(err)
				}
				got, err := kc.kp.Decrypt(parsed)
				if err != nil {
					t.Fatalf("Decrypt(%d bytes): %v", size, err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("Decrypt(%d bytes) returned different plaintext", size)
				}
			}
		})
	}
}

// TestEncryptHeaderForm checks the exact protected header Encrypt emits:
// the canonical form, with fixed-length epk coordinates.
func TestEncryptHeaderForm(t *testing.T) {
	for _, kc := range keyCases(t) {
		t.Run(kc.name, func(t *testing.T) {
			resp, err := Encrypt(kc.pub, []byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := decodeB64(resp.Protected)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseProtectedHeader(resp.Protected)
			if err != nil {
				t.Fatal(err)
			}
			canon, err := h.MarshalCanonical()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, canon) {
				t.Fatalf("header %s is not canonical (%s)", raw, canon)
			}
			if kc.pub.Kty == KtyRSA {
				want := `{"alg":"` + kc.pub.Alg + `","enc":"A256GCM"}`
				if string(raw) != want {
					t.Fatalf("header = %s, want %s", raw, want)
				}
				return
			}
			epk := h.Other["epk"].(map[string]any)
			size := 32
			if kc.pub.Crv == CurveP521 {
				size = 66
			}
			want := `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"` + kc.pub.Crv + `","kty":"EC","x":"` +
				epk["x"].(string) + `","y":"` + epk["y"].(string) + `"}}`
			if string(raw) != want {
				t.Fatalf("header = %s, want %s", raw, want)
			}
			for _, c := range []string{"x", "y"} {
				if b, _ := decodeB64(epk[c].(string)); len(b) != size {
					t.Fatalf("epk.%s is %d bytes, want %d", c, len(b), size)
				}
			}
			if len(h.Other) != 1 {
				t.Fatalf("unexpected header members: %v", h.Other)
			}
		})
	}
}

func TestEncryptKeyErrors(t *testing.T) {
	p256 := testKeyPair(t, KeyEC256).PublicKey()
	rsaPub := testKeyPair(t, KeyRSA2048).PublicKey()
	mod := func(k TeePubKey, f func(*TeePubKey)) TeePubKey { f(&k); return k }
	p384, _ := ecdh.P384().GenerateKey(crand.Reader)
	p384b := p384.PublicKey().Bytes()
	tests := []struct {
		name string
		key  TeePubKey
		want error
	}{
		{"EC P-384", mod(p256, func(k *TeePubKey) {
			k.Crv = "P-384"
			k.X = b64.EncodeToString(p384b[1:49])
			k.Y = b64.EncodeToString(p384b[49:])
		}), ErrUnsupportedKey},
		{"EC with RSA alg", mod(p256, func(k *TeePubKey) { k.Alg = AlgRSAOAEP256 }), ErrUnsupportedKey},
		{"EC with ECDH-ES direct", mod(p256, func(k *TeePubKey) { k.Alg = "ECDH-ES" }), ErrUnsupportedKey},
		{"RSA with RSA-OAEP", mod(rsaPub, func(k *TeePubKey) { k.Alg = "RSA-OAEP" }), ErrUnsupportedKey},
		{"RSA with EC alg", mod(rsaPub, func(k *TeePubKey) { k.Alg = AlgECDHESA256KW }), ErrUnsupportedKey},
		{"AKP", TeePubKey{Kty: KtyAKP, Alg: "ML-KEM-768+A192KW", Pub: "AAAA"}, ErrUnsupportedKey},
		{"oct", TeePubKey{Kty: "oct"}, ErrUnsupportedKey},
		{"empty", TeePubKey{}, ErrUnsupportedKey},
		{"EC x short", mod(p256, func(k *TeePubKey) { k.X = k.X[:42] }), ErrInvalidTeePubKey},
		{"EC x not base64", mod(p256, func(k *TeePubKey) { k.X = "!" + k.X[1:] }), ErrInvalidTeePubKey},
		{"EC point off curve", mod(p256, func(k *TeePubKey) { k.Y = k.X }), ErrInvalidTeePubKey},
		{"EC point at zero", mod(p256, func(k *TeePubKey) {
			k.X = b64.EncodeToString(make([]byte, 32))
			k.Y = k.X
		}), ErrInvalidTeePubKey},
		{"RSA 1024-bit", mod(rsaPub, func(k *TeePubKey) {
			n, _ := decodeB64(k.N)
			k.N = b64.EncodeToString(n[:128])
		}), ErrInvalidTeePubKey},
		{"RSA even modulus", mod(rsaPub, func(k *TeePubKey) {
			n, _ := decodeB64(k.N)
			n[len(n)-1] &^= 1
			k.N = b64.EncodeToString(n)
		}), ErrInvalidTeePubKey},
		{"RSA 8192-bit", mod(rsaPub, func(k *TeePubKey) {
			n, _ := decodeB64(k.N)
			k.N = b64.EncodeToString(append(bytes.Repeat([]byte{0xff}, 768), n...))
		}), ErrInvalidTeePubKey},
		{"RSA e=1", mod(rsaPub, func(k *TeePubKey) { k.E = "AQ" }), ErrInvalidTeePubKey},
		{"RSA e even", mod(rsaPub, func(k *TeePubKey) { k.E = "AQAC" }), ErrInvalidTeePubKey},
		{"RSA e 2^32+1", mod(rsaPub, func(k *TeePubKey) { k.E = b64.EncodeToString([]byte{1, 0, 0, 0, 1}) }), ErrInvalidTeePubKey},
		{"RSA e too long", mod(rsaPub, func(k *TeePubKey) { k.E = strings.Repeat("A", 64) }), ErrInvalidTeePubKey},
		{"RSA n not base64", mod(rsaPub, func(k *TeePubKey) { k.N = k.N + "=" }), ErrInvalidTeePubKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encrypt(tc.key, []byte("secret"), nil); !errors.Is(err, tc.want) {
				t.Fatalf("Encrypt() error = %v, want %v", err, tc.want)
			}
		})
	}
}

// flipBit returns s (base64url) with bit i of its decoded bytes flipped.
func flipBit(t testing.TB, s string, i int) string {
	b, err := decodeB64(s)
	if err != nil {
		t.Fatal(err)
	}
	b[i/8] ^= 1 << (i % 8)
	return b64.EncodeToString(b)
}

func TestDecryptTampering(t *testing.T) {
	for _, kc := range keyCases(t) {
		t.Run(kc.name, func(t *testing.T) {
			resp, err := Encrypt(kc.pub, []byte("the resource is a secret"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kc.kp.Decrypt(resp); err != nil {
				t.Fatal(err)
			}
			fields := []struct {
				name string
				ptr  func(*Response) *string
			}{
				{"protected", func(r *Response) *string { return &r.Protected }},
				{"encrypted_key", func(r *Response) *string { return &r.EncryptedKey }},
				{"iv", func(r *Response) *string { return &r.IV }},
				{"ciphertext", func(r *Response) *string { return &r.Ciphertext }},
				{"tag", func(r *Response) *string { return &r.Tag }},
			}
			for _, f := range fields {
				t.Run(f.name, func(t *testing.T) {
					b, _ := decodeB64(*f.ptr(resp))
					bits := len(b) * 8
					// RSA private operations are slow: sample every 61st bit
					// of an RSA encrypted_key; flip every bit elsewhere.
					step := 1
					if kc.pub.Kty == KtyRSA && f.name == "encrypted_key" {
						step = 61
					}
					for i := 0; i < bits; i += step {
						bad := *resp
						*f.ptr(&bad) = flipBit(t, *f.ptr(resp), i)
						if pt, err := kc.kp.Decrypt(&bad); !errors.Is(err, ErrDecrypt) {
							t.Fatalf("bit %d flipped: Decrypt() = %q, %v; want ErrDecrypt", i, pt, err)
						}
					}
					if *f.ptr(resp) == "" {
						return
					}
					trunc := *resp
					b = b[:len(b)-1]
					*f.ptr(&trunc) = b64.EncodeToString(b)
					if _, err := kc.kp.Decrypt(&trunc); !errors.Is(err, ErrDecrypt) {
						t.Fatalf("truncated: Decrypt() error = %v, want ErrDecrypt", err)
					}
					empty := *resp
					*f.ptr(&empty) = ""
					if _, err := kc.kp.Decrypt(&empty); !errors.Is(err, ErrDecrypt) {
						t.Fatalf("empty: Decrypt() error = %v, want ErrDecrypt", err)
					}
				})
			}
			t.Run("aad added", func(t *testing.T) {
				bad := *resp
				aad := "eHg"
				bad.AAD = &aad
				if _, err := kc.kp.Decrypt(&bad); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("Decrypt() error = %v, want ErrDecrypt", err)
				}
			})
		})
	}
}

func TestDecryptWrongKey(t *testing.T) {
	otherEC, _ := GenerateKeyPair(KeyEC256, nil)
	otherRSA, _ := GenerateKeyPair(KeyRSA2048, nil)
	p256 := testKeyPair(t, KeyEC256)
	p521 := testKeyPair(t, KeyEC521)
	rsaKey := testKeyPair(t, KeyRSA2048)
	tests := []struct {
		name     string
		to       TeePubKey
		with     *KeyPair
		mismatch bool // key type or curve mismatch, reported as ErrInvalidResponse
	}{
		{"other P-256 key", p256.PublicKey(), otherEC, false},
		{"other RSA key", rsaKey.PublicKey(), otherRSA, false},
		{"P-521 response, P-256 key", p521.PublicKey(), p256, true},
		{"P-256 response, P-521 key", p256.PublicKey(), p521, true},
		{"EC response, RSA key", p256.PublicKey(), rsaKey, true},
		{"RSA response, EC key", rsaKey.PublicKey(), p256, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := Encrypt(tc.to, []byte("secret"), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.with.Decrypt(resp)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Decrypt() error = %v, want ErrDecrypt", err)
			}
			if errors.Is(err, ErrInvalidResponse) != tc.mismatch {
				t.Fatalf("Decrypt() error = %v, ErrInvalidResponse = %v, want %v", err, !tc.mismatch, tc.mismatch)
			}
		})
	}
}

// reheader re-encodes resp's protected header after f edits it. The tag
// no longer matches, so each case must fail for its own reason first;
// the expected sentinel says which.
func reheader(t *testing.T, resp *Response, f func(h map[string]any)) *Response {
	t.Helper()
	raw, _ := decodeB64(resp.Protected)
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	f(h)
	b, _ := json.Marshal(h)
	out := *resp
	out.Protected = b64.EncodeToString(b)
	return &out
}

func TestDecryptHeaderErrors(t *testing.T) {
	kp := testKeyPair(t, KeyEC256)
	resp, err := Encrypt(kp.PublicKey(), []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p521pub := testKeyPair(t, KeyEC521).PublicKey()
	epk := func(h map[string]any) map[string]any { return h["epk"].(map[string]any) }
	tests := []struct {
		name string
		edit func(h map[string]any)
		want error
	}{
		{"epk on P-521", func(h map[string]any) {
			epk(h)["crv"], epk(h)["x"], epk(h)["y"] = CurveP521, p521pub.X, p521pub.Y
		}, ErrInvalidResponse},
		{"epk crv renamed only", func(h map[string]any) { epk(h)["crv"] = "P-384" }, ErrInvalidResponse},
		{"epk invalid point", func(h map[string]any) { epk(h)["y"] = epk(h)["x"] }, ErrInvalidResponse},
		{"epk identity", func(h map[string]any) {
			z := b64.EncodeToString(make([]byte, 32))
			epk(h)["x"], epk(h)["y"] = z, z
		}, ErrInvalidResponse},
		{"epk short coordinate", func(h map[string]any) { epk(h)["x"] = epk(h)["x"].(string)[:40] }, ErrInvalidResponse},
		{"epk coordinate not a string", func(h map[string]any) { epk(h)["x"] = 1 }, ErrInvalidResponse},
		{"epk kty OKP", func(h map[string]any) { epk(h)["kty"] = "OKP" }, ErrInvalidResponse},
		{"epk missing", func(h map[string]any) { delete(h, "epk") }, ErrInvalidResponse},
		{"epk not an object", func(h map[string]any) { h["epk"] = "x" }, ErrInvalidResponse},
		{"alg dir", func(h map[string]any) { h["alg"] = "dir" }, ErrUnsupportedAlgorithm},
		{"alg ECDH-ES", func(h map[string]any) { h["alg"] = "ECDH-ES" }, ErrUnsupportedAlgorithm},
		{"enc A128GCM", func(h map[string]any) { h["enc"] = "A128GCM" }, ErrUnsupportedAlgorithm},
		{"enc A256CBC-HS512", func(h map[string]any) { h["enc"] = "A256CBC-HS512" }, ErrUnsupportedAlgorithm},
		{"alg RSA on EC key", func(h map[string]any) { h["alg"] = AlgRSAOAEP256 }, ErrInvalidResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kp.Decrypt(reheader(t, resp, tc.edit))
			if !errors.Is(err, ErrDecrypt) || !errors.Is(err, tc.want) {
				t.Fatalf("Decrypt() error = %v, want ErrDecrypt and %v", err, tc.want)
			}
		})
	}
	if _, err := kp.Decrypt(nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Decrypt(nil) error = %v", err)
	}
}

// TestDecryptUsesReceivedProtected shows that the AAD is the received
// protected string: a header with the same members in another order
// (here with whitespace) still authenticates when it is what was sealed.
func TestDecryptUsesReceivedProtected(t *testing.T) {
	kp := testKeyPair(t, KeyRSA2048)
	pub, _ := PublicKeyFromTeePubKey(kp.PublicKey())
	protected := b64.EncodeToString([]byte(`{ "enc": "A256GCM", "alg": "RSA-OAEP-256" }`))
	cek := make([]byte, 32)
	crand.Read(cek)
	resp := sealForTest(t, pub, protected, cek, []byte("hello"))
	got, err := kp.Decrypt(resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello" {
		t.Fatalf("Decrypt() = %q", got)
	}
}

func TestGolden(t *testing.T) {
	plaintext := []byte(`{"resource":"default/key/1","value":"0123456789abcdef"}`)
	for _, tc := range []struct {
		name string
		alg  KeyAlgorithm
	}{
		{"jwe-p256", KeyEC256},
		{"jwe-p521", KeyEC521},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := GenerateKeyPair(tc.alg, detRand(1))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := Encrypt(kp.PublicKey(), plaintext, detRand(2))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			pemBytes, err := kp.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			jwePath := filepath.Join("testdata", tc.name+".json")
			keyPath := filepath.Join("testdata", tc.name+"-key.pem")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(jwePath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(keyPath, pemBytes, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(jwePath)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("JWE differs from %s:\n got %s\nwant %s", jwePath, got, want)
			}
			wantKey, err := os.ReadFile(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pemBytes, wantKey) {
				t.Fatalf("key differs from %s", keyPath)
			}
			// The golden file must also decrypt, with the stored key, here
			// and in go-jose.
			stored, err := KeyPairFromPEM(wantKey)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseResponse(want)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := stored.Decrypt(parsed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, plaintext) {
				t.Fatalf("golden plaintext = %q", pt)
			}
			if pt := joseDecrypt(t, want, stored); !bytes.Equal(pt, plaintext) {
				t.Fatalf("go-jose golden plaintext = %q", pt)
			}
		})
	}
}
