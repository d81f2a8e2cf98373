package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/token/jwt"
)

var vectors = testvectors.Path("trustee/kbs/test_data/jwk/")

// now lies inside the validity of the upstream scenario certificates
// (2026-04-15 .. 2036-04-12) and of the test CA below.
var now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return now }

func TestJWKScenarios(t *testing.T) {
	// Upstream kbs/src/crypto/jwt.rs test_verify_jwk_endorsement_scenarios.
	cases := []struct {
		n    string
		name string
		ok   bool
	}{
		{"01", "x5c leaf ok, self-signed root", true},
		{"02", "x5c leaf pubkey mismatch jwk", false},
		{"03", "no x5c", false},
		{"04", "wrong trust anchor", false},
		{"05", "x5c leaf, intermediate, trusted root", true},
		{"06", "x5c intermediates permuted, trust pem shuffled", true},
		{"07", "x5c intermediates include part of trust pem", true},
	}
	for _, tc := range cases {
		t.Run(tc.n+" "+tc.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{vectors + "scenario" + tc.n + "-trust.pem"}}, Options{Now: fixedNow})
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			b, err := os.ReadFile(vectors + "scenario" + tc.n + "-jwk.json")
			if err != nil {
				t.Fatal(err)
			}
			key, err := v.TrustHeaderJWK(b)
			if tc.ok {
				if err != nil {
					t.Fatalf("TrustHeaderJWK: %v", err)
				}
				if _, isRSA := key.(*rsa.PublicKey); !isRSA {
					t.Fatalf("key is %T, want RSA", key)
				}
				return
			}
			if !errors.Is(err, ErrUntrustedKey) {
				t.Fatalf("err = %v, want ErrUntrustedKey", err)
			}
		})
	}
}

func TestJWKScenarioCertificateTime(t *testing.T) {
	b, err := os.ReadFile(vectors + "scenario01-jwk.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2037, 1, 1, 0, 0, 0, 0, time.UTC)} {
		v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{vectors + "scenario01-trust.pem"}}, Options{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.TrustHeaderJWK(b); !errors.Is(err, ErrUntrustedKey) {
			t.Errorf("at %s: err = %v, want ErrUntrustedKey (certificate not valid)", at, err)
		}
	}
}

// testCA is a root → intermediate → P-256 leaf chain, like the token
// signer chain of the e2e setup.
type testCA struct {
	root, inter, leaf          *x509.Certificate
	rootKey, interKey, leafKey *ecdsa.PrivateKey
}

func newCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestCA(t testing.TB, name string) *testCA {
	ca := &testCA{rootKey: genKey(t), interKey: genKey(t), leafKey: genKey(t)}
	tmpl := func(serial int64, cn string, isCA bool) *x509.Certificate {
		c := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{Organization: []string{"go-trustee test"}, CommonName: name + "-" + cn},
			NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
			BasicConstraintsValid: true, IsCA: isCA,
		}
		if isCA {
			c.KeyUsage = x509.KeyUsageCertSign
		} else {
			c.KeyUsage = x509.KeyUsageDigitalSignature
		}
		return c
	}
	rt := tmpl(1, "root", true)
	ca.root = newCert(t, rt, rt, ca.rootKey.Public(), ca.rootKey)
	ca.inter = newCert(t, tmpl(2, "intermediate", true), ca.root, ca.interKey.Public(), ca.rootKey)
	ca.leaf = newCert(t, tmpl(3, "token-signer", false), ca.inter, ca.leafKey.Public(), ca.interKey)
	return ca
}

func writePEM(t testing.TB, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	p := filepath.Join(t.TempDir(), "trust.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func headerJWK(t testing.TB, key crypto.PublicKey, alg string, chain ...*x509.Certificate) map[string]any {
	t.Helper()
	j, err := jwt.PublicJWK(key, alg)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) > 0 {
		var x5c []string
		for _, c := range chain {
			x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
		}
		j["x5c"] = x5c
	}
	return j
}

