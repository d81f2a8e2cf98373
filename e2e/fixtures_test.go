package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// workDir lays out, under dir/work, the files upstream's kbs/test/Makefile
// generates for kbs/test/config/kbs.toml: HTTPS key and certificate, token
// CA, P-256 token signer with its chain, Ed25519 admin key and token.
type workDir struct {
	Root           string // dir (the KBS's working directory)
	HTTPSCert      string
	HTTPSKey       string
	CACert         string // token root CA
	TokenKey       string
	TokenCertChain string
	AdminPub       string
	AdminToken     string // file with the admin JWT
	adminKey       ed25519.PrivateKey
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

type certKey struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

func newCert(t *testing.T, tmpl *x509.Certificate, parent *certKey) *certKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	pc, pk := tmpl, crypto.Signer(key)
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, key.Public(), pk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{cert: c, der: der, key: key}
}

func newWorkDir(t *testing.T) *workDir {
	t.Helper()
	root := t.TempDir()
	w := filepath.Join(root, "work")
	if err := os.MkdirAll(filepath.Join(w, "storage"), 0o700); err != nil {
		t.Fatal(err)
	}
	wd := &workDir{Root: root,
		HTTPSCert: filepath.Join(w, "https.crt"), HTTPSKey: filepath.Join(w, "https.key"),
		CACert: filepath.Join(w, "ca-cert.pem"), TokenKey: filepath.Join(w, "token.key"),
		TokenCertChain: filepath.Join(w, "token-cert-chain.pem"),
		AdminPub:       filepath.Join(w, "kbs.pem"), AdminToken: filepath.Join(w, "admin-token"),
	}
	// HTTPS: self-signed for 127.0.0.1 and localhost.
	https := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "kbs"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}, nil)
	writePEM(t, wd.HTTPSCert, "CERTIFICATE", https.der)
	hk, _ := x509.MarshalPKCS8PrivateKey(https.key)
	writePEM(t, wd.HTTPSKey, "PRIVATE KEY", hk)

	// Token PKI: root CA -> intermediate -> P-256 signer.
	ca := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "go-trustee e2e token root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil)
	inter := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "go-trustee e2e token intermediate"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, ca)
	leaf := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "go-trustee e2e token signer"},
		KeyUsage: x509.KeyUsageDigitalSignature}, inter)
	writePEM(t, wd.CACert, "CERTIFICATE", ca.der)
	lk, _ := x509.MarshalPKCS8PrivateKey(leaf.key)
	writePEM(t, wd.TokenKey, "PRIVATE KEY", lk)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.der})...)
	if err := os.WriteFile(wd.TokenCertChain, chain, 0o600); err != nil {
		t.Fatal(err)
	}

	// Admin: Ed25519 key; token as upstream's setup.sh mints it.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wd.adminKey = priv
	pk, _ := x509.MarshalPKIXPublicKey(pub)
	writePEM(t, wd.AdminPub, "PUBLIC KEY", pk)
	tok := wd.adminJWT(t, map[string]any{"iss": "issuer", "aud": []string{"kbs"}, "sub": "admin", "role": "admin"}, time.Hour)
	if err := os.WriteFile(wd.AdminToken, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return wd
}

// adminJWT signs claims (plus iat and exp = now+ttl) with the admin key.
func (wd *workDir) adminJWT(t *testing.T, claims map[string]any, ttl time.Duration) string {
	t.Helper()
	return signEdDSA(t, wd.adminKey, claims, ttl)
}

func signEdDSA(t *testing.T, key ed25519.PrivateKey, claims map[string]any, ttl time.Duration) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	all := map[string]any{"iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	s, err := jwt.Signed(sig).Claims(all).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
