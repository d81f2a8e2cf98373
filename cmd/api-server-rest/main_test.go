package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var offline = testvectors.Path("guest-components/image-rs/test_data/offline-fs-kbc/")

func TestServesResources(t *testing.T) {
	dir, err := os.MkdirTemp("", "asrcmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := "unix://" + filepath.Join(dir, "cdh.sock")
	cfg := &cdh.Config{Socket: sock, AASocket: aa.DefaultSocket, LogLevel: "info", KBC: cdh.KBCConfig{Name: cdh.KBCOfflineFS}}
	hub, err := cdh.New(context.Background(), cfg, cdh.Options{OfflineFiles: []string{offline + "aa-offline_fs_kbc-keys.json"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := cdh.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := cdh.NewServer()
	cdh.NewService(hub, 0, nil).Register(srv)
	go srv.Serve(context.Background(), l)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--bind", "127.0.0.1:0", "--cdh_addr", sock}, &bytes.Buffer{}, ready)
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	resp, err := http.Get("http://" + addr.String() + "/cdh/resource/default/key/key_id1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 32 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET resource: %d %q", resp.StatusCode, b)
	}
	resp, err = http.Get("http://" + addr.String() + "/aa/token?token_type=kbs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || string(b) != "Attestation Feature Not Enabled" {
		t.Fatalf("GET token with features resource: %d %q", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"non-loopback bind", []string{"--bind", "0.0.0.0:8006"}, "loopback"},
		{"unknown features", []string{"--bind", "127.0.0.1:0", "--features", "everything"}, "unknown features"},
		{"cdh address without unix://", []string{"--bind", "127.0.0.1:0", "-c", "/run/cdh.sock"}, "unix://"},
		{"aa address without unix://", []string{"--bind", "127.0.0.1:0", "-f", "all", "-a", "127.0.0.1:50002"}, "unix://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, &bytes.Buffer{}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run: %v, want %q", err, tt.want)
			}
		})
	}
}