var teeKey = map[string]any{"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
	"x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0", "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}

// earClaims is the shape of an EAR token of the Attestation Service.
func earClaims(iat time.Time) map[string]any {
	return map[string]any{
		"eat_profile":     "tag:github.com,2024:confidential-containers/Trustee",
		"iat":             iat.Unix(),
		"exp":             iat.Add(5 * time.Minute).Unix(),
		"iss":             "CoCo-Attestation-Service",
		"ear.verifier-id": map[string]any{"developer": "https://confidentialcontainers.org", "build": "attestation-service 0.1.0"},
		"submods": map[string]any{"cpu0": map[string]any{
			"ear.status":              "affirming",
			"ear.appraisal-policy-id": "default",
			"ear.veraison.annotated-evidence": map[string]any{
				"snp":                 map[string]any{"measurement": "abcd", "reported_tcb_snp": 24},
				"runtime_data_claims": map[string]any{"nonce": "n", "tee-pubkey": teeKey},
			},
		}},
	}
}

func sign(t testing.TB, hdr map[string]any, claims any, key crypto.Signer) string {
	t.Helper()
	s, err := jwt.Sign(hdr, claims, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyEARWithX5C(t *testing.T) {
	ca := newTestCA(t, "as")
	other := newTestCA(t, "evil")
	trust := writePEM(t, ca.root)
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{trust}}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	good := headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf, ca.inter)
	hdr := func(j map[string]any) map[string]any { return map[string]any{"alg": "ES256", "typ": "JWT", "jwk": j} }
	claims := earClaims(now)
	expired := earClaims(now.Add(-10 * time.Minute))
	noExp := earClaims(now)
	delete(noExp, "exp")
	valid := sign(t, hdr(good), claims, ca.leafKey)
	parts := strings.Split(valid, ".")
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","jwk":`+mustJSON(t, good)+`}`)) + "." + parts[1] + "."
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(mustJSON(t, earClaims(now.Add(time.Hour))))) + "." + parts[2]
	noAlg := headerJWK(t, ca.leafKey.Public(), "", ca.leaf, ca.inter)
	delete(noAlg, "alg")

	cases := []struct {
		name      string
		raw       string
		untrusted bool // also ErrUntrustedKey
		ok        bool
	}{
		{name: "valid chain leaf+intermediate", raw: valid, ok: true},
		{name: "chain in reverse order", raw: sign(t, hdr(headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf, ca.root, ca.inter)), claims, ca.leafKey), ok: true},
		{name: "expired", raw: sign(t, hdr(good), expired, ca.leafKey)},
		{name: "no exp", raw: sign(t, hdr(good), noExp, ca.leafKey)},
		{name: "alg none", raw: noneTok},
		{name: "tampered claims", raw: tampered},
		{name: "forged: signed by another key with the trusted jwk", raw: sign(t, hdr(good), claims, other.leafKey)},
		{name: "header alg differs from jwk alg", raw: sign(t, map[string]any{"alg": "ES384", "jwk": good}, claims, genKey384(t)), untrusted: false},
		{name: "jwk without alg", raw: sign(t, hdr(noAlg), claims, ca.leafKey), untrusted: true},
		{name: "chain to another root", raw: sign(t, hdr(headerJWK(t, other.leafKey.Public(), "ES256", other.leaf, other.inter)), claims, other.leafKey), untrusted: true},
		{name: "missing intermediate", raw: sign(t, hdr(headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf)), claims, ca.leafKey), untrusted: true},
		{name: "no x5c", raw: sign(t, hdr(headerJWK(t, ca.leafKey.Public(), "ES256")), claims, ca.leafKey), untrusted: true},
		{name: "jwk is not the x5c leaf", raw: sign(t, hdr(headerJWK(t, other.leafKey.Public(), "ES256", ca.leaf, ca.inter)), claims, other.leafKey), untrusted: true},
		{name: "intermediate as leaf", raw: sign(t, hdr(headerJWK(t, ca.interKey.Public(), "ES256", ca.inter)), claims, ca.interKey), ok: true},
		{name: "neither jwk nor kid", raw: sign(t, map[string]any{"alg": "ES256"}, claims, ca.leafKey), untrusted: true},
		{name: "garbage", raw: "not a token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tc.raw)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got["iss"] != "CoCo-Attestation-Service" {
					t.Fatalf("claims = %v", got)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
			if tc.untrusted && !errors.Is(err, ErrUntrustedKey) {
				t.Fatalf("err = %v, want ErrUntrustedKey too", err)
			}
		})
	}
}

