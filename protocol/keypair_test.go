package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/limits"
)

func TestGenerateKeyPair(t *testing.T) {
	tests := []struct {
		alg       KeyAlgorithm
		kty, crv  string
		wantAlg   string
		coordSize int
	}{
		{KeyEC256, KtyEC, CurveP256, AlgECDHESA256KW, 32},
		{KeyEC521, KtyEC, CurveP521, AlgECDHESA256KW, 66},
		{KeyRSA2048, KtyRSA, "", AlgRSAOAEP256, 0},
	}
	for _, tc := range tests {
		t.Run(tc.alg.String(), func(t *testing.T) {
			kp := testKeyPair(t, tc.alg)
			if kp.Algorithm() != tc.alg {
				t.Fatalf("Algorithm() = %v", kp.Algorithm())
			}
			pub := kp.PublicKey()
			if pub.Kty != tc.kty || pub.Crv != tc.crv || pub.Alg != tc.wantAlg {
				t.Fatalf("PublicKey() = %+v", pub)
			}
			cpub, err := PublicKeyFromTeePubKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			if tc.kty == KtyRSA {
				n, _ := decodeB64(pub.N)
				if len(n) != 256 || n[0] == 0 {
					t.Fatalf("n is %d bytes, leading byte %x", len(n), n[0])
				}
				if pub.E != "AQAB" {
					t.Fatalf("e = %q, want AQAB", pub.E)
				}
				if !cpub.(*rsa.PublicKey).Equal(&kp.rsa.PublicKey) {
					t.Fatal("PublicKeyFromTeePubKey does not match the private key")
				}
				if kp.rsa.N.BitLen() != 2048 {
					t.Fatalf("RSA key is %d bits", kp.rsa.N.BitLen())
				}
				return
			}
			for _, c := range []string{pub.X, pub.Y} {
				if b, _ := decodeB64(c); len(b) != tc.coordSize {
					t.Fatalf("coordinate is %d bytes, want %d", len(b), tc.coordSize)
				}
			}
			ecPub, err := cpub.(*ecdsa.PublicKey).ECDH()
			if err != nil {
				t.Fatal(err)
			}
			if !ecPub.Equal(kp.ec.PublicKey()) {
				t.Fatal("PublicKeyFromTeePubKey does not match the private key")
			}
		})
	}
	if _, err := GenerateKeyPair(KeyAlgorithm(99), nil); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("GenerateKeyPair(99) error = %v", err)
	}
}

