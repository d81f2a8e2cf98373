package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var offline = testvectors.Path("guest-components/image-rs/test_data/offline-fs-kbc/")

func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cdhcmd") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestServesOverTTRPC(t *testing.T) {
	dir := tempDir(t)
	t.Setenv("OFFLINE_FS_KBC_EXTRA_FILE_PATH", offline+"aa-offline_fs_kbc-keys.json")
	sock := "unix://" + filepath.Join(dir, "cdh.sock")
	cfg := filepath.Join(dir, "cdh.toml")
	os.WriteFile(cfg, []byte("socket = \""+sock+"\"\n[kbc]\nname = \"offline_fs_kbc\"\nurl = \"null\"\n"), 0o600)
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("console=ttyS0\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- run(ctx, []string{"-c", cfg, "-kernel-cmdline", cmdline}, &logs, ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	c, err := cdh.NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := c.GetResource(context.Background(), "kbs:///default/key/key_id1")
	if err != nil || len(b) != 32 {
		t.Fatalf("GetResource = %d bytes, %v", len(b), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestBadStart(t *testing.T) {
	dir := tempDir(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	cmdline := write("cmdline", "")
	sock := filepath.Join(dir, "cdh.sock")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing config", []string{"-c", filepath.Join(dir, "nope.toml")}, "nope.toml"},
		{"config is a directory", []string{"-c", dir}, "invalid"},
		{"no [kbc]", []string{"-c", write("a.toml", "socket = \"unix://"+sock+"\"\n")}, "[kbc]"},
		{"socket without unix://", []string{"-c", write("b.toml", "socket = \""+sock+"\"\n[kbc]\nname = \"offline_fs_kbc\"\n")}, "unix://"},
		{"relative socket", []string{"-c", write("c.toml", "socket = \"unix://cdh.sock\"\n[kbc]\nname = \"offline_fs_kbc\"\n")}, "absolute"},
		{"credential path escape", []string{"-c", write("d.toml", "socket = \"unix://"+sock+"\"\n[kbc]\nname = \"offline_fs_kbc\"\n[[credentials]]\npath = \"/run/confidential-containers/cdh/kbs/../../x\"\nresource_uri = \"kbs:///a/b/c\"\n")}, "credential path"},
		{"bad reply shape", []string{"-keyprovider-reply", "java"}, "java"},
		{"stray argument", []string{"extra"}, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-kernel-cmdline", cmdline}, tt.args...)
			err := run(context.Background(), args, &bytes.Buffer{}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run: %v, want an error mentioning %q", err, tt.want)
			}
			if _, err := os.Stat(sock); err == nil {
				t.Fatal("a socket was created")
			}
		})
	}
}
