package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var fixtures = testvectors.Path("trustee/attestation-service/tests/fixtures/jwk/")

// startAS runs the binary's run() and returns its base URL and a stop
// function that checks the graceful shutdown.
func startAS(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- run(ctx, append([]string{"--socket", "127.0.0.1:0"}, args...), &logs, ready) }()
	select {
	case addr := <-ready:
		return "http://" + addr.String(), func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("no shutdown")
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	return "", nil
}

func TestServeWithLocalFsAndSigner(t *testing.T) {
	dir := t.TempDir()
	abs, _ := filepath.Abs(fixtures)
	cfg := `{
	  "storage_backend": {"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": "` + dir + `"}}},
	  "rvps_config": {"type": "BuiltIn"},
	  "attestation_token_broker": {"duration_min": 5, "signer": {"key_path": "` + abs + `/signing-key.pem", "cert_path": "` + abs + `/cert-chain.pem"}},
	  "unknown_key": true
	}`
	cfgPath := filepath.Join(dir, "as.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	url, stop := startAS(t, "-c", cfgPath, "--allowed_origin", "https://ui.example, bad-origin", "-r", "http://other.example")
	defer stop()

	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	// The published JWKS is the fixture's.
	resp, err = http.Get(url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := os.ReadFile(fixtures + "expected-jwks.json")
	var got, exp any
	json.Unmarshal(body, &got)
	json.Unmarshal(want, &exp)
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("jwks %s", body)
	}

	// Upstream's on-disk layout: policies are files of the LocalFs backend.
	if _, err := os.Stat(filepath.Join(dir, "attestation_service_policy", "default_cpu.rego")); err != nil {
		t.Errorf("default policy not on disk: %v", err)
	}

	// A sample attestation.
	rd := []byte("0123456789abcdef0123456789abcdef0123456789abcdef")
	ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
	req := `{"verification_requests":[{"tee":"sample","evidence":"` + base64.RawURLEncoding.EncodeToString(ev) +
		`","runtime_data":{"raw":"` + base64.RawURLEncoding.EncodeToString(rd) + `"}}],"policy_ids":[]}`
	resp, err = http.Post(url+"/attestation", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(token), ".") != 2 {
		t.Fatalf("attestation: %d %s", resp.StatusCode, token)
	}

	// CORS preflights.
	for _, tc := range []struct {
		origin     string
		wantStatus int
		wantAllow  string
	}{
		{"https://ui.example", 200, "https://ui.example"},
		{"http://other.example", 200, "http://other.example"},
		{"https://evil.example", 400, ""},
		{"bad-origin", 400, ""},
	} {
		r, _ := http.NewRequest(http.MethodOptions, url+"/attestation", nil)
		r.Header.Set("Origin", tc.origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || resp.Header.Get("Access-Control-Allow-Origin") != tc.wantAllow {
			t.Errorf("preflight from %s: %d %q", tc.origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}

func TestServeDefaults(t *testing.T) {
	url, stop := startAS(t)
	defer stop()
	resp, err := http.Post(url+"/challenge", "application/json", strings.NewReader(`{"tee":"sample","tee_params":""}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("challenge: %d", resp.StatusCode)
	}
}

func TestFlagsAndConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"attestation_token_broker": {"duration_min": "five"}}`), 0o600)
	badStore := filepath.Join(dir, "store.json")
	os.WriteFile(badStore, []byte(`{"storage_backend": {"storage_type": "Floppy"}}`), 0o600)
	grpc := filepath.Join(dir, "grpc.json")
	os.WriteFile(grpc, []byte(`{"rvps_config": {"type": "GrpcRemote", "address": "ftp://rvps:50003"}}`), 0o600)
	for name, args := range map[string][]string{
		"no socket":        {},
		"half https":       {"--socket", "127.0.0.1:0", "-t", "cert.pem"},
		"missing config":   {"--socket", "127.0.0.1:0", "-c", filepath.Join(dir, "absent.json")},
		"bad config":       {"--socket", "127.0.0.1:0", "-c", bad},
		"bad storage type": {"--socket", "127.0.0.1:0", "-c", badStore},
		"bad remote rvps":  {"--socket", "127.0.0.1:0", "-c", grpc},
		"bad log level":    {"--socket", "127.0.0.1:0", "--log-level", "loud"},
		"extra argument":   {"--socket", "127.0.0.1:0", "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(context.Background(), args, io.Discard, nil); err == nil {
				t.Fatal("run succeeded")
			}
		})
	}
}
