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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/go-trustee/go-trustee/kbs/extplugin"
	"github.com/go-trustee/go-trustee/kbs/extplugin/pluginproto"
	"github.com/go-trustee/go-trustee/kbs/extplugin/sampleplugin"
	"github.com/go-trustee/go-trustee/protocol"
)

// startPlugin serves srv on a loopback port (with creds when non-nil).
func startPlugin(t *testing.T, srv pluginproto.KbsPluginServer, creds credentials.TransportCredentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	g := grpc.NewServer(opts...)
	pluginproto.RegisterKbsPluginServer(g, srv)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func externalConfig(backends string) string {
	return testConfig + "\n[[plugins]]\nname = \"resource\"\n\n[[plugins]]\nname = \"external\"\nbackends = [" + backends + "]\n"
}

const externalPolicy = "package policy\ndefault allow = false\nallow if { data.plugin == \"resource\" }\nallow if { data.plugin == \"external\" }\n"

// hanging never answers Handle.
type hanging struct{ sampleplugin.Plugin }

func (h *hanging) Handle(ctx context.Context, _ *pluginproto.PluginRequest) (*pluginproto.PluginResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestExternalPlugin drives upstream's external plugin flow through the
// KBS: admin-gated POST stored by the plugin, attestation-gated GET sealed
// to the TEE key (or plain when the plugin says so), over plaintext and
// TLS; a plugin that is down or hangs gives a clear 401 within its
// deadline while the KBS keeps serving; per-backend metrics.
func TestExternalPlugin(t *testing.T) {
	store := startPlugin(t, sampleplugin.New(sampleplugin.Options{StoreData: true, EncryptGet: true}), nil)
	plain := startPlugin(t, sampleplugin.New(sampleplugin.Options{StoreData: true}), nil)
	hang := startPlugin(t, &hanging{*sampleplugin.New(sampleplugin.Options{})}, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()

	// A TLS backend with its own CA.
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plugin ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	cert := tls.Certificate{Certificate: [][]byte{caDER}, PrivateKey: caKey}
	secure := startPlugin(t, sampleplugin.New(sampleplugin.Options{StoreData: true, EncryptGet: true}),
		credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))

	e := newEnv(t, externalConfig(fmt.Sprintf(`
  { name = "store", endpoint = "http://%s", timeout_ms = 5000 },
  { name = "plain", endpoint = "http://%s" },
  { name = "hang", endpoint = "http://%s", timeout_ms = 300 },
  { name = "down", endpoint = "http://%s", timeout_ms = 2000 },
  { name = "secure", endpoint = "https://%s", ca_cert_path = %q, tls_mode = "tls" },
`, store, plain, hang, down, secure, caFile)), nil, nil)
	e.provision("default/test/secret", "resource secret", externalPolicy)
	const secret = "plugin-held s3cret"
	for _, b := range []string{"store", "plain", "secure"} {
		e.admin("POST", "/kbs/v0/external/"+b+"/team/key?x=1", []byte(secret))
	}

	g := e.guest(protocol.KeyEC256)
	// Before attestation: the GET is attestation-gated.
	if code, b := g.do("GET", "/kbs/v0/external/store/team/key", nil, nil); code != 401 || !strings.Contains(string(b), "TokenNotFound") {
		t.Fatalf("GET without a token: %d %s", code, b)
	}
	g.rcar()
	for _, b := range []string{"store", "secure"} {
		code, body := g.do("GET", "/kbs/v0/external/"+b+"/team/key", nil, nil)
		if code != 200 || strings.Contains(string(body), secret) {
			t.Fatalf("GET %s: %d %s", b, code, body)
		}
		if got := string(g.decrypt(body)); got != secret {
			t.Fatalf("GET %s = %q", b, got)
		}
	}
	if code, body := g.do("GET", "/kbs/v0/external/plain/team/key", nil, nil); code != 200 || string(body) != secret {
		t.Fatalf("GET plain: %d %q", code, body)
	}
	// A POST by the guest is admin-gated: this KBS is InsecureAllowAll, so
	// it goes through; the admin refusal path is the resource plugin's.
	// Unknown backend: 404 before any call.
	if code, body := g.do("GET", "/kbs/v0/external/nobody/x", nil, nil); code != 404 || !strings.Contains(string(body), "not registered") {
		t.Fatalf("unknown backend: %d %s", code, body)
	}
	// A non-2xx plugin answer is a plugin error (401), as upstream.
	if code, body := g.do("GET", "/kbs/v0/external/store/absent", nil, nil); code != 401 || !strings.Contains(string(body), "returned HTTP status 404") {
		t.Fatalf("plugin 404: %d %s", code, body)
	}
	for _, tc := range []struct {
		backend string
		within  time.Duration
	}{{"hang", 5 * time.Second}, {"down", 5 * time.Second}} {
		start := time.Now()
		code, body := g.do("GET", "/kbs/v0/external/"+tc.backend+"/x", nil, nil)
		if code != 401 || !strings.Contains(string(body), "PluginInternalError") || time.Since(start) > tc.within {
			t.Fatalf("%s: %d %s after %v", tc.backend, code, body, time.Since(start))
		}
		t.Logf("%s: %v: %s", tc.backend, time.Since(start).Round(time.Millisecond), body)
		// The KBS keeps serving everything else.
		if code, body := g.do("GET", "/kbs/v0/resource/default/test/secret", nil, nil); code != 200 || string(g.decrypt(body)) != "resource secret" {
			t.Fatalf("resource after %s: %d", tc.backend, code)
		}
	}

	resp, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kbs_plugin_requests_total{plugin_name="store"}`, `kbs_plugin_errors_total{plugin_name="hang"}`,
		`kbs_plugin_request_duration_seconds_count{plugin_name="secure"}`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Error("a plugin-held secret reached the log")
	}
}

// TestExternalPluginConfig: upstream's validation rules, refused at start.
func TestExternalPluginConfig(t *testing.T) {
	for _, tc := range []struct{ backends, want string }{
		{``, "no backends"},
		{`{ name = "a", endpoint = "http://127.0.0.1:1" }, { name = "a", endpoint = "http://127.0.0.1:2" }`, "Duplicate backend name 'a'"},
		{`{ name = "a", endpoint = "https://127.0.0.1:1" }`, "requires `ca_cert_path`"},
		{`{ name = "a", endpoint = "grpc://127.0.0.1:1" }`, "must start with `http://` or `https://`"},
		{`{ name = "a", endpoint = "http://127.0.0.1:1", tls_mode = "tls" }`, "tls_mode"},
		{`{ name = "a/b", endpoint = "http://127.0.0.1:1" }`, "one non-empty path segment"},
		{`{ name = "a", endpoint = "https://127.0.0.1:1", ca_cert_path = "/nonexistent/ca.pem" }`, "Read CA certificate"},
	} {
		cfg, _, err := ParseConfig([]byte(externalConfig(tc.backends)))
		if err == nil {
			_, err = New(context.Background(), cfg, Options{})
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("backends [%s]: %v, want %q", tc.backends, err, tc.want)
		}
	}
}

// FuzzCheckResponse: any plugin reply either passes within the bound or
// is a plugin error.
func FuzzCheckResponse(f *testing.F) {
	f.Add([]byte("ok"), int32(0))
	f.Add([]byte("nope"), int32(404))
	f.Add([]byte{0xff, 0xfe}, int32(500))
	f.Fuzz(func(t *testing.T, body []byte, code int32) {
		out, err := extplugin.CheckResponse("p", &pluginproto.PluginResponse{Body: body, StatusCode: code})
		ok := code == 0 || (code >= 200 && code <= 299)
		if ok != (err == nil) {
			t.Fatalf("code %d: err %v", code, err)
		}
		if err == nil && string(out) != string(body) {
			t.Fatal("body changed")
		}
		if err != nil && len(err.Error()) > 256*3+200 { // quoted body: 256 bytes, each at most one U+FFFD
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
}
