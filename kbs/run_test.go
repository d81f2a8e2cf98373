package kbs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testwait"
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

// upstreamTLS is what upstream's http.rs configures for a file (OpenSSL
// acceptor mozilla_intermediate_v5, then the profile, then the tls_* keys),
// in tls.Config terms.
type upstreamTLS struct {
	min, max uint16
	suites   []uint16 // TLS 1.2
	groups   []tls.CurveID
}

var intermediate12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// pqcGroups is upstream's default with an ML-KEM capable OpenSSL.
var pqcGroups = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

func checkTLS(t *testing.T, got *tls.Config, want upstreamTLS) {
	t.Helper()
	if got.MinVersion != want.min || got.MaxVersion != want.max {
		t.Errorf("versions = %s..%s, want %s..%s", tls.VersionName(got.MinVersion), tls.VersionName(got.MaxVersion),
			tls.VersionName(want.min), tls.VersionName(want.max))
	}
	if !slices.Equal(got.CipherSuites, want.suites) {
		t.Errorf("TLS 1.2 suites = %v, want %v", suiteNames(got.CipherSuites), suiteNames(want.suites))
	}
	if !slices.Equal(got.CurvePreferences, want.groups) {
		t.Errorf("groups = %v, want %v", got.CurvePreferences, want.groups)
	}
}

func suiteNames(ids []uint16) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tls.CipherSuiteName(id))
	}
	return out
}

// TestTLSProfilesFromUpstreamConfigs loads every upstream
// kbs/test_data/configs/tls-profile-*.toml (testdata/upstream-configs) and
// compares the tls.Config with what upstream's OpenSSL acceptor gets.
func TestTLSProfilesFromUpstreamConfigs(t *testing.T) {
	certPath, keyPath, _ := writeTestCert(t)
	files, _ := filepath.Glob(filepath.Join(upstreamConfigDir, "trustee/kbs/test_data/configs/tls-profile-*.toml"))
	tests := map[string]struct {
		want    upstreamTLS
		refused string
	}{
		"tls-profile-intermediate.toml": {want: upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, intermediate12, pqcGroups}},
		// Upstream's old is mozilla_intermediate_v5 with min TLS 1.2.
		"tls-profile-old.toml":    {want: upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, intermediate12, pqcGroups}},
		"tls-profile-modern.toml": {want: upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12, pqcGroups}},
		// min 1.3: the TLS 1.2 list is left alone; the TLS 1.3 list names
		// all three suites, which is what Go offers.
		"tls-profile-custom-pqc.toml": {want: upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12,
			[]tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}}},
		// Upstream offers TLS 1.3 with AES-256-GCM and ChaCha20 only; Go
		// cannot leave AES-128-GCM out, so the file is refused.
		"tls-profile-custom.toml": {refused: "http_server.tls_ciphers leaves out TLS 1.3 suite(s) TLS_AES_128_GCM_SHA256"},
	}
	if len(files) != len(tests) {
		t.Fatalf("upstream tls-profile files %v, want the %d of the table", files, len(tests))
	}
	for _, f := range files {
		tc, ok := tests[filepath.Base(f)]
		if !ok {
			t.Fatalf("no expectation for %s", f)
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, _, err := LoadConfig(f)
			if tc.refused != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("LoadConfig = %v, want refusal %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg.HTTPServer.Certificate, cfg.HTTPServer.PrivateKey = certPath, keyPath
			got, err := TLSConfig(cfg.HTTPServer)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Certificates) != 1 {
				t.Fatalf("certificates = %d", len(got.Certificates))
			}
			checkTLS(t, got, tc.want)
		})
	}
	if _, err := TLSConfig(HTTPServerConfig{}); err == nil {
		t.Error("HTTPS without key and certificate accepted")
	}
}