func TestGenerateKeyPairDeterministicEC(t *testing.T) {
	for _, alg := range []KeyAlgorithm{KeyEC256, KeyEC521} {
		a, err := GenerateKeyPair(alg, detRand(3))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := GenerateKeyPair(alg, detRand(3))
		c, _ := GenerateKeyPair(alg, detRand(4))
		if !a.PublicKey().Equal(b.PublicKey()) {
			t.Fatalf("%v: same seed gave different keys", alg)
		}
		if a.PublicKey().Equal(c.PublicKey()) {
			t.Fatalf("%v: different seeds gave the same key", alg)
		}
	}
	// A reader that fails is reported, not retried forever.
	if _, err := GenerateKeyPair(KeyEC256, bytes.NewReader(nil)); err == nil {
		t.Fatal("GenerateKeyPair with an empty reader succeeded")
	}
	// A reader that only yields invalid scalars (all 0xff >= n) gives up.
	if _, err := GenerateKeyPair(KeyEC256, constReader(0xff)); err == nil {
		t.Fatal("GenerateKeyPair with an all-0xff reader succeeded")
	}
}

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// TestPublicKeyJSON checks the exact tee-pubkey JSON a guest sends.
func TestPublicKeyJSON(t *testing.T) {
	kp, err := GenerateKeyPair(KeyEC256, detRand(1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(kp.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pub := kp.PublicKey()
	want := `{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"` + pub.X + `","y":"` + pub.Y + `"}`
	if string(got) != want {
		t.Fatalf("tee-pubkey = %s, want %s", got, want)
	}
	rkp := testKeyPair(t, KeyRSA2048)
	got, _ = json.Marshal(rkp.PublicKey())
	want = `{"kty":"RSA","alg":"RSA-OAEP-256","n":"` + rkp.PublicKey().N + `","e":"AQAB"}`
	if string(got) != want {
		t.Fatalf("tee-pubkey = %s, want %s", got, want)
	}
}

func TestPEMRoundTrip(t *testing.T) {
	for _, alg := range []KeyAlgorithm{KeyEC256, KeyEC521, KeyRSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			kp := testKeyPair(t, alg)
			p, err := kp.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			wantType := "PRIVATE KEY"
			if alg == KeyRSA2048 {
				wantType = "RSA PRIVATE KEY"
			}
			block, _ := pem.Decode(p)
			if block == nil || block.Type != wantType {
				t.Fatalf("PEM type = %v, want %q", block, wantType)
			}
			back, err := KeyPairFromPEM(p)
			if err != nil {
				t.Fatal(err)
			}
			if back.Algorithm() != alg || !back.PublicKey().Equal(kp.PublicKey()) {
				t.Fatalf("round trip changed the key: %v %+v", back.Algorithm(), back.PublicKey())
			}
			resp, err := Encrypt(kp.PublicKey(), []byte("pem"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := back.Decrypt(resp); err != nil || string(pt) != "pem" {
				t.Fatalf("reloaded key Decrypt = %q, %v", pt, err)
			}
		})
	}
}

// TestKeyPairFromPEMOpenSSLStyle loads keys in the encodings openssl writes
// (genpkey: PKCS#8; genrsa -traditional: PKCS#1; ecparam -genkey: SEC1,
// which upstream does not load either).
func TestKeyPairFromPEMOpenSSLStyle(t *testing.T) {
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return enc("PRIVATE KEY", der)
	}
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	ec521, _ := ecdsa.GenerateKey(elliptic.P521(), crand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(crand.Reader)
	_, ed, _ := ed25519.GenerateKey(crand.Reader)
	rsaKey := testKeyPair(t, KeyRSA2048).rsa
	rsa1024, err := rsa.GenerateKey(crand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec256)
	spki, _ := x509.MarshalPKIXPublicKey(&ec256.PublicKey)

	ok := []struct {
		name string
		pem  []byte
		alg  KeyAlgorithm
	}{
		{"PKCS#8 P-256", pkcs8(ec256), KeyEC256},
		{"PKCS#8 P-521", pkcs8(ec521), KeyEC521},
		{"PKCS#1 RSA", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), KeyRSA2048},
		{"PKCS#8 RSA", pkcs8(rsaKey), KeyRSA2048},
		{"text before the block", append([]byte("# TEE key\n"), pkcs8(ec256)...), KeyEC256},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := KeyPairFromPEM(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			if kp.Algorithm() != tc.alg {
				t.Fatalf("Algorithm() = %v, want %v", kp.Algorithm(), tc.alg)
			}
			resp, err := Encrypt(kp.PublicKey(), []byte("openssl"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := kp.Decrypt(resp); err != nil || string(pt) != "openssl" {
				t.Fatalf("Decrypt = %q, %v", pt, err)
			}
		})
	}
	if kp, _ := KeyPairFromPEM(pkcs8(ec256)); kp != nil {
		want, _ := ec256.PublicKey.ECDH()
		if !kp.ec.PublicKey().Equal(want) {
			t.Fatal("loaded P-256 key is not the one in the file")
		}
	}

	bad := []struct {
		name string
		pem  []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a key")},
		{"SEC1 EC PRIVATE KEY", enc("EC PRIVATE KEY", sec1)},
		{"public key", enc("PUBLIC KEY", spki)},
		{"PKCS#8 P-384", pkcs8(ec384)},
		{"PKCS#8 X25519", pkcs8(x25519)},
		{"PKCS#8 Ed25519", pkcs8(ed)},
		{"PKCS#1 RSA-1024", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024))},
		{"PKCS#8 RSA-1024", pkcs8(rsa1024)},
		{"PKCS#1 truncated", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)[:100])},
		{"PKCS#8 in an RSA PRIVATE KEY block", enc("RSA PRIVATE KEY", pkcs8(ec256))},
		{"encrypted PEM", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}})},
		{"too large", append(pkcs8(ec256), bytes.Repeat([]byte{' '}, limits.MaxConfigBytes)...)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := KeyPairFromPEM(tc.pem); !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("KeyPairFromPEM() error = %v, want ErrUnsupportedKey", err)
			}
		})
	}
}

