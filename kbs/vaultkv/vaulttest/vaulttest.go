// Package vaulttest runs a real HashiCorp Vault dev server for tests: the
// binary named by $VAULT_BIN (built and cached by scripts/vault-peer.sh),
// listening on a free loopback port, with a random root token. Without
// VAULT_BIN a test is skipped, or fails when CI is set (no suite may be
// skipped in CI). Vault is BUSL-1.1 licensed: it is a test peer only,
// never vendored or shipped; only tests import this package.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvBin names the variable holding the vault binary's path.
const EnvBin = "VAULT_BIN"

// Bin returns the vault binary, skipping the test without one (failing in
// CI).
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI; run: export %s=$(scripts/vault-peer.sh)", EnvBin, EnvBin)
		}
		t.Skipf("%s is not set; run: export %s=$(scripts/vault-peer.sh)", EnvBin, EnvBin)
	}
	return bin
}

// Server is a running dev server. It is stopped when the test ends.
type Server struct {
	// Addr is http://127.0.0.1:<port>, or https:// with TLS.
	Addr string
	// Token is the root token.
	Token string
	// CAFile is the PEM CA that signed the server's certificate (TLS only).
	CAFile string

	t   testing.TB
	hc  *http.Client
	log string
}

// Options selects how the server runs.
type Options struct {
	// TLS runs the server with -dev-tls (a CA and a certificate for
	// 127.0.0.1 written to a temporary folder).
	TLS bool
}

// Start starts a dev server and waits until it is unsealed and active.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Bin(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin, opts)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting the Vault dev server: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, opts Options) (*Server, error) {
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s := &Server{Token: "root-" + hex.EncodeToString(tok), t: t, log: filepath.Join(dir, "vault.log")}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"server", "-dev", "-dev-root-token-id=" + s.Token, "-dev-listen-address=" + listen, "-dev-no-store-token"}
	scheme := "http"
	if opts.TLS {
		certs := filepath.Join(dir, "certs")
		if err := os.Mkdir(certs, 0o700); err != nil {
			return nil, err
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certs)
		s.CAFile = filepath.Join(certs, "vault-ca.pem")
		scheme = "https"
	}
	s.Addr = scheme + "://" + listen
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	// No VAULT_* variable of the caller reaches the server, and the dev
	// server's files stay in the test's folder.
	env := []string{"HOME=" + dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(90 * time.Second)
	for ready := false; !ready; {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("vault exited (%v): %s", err, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("vault not ready within 90 s: %s", s.logTail())
		}
		if s.hc == nil {
			if !opts.TLS {
				s.hc = &http.Client{Timeout: 10 * time.Second}
			} else if hc, err := tlsClient(s.CAFile); err == nil {
				s.hc = hc // the CA is written once the server runs
			}
		}
		if s.hc != nil {
			code, _, err := s.do(http.MethodGet, "sys/health", nil, "")
			ready = err == nil && code == http.StatusOK
		}
		if !ready {
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Cleanup(stop)
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tlsClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (s *Server) do(method, path string, body any, token string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.Addr+"/v1/"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// Do sends a request with the root token to /v1/<path> (body marshalled
// as JSON when not nil) and returns the status and the body.
func (s *Server) Do(method, path string, body any) (int, []byte) {
	s.t.Helper()
	code, b, err := s.do(method, path, body, s.Token)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, b
}

// Must is Do that fails the test on a status other than 200 or 204.
func (s *Server) Must(method, path string, body any) []byte {
	s.t.Helper()
	code, b := s.Do(method, path, body)
	if code != http.StatusOK && code != http.StatusNoContent {
		s.t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
	return b
}

// EnableKV mounts a KV secrets engine of version 1 or 2 at mount.
func (s *Server) EnableKV(mount string, version int) {
	s.t.Helper()
	s.Must(http.MethodPost, "sys/mounts/"+mount, map[string]any{
		"type": "kv", "options": map[string]string{"version": fmt.Sprint(version)},
	})
	if version == 2 {
		// A new KV v2 mount upgrades itself in the background and answers
		// 400/404 ("Upgrading from non-versioned to versioned data") until
		// it is done.
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, _ := s.Do(http.MethodGet, mount+"/config", nil)
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("KV v2 mount %s not ready: %d", mount, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Seal seals the server: every later request is answered 503.
func (s *Server) Seal() {
	s.t.Helper()
	s.Must(http.MethodPut, "sys/seal", nil)
}