// TestTLSSettingsOverrideAnyProfile: the tls_* keys apply on top of every
// profile, as upstream's tls_config applies them whenever they are set.
func TestTLSSettingsOverrideAnyProfile(t *testing.T) {
	all13 := "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
	tests := []struct {
		name string
		c    HTTPServerConfig
		want upstreamTLS
	}{
		{"default is intermediate", HTTPServerConfig{},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, intermediate12, pqcGroups}},
		{"modern, min 1.2 overrides the profile", HTTPServerConfig{TLSProfile: "modern", TLSMinVersion: "1.2"},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, intermediate12, pqcGroups}},
		{"intermediate, max 1.2", HTTPServerConfig{TLSProfile: "intermediate", TLSMaxVersion: "1.2"},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS12, intermediate12, pqcGroups}},
		{"old, min 1.3", HTTPServerConfig{TLSProfile: "old", TLSMinVersion: "1.3"},
			upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12, pqcGroups}},
		{"old, ciphers replace the TLS 1.2 list", HTTPServerConfig{TLSProfile: "old",
			TLSCiphers: "ECDHE-RSA-AES256-GCM-SHA384:" + all13 + ":TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, pqcGroups}},
		{"intermediate, max 1.2: TLS 1.3 names not needed", HTTPServerConfig{TLSMaxVersion: "1.2", TLSCiphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-CHACHA20-POLY1305"},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, pqcGroups}},
		{"modern: ciphers leave the TLS 1.2 list alone", HTTPServerConfig{TLSProfile: "modern", TLSCiphers: all13},
			upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12, pqcGroups}},
		{"modern with groups", HTTPServerConfig{TLSProfile: "modern", TLSGroups: "secp384r1:P-521"},
			upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12, []tls.CurveID{tls.CurveP384, tls.CurveP521}}},
		{"intermediate with PQC groups, OpenSSL case", HTTPServerConfig{TLSProfile: "intermediate", TLSGroups: "SecP256r1MLKEM768:x25519:prime256v1"},
			upstreamTLS{tls.VersionTLS12, tls.VersionTLS13, intermediate12, []tls.CurveID{tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256}}},
		{"profile case is lenient", HTTPServerConfig{TLSProfile: "Modern"},
			upstreamTLS{tls.VersionTLS13, tls.VersionTLS13, intermediate12, pqcGroups}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TLSSettings(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			checkTLS(t, got, tc.want)
		})
	}
}

func TestTLSSettingsRefusals(t *testing.T) {
	all13 := "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
	tests := []struct {
		name string
		c    HTTPServerConfig
		want string
	}{
		{"unknown profile", HTTPServerConfig{TLSProfile: "paranoid"}, "tls_profile"},
		{"TLS 1.1", HTTPServerConfig{TLSMinVersion: "1.1"}, "tls_min_version"},
		{"TLSv1.3 spelling", HTTPServerConfig{TLSMaxVersion: "TLSv1.3"}, "tls_max_version"},
		{"min above max", HTTPServerConfig{TLSMinVersion: "1.3", TLSMaxVersion: "1.2"}, "no TLS version left"},
		{"modern with max 1.2", HTTPServerConfig{TLSProfile: "modern", TLSMaxVersion: "1.2"}, "no TLS version left"},
		{"unknown cipher", HTTPServerConfig{TLSCiphers: "RC4-MD5:" + all13}, "unknown cipher suite"},
		{"OpenSSL keyword", HTTPServerConfig{TLSCiphers: "HIGH:!aNULL"}, "unknown cipher suite"},
		{"insecure cipher", HTTPServerConfig{TLSCiphers: "AES128-GCM-SHA256:" + all13}, "insecure"},
		{"insecure IANA name", HTTPServerConfig{TLSCiphers: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"}, "insecure"},
		{"DHE", HTTPServerConfig{TLSCiphers: "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" + all13}, "finite-field DHE"},
		{"no TLS 1.2 suite with TLS 1.2 on", HTTPServerConfig{TLSProfile: "custom", TLSCiphers: all13}, "no TLS 1.2 cipher suite"},
		{"no TLS 1.3 suite with TLS 1.3 on", HTTPServerConfig{TLSCiphers: "ECDHE-RSA-AES128-GCM-SHA256"}, "no TLS 1.3 cipher suite"},
		{"some TLS 1.3 suites", HTTPServerConfig{TLSMinVersion: "1.3", TLSCiphers: "TLS_AES_256_GCM_SHA384"}, "cannot disable TLS 1.3 suites"},
		{"unknown group", HTTPServerConfig{TLSGroups: "X448:X25519"}, "tls_groups"},
		{"ffdhe group", HTTPServerConfig{TLSGroups: "ffdhe2048"}, "tls_groups"},
		{"empty group list", HTTPServerConfig{TLSGroups: ":"}, "names no group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSSettings(tc.c)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("message is not one line: %q", err)
			}
		})
	}
	// Refused when parsing, before any file is read.
	if _, _, err := ParseConfig([]byte("[http_server]\ntls_profile = \"custom\"\ntls_ciphers = \"TLS_AES_256_GCM_SHA384\"\n")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ParseConfig = %v", err)
	}
	// With insecure_http, the lists are not used, and not checked, as
	// upstream; profile and versions still are.
	if _, _, err := ParseConfig([]byte("[http_server]\ninsecure_http = true\ntls_ciphers = \"RC4-MD5\"\n")); err != nil {
		t.Fatalf("insecure_http with unused ciphers: %v", err)
	}
	if _, _, err := ParseConfig([]byte("[http_server]\ninsecure_http = true\ntls_profile = \"paranoid\"\n")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("insecure_http with an unknown profile: %v", err)
	}
	if _, _, err := ParseConfig([]byte("[http_server]\ninsecure_http = true\ntls_min_version = \"1.3\"\ntls_max_version = \"1.2\"\n")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("insecure_http with min above max: %v", err)
	}
	if _, _, err := ParseConfig([]byte("[http_server]\ninsecure_http = true\ntls_profile = \"modern\"\ntls_max_version = \"1.2\"\n")); err != nil {
		t.Fatalf("insecure_http with unused, contradictory profile and max (upstream accepts): %v", err)
	}
}

