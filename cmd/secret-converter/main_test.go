package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/localfs"
)

// mountSecret lays a Secret out as the kubelet does: the files live in a
// timestamped directory, ..data links to it and each key links through
// ..data.
func mountSecret(t *testing.T, root, name string, data map[string]string) {
	t.Helper()
	dir := filepath.Join(root, name)
	ts := filepath.Join(dir, "..2026_12_07_05_00_00.000000001")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestConvert(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mountSecret(t, src, "llm", map[string]string{"decryption-key": "k1", "iv": "k2"})
	mountSecret(t, src, "attestation-status", map[string]string{"status": "success"})
	var logs bytes.Buffer
	if err := run(context.Background(), []string{"--source", src, "--storage", dst}, &logs); err != nil {
		t.Fatal(err)
	}
	// Upstream's on-disk layout, read back through the store the KBS uses.
	for file, want := range map[string]string{
		`default\x2Fllm\x2Fdecryption-key`:        "k1",
		`default\x2Fllm\x2Fiv`:                    "k2",
		`default\x2Fattestation-status\x2Fstatus`: "success",
	} {
		b, err := os.ReadFile(filepath.Join(dst, "repository", file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", file, b, err, want)
		}
	}
	st, err := localfs.Open(localfs.Config{DirPath: dst}, localfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := st.List(context.Background(), storage.NamespaceRepository)
	if len(keys) != 3 {
		t.Errorf("keys = %v", keys)
	}
	if strings.Contains(logs.String(), "k1") || strings.Contains(logs.String(), "success") {
		t.Error("a secret value reached the log")
	}
}

func TestConvertRefusesUnservableNames(t *testing.T) {
	src := t.TempDir()
	mountSecret(t, src, "s", map[string]string{"bad key!": "v"})
	_, err := convert(context.Background(), src, t.TempDir(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "cannot be a KBS resource") {
		t.Fatalf("err = %v", err)
	}
}

func TestConvertNoSecrets(t *testing.T) {
	n, err := convert(context.Background(), filepath.Join(t.TempDir(), "absent"), t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil || n != 0 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
}
