package localfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/internal/fsutil"
)

// Child-process modes: the test binary re-executes itself to act as a
// second process sharing a directory.
const (
	envChild = "GOTRUSTEE_LOCALFS_CHILD"
	envDir   = "GOTRUSTEE_LOCALFS_DIR"
	envArg   = "GOTRUSTEE_LOCALFS_ARG"

	crashExitCode = 3
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode, os.Getenv(envDir), os.Getenv(envArg)))
	}
	os.Exit(m.Run())
}

// runChild is the body of a child process. It reports on stdout.
func runChild(mode, dir, arg string) int {
	ctx := context.Background()
	s, err := Open(Config{DirPath: dir}, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "crash-overwrite", "crash-insert":
		// Die, as a power cut would, once the new value is durable in its
		// temporary file but not yet published.
		s.beforePublish = func() { os.Exit(crashExitCode) }
		_, err := s.Set(ctx, "repository", "default/key/1", []byte(arg), mode == "crash-overwrite")
		fmt.Fprintln(os.Stderr, "Set returned instead of crashing:", err)
		return 1
	case "race":
		// Wait for the parent to release every child at once, then race
		// to insert each key; print the keys won.
		_, _ = io.Copy(io.Discard, os.Stdin)
		n, _ := strconv.Atoi(os.Getenv("GOTRUSTEE_LOCALFS_KEYS"))
		for i := range n {
			key := fmt.Sprintf("race/%d", i)
			ok, err := s.Set(ctx, "kbs_protocol_session", key, []byte(arg), false)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if ok {
				fmt.Println(key)
			}
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 1
}

func child(t *testing.T, mode, dir, arg string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir, envArg+"="+arg)
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestOperatorLayout reads a directory populated the way the
// trustee-operator's secret-converter init container and its ConfigMap
// mounts do, without any help from this package.
func TestOperatorLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "repository", `default\x2Fkey\x2F1`), "secret-1")
	writeFile(t, filepath.Join(dir, "repository", `default\x2Fmy-secret\x2Fcert.pem`), "-----BEGIN CERTIFICATE-----\n")
	writeFile(t, filepath.Join(dir, "attestation_service_policy", "default_cpu.rego"), "package policy\n")
	// A Kubernetes ConfigMap volume: timestamped directory, ..data symlink
	// to it, and one symlink per entry through ..data.
	ts := filepath.Join(dir, "kbs", "..2026_01_02_03_04_05.123456789")
	writeFile(t, filepath.Join(ts, "resource-policy.rego"), "package policy\ndefault allow = true\n")
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "kbs", "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/resource-policy.rego", filepath.Join(dir, "kbs", "resource-policy.rego")); err != nil {
		t.Fatal(err)
	}

	s := open(t, dir)
	tests := []struct {
		ns, key, want string
	}{
		{"repository", "default/key/1", "secret-1"},
		{"repository", "default/my-secret/cert.pem", "-----BEGIN CERTIFICATE-----\n"},
		{"attestation_service_policy", "default_cpu.rego", "package policy\n"},
		{"kbs", "resource-policy.rego", "package policy\ndefault allow = true\n"},
	}
	for _, tc := range tests {
		t.Run(tc.ns+"/"+tc.key, func(t *testing.T) {
			got, err := s.Get(ctx, tc.ns, tc.key)
			if err != nil || string(got) != tc.want {
				t.Fatalf("Get = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	lists := map[string][]string{
		"repository":                 {"default/key/1", "default/my-secret/cert.pem"},
		"attestation_service_policy": {"default_cpu.rego"},
		"kbs":                        {"resource-policy.rego"}, // not ..data nor the timestamped directory
	}
	for ns, want := range lists {
		got, err := s.List(ctx, ns)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%s) = %q, %v; want %q", ns, got, err, want)
		}
	}
	// Directory entries are never keys, not even through Delete.
	for _, key := range []string{"..data", "..2026_01_02_03_04_05.123456789"} {
		if _, err := s.Get(ctx, "kbs", key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(kbs, %q) = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, "kbs", key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Delete(kbs, %q) = %v, want ErrNotFound", key, err)
		}
	}
	if _, err := os.Stat(ts); err != nil {
		t.Fatalf("ConfigMap directory touched: %v", err)
	}
}

// TestWriteLayout checks the exact files Set and Delete produce.
func TestWriteLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Set(ctx, "repository", "default/key/1", []byte("raw\x00bytes"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "repository", "default/key/1", []byte("raw\x00bytes v2"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "repository", "default/key/1", []byte("ignored"), false); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "repository", `default\x2Fkey\x2F1`)
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "raw\x00bytes v2" {
		t.Fatalf("file %s = %q, %v", path, got, err)
	}
	if names := dirNames(t, filepath.Join(dir, "repository")); !slices.Equal(names, []string{`default\x2Fkey\x2F1`}) {
		t.Fatalf("namespace directory holds %q, want only the key file (no temporary files)", names)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
	if err := s.Delete(ctx, "repository", "default/key/1"); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, filepath.Join(dir, "repository")); len(names) != 0 {
		t.Fatalf("after Delete the directory holds %q", names)
	}
}

func TestEncodeDecodeKey(t *testing.T) {
	tests := []struct {
		key, name string
	}{
		{"plain", "plain"},
		{"default/key/1", `default\x2Fkey\x2F1`},
		{"a/", `a\x2F`},
		{"a.b-c_d", "a.b-c_d"},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if got := EncodeKey(tc.key); got != tc.name {
				t.Errorf("EncodeKey(%q) = %q, want %q", tc.key, got, tc.name)
			}
			if got, ok := DecodeKey(tc.name); !ok || got != tc.key {
				t.Errorf("DecodeKey(%q) = %q, %v; want %q", tc.name, got, ok, tc.key)
			}
		})
	}
	for _, name := range []string{fsutil.TempPrefix + "123", fsutil.TempPrefix} {
		if _, ok := DecodeKey(name); ok {
			t.Errorf("DecodeKey(%q) accepted a temporary file", name)
		}
	}
}