func genKey384(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyChainTime(t *testing.T) {
	ca := newTestCA(t, "as")
	trust := writePEM(t, ca.root)
	at := now.Add(400 * 24 * time.Hour) // after the certificates expire
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{trust}}, Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf, ca.inter)}, earClaims(at), ca.leafKey)
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("err = %v, want ErrUntrustedKey for an expired chain", err)
	}
}

func TestEndorsementCacheHonoursChainValidity(t *testing.T) {
	ca := newTestCA(t, "as")
	clock := now
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{writePEM(t, ca.root)}}, Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf, ca.inter))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.TrustHeaderJWK(j); err != nil {
		t.Fatal(err)
	}
	if _, err := v.TrustHeaderJWK(j); err != nil {
		t.Fatalf("cached endorsement: %v", err)
	}
	clock = ca.leaf.NotAfter.Add(time.Second)
	if _, err := v.TrustHeaderJWK(j); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("cached endorsement outlived its certificate: %v", err)
	}
	clock = ca.leaf.NotBefore.Add(-time.Second)
	if _, err := v.TrustHeaderJWK(j); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("cached endorsement used before its certificate: %v", err)
	}
}

func TestTrustFileIntermediates(t *testing.T) {
	ca := newTestCA(t, "as")
	raw := sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, ca.leafKey.Public(), "ES256", ca.leaf)}, earClaims(now), ca.leafKey)
	cases := []struct {
		name  string
		trust []*x509.Certificate
		ok    bool
	}{
		{"intermediate and root in the trust file", []*x509.Certificate{ca.inter, ca.root}, true},
		// As upstream's OpenSSL store without X509_V_FLAG_PARTIAL_CHAIN.
		{"intermediate alone is not an anchor", []*x509.Certificate{ca.inter}, false},
		{"root alone, intermediate missing", []*x509.Certificate{ca.root}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{writePEM(t, tc.trust...)}}, Options{Now: fixedNow})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), raw)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestInsecureHeaderJWK(t *testing.T) {
	k := genKey(t)
	raw := sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, k.Public(), "ES256")}, earClaims(now), k)
	v, err := NewVerifier(context.Background(), Config{InsecureHeaderJWK: true}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	// The signature is still checked.
	parts := strings.Split(raw, ".")
	bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if _, err := v.Verify(context.Background(), bad); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("bad signature accepted in insecure mode: %v", err)
	}
	// Without the flag and without certificates the header key is refused.
	v2, err := NewVerifier(context.Background(), Config{}, Options{Now: fixedNow, TrustedKeys: []crypto.PublicKey{genKey(t).Public()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Verify(context.Background(), raw); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("unendorsed header jwk accepted: %v", err)
	}
}

func TestTrustedKeysFallback(t *testing.T) {
	// The built-in AS signs with a key the KBS trusts directly; its header
	// jwk has no x5c.
	as := genKey(t)
	v, err := NewVerifier(context.Background(), Config{}, Options{Now: fixedNow, TrustedKeys: []crypto.PublicKey{as.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, as.Public(), "ES256")}, earClaims(now), as)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	evil := genKey(t)
	forged := sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, evil.Public(), "ES256")}, earClaims(now), evil)
	if _, err := v.Verify(context.Background(), forged); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("forged accepted: %v", err)
	}
	rsaTok := sign(t, map[string]any{"alg": "RS256"}, earClaims(now), rsaTestKey(t))
	if _, err := v.Verify(context.Background(), rsaTok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("RS256 token accepted by an EC trusted key: %v", err)
	}
}