// tlsServer serves the KBS over HTTPS on 127.0.0.1 with the [http_server]
// settings of extra, and returns its address and CA pool.
func tlsServer(t *testing.T, extra string) (string, *x509.CertPool) {
	t.Helper()
	certPath, keyPath, pool := writeTestCert(t)
	cfg, _, err := ParseConfig([]byte(fmt.Sprintf("[http_server]\nsockets = [\"127.0.0.1:0\"]\nprivate_key = %q\ncertificate = %q\n%s\n[admin]\nauthorization_mode = \"DenyAll\"\n",
		keyPath, certPath, extra)))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig, nil, nil)
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
	t.Cleanup(func() { cancel(); <-done })
	return ls[0].Addr().String(), pool
}

// handshake dials addr with client settings mod and completes a TLS
// handshake.
func handshake(addr string, pool *x509.CertPool, mod func(*tls.Config)) (tls.ConnectionState, error) {
	c := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	mod(c)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: c}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// TestServeHTTPSHonoursTLSSettings serves real listeners and handshakes
// with clients limited to what each setting allows or refuses.
func TestServeHTTPSHonoursTLSSettings(t *testing.T) {
	type probe struct {
		name   string
		client func(*tls.Config)
		ok     bool
	}
	only := func(v uint16) func(*tls.Config) { return func(c *tls.Config) { c.MinVersion, c.MaxVersion = v, v } }
	tests := []struct {
		name   string
		extra  string
		probes []probe
	}{
		{"old floor is TLS 1.2", `tls_profile = "old"`, []probe{
			{"TLS 1.0", only(tls.VersionTLS10), false},
			{"TLS 1.1", only(tls.VersionTLS11), false},
			{"TLS 1.2", only(tls.VersionTLS12), true},
			{"TLS 1.3", only(tls.VersionTLS13), true},
		}},
		{"intermediate", `tls_profile = "intermediate"`, []probe{
			{"TLS 1.1", only(tls.VersionTLS11), false},
			{"TLS 1.2", only(tls.VersionTLS12), true},
			{"TLS 1.2 with a CBC suite only", func(c *tls.Config) {
				only(tls.VersionTLS12)(c)
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
			}, false},
		}},
		{"modern max version override", "tls_profile = \"modern\"\ntls_min_version = \"1.2\"\ntls_max_version = \"1.2\"", []probe{
			{"TLS 1.3", only(tls.VersionTLS13), false},
			{"TLS 1.2", only(tls.VersionTLS12), true},
		}},
		{"intermediate min version override", `tls_min_version = "1.3"`, []probe{
			{"TLS 1.2", only(tls.VersionTLS12), false},
			{"TLS 1.3", only(tls.VersionTLS13), true},
		}},
		{"ciphers on the intermediate profile", "tls_max_version = \"1.2\"\ntls_ciphers = \"ECDHE-ECDSA-AES256-GCM-SHA384\"", []probe{
			{"AES-128-GCM", func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
			}, false},
			{"AES-256-GCM", func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
			}, true},
		}},
		{"groups on the modern profile", "tls_profile = \"modern\"\ntls_groups = \"secp384r1\"", []probe{
			{"X25519 only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} }, false},
			{"P-384", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP384} }, true},
		}},
		{"default groups have no P-521", ``, []probe{
			{"P-521 only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP521} }, false},
			{"X25519MLKEM768", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768} }, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, pool := tlsServer(t, tc.extra)
			for _, p := range tc.probes {
				_, err := handshake(addr, pool, p.client)
				if p.ok && err != nil {
					t.Errorf("%s: refused: %v", p.name, err)
				}
				if !p.ok && err == nil {
					t.Errorf("%s: served, want refused", p.name)
				}
			}
		})
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

