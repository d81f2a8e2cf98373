package kbs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeTestCert writes a self-signed P-256 certificate for 127.0.0.1.
func writeTestCert(t *testing.T) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kbs"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "kbs.crt"), filepath.Join(dir, "kbs.key")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	pool = x509.NewCertPool()
	c, _ := x509.ParseCertificate(der)
	pool.AddCert(c)
	return certPath, keyPath, pool
}

func TestTLSProfilesFromUpstreamConfigs(t *testing.T) {
	certPath, keyPath, _ := writeTestCert(t)
	tests := []struct {
		file       string
		min, max   uint16
		wantCurves []tls.CurveID
	}{
		{"tls-profile-intermediate.toml", tls.VersionTLS12, 0, nil},
		{"tls-profile-modern.toml", tls.VersionTLS13, 0, nil},
		{"tls-profile-old.toml", tls.VersionTLS10, 0, nil},
		{"tls-profile-custom.toml", tls.VersionTLS13, 0, []tls.CurveID{tls.X25519, tls.CurveP384}},
		{"tls-profile-custom-pqc.toml", tls.VersionTLS13, tls.VersionTLS13, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cfg, _, err := LoadConfig(filepath.Join(upstreamKBS, "test_data/configs", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg.HTTPServer.Certificate, cfg.HTTPServer.PrivateKey = certPath, keyPath
			tc2, err := TLSConfig(cfg.HTTPServer)
			if err != nil {
				t.Fatal(err)
			}
			if tc2.MinVersion != tc.min || tc2.MaxVersion != tc.max {
				t.Errorf("versions = %x..%x, want %x..%x", tc2.MinVersion, tc2.MaxVersion, tc.min, tc.max)
			}
			if tc.wantCurves != nil && len(tc2.CurvePreferences) != len(tc.wantCurves) {
				t.Errorf("curves = %v, want %v", tc2.CurvePreferences, tc.wantCurves)
			}
		})
	}
	if _, err := TLSConfig(HTTPServerConfig{}); err == nil {
		t.Error("HTTPS without key and certificate accepted")
	}
	if _, err := TLSConfig(HTTPServerConfig{Certificate: certPath, PrivateKey: keyPath, TLSProfile: "custom", TLSCiphers: "RC4-MD5"}); err == nil {
		t.Error("unknown cipher accepted")
	}
}

// TestServeHTTPSModernRefusesTLS12 serves a real listener with the modern
// profile: a TLS 1.3 client is served, a TLS 1.2-only client is refused.
func TestServeHTTPSModernRefusesTLS12(t *testing.T) {
	certPath, keyPath, pool := writeTestCert(t)
	cfg, _, err := ParseConfig([]byte(`
[http_server]
sockets = ["127.0.0.1:0"]
tls_profile = "modern"
[admin]
authorization_mode = "DenyAll"
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTPServer.Certificate, cfg.HTTPServer.PrivateKey = certPath, keyPath
	e := newEnv(t, testConfig, nil, nil) // for a store-backed server we only need its pieces
	e.srv.cfg = cfg
	if e.srv.tls, err = serverTLS(cfg.HTTPServer); err != nil { // what New loads from the config
		t.Fatal(err)
	}
	ls, err := e.srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ls) }()
	defer func() { cancel(); <-done }()
	url := "https://" + ls[0].Addr().String() + "/healthz"
	get := func(max uint16) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: max}}, Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(tls.VersionTLS13); err != nil {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	if err := get(tls.VersionTLS12); err == nil {
		t.Fatal("TLS 1.2 client served by the modern profile")
	}
}

// TestNewRefusesMissingTLSMaterialBeforeOpeningAnything: an HTTPS server
// whose certificate cannot be loaded is never built, and nothing it would
// have opened (here the LocalFs repository directory) is created.
func TestNewRefusesMissingTLSMaterialBeforeOpeningAnything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repository")
	cfg, _, err := ParseConfig([]byte(`
[http_server]
sockets = ["127.0.0.1:0"]
private_key = "/nonexistent/key.pem"
certificate = "/nonexistent/cert.pem"
[admin]
authorization_mode = "DenyAll"
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "` + dir + `"
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, Options{})
	if err == nil {
		s.Close()
		t.Fatal("New accepted an HTTPS configuration whose certificate does not exist")
	}
	if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("New opened the storage backend before refusing the TLS material (stat: %v)", statErr)
	}
}