func rsaTestKey(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksServer serves a JWK set at /jwks, or only through OpenID discovery
// under /oidc.
func jwksServer(t *testing.T, keys ...map[string]any) *httptest.Server {
	set := mustJSON(t, map[string]any{"keys": keys})
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, set) })
	mux.HandleFunc("/oidc/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srv.URL+"/oidc", srv.URL+"/jwks")
	})
	srv = httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestVerifyKid(t *testing.T) {
	ec := genKey(t)
	rk := rsaTestKey(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	j1 := headerJWK(t, ec.Public(), "ES256")
	j1["kid"] = "ec-1"
	j2 := headerJWK(t, rk.Public(), "PS256")
	j2["kid"] = "rsa-1"
	j3 := headerJWK(t, ed.Public(), "EdDSA")
	j3["kid"] = "ed-1"
	srv := jwksServer(t, j1, j2, j3, map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"})

	dir := t.TempDir()
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, []byte(mustJSON(t, map[string]any{"keys": []any{j1}})), 0o600); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{
		"https JWKS":           srv.URL + "/jwks",
		"https OIDC discovery": srv.URL + "/oidc",
		"file URL":             "file://" + file,
		"local path":           file,
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), Config{TrustedJWKSets: []string{src}}, Options{Now: fixedNow, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			raw := sign(t, map[string]any{"alg": "ES256", "kid": "ec-1"}, earClaims(now), ec)
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}

	v, err := NewVerifier(context.Background(), Config{TrustedJWKSets: []string{srv.URL + "/jwks"}}, Options{Now: fixedNow, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		raw  string
		ok   bool
	}{
		{"PS256 key", sign(t, map[string]any{"alg": "PS256", "kid": "rsa-1"}, earClaims(now), rk), true},
		{"EdDSA key", sign(t, map[string]any{"alg": "EdDSA", "kid": "ed-1"}, earClaims(now), ed), true},
		{"RS256 with a PS256 key", sign(t, map[string]any{"alg": "RS256", "kid": "rsa-1"}, earClaims(now), rk), false},
		{"unknown kid", sign(t, map[string]any{"alg": "ES256", "kid": "nope"}, earClaims(now), ec), false},
		{"kid of the HMAC key", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhtYWMifQ.e30.AAAA", false},
		{"wrong key for kid", sign(t, map[string]any{"alg": "ES256", "kid": "ec-1"}, earClaims(now), genKey(t)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.raw)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v does not match ErrInvalidToken", err)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	ca := newTestCA(t, "as")
	trust := writePEM(t, ca.root)
	dir := t.TempDir()
	noCerts := filepath.Join(dir, "empty.pem")
	os.WriteFile(noCerts, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o600)
	badCert := filepath.Join(dir, "bad.pem")
	os.WriteFile(badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), 0o600)
	jwks := filepath.Join(dir, "jwks.json")
	j := headerJWK(t, ca.leafKey.Public(), "ES256")
	j["kid"] = "k"
	os.WriteFile(jwks, []byte(mustJSON(t, map[string]any{"keys": []any{j}})), 0o600)
	yes := true

	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"certs", Config{TrustedCertsPaths: []string{trust}}, true},
		{"jwks", Config{TrustedJWKSets: []string{jwks}}, true},
		{"insecure only", Config{InsecureHeaderJWK: true}, true},
		{"nothing", Config{}, false},
		{"legacy insecure_key is ignored", Config{InsecureKey: &yes}, false},
		{"missing cert file", Config{TrustedCertsPaths: []string{filepath.Join(dir, "nope.pem")}}, false},
		{"pem without certificates", Config{TrustedCertsPaths: []string{noCerts}}, false},
		{"bad certificate", Config{TrustedCertsPaths: []string{badCert}}, false},
		{"http JWKS refused", Config{TrustedJWKSets: []string{"http://127.0.0.1:1/jwks"}}, false},
		{"missing JWKS", Config{TrustedJWKSets: []string{filepath.Join(dir, "nope.json")}}, false},
		{"extra path not a pointer", Config{InsecureHeaderJWK: true, ExtraTeeKeyPaths: []string{"tee-pubkey"}}, false},
		{"legacy type Jwk reads trusted_certs_paths as JWKS", Config{AttestationTokenType: "Jwk", TrustedCertsPaths: []string{jwks}}, true},
		{"legacy type CoCo", Config{AttestationTokenType: "CoCo", TrustedCertsPaths: []string{trust}}, true},
		{"unknown type", Config{AttestationTokenType: "Simple", TrustedCertsPaths: []string{trust}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(context.Background(), tc.cfg, Options{Now: fixedNow})
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v does not match ErrInvalidConfig", err)
			}
		})
	}
}

func TestLegacyJwkTypeVerifies(t *testing.T) {
	k := genKey(t)
	j := headerJWK(t, k.Public(), "ES256")
	j["kid"] = "legacy"
	p := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(p, []byte(mustJSON(t, map[string]any{"keys": []any{j}})), 0o600)
	v, err := NewVerifier(context.Background(), Config{AttestationTokenType: "Jwk", TrustedCertsPaths: []string{p}}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, map[string]any{"alg": "ES256", "kid": "legacy"}, earClaims(now), k)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDecodesTOML(t *testing.T) {
	// [attestation_token] of kbs/test/config/kbs.toml, plus legacy keys.
	in := `{"trusted_certs_paths":["./work/ca-cert.pem"],"insecure_key":true,"attestation_token_type":"CoCo","extra_teekey_paths":["/x"]}`
	var c Config
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedCertsPaths) != 1 || c.InsecureKey == nil || !*c.InsecureKey || c.InsecureHeaderJWK || c.AttestationTokenType != "CoCo" {
		t.Fatalf("decoded %+v", c)
	}
}

func TestTeePubKey(t *testing.T) {
	v, err := NewVerifier(context.Background(), Config{InsecureHeaderJWK: true, ExtraTeeKeyPaths: []string{"/custom/key", "/a~1b/k~0ey"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := map[string]any{"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"}
	var want protocol.TeePubKey
	if err := json.Unmarshal([]byte(mustJSON(t, teeKey)), &want); err != nil {
		t.Fatal(err)
	}
	var wantRSA protocol.TeePubKey
	json.Unmarshal([]byte(mustJSON(t, rsaKey)), &wantRSA)
	cases := []struct {
		name   string
		claims map[string]any
		want   protocol.TeePubKey
		err    error
	}{
		{"EAR", earClaims(now), want, nil},
		{"ITA", map[string]any{"tdx": map[string]any{"attester_runtime_data": map[string]any{"tee-pubkey": rsaKey}}}, wantRSA, nil},
		{"ITA vTPM", map[string]any{"tdx": map[string]any{"attester_user_data": map[string]any{"tee-pubkey": rsaKey}}}, wantRSA, nil},
		{"old CoCo token", map[string]any{"customized_claims": map[string]any{"runtime_data": map[string]any{"tee-pubkey": teeKey}}}, want, nil},
		{"top-level", map[string]any{"tee-pubkey": teeKey}, want, nil},
		{"extra path first", merge(earClaims(now), map[string]any{"custom": map[string]any{"key": rsaKey}}), wantRSA, nil},
		{"escaped pointer", map[string]any{"a/b": map[string]any{"k~ey": rsaKey}}, wantRSA, nil},
		{"ITA before EAR", merge(earClaims(now), map[string]any{"tdx": map[string]any{"attester_runtime_data": map[string]any{"tee-pubkey": rsaKey}}}), wantRSA, nil},
		{"invalid at first location stops the search", merge(earClaims(now), map[string]any{"tee-pubkey": "nope", "custom": map[string]any{"key": map[string]any{"kty": "OKP"}}}), protocol.TeePubKey{}, ErrInvalidTeePubKey},
		{"null value", map[string]any{"tee-pubkey": nil}, protocol.TeePubKey{}, ErrInvalidTeePubKey},
		{"absent", map[string]any{"submods": map[string]any{}}, protocol.TeePubKey{}, ErrNoTeePubKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.TeePubKey(tc.claims)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && !got.Equal(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTeePubKeyFromVerifiedClaims(t *testing.T) {
	// Claims come back from Verify with json.Number; extraction must work
	// on them as decoded, and an array index pointer must resolve.
	k := genKey(t)
	v, err := NewVerifier(context.Background(), Config{InsecureHeaderJWK: true, ExtraTeeKeyPaths: []string{"/keys/1"}}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	c := earClaims(now)
	c["keys"] = []any{1, teeKey}
	claims, err := v.Verify(context.Background(), sign(t, map[string]any{"alg": "ES256", "jwk": headerJWK(t, k.Public(), "ES256")}, c, k))
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.TeePubKey(claims)
	if err != nil || got.Kty != "EC" || got.Crv != "P-256" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func TestPointer(t *testing.T) {
	doc := map[string]any{"a": []any{"x", map[string]any{"": "empty"}}, "m~n": 1, "c/d": 2}
	cases := []struct {
		p    string
		want any
		ok   bool
	}{
		{"/a/0", "x", true},
		{"/a/1/", "empty", true},
		{"/m~0n", 1, true},
		{"/c~1d", 2, true},
		{"/a/01", nil, false},
		{"/a/+1", nil, false},
		{"/a/2", nil, false},
		{"/a/-1", nil, false},
		{"a", nil, false},
		{"/missing", nil, false},
	}
	for _, tc := range cases {
		got, ok := pointer(doc, tc.p)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%q: got %v, %v", tc.p, got, ok)
		}
	}
}

func FuzzVerify(f *testing.F) {
	ca := newTestCA(f, "fuzz")
	trust := writePEM(f, ca.root)
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{trust}}, Options{Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sign(f, map[string]any{"alg": "ES256", "jwk": headerJWK(f, ca.leafKey.Public(), "ES256", ca.leaf, ca.inter)}, earClaims(now), ca.leafKey))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not match ErrInvalidToken", err)
			}
			return
		}
		if claims == nil {
			t.Fatal("nil claims without error")
		}
		_, _ = v.TeePubKey(claims)
	})
}

func FuzzTrustHeaderJWK(f *testing.F) {
	for _, n := range []string{"01", "02", "03", "05", "07"} {
		b, err := os.ReadFile(vectors + "scenario" + n + "-jwk.json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{vectors + "scenario07-trust.pem"}}, Options{Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := v.TrustHeaderJWK(b); err != nil && !errors.Is(err, ErrUntrustedKey) {
			t.Fatalf("error %v does not match ErrUntrustedKey", err)
		}
	})
}

func BenchmarkVerifyToken(b *testing.B) {
	ca := newTestCA(b, "bench")
	trust := writePEM(b, ca.root)
	v, err := NewVerifier(context.Background(), Config{TrustedCertsPaths: []string{trust}}, Options{Now: fixedNow})
	if err != nil {
		b.Fatal(err)
	}
	raw := sign(b, map[string]any{"alg": "ES256", "typ": "JWT", "jwk": headerJWK(b, ca.leafKey.Public(), "ES256", ca.leaf, ca.inter, ca.root)}, earClaims(now), ca.leafKey)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}
