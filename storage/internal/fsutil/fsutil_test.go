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

// TestWriteTempFullDisk fills a small tmpfs: a write that fails with
// ENOSPC leaves no partial file, so the space comes back and the next write
// that fits succeeds. (It once left the file: the deferred cleanup removed
// the named result, already set to "".) Needs root to mount the tmpfs;
// outside CI a refused mount skips, in CI it fails.
func TestWriteTempFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mounting a 64 KiB tmpfs (the test needs root): %v", err)
		}
		t.Skipf("cannot mount a tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	for i := range 3 {
		_, err := WriteTemp(dir, make([]byte, 256<<10))
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write %d of 256 KiB into 64 KiB: %v, want ENOSPC", i, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("after failed write %d the filesystem holds %d entries (%s)", i, len(entries), entries[0].Name())
		}
	}
	p, err := WriteTemp(dir, make([]byte, 32<<10))
	if err != nil {
		t.Fatalf("a 32 KiB write after the failures: %v (the failed writes' space was not given back)", err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 32<<10 {
		t.Fatalf("stat %s: %v %v", p, fi, err)
	}
}