func TestTempFilesInvisible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Set(ctx, "ns", "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "ns", fsutil.TempPrefix+"999")
	writeFile(t, tmp, "half-written")
	keys, err := s.List(ctx, "ns")
	if err != nil || !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("List = %q, %v; want [k]", keys, err)
	}
	if _, err := s.Get(ctx, "ns", fsutil.TempPrefix+"999"); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Get(temporary name) = %v, want ErrInvalidKey", err)
	}
}

func TestStaleTempCleanup(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	stale := filepath.Join(dir, "ns", fsutil.TempPrefix+"stale")
	fresh := filepath.Join(dir, "ns", fsutil.TempPrefix+"fresh")
	key := filepath.Join(dir, "ns", "old-key")
	for _, p := range []string{stale, fresh, key} {
		writeFile(t, p, "x")
	}
	old := now.Add(-time.Hour)
	for _, p := range []string{stale, key} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(fresh, now, now); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{DirPath: dir}, Options{Now: func() time.Time { return now }, StaleTempAge: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, filepath.Join(dir, "ns"))
	want := []string{fsutil.TempPrefix + "fresh", "old-key"}
	if !slices.Equal(got, want) {
		t.Fatalf("after Open the namespace holds %q, want %q", got, want)
	}
}

// TestCrashBeforePublish kills a writer process between its durable
// temporary write and the rename or link that publishes it.
func TestCrashBeforePublish(t *testing.T) {
	tests := []struct {
		mode    string
		initial []byte // nil: the key does not exist before
	}{
		{"crash-overwrite", []byte("old value")},
		{"crash-insert", nil},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := open(t, dir)
			if tc.initial != nil {
				if _, err := s.Set(ctx, "repository", "default/key/1", tc.initial, false); err != nil {
					t.Fatal(err)
				}
			}
			cmd := child(t, tc.mode, dir, "new value")
			out, err := cmd.CombinedOutput()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != crashExitCode {
				t.Fatalf("child did not crash at the hook: %v\n%s", err, out)
			}
			got, err := s.Get(ctx, "repository", "default/key/1")
			if tc.initial == nil {
				if !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("after a crashed insert Get = %q, %v; want ErrNotFound", got, err)
				}
			} else if err != nil || !bytes.Equal(got, tc.initial) {
				t.Fatalf("after a crashed overwrite Get = %q, %v; want %q", got, err, tc.initial)
			}
			// The crash did happen after the write: the new value sits,
			// complete, in a temporary file nobody lists.
			var temps []string
			for _, n := range dirNames(t, filepath.Join(dir, "repository")) {
				if fsutil.IsTemp(n) {
					temps = append(temps, n)
				}
			}
			if len(temps) != 1 {
				t.Fatalf("temporary files after the crash: %q, want one", temps)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "repository", temps[0])); string(b) != "new value" {
				t.Fatalf("temporary file holds %q", b)
			}
			keys, err := s.List(ctx, "repository")
			wantKeys := []string{}
			if tc.initial != nil {
				wantKeys = []string{"default/key/1"}
			}
			if err != nil || !slices.Equal(keys, wantKeys) {
				t.Fatalf("List = %q, %v; want %q", keys, err, wantKeys)
			}
			// A later Open, once the temporary file is stale, removes it.
			later := func() time.Time { return time.Now().Add(time.Hour) }
			if _, err := Open(Config{DirPath: dir}, Options{Now: later}); err != nil {
				t.Fatal(err)
			}
			for _, n := range dirNames(t, filepath.Join(dir, "repository")) {
				if fsutil.IsTemp(n) {
					t.Fatalf("stale temporary file %q survived Open", n)
				}
			}
		})
	}
}