func TestPublicKeyFromTeePubKey(t *testing.T) {
	p521 := testKeyPair(t, KeyEC521).PublicKey()
	got, err := PublicKeyFromTeePubKey(p521)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := got.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P521() {
		t.Fatalf("PublicKeyFromTeePubKey(P-521) = %T", got)
	}
	// alg is not looked at: the conversion is about the key only.
	p521.Alg = "anything"
	if _, err := PublicKeyFromTeePubKey(p521); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  TeePubKey
		want error
	}{
		{"AKP", TeePubKey{Kty: KtyAKP, Alg: "ML-KEM-768+A192KW", Pub: "AA"}, ErrUnsupportedKey},
		{"P-384", TeePubKey{Kty: KtyEC, Crv: "P-384", X: "AA", Y: "AA"}, ErrUnsupportedKey},
		{"secp256k1", TeePubKey{Kty: KtyEC, Crv: "secp256k1", X: "AA", Y: "AA"}, ErrUnsupportedKey},
		{"P-521 short coordinates", TeePubKey{Kty: KtyEC, Crv: CurveP521, X: p521.X[:86], Y: p521.Y[:86]}, ErrInvalidTeePubKey},
		{"RSA empty", TeePubKey{Kty: KtyRSA}, ErrInvalidTeePubKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := PublicKeyFromTeePubKey(tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestKeyAlgorithmNames(t *testing.T) {
	for _, tc := range []struct {
		alg  KeyAlgorithm
		name string
	}{
		{KeyEC256, "ECDH-ES+A256KW-P256"},
		{KeyEC521, "ECDH-ES+A256KW-P521"},
		{KeyRSA2048, "RSA-OAEP-256"},
	} {
		if tc.alg.String() != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.alg, tc.alg.String(), tc.name)
		}
		got, err := ParseKeyAlgorithm(tc.name)
		if err != nil || got != tc.alg {
			t.Errorf("ParseKeyAlgorithm(%q) = %v, %v", tc.name, got, err)
		}
		var v struct {
			A KeyAlgorithm `json:"a"`
		}
		if err := json.Unmarshal([]byte(`{"a":"`+tc.name+`"}`), &v); err != nil || v.A != tc.alg {
			t.Errorf("json %q = %v, %v", tc.name, v.A, err)
		}
		b, err := json.Marshal(v)
		if err != nil || string(b) != `{"a":"`+tc.name+`"}` {
			t.Errorf("json.Marshal = %s, %v", b, err)
		}
	}
	if KeyEC256 != 0 {
		t.Error("the zero KeyAlgorithm must be the P-256 default")
	}
	for _, s := range []string{"", "ecdh-es+a256kw-p256", "RSA1_5", "ML-KEM-768+A192KW"} {
		if _, err := ParseKeyAlgorithm(s); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("ParseKeyAlgorithm(%q) error = %v", s, err)
		}
	}
	if _, err := KeyAlgorithm(7).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown algorithm succeeded")
	}
	if s := KeyAlgorithm(7).String(); !strings.Contains(s, "7") {
		t.Errorf("String() = %q", s)
	}
}
