package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

var (
	p256Key, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384Key, _  = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521Key, _  = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey2k, _ = rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ = ed25519.GenerateKey(rand.Reader)
)

var now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func claimsAt(t time.Time) map[string]any {
	return map[string]any{"iss": "test", "iat": t.Unix(), "exp": t.Add(5 * time.Minute).Unix()}
}

func mustSign(t testing.TB, hdr map[string]any, claims any, key crypto.Signer) string {
	t.Helper()
	s, err := Sign(hdr, claims, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		alg  string
		key  crypto.Signer
	}{
		{"ES256", ES256, p256Key},
		{"ES384", ES384, p384Key},
		{"ES512", ES512, p521Key},
		{"RS256", RS256, rsaKey2k},
		{"RS384", RS384, rsaKey2k},
		{"RS512", RS512, rsaKey2k},
		{"PS256", PS256, rsaKey2k},
		{"PS384", PS384, rsaKey2k},
		{"PS512", PS512, rsaKey2k},
		{"EdDSA", EdDSA, edKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustSign(t, map[string]any{"alg": tc.alg, "typ": "JWT"}, claimsAt(now), tc.key)
			tok, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(tc.key.Public(), tc.alg); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			c, err := tok.Claims()
			if err != nil {
				t.Fatal(err)
			}
			if c["iss"] != "test" {
				t.Errorf("iss = %v", c["iss"])
			}
			if _, ok := c["exp"].(json.Number); !ok {
				t.Errorf("exp is %T, want json.Number", c["exp"])
			}
			// Tampered payload.
			parts := strings.Split(raw, ".")
			parts[1] = b64.EncodeToString([]byte(`{"iss":"evil","exp":99999999999}`))
			tok2, err := Parse(strings.Join(parts, "."))
			if err != nil {
				t.Fatal(err)
			}
			if err := tok2.Verify(tc.key.Public(), tc.alg); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered: err = %v, want ErrSignature", err)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	good := mustSign(t, map[string]any{"alg": ES256}, claimsAt(now), p256Key)
	parts := strings.Split(good, ".")
	hdr := func(h string) string { return b64.EncodeToString([]byte(h)) + "." + parts[1] + "." + parts[2] }
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name     string
		raw      string
		key      crypto.PublicKey
		alg      string
		parseErr error
		err      error
	}{
		{name: "alg none", raw: b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", key: p256Key.Public(), alg: "none", err: ErrUnsupportedAlg},
		{name: "header none, caller ES256", raw: b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", key: p256Key.Public(), alg: ES256, err: ErrAlgMismatch},
		{name: "HS256 with public key bytes", raw: hdr(`{"alg":"HS256"}`), key: p256Key.Public(), alg: "HS256", err: ErrUnsupportedAlg},
		{name: "header alg differs", raw: hdr(`{"alg":"ES384"}`), key: p256Key.Public(), alg: ES256, err: ErrAlgMismatch},
		{name: "wrong curve for alg", raw: hdr(`{"alg":"ES384"}`), key: p256Key.Public(), alg: ES384, err: ErrAlgMismatch},
		{name: "RSA alg on EC key", raw: hdr(`{"alg":"RS256"}`), key: p256Key.Public(), alg: RS256, err: ErrAlgMismatch},
		{name: "wrong key", raw: good, key: other.Public(), alg: ES256, err: ErrSignature},
		{name: "crit", raw: hdr(`{"alg":"ES256","crit":["exp"]}`), parseErr: ErrMalformed},
		{name: "duplicate alg", raw: hdr(`{"alg":"none","alg":"ES256"}`), parseErr: ErrMalformed},
		{name: "no alg", raw: hdr(`{"typ":"JWT"}`), parseErr: ErrMalformed},
		{name: "alg not string", raw: hdr(`{"alg":1}`), parseErr: ErrMalformed},
		{name: "header array", raw: hdr(`["alg"]`), parseErr: ErrMalformed},
		{name: "two parts", raw: parts[0] + "." + parts[1], parseErr: ErrMalformed},
		{name: "four parts", raw: good + ".x", parseErr: ErrMalformed},
		{name: "padded base64", raw: parts[0] + "=." + parts[1] + "." + parts[2], parseErr: ErrMalformed},
		{name: "too large", raw: strings.Repeat("a", limits.MaxTokenBytes+1), parseErr: ErrMalformed},
		{name: "deep header", raw: hdr(`{"alg":"ES256","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`), parseErr: ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.raw)
			if tc.parseErr != nil {
				if !errors.Is(err, tc.parseErr) {
					t.Fatalf("Parse err = %v, want %v", err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := tok.Verify(tc.key, tc.alg); !errors.Is(err, tc.err) {
				t.Fatalf("Verify err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestECDSASignatureLength(t *testing.T) {
	raw := mustSign(t, map[string]any{"alg": ES256}, claimsAt(now), p256Key)
	parts := strings.Split(raw, ".")
	sig, _ := b64.DecodeString(parts[2])
	// A DER-style or truncated signature must not verify.
	for _, s := range [][]byte{sig[:63], append(sig, 0)} {
		tok, err := Parse(parts[0] + "." + parts[1] + "." + b64.EncodeToString(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := tok.Verify(p256Key.Public(), ES256); !errors.Is(err, ErrSignature) {
			t.Errorf("len %d: err = %v", len(s), err)
		}
	}
}

func TestValidateTime(t *testing.T) {
	n := now.Unix()
	cases := []struct {
		name       string
		claims     string
		requireExp bool
		err        error
	}{
		{"valid", fmt.Sprintf(`{"exp":%d}`, n+10), true, nil},
		{"expired within leeway", fmt.Sprintf(`{"exp":%d}`, n-59), true, nil},
		{"expired at leeway edge", fmt.Sprintf(`{"exp":%d}`, n-60), true, nil},
		{"expired beyond leeway", fmt.Sprintf(`{"exp":%d}`, n-61), true, ErrExpired},
		{"missing exp required", `{}`, true, ErrMissingExp},
		{"missing exp optional", `{}`, false, nil},
		{"exp string", `{"exp":"123"}`, true, ErrInvalidClaim},
		{"exp negative", `{"exp":-1}`, true, ErrInvalidClaim},
		{"exp float", fmt.Sprintf(`{"exp":%d.5}`, n+10), true, nil},
		{"nbf future", fmt.Sprintf(`{"exp":%d,"nbf":%d}`, n+1000, n+61), true, ErrNotYetValid},
		{"nbf within leeway", fmt.Sprintf(`{"exp":%d,"nbf":%d}`, n+1000, n+60), true, nil},
		{"nbf bool", fmt.Sprintf(`{"exp":%d,"nbf":true}`, n+1000), true, ErrInvalidClaim},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeClaims([]byte(tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateTime(c, now, DefaultLeeway, tc.requireExp); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestDecodeClaims(t *testing.T) {
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"object", `{"a":12345678901234567890}`, true},
		{"array", `[1]`, false},
		{"null", `null`, false},
		{"trailing", `{} {}`, false},
		{"deep", strings.Repeat(`{"a":`, limits.MaxJSONDepth+1) + "1" + strings.Repeat("}", limits.MaxJSONDepth+1), false},
		{"max depth", strings.Repeat(`{"a":`, limits.MaxJSONDepth) + "1" + strings.Repeat("}", limits.MaxJSONDepth), true},
		{"brackets in strings do not count", `{"a":"` + strings.Repeat("[", 200) + `"}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeClaims([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.name == "object" && c["a"].(json.Number).String() != "12345678901234567890" {
				t.Errorf("big integer changed: %v", c["a"])
			}
		})
	}
}

func TestParseJWK(t *testing.T) {
	ecJWK, _ := PublicJWK(p256Key.Public(), ES256)
	rsaJWK, _ := PublicJWK(rsaKey2k.Public(), RS256)
	edJWK, _ := PublicJWK(edKey.Public(), EdDSA)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakJWK, _ := PublicJWK(weak.Public(), RS256)
	enc := func(m map[string]any, mod func(map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		if mod != nil {
			mod(c)
		}
		b, _ := json.Marshal(c)
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want crypto.PublicKey
	}{
		{"EC", enc(ecJWK, nil), p256Key.Public()},
		{"RSA", enc(rsaJWK, nil), rsaKey2k.Public()},
		{"Ed25519", enc(edJWK, nil), edKey.Public()},
		{"EC off curve", enc(ecJWK, func(m map[string]any) { m["y"] = m["x"] }), nil},
		{"EC unknown curve", enc(ecJWK, func(m map[string]any) { m["crv"] = "secp256k1" }), nil},
		{"EC long coordinate", enc(ecJWK, func(m map[string]any) { m["x"] = b64.EncodeToString(append([]byte{1}, make([]byte, 32)...)) }), nil},
		{"EC leading zero tolerated", enc(ecJWK, func(m map[string]any) {
			x, _ := b64.DecodeString(m["x"].(string))
			m["x"] = b64.EncodeToString(append([]byte{0}, x...))
		}), p256Key.Public()},
		{"RSA 1024", enc(weakJWK, nil), nil},
		{"RSA even exponent", enc(rsaJWK, func(m map[string]any) { m["e"] = "Ag" }), nil},
		{"oct", []byte(`{"kty":"oct","k":"Zm9vYmFy","alg":"HS256"}`), nil},
		{"alg mismatches key", enc(ecJWK, func(m map[string]any) { m["alg"] = "ES384" }), nil},
		{"x5c garbage", enc(ecJWK, func(m map[string]any) { m["x5c"] = []string{"!!!"} }), nil},
		{"x5c too long", enc(ecJWK, func(m map[string]any) { m["x5c"] = make([]string, limits.MaxCertChain+1) }), nil},
		{"not JSON", []byte(`{`), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseJWK(tc.in)
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("err = %v, want ErrInvalidKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !EqualKeys(tc.want, k.Key) {
				t.Fatal("key differs")
			}
		})
	}
}

func TestDecodeX5C(t *testing.T) {
	der := []byte{0x30, 0x82, 0xfe, 0xff, 0x01}
	std := base64.StdEncoding.EncodeToString(der)
	cases := map[string]string{
		"std":          std,
		"url":          base64.RawURLEncoding.EncodeToString(der),
		"line breaks":  std[:3] + "\n" + std[3:] + "\n",
		"crlf, spaces": " " + std[:4] + "\r\n" + std[4:],
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeX5C(in)
			if err != nil || string(got) != string(der) {
				t.Fatalf("got %x, %v", got, err)
			}
		})
	}
	if _, err := DecodeX5C("%%%"); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestParseJWKSetSkipsUnusable(t *testing.T) {
	ecJWK, _ := PublicJWK(p256Key.Public(), ES256)
	ecJWK["kid"] = "ec"
	set := map[string]any{"keys": []any{
		map[string]any{"kty": "oct", "alg": "HS256", "kid": "coco123", "k": "foobar"},
		ecJWK,
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "broken"},
	}}
	b, _ := json.Marshal(set)
	keys, skipped, err := ParseJWKSet(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Kid != "ec" || len(skipped) != 2 {
		t.Fatalf("keys=%d skipped=%d", len(keys), len(skipped))
	}
	if _, _, err := ParseJWKSet([]byte(`{"other":1}`)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("set without keys: %v", err)
	}
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePublicKeyPEM(t *testing.T) {
	pkix := func(k crypto.PublicKey) []byte {
		b, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want crypto.PublicKey
	}{
		{"EC", pemOf(t, "PUBLIC KEY", pkix(p256Key.Public())), p256Key.Public()},
		{"RSA SPKI", pemOf(t, "PUBLIC KEY", pkix(rsaKey2k.Public())), rsaKey2k.Public()},
		{"RSA PKCS1", pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey2k.PublicKey)), rsaKey2k.Public()},
		{"Ed25519", pemOf(t, "PUBLIC KEY", pkix(edKey.Public())), edKey.Public()},
		{"after a comment block", append(pemOf(t, "COMMENT", []byte("x")), pemOf(t, "PUBLIC KEY", pkix(edKey.Public()))...), edKey.Public()},
		{"private key only", pemOf(t, "PRIVATE KEY", []byte{1, 2}), nil},
		{"garbage", []byte("not pem"), nil},
		{"bad DER", pemOf(t, "PUBLIC KEY", []byte{1, 2, 3}), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParsePublicKeyPEM(tc.in)
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !EqualKeys(tc.want, k) {
				t.Fatalf("key mismatch, err %v", err)
			}
		})
	}
}

func TestOpenIDConfigURL(t *testing.T) {
	// The cases of upstream's build_openid_config_url test.
	cases := map[string]string{
		"https://host/realms/foo":  "https://host/realms/foo/.well-known/openid-configuration",
		"https://host/realms/foo/": "https://host/realms/foo/.well-known/openid-configuration",
		"https://host":             "https://host/.well-known/openid-configuration",
		"https://host/":            "https://host/.well-known/openid-configuration",
		"https://host/a?x=1#f":     "https://host/a/.well-known/openid-configuration",
	}
	for in, want := range cases {
		got, err := OpenIDConfigURL(in)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReadSourceSchemes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.jwks")
	if err := os.WriteFile(p, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, limits.MaxConfigBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		src string
		ok  bool
	}{
		{p, true},
		{"file://" + p, true},
		{"https://", false},
		{"http://example.com", false},
		{"ftp://x/y", false},
		{"file:///does/not/exist/keys.jwks", false},
		{"/does/not/exist/keys.jwks", false},
		{"file://otherhost/etc/passwd", false},
		{big, false},
		{dir, false}, // not a regular file
		{"", false},
	}
	for _, tc := range cases {
		_, err := ReadSource(context.Background(), nil, tc.src)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.src, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrFetch) {
			t.Errorf("%q: err %v does not match ErrFetch", tc.src, err)
		}
	}
}

// jwksServer serves a JWK set, optionally only through OpenID discovery.
type jwksServer struct {
	srv       *httptest.Server
	set       atomic.Pointer[[]byte]
	direct    bool // serve the set at /jwks directly
	hits      atomic.Int64
	oversized bool
}

func newJWKSServer(t *testing.T, direct bool) *jwksServer {
	js := &jwksServer{direct: direct}
	mux := http.NewServeMux()
	mux.HandleFunc("/realm/jwks", func(w http.ResponseWriter, r *http.Request) {
		js.hits.Add(1)
		if !js.direct {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.Write(*js.set.Load())
	})
	mux.HandleFunc("/realm/jwks/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":"x","jwks_uri":%q}`, js.srv.URL+"/certs")
	})
	mux.HandleFunc("/certs", func(w http.ResponseWriter, r *http.Request) {
		js.hits.Add(1)
		if js.oversized {
			w.Write(make([]byte, limits.MaxConfigBytes+10))
			return
		}
		w.Write(*js.set.Load())
	})
	js.srv = httptest.NewUnstartedServer(mux)
	js.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	js.srv.StartTLS()
	t.Cleanup(js.srv.Close)
	return js
}

func (js *jwksServer) setKeys(t *testing.T, keys ...map[string]any) {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	js.set.Store(&b)
}

func TestFetchJWKSet(t *testing.T) {
	k1, _ := PublicJWK(p256Key.Public(), ES256)
	k1["kid"] = "k1"
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			js := newJWKSServer(t, direct)
			js.setKeys(t, k1)
			keys, _, err := FetchJWKSet(context.Background(), js.srv.Client(), js.srv.URL+"/realm/jwks")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].Kid != "k1" {
				t.Fatalf("keys = %v", keys)
			}
		})
	}
	t.Run("empty set falls back to discovery", func(t *testing.T) {
		js := newJWKSServer(t, true)
		empty := []byte(`{"keys":[]}`)
		js.set.Store(&empty)
		keys, _, err := FetchJWKSet(context.Background(), js.srv.Client(), js.srv.URL+"/realm/jwks")
		if err != nil || len(keys) != 0 {
			t.Fatalf("keys=%d err=%v", len(keys), err)
		}
		if js.hits.Load() != 2 {
			t.Fatalf("hits = %d, want direct + jwks_uri", js.hits.Load())
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		js := newJWKSServer(t, false)
		js.oversized = true
		if _, _, err := FetchJWKSet(context.Background(), js.srv.Client(), js.srv.URL+"/realm/jwks"); !errors.Is(err, ErrFetch) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("untrusted TLS", func(t *testing.T) {
		js := newJWKSServer(t, true)
		js.setKeys(t, k1)
		if _, _, err := FetchJWKSet(context.Background(), nil, js.srv.URL+"/realm/jwks"); !errors.Is(err, ErrFetch) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestKeySetRefresh(t *testing.T) {
	k1, _ := PublicJWK(p256Key.Public(), ES256)
	k1["kid"] = "k1"
	k2, _ := PublicJWK(p384Key.Public(), ES384)
	k2["kid"] = "k2"
	js := newJWKSServer(t, true)
	js.setKeys(t, k1)
	clock := now
	ks, err := NewKeySet(context.Background(), []string{js.srv.URL + "/realm/jwks"}, KeySetOptions{
		HTTPClient: js.srv.Client(), Now: func() time.Time { return clock }, MinRefresh: time.Minute, MaxAge: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, ok := ks.Lookup(ctx, "k1"); !ok {
		t.Fatal("k1 missing")
	}
	js.setKeys(t, k1, k2) // rotation
	if _, ok := ks.Lookup(ctx, "k2"); ok {
		t.Fatal("k2 found before MinRefresh elapsed")
	}
	hits := js.hits.Load()
	for range 5 {
		ks.Lookup(ctx, "forged")
	}
	if js.hits.Load() != hits {
		t.Fatal("unknown kids triggered fetches within MinRefresh")
	}
	clock = clock.Add(61 * time.Second)
	if _, ok := ks.Lookup(ctx, "k2"); !ok {
		t.Fatal("k2 not found after refresh")
	}
	// A failing reload keeps the cached keys.
	js.direct = false
	broken := []byte(`{`)
	js.set.Store(&broken)
	clock = clock.Add(2 * time.Hour)
	if _, ok := ks.Lookup(ctx, "k1"); !ok {
		t.Fatal("cached key lost after a failed reload")
	}
}

func TestNewKeySetFailsOnBadSource(t *testing.T) {
	if _, err := NewKeySet(context.Background(), []string{"http://insecure.example/jwks"}, KeySetOptions{}); !errors.Is(err, ErrFetch) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mustSign(f, map[string]any{"alg": ES256, "jwk": map[string]any{"kty": "EC"}}, claimsAt(now), p256Key))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := Parse(raw)
		if err != nil {
			return
		}
		if tok.Header.Alg == "" {
			t.Fatal("parsed a token without alg")
		}
		_, _ = tok.Claims()
		if tok.Verify(p256Key.Public(), "none") == nil || tok.Verify(p256Key.Public(), "HS256") == nil {
			t.Fatal("a symmetric or none algorithm verified")
		}
		_ = tok.Verify(p256Key.Public(), ES256)
	})
}

func FuzzParseJWK(f *testing.F) {
	ecJWK, _ := PublicJWK(p256Key.Public(), ES256)
	b, _ := json.Marshal(ecJWK)
	f.Add(b)
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":""}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if k, err := ParseJWK(in); err == nil && AlgForKey(k.Key) == nil {
			t.Fatalf("accepted unusable key %T", k.Key)
		}
		keys, _, err := ParseJWKSet(in)
		if err == nil {
			for _, k := range keys {
				if AlgForKey(k.Key) == nil {
					t.Fatalf("set accepted unusable key %T", k.Key)
				}
			}
		}
		_, _ = ParsePublicKeyPEM(in)
	})
}
