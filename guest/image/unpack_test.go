package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func mkTar(t testing.TB, ents []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// sandbox returns a parent dir holding a sentinel and an empty rootfs.
func sandbox(t testing.TB) (parent, rootfs string) {
	parent = t.TempDir()
	rootfs = filepath.Join(parent, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, rootfs
}

// outsideUntouched fails if anything beside rootfs and the sentinel
// appeared in parent or the sentinel changed.
func outsideUntouched(t testing.TB, parent string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "rootfs" && e.Name() != "sentinel" {
			t.Fatalf("unpack wrote %q outside the root", e.Name())
		}
	}
	b, err := os.ReadFile(filepath.Join(parent, "sentinel"))
	if err != nil || string(b) != "keep" {
		t.Fatalf("sentinel changed: %q %v", b, err)
	}
}

func unpackLayers(t testing.TB, rootfs string, layers ...[]byte) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	no := false
	for _, l := range layers {
		if err := Unpack(context.Background(), root, bytes.NewReader(l), UnpackOptions{Chown: &no}); err != nil {
			return err
		}
	}
	return nil
}

func TestUnpack(t *testing.T) {
	base := mkTar(t, []tarEntry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0"},
		{name: "etc/shadow", typ: tar.TypeReg, body: "secret", mode: 0o600},
		{name: "opt/a/old", typ: tar.TypeReg, body: "old"},
		{name: "bin/sh", typ: tar.TypeReg, body: "ELF", mode: 0o755},
		{name: "bin/ash", typ: tar.TypeLink, link: "bin/sh"},
		{name: "usr/bin", typ: tar.TypeSymlink, link: "/bin"},
	})
	tests := []struct {
		name    string
		layers  [][]byte
		wantErr error
		check   func(t *testing.T, rootfs string)
	}{
		{name: "plain", layers: [][]byte{base}, check: func(t *testing.T, r string) {
			if b, _ := os.ReadFile(filepath.Join(r, "etc/passwd")); string(b) != "root:x:0:0" {
				t.Fatalf("passwd = %q", b)
			}
			if fi, _ := os.Stat(filepath.Join(r, "etc/shadow")); fi == nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("shadow mode %v", fi)
			}
			if l, _ := os.Readlink(filepath.Join(r, "usr/bin")); l != "/bin" {
				t.Fatalf("symlink = %q", l)
			}
			a, _ := os.Stat(filepath.Join(r, "bin/ash"))
			s, _ := os.Stat(filepath.Join(r, "bin/sh"))
			if !os.SameFile(a, s) {
				t.Fatal("hard link not linked")
			}
		}},
		{name: "whiteout", layers: [][]byte{base, mkTar(t, []tarEntry{{name: "etc/.wh.shadow", typ: tar.TypeReg}})}, check: func(t *testing.T, r string) {
			if _, err := os.Lstat(filepath.Join(r, "etc/shadow")); !os.IsNotExist(err) {
				t.Fatalf("whiteout kept shadow: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(r, "etc/passwd")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "opaque whiteout", layers: [][]byte{base, mkTar(t, []tarEntry{
			{name: "opt/a/new", typ: tar.TypeReg, body: "new"},
			{name: "opt/a/.wh..wh..opq", typ: tar.TypeReg},
		})}, check: func(t *testing.T, r string) {
			if _, err := os.Lstat(filepath.Join(r, "opt/a/old")); !os.IsNotExist(err) {
				t.Fatalf("opaque kept old: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(r, "opt/a/new")); string(b) != "new" {
				t.Fatal("opaque removed this layer's file")
			}
		}},
		{name: "file replaces symlink", layers: [][]byte{base, mkTar(t, []tarEntry{{name: "usr/bin", typ: tar.TypeReg, body: "x"}})}, check: func(t *testing.T, r string) {
			if fi, _ := os.Lstat(filepath.Join(r, "usr/bin")); fi == nil || !fi.Mode().IsRegular() {
				t.Fatal("symlink not replaced")
			}
		}},
		{name: "dotdot", layers: [][]byte{mkTar(t, []tarEntry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}})}, wantErr: ErrUnsafeEntry},
		{name: "absolute", layers: [][]byte{mkTar(t, []tarEntry{{name: "/evil", typ: tar.TypeReg, body: "x"}})}, wantErr: ErrUnsafeEntry},
		{name: "symlink escape write", layers: [][]byte{mkTar(t, []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "../"},
			{name: "esc/evil", typ: tar.TypeReg, body: "x"},
		})}},
		{name: "absolute symlink escape write", layers: [][]byte{mkTar(t, []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "/tmp"},
			{name: "esc/evil", typ: tar.TypeReg, body: "x"},
		})}},
		{name: "symlink escape whiteout", layers: [][]byte{mkTar(t, []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "../"},
			{name: "esc/.wh.sentinel", typ: tar.TypeReg},
		})}},
		{name: "hardlink escape", layers: [][]byte{mkTar(t, []tarEntry{{name: "h", typ: tar.TypeLink, link: "../sentinel"}})}, wantErr: ErrUnsafeEntry},
		{name: "hardlink via symlink", layers: [][]byte{mkTar(t, []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "../"},
			{name: "h", typ: tar.TypeLink, link: "esc/sentinel"},
		})}, wantErr: ErrUnsafeEntry},
		{name: "char device", layers: [][]byte{mkTar(t, []tarEntry{{name: "dev/mem", typ: tar.TypeChar}})}, wantErr: ErrUnsafeEntry},
		{name: "block device", layers: [][]byte{mkTar(t, []tarEntry{{name: "dev/sda", typ: tar.TypeBlock}})}, wantErr: ErrUnsafeEntry},
		{name: "truncated", layers: [][]byte{base[:700]}, wantErr: ErrBadLayer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent, rootfs := sandbox(t)
			err := unpackLayers(t, rootfs, tc.layers...)
			outsideUntouched(t, parent)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if tc.check == nil {
				// escape attempts must fail, with whatever error os.Root gives
				if err == nil {
					t.Fatal("escape attempt succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, rootfs)
		})
	}
}

func TestUnpackMaxEntries(t *testing.T) {
	_, rootfs := sandbox(t)
	root, _ := os.OpenRoot(rootfs)
	defer root.Close()
	l := mkTar(t, []tarEntry{{name: "a", typ: tar.TypeReg}, {name: "b", typ: tar.TypeReg}})
	no := false
	if err := Unpack(context.Background(), root, bytes.NewReader(l), UnpackOptions{Chown: &no, MaxEntries: 1}); !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// FuzzUnpack feeds random tar streams: whatever happens, nothing is
// written outside the root.
func FuzzUnpack(f *testing.F) {
	f.Add(mkTar(f, []tarEntry{{name: "a/b", typ: tar.TypeReg, body: "x"}}))
	f.Add(mkTar(f, []tarEntry{{name: "esc", typ: tar.TypeSymlink, link: "../"}, {name: "esc/x", typ: tar.TypeReg, body: "x"}}))
	f.Add(mkTar(f, []tarEntry{{name: "l", typ: tar.TypeLink, link: "../sentinel"}}))
	f.Add(mkTar(f, []tarEntry{{name: "d/.wh..wh..opq", typ: tar.TypeReg}, {name: ".wh.sentinel", typ: tar.TypeReg}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		parent, rootfs := sandbox(t)
		_ = unpackLayers(t, rootfs, b)
		outsideUntouched(t, parent)
		if strings.Contains(rootfs, "..") {
			t.Fatal("bad sandbox")
		}
	})
}