// TestCrossProcessInsertRace has several processes race to insert the same
// keys into one directory: each key must be won exactly once.
func TestCrossProcessInsertRace(t *testing.T) {
	const (
		procs = 6
		keys  = 40
	)
	dir := t.TempDir()
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   bytes.Buffer
		err   bytes.Buffer
	}
	ps := make([]*proc, procs)
	for i := range ps {
		p := &proc{cmd: child(t, "race", dir, fmt.Sprintf("proc-%d", i), "GOTRUSTEE_LOCALFS_KEYS="+strconv.Itoa(keys))}
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	for _, p := range ps { // release them together
		_ = p.stdin.Close()
	}
	winner := make(map[string]int)
	for i, p := range ps {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, p.err.String())
		}
		sc := bufio.NewScanner(&p.out)
		for sc.Scan() {
			key := sc.Text()
			if prev, dup := winner[key]; dup {
				t.Fatalf("key %s won by both process %d and %d", key, prev, i)
			}
			winner[key] = i
		}
	}
	if len(winner) != keys {
		t.Fatalf("%d keys won, want %d", len(winner), keys)
	}
	s := open(t, dir)
	for key, i := range winner {
		got, err := s.Get(context.Background(), "kbs_protocol_session", key)
		if err != nil || string(got) != fmt.Sprintf("proc-%d", i) {
			t.Fatalf("Get(%s) = %q, %v; want the winner proc-%d's value", key, got, err, i)
		}
	}
	for _, n := range dirNames(t, filepath.Join(dir, "kbs_protocol_session")) {
		if fsutil.IsTemp(n) {
			t.Fatalf("temporary file %q left behind", n)
		}
	}
}

func TestNameTooLong(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	// 100 slashes encode to 400 bytes, over the 255-byte file name limit.
	key := strings.Repeat("a/", 100) + "a"
	if _, err := s.Set(ctx, "ns", key, []byte("v"), true); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Set(long key) = %v, want ErrInvalidKey", err)
	}
	if _, err := s.Set(ctx, strings.Repeat("n", 256), "k", []byte("v"), true); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Set(long namespace) = %v, want ErrInvalidKey", err)
	}
	ok := strings.Repeat("k", maxNameLen)
	if _, err := s.Set(ctx, "ns", ok, []byte("v"), true); err != nil {
		t.Fatalf("Set(255-byte key) = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "x")
	if _, err := Open(Config{DirPath: file}, Options{}); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
	if got := DefaultConfig().DirPath; got != "/opt/confidential-containers/storage/local_fs" {
		t.Fatalf("default dir_path %q", got)
	}
}

// FuzzPath checks that no (namespace, key) the Store accepts resolves
// outside <dir>/<ns>, and that the file name decodes back to the key.
func FuzzPath(f *testing.F) {
	for _, seed := range [][2]string{
		{"repository", "default/key/1"}, {"..", "x"}, {".", "x"}, {"ns", ".."}, {"ns", "a/../../b"},
		{"ns", "/etc/passwd"}, {"ns", "a/"}, {"ns", "..."}, {"ns", `a\x2F..`}, {"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	const root = "/srv/storage"
	s := &Store{dir: root}
	f.Fuzz(func(t *testing.T, ns, key string) {
		nsDir, file, err := s.path(ns, key)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Fatalf("path(%q, %q) error %v does not match ErrInvalidKey", ns, key, err)
			}
			return
		}
		if filepath.Dir(nsDir) != root || filepath.Base(nsDir) != ns || ns == "." || ns == ".." {
			t.Fatalf("namespace %q resolves to %s, outside %s", ns, nsDir, root)
		}
		base := filepath.Base(file)
		if filepath.Dir(file) != nsDir || base == "." || base == ".." || base != EncodeKey(key) {
			t.Fatalf("key %q resolves to %s, outside %s", key, file, nsDir)
		}
		if got, ok := DecodeKey(base); !ok || got != key {
			t.Fatalf("DecodeKey(EncodeKey(%q)) = %q, %v", key, got, ok)
		}
	})
}
