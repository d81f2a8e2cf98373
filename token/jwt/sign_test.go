package jwt

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// The header is signed byte for byte as given: member order is kept.
func TestSignerKeepsHeaderBytes(t *testing.T) {
	hdr := `{"typ":"JWT","alg":"ES256","jwk":{"alg":"ES256","kty":"EC"}}`
	s, err := NewSigner(p256Key, []byte(hdr), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Alg() != ES256 {
		t.Fatalf("alg %q", s.Alg())
	}
	raw, err := s.Sign([]byte(`{"b":1,"a":2}`))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	if h, _ := base64.RawURLEncoding.DecodeString(parts[0]); string(h) != hdr {
		t.Errorf("header %s", h)
	}
	if p, _ := base64.RawURLEncoding.DecodeString(parts[1]); string(p) != `{"b":1,"a":2}` {
		t.Errorf("payload %s", p)
	}
	tok, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify(p256Key.Public(), ES256); err != nil {
		t.Fatal(err)
	}
}

func TestNewSignerRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		hdr  string
		want error
	}{
		"no alg":         {`{"typ":"JWT"}`, ErrMalformed},
		"not an object":  {`[]`, ErrMalformed},
		"duplicate":      {`{"alg":"ES256","alg":"ES256"}`, ErrMalformed},
		"crit":           {`{"alg":"ES256","crit":["x"]}`, ErrMalformed},
		"none":           {`{"alg":"none"}`, ErrUnsupportedAlg},
		"HMAC":           {`{"alg":"HS256"}`, ErrUnsupportedAlg},
		"alg not of key": {`{"alg":"ES384"}`, ErrAlgMismatch},
		"EdDSA with EC":  {`{"alg":"EdDSA"}`, ErrAlgMismatch},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewSigner(p256Key, []byte(tc.hdr), nil); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := NewSigner(nil, []byte(`{"alg":"ES256"}`), nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("nil key: err = %v", err)
	}
}

// The admin token of upstream's kbs-client and coco_keyprovider, to the
// byte: {"typ":"JWT","alg":"EdDSA"} and {"exp":now+ttl,"iat":now}.
func TestSignAdminToken(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	tok, err := SignAdminToken(edKey, at, AdminTokenLifetime)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if string(h) != `{"typ":"JWT","alg":"EdDSA"}` || string(c) != `{"exp":1700007200,"iat":1700000000}` {
		t.Fatalf("header %s claims %s", h, c)
	}
	p, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(edKey.Public(), EdDSA); err != nil {
		t.Fatal(err)
	}
	// Other key types sign with their first algorithm.
	ec, err := SignAdminToken(p384Key, at, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := Parse(ec); err != nil || p.Header.Alg != ES384 || p.Verify(p384Key.Public(), ES384) != nil {
		t.Fatalf("ES384 admin token: %v", err)
	}
	if _, err := SignAdminToken(edKey, at, 0); err == nil {
		t.Error("zero lifetime accepted")
	}
	if _, err := SignAdminToken(nil, at, time.Minute); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("nil key: %v", err)
	}
}

func TestParseAdminKeyPEM(t *testing.T) {
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	k, err := ParseAdminKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil || !k.Equal(edKey) {
		t.Fatalf("Ed25519 PKCS#8: %v", err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(p256Key)
	sec1, _ := x509.MarshalECPrivateKey(p256Key)
	for name, b := range map[string][]byte{
		"EC PKCS#8":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"EC SEC1":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"not PEM":     []byte("nope"),
		"bad PKCS#8":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2}}),
		"public only": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
	} {
		if _, err := ParseAdminKeyPEM(b); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
