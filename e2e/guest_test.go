package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var kataData = testvectors.Path("kata")

// guestPolicy admits the sample TEE for every resource but those of type
// "denied". Test only: the sample TEE proves nothing.
const guestPolicy = `package policy
import rego.v1
default allow := false
allow if {
	data.plugin == "resource"
	data["resource-path"][1] != "denied"
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
`

// startDaemon starts a binary that announces nothing and waits until
// ready() holds.
func startDaemon(t *testing.T, dir string, ready func() bool, path string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &lockedWriter{p: p}
	cmd.Stderr = &lockedWriter{p: p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", filepath.Base(path), p.Logs())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", filepath.Base(path), p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", filepath.Base(path), p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.logs.Write(b)
}

func socketReady(path string) func() bool {
	return func() bool {
		c, err := net.Dial("unix", path)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

func tcpReady(addr string) func() bool {
	return func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// TestGuestComponents runs the guest side as kata-agent does — our kbs,
// attestation-agent (sample TEE), confidential-data-hub and api-server-rest
// as real processes over real unix sockets — and reads a secret the way a
// workload does: GET http://127.0.0.1:8006/cdh/resource/... It also unseals
// the real kata sealed secret through the data hub, and shows a denied
// resource failing at once with the server's reason in the guest log.
func TestGuestComponents(t *testing.T) {
	if !tcpFree("127.0.0.1:8006") {
		t.Fatal("127.0.0.1:8006 is in use; the workload-facing port of api-server-rest must be free")
	}
	dir := socketDir(t, "gt-")
	kata, err := filepath.Abs(kataData)
	if err != nil {
		t.Fatal(err)
	}
	kbsURL := startDevKBS(t, dir)

	write := fileWriter(t, dir)
	admin := func(args ...string) {
		mustRun(t, dir, bin.kbsClient, append([]string{"--url", kbsURL, "config"}, args...)...)
	}
	admin("set-resource", "--path", "default/llm/decryption-key", "--resource-file", write("llm", []byte("the key of my fine-tuned model")))
	admin("set-resource", "--path", "default/denied/secret", "--resource-file", write("denied", []byte("never released")))
	admin("set-resource", "--path", "default/signing-key/sealed-secret", "--resource-file", filepath.Join(kata, "sealed-secret-signing-key.pub.jwk"))
	admin("set-resource", "--path", "default/sealed-secret/test", "--resource-file", write("sealed-value", []byte("unsealed kata secret")))
	admin("set-resource-policy", "--policy-file", write("policy.rego", []byte(guestPolicy)))

	g := startGuestStack(t, dir, kbsURL, "")
	aaSock, cdhSock, cdhProc := g.aaSock, g.cdhSock, g.cdh
	startDaemon(t, dir, tcpReady("127.0.0.1:8006"), bin.apiServerRest,
		"--bind", "127.0.0.1:8006", "--features", "all", "--cdh_addr", "unix://"+cdhSock, "--aa_addr", "unix://"+aaSock)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:8006" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := 0; i < 3; i++ {
		code, body := get("/cdh/resource/default/llm/decryption-key")
		if code != 200 || body != "the key of my fine-tuned model" {
			t.Fatalf("workload GET #%d: %d %q", i, code, body)
		}
	}

	// The sealed secret of the kata test suite: signature checked with the
	// key the KBS releases, then the vault secret fetched from the KBS.
	c, err := cdh.NewClient("unix://" + cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sealed := bytes.TrimSpace(readFile(t, filepath.Join(kata, "sealed-secret.txt")))
	got, err := c.UnsealSecret(ctx, sealed)
	if err != nil || string(got) != "unsealed kata secret" {
		t.Fatalf("UnsealSecret: %q %v", got, err)
	}
	tampered := append([]byte{}, sealed...)
	tampered[len(tampered)-5] ^= 1
	if _, err := c.UnsealSecret(ctx, tampered); err == nil {
		t.Fatal("a sealed secret with a tampered signature was unsealed")
	}

	// A denied resource fails fast, and the guest log says why.
	start := time.Now()
	code, body := get("/cdh/resource/default/denied/secret")
	if code == 200 || strings.Contains(body, "never released") {
		t.Fatalf("denied resource released: %d %q", code, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("denied read took %v: the hub re-attested instead of stopping on PolicyDeny", d)
	}
	// The hub's stderr reaches us through a pipe copier: give the record a
	// moment to arrive.
	hasReason := func(l string) bool {
		return strings.Contains(l, "PolicyDeny") || strings.Contains(l, "denied by policy")
	}
	for deadline := time.Now().Add(10 * time.Second); !hasReason(cdhProc.Logs()) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if logs := cdhProc.Logs(); !hasReason(logs) {
		t.Fatalf("the data hub's log does not carry the deny reason:\n%s", logs)
	}
}

func tcpFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}
