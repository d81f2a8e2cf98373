package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		limit   int64
		want    string
		wantErr error
	}{
		{"under", file, 10, "12345", nil},
		{"exact", file, 5, "12345", nil},
		{"over", file, 4, "", ErrTooLarge},
		{"missing", filepath.Join(dir, "missing"), 10, "", os.ErrNotExist},
		{"directory", dir, 10, "", syscall.EISDIR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFileLimit(tc.path, tc.limit)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ReadFileLimit = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestWriteTemp(t *testing.T) {
	dir := t.TempDir()
	p, err := WriteTemp(dir, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != dir || !IsTemp(filepath.Base(p)) || !strings.Contains(filepath.Base(p), "~") {
		t.Fatalf("temporary file %s not a temporary name in %s", p, dir)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s: %v, %v", p, fi, err)
	}
	if _, err := WriteTemp(filepath.Join(dir, "missing"), nil); err == nil {
		t.Fatal("WriteTemp into a missing directory succeeded")
	}
}

func TestMkdirDurable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ns")
	for range 2 { // the second call finds it
		if err := MkdirDurable(dir); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stat %s: %v, %v", dir, fi, err)
	}
}
