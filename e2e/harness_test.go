package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bin holds the paths of the binaries built once by TestMain.
var bin struct {
	kbs, kbsClient, restfulAS                            string
	attestationAgent, confidentialDataHub, apiServerRest string
	cocoKeyprovider, imageEncrypt                        string
	grpcAS, rvps, rvpsTool                               string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "go-trustee-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			dst *string
			pkg string
		}{{&bin.kbs, "kbs"}, {&bin.kbsClient, "kbs-client"}, {&bin.restfulAS, "restful-as"},
			{&bin.attestationAgent, "attestation-agent"}, {&bin.confidentialDataHub, "confidential-data-hub"}, {&bin.apiServerRest, "api-server-rest"},
			{&bin.cocoKeyprovider, "coco-keyprovider"}, {&bin.imageEncrypt, "image-encrypt"},
			{&bin.grpcAS, "grpc-as"}, {&bin.rvps, "rvps"}, {&bin.rvpsTool, "rvps-tool"}} {
			*b.dst = filepath.Join(dir, b.pkg)
			args := []string{"build", "-o", *b.dst}
			if buildTags != "" {
				args = append(args, "-tags", buildTags)
			}
			cmd := exec.Command("go", append(args, "github.com/go-trustee/go-trustee/cmd/"+b.pkg)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// proc is a running binary whose stderr is captured.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	addr chan string
	done chan struct{}
}

func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startProc starts a binary in dir and waits until it logs the address it
// serves on (the "serving" record of our JSON logs).
func startProc(t *testing.T, dir, path string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KBS_LOG_LEVEL=debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, addr: make(chan string, 4), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" && rec.Address != "" {
				select {
				case p.addr <- rec.Address:
				default:
				}
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", filepath.Base(path), p.Logs())
		}
	})
	select {
	case a := <-p.addr:
		return p, a
	case <-p.done:
		t.Fatalf("%s exited before serving:\n%s", filepath.Base(path), p.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start serving in time:\n%s", filepath.Base(path), p.Logs())
	}
	return nil, ""
}

func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// run runs a command to completion and returns stdout; stderr is attached
// to the error.
func run(t *testing.T, dir, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstderr: %s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustRun(t *testing.T, dir, path string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, path, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
