package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
)

// testEnv is an environment with a fake kernel command line and an empty
// device tree (so detection finds the sample TEE on any machine).
type testEnv struct {
	vars    map[string]string
	cmdline string
	root    string
}

func (e testEnv) LookupEnv(k string) (string, bool) { v, ok := e.vars[k]; return v, ok }
func (e testEnv) CmdlinePath() string               { return e.cmdline }
func (e testEnv) DetectRoot() string                { return e.root }

func newEnv(t *testing.T, cmdline string) testEnv {
	dir := t.TempDir()
	p := filepath.Join(dir, "cmdline")
	os.WriteFile(p, []byte(cmdline), 0o600)
	return testEnv{vars: map[string]string{"AAEL_PATH": filepath.Join(dir, "eventlog")}, cmdline: p, root: filepath.Join(dir, "root")}
}

func TestServeAndShutdown(t *testing.T) {
	dir, _ := os.MkdirTemp("", "aacmd")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "run", "aa.sock")
	initdata := filepath.Join(dir, "initdata.toml")
	os.WriteFile(initdata, []byte("algorithm = \"sha256\"\nversion = \"0.1.0\"\n[data]\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--attestation_sock", "unix://" + sock, "--initdata-toml", initdata}, newEnv(t, "agent.aa_kbc_params=cc_kbc::http://127.0.0.1:1"), io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	r, err := aaproto.NewAttestationAgentServiceClient(c).GetTeeType(context.Background(), &aaproto.GetTeeTypeRequest{})
	c.Close()
	if err != nil || r.Tee != "sample" {
		t.Fatalf("GetTeeType = %v, %v", r, err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "aa.toml")
	os.WriteFile(unreadable, []byte("[log]\nlevel = \"info\"\n"), 0o000)
	badInit := filepath.Join(dir, "initdata.toml")
	os.WriteFile(badInit, []byte("algorithm = \"sha-256\"\nversion = \"0.1.0\"\n[data]\n"), 0o600)
	badCfg := filepath.Join(dir, "bad.toml")
	os.WriteFile(badCfg, []byte("[token_configs.kbs]\nurl = \"http:10.0.0.3:8080\"\n"), 0o600)
	sock := "unix://" + filepath.Join(dir, "aa.sock")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing config", []string{"-c", filepath.Join(dir, "none.toml"), "-a", sock}, "reading config"},
		{"invalid config", []string{"-c", badCfg, "-a", sock}, "not an http(s)://host"},
		{"wrong socket scheme", []string{"--attestation_sock", "tcp://127.0.0.1:50002"}, "is not unix:///"},
		{"bad init-data", []string{"-t", badInit, "-a", sock}, "unknown algorithm"},
		{"bad init-data digest", []string{"--initdata-digest", "!!", "-a", sock}, "--initdata-digest"},
		{"unknown flag", []string{"--bogus"}, "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, tc.args, newEnv(t, ""), io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if os.Getuid() != 0 { // root reads any file
		err := run(context.Background(), []string{"-c", unreadable, "-a", sock}, newEnv(t, ""), io.Discard, nil)
		if err == nil {
			t.Error("unreadable config accepted")
		}
	}
}