// TestServeLogsUnusedHTTPSettings: worker_count (no thread pool to size)
// and, with insecure_http, the TLS settings are accepted but not used, and
// Serve says so.
func TestServeLogsUnusedHTTPSettings(t *testing.T) {
	e := newEnv(t, strings.Replace(testConfig, "insecure_http = true", "insecure_http = true\nworker_count = 4\ntls_profile = \"modern\"\nsockets = [\"127.0.0.1:0\"]", 1), nil, nil)
	ls, err := e.srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ls) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), `"serving"`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	for _, want := range []string{"http_server.worker_count has no effect", "tls_* settings of [http_server] are not used"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestServeLogsHTTPErrorsAsRecords: net/http's own error lines (here a TLS
// handshake with a client that speaks no TLS) are records of the KBS's
// JSON logger, not plain text on stderr.
func TestServeLogsHTTPErrorsAsRecords(t *testing.T) {
	certPath, keyPath, _ := writeTestCert(t)
	cfg, _, err := ParseConfig([]byte(fmt.Sprintf("[http_server]\nsockets = [\"127.0.0.1:0\"]\nprivate_key = %q\ncertificate = %q\n[admin]\nauthorization_mode = \"DenyAll\"\n",
		keyPath, certPath)))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig, nil, nil)
	e.srv.cfg = cfg
	if e.srv.tls, err = serverTLS(cfg.HTTPServer); err != nil {
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
	conn, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	io.Copy(io.Discard, conn)
	conn.Close()
	testwait.Until(t, "the handshake error logged", func() bool {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(line, "TLS handshake error") {
				var rec map[string]any
				return json.Unmarshal([]byte(line), &rec) == nil && rec["component"] == "http-server" && rec["level"] == "WARN"
			}
		}
		return false
	})
}

// TestServeConnectionCap: with max_connections = 3, three idle
// connections fill the cap; a fourth is closed at once (not left waiting),
// counted and logged; once one idle connection goes, /healthz is served.
func TestServeConnectionCap(t *testing.T) {
	cfg, _, err := ParseConfig([]byte("[http_server]\nsockets = [\"127.0.0.1:0\"]\ninsecure_http = true\nmax_connections = 3\n[admin]\nauthorization_mode = \"DenyAll\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig, nil, nil)
	e.srv.cfg = cfg
	e.srv.tls = nil
	ls, err := e.srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ls) }()
	defer func() { cancel(); <-done }()
	addr := ls[0].Addr().String()
	healthz := func() error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The fourth: the server closes it without a byte.
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := extra.Read(make([]byte, 1))
	extra.Close()
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over the cap: read %d, %v (want it closed at once)", n, err)
	}
	testwait.Until(t, "the refusal logged", func() bool {
		return strings.Contains(e.logs.String(), "connection cap reached") && strings.Contains(e.logs.String(), `"max_connections":3`)
	})
	idle[0].Close()
	testwait.Until(t, "/healthz served after a connection closed", func() bool { return healthz() == nil })
}
