package localjson

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

const (
	envChild = "GOTRUSTEE_LOCALJSON_CHILD"
	envDir   = "GOTRUSTEE_LOCALJSON_DIR"
	envArg   = "GOTRUSTEE_LOCALJSON_ARG"
	envKeys  = "GOTRUSTEE_LOCALJSON_KEYS"

	crashExitCode = 3
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode, os.Getenv(envDir), os.Getenv(envArg)))
	}
	os.Exit(m.Run())
}

func runChild(mode, dir, arg string) int {
	ctx := context.Background()
	s, err := Open(Config{FileDirPath: dir}, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "crash":
		s.beforePublish = func() { os.Exit(crashExitCode) }
		_, err := s.Set(ctx, "reference_value", "svn", []byte(arg), true)
		fmt.Fprintln(os.Stderr, "Set returned instead of crashing:", err)
		return 1
	case "race":
		// Released by the parent closing stdin. Every process writes its
		// own keys (a lost update would drop some) and races for the
		// shared ones (printing those it won).
		_, _ = io.Copy(io.Discard, os.Stdin)
		n, _ := strconv.Atoi(os.Getenv(envKeys))
		for i := range n {
			if _, err := s.Set(ctx, "reference_value", fmt.Sprintf("%s/%d", arg, i), []byte(arg), false); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			key := fmt.Sprintf("shared/%d", i)
			ok, err := s.Set(ctx, "reference_value", key, []byte(arg), false)
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

func readJSON(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s is not a JSON object of strings: %v\n%s", path, err, b)
	}
	return m
}

// TestEncoding checks the bytes on disk: URL-safe alphabet, padded, in a
// file named after the namespace.
func TestEncoding(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	tests := []struct {
		key   string
		value []byte
		want  string
	}{
		{"url-safe", []byte{0xfb, 0xff}, "-_8="}, // standard base64 would be "+/8="
		{"padded-2", []byte("a"), "YQ=="},        // two pad characters
		{"padded-1", []byte("ab"), "YWI="},       // one
		{"unpadded", []byte("abc"), "YWJj"},      // none needed
		{"empty", []byte{}, ""},                  // the empty string
		{"slash/key", []byte("x"), "eA=="},       // keys keep their "/"
		{"binary", []byte{0, 0x3e, 0x3f, 0xff}, "AD4__w=="},
	}
	for _, tc := range tests {
		if _, err := s.Set(ctx, "reference_value", tc.key, tc.value, true); err != nil {
			t.Fatal(err)
		}
	}
	got := readJSON(t, filepath.Join(dir, "reference_value"))
	for _, tc := range tests {
		if got[tc.key] != tc.want {
			t.Errorf("stored %q as %q, want %q", tc.key, got[tc.key], tc.want)
		}
		// Independent check against the standard library's URL encoding.
		if want := base64.URLEncoding.EncodeToString(tc.value); got[tc.key] != want {
			t.Errorf("stored %q as %q, base64.URLEncoding gives %q", tc.key, got[tc.key], want)
		}
	}
	if len(got) != len(tests) {
		t.Errorf("file holds %d entries, want %d", len(got), len(tests))
	}
	names := dirNames(t, dir)
	want := []string{".~reference_value.lock", "reference_value"}
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q (no temporary files)", names, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "reference_value"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
}

// TestReadUpstreamFiles reads files written by hand or by upstream tools.
func TestReadUpstreamFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The trustee-operator's reference-value ConfigMap entry (spec §12),
	// pretty-printed as a person would write it.
	svn := `{"name":"svn","expiration":"2027-01-01T00:00:00Z","value":1}`
	operator := fmt.Sprintf("{\n  \"svn\": \"%s\"\n}\n", base64.URLEncoding.EncodeToString([]byte(svn)))
	files := map[string]string{
		"reference_value": operator,
		// upstream local_json README's example
		"readme": `{"key1": "MTIzCg==", "key2": "MjM0Cg=="}`,
		// alphabets and padding people use by mistake
		"lenient": `{"std":"+/8=","raw-url":"-_8","raw-std":"+/8","url":"-_8="}`,
		// what upstream creates for a new namespace
		"empty-object": `{}`,
		"empty-file":   ``,
		"blank-file":   " \n",
		// keys we cannot address are kept but not listed
		"odd-keys": `{"ok":"eA==","bad key":"eA==","../up":"eA=="}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dir)
	gets := []struct {
		ns, key, want string
	}{
		{"reference_value", "svn", svn},
		{"readme", "key1", "123\n"},
		{"readme", "key2", "234\n"},
		{"lenient", "std", "\xfb\xff"},
		{"lenient", "raw-url", "\xfb\xff"},
		{"lenient", "raw-std", "\xfb\xff"},
		{"lenient", "url", "\xfb\xff"},
		{"odd-keys", "ok", "x"},
	}
	for _, tc := range gets {
		t.Run("get "+tc.ns+"/"+tc.key, func(t *testing.T) {
			got, err := s.Get(ctx, tc.ns, tc.key)
			if err != nil || string(got) != tc.want {
				t.Fatalf("Get = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	lists := map[string][]string{
		"reference_value": {"svn"},
		"readme":          {"key1", "key2"},
		"empty-object":    nil,
		"empty-file":      nil,
		"blank-file":      nil,
		"odd-keys":        {"ok"},
		"missing":         nil,
	}
	for ns, want := range lists {
		got, err := s.List(ctx, ns)
		if err != nil || len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
			t.Errorf("List(%s) = %q, %v; want %q", ns, got, err, want)
		}
	}
	// Writing a namespace keeps the entries it does not touch byte for
	// byte, even in a non-canonical encoding or under an odd key.
	if _, err := s.Set(ctx, "lenient", "new", []byte("n"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "odd-keys", "new", []byte("n"), false); err != nil {
		t.Fatal(err)
	}
	lenient := readJSON(t, filepath.Join(dir, "lenient"))
	if lenient["std"] != "+/8=" || lenient["raw-std"] != "+/8" || lenient["new"] != "bg==" {
		t.Errorf("after Set the file holds %q", lenient)
	}
	if odd := readJSON(t, filepath.Join(dir, "odd-keys")); odd["bad key"] != "eA==" || odd["../up"] != "eA==" {
		t.Errorf("after Set the file holds %q", odd)
	}
}

func TestMalformedFiles(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, content string
	}{
		{"not JSON", "not json"},
		{"array", `["a"]`},
		{"null", `null`},
		{"number value", `{"k": 1}`},
		{"nested value", `{"k": {"a": "b"}}`},
		{"truncated", `{"k": "eA==`},
		{"trailing garbage", `{"k": "eA=="} x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ns")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir)
			if _, err := s.Get(ctx, "ns", "k"); !errors.Is(err, ErrMalformed) {
				t.Errorf("Get = %v, want ErrMalformed", err)
			}
			if _, err := s.List(ctx, "ns"); !errors.Is(err, ErrMalformed) {
				t.Errorf("List = %v, want ErrMalformed", err)
			}
			if _, err := s.Set(ctx, "ns", "k", []byte("v"), true); !errors.Is(err, ErrMalformed) {
				t.Errorf("Set = %v, want ErrMalformed", err)
			}
			if err := s.Delete(ctx, "ns", "k"); !errors.Is(err, ErrMalformed) {
				t.Errorf("Delete = %v, want ErrMalformed", err)
			}
			// A write never replaces a file it could not read.
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Errorf("file changed to %q", b)
			}
		})
	}
	t.Run("bad base64 value", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ns"), []byte(`{"k":"!!!","ok":"eA=="}`), 0o644); err != nil {
			t.Fatal(err)
		}
		s := open(t, dir)
		if _, err := s.Get(ctx, "ns", "k"); !errors.Is(err, ErrMalformed) {
			t.Errorf("Get = %v, want ErrMalformed", err)
		}
		if v, err := s.Get(ctx, "ns", "ok"); err != nil || string(v) != "x" {
			t.Errorf("Get(ok) = %q, %v", v, err)
		}
	})
}

func TestFileSizeBound(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "ns"))
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: no disk space used.
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	s := open(t, dir)
	if _, err := s.Get(context.Background(), "ns", "k"); !errors.Is(err, fsutil.ErrTooLarge) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Get on an oversized file = %v, want ErrMalformed and fsutil.ErrTooLarge", err)
	}
}

// TestCrashBeforePublish kills a writer process after its new file is
// durable and before the rename.
func TestCrashBeforePublish(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Set(ctx, "reference_value", "svn", []byte("old"), false); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "reference_value"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := child(t, "crash", dir, "new").CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != crashExitCode {
		t.Fatalf("child did not crash at the hook: %v\n%s", err, out)
	}
	if v, err := s.Get(ctx, "reference_value", "svn"); err != nil || string(v) != "old" {
		t.Fatalf("after the crash Get = %q, %v; want old", v, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "reference_value"))
	if !bytes.Equal(before, after) {
		t.Fatalf("namespace file changed: %q -> %q", before, after)
	}
	var temps []string
	for _, n := range dirNames(t, dir) {
		if fsutil.IsTemp(n) {
			temps = append(temps, n)
		}
	}
	if len(temps) != 1 {
		t.Fatalf("temporary files after the crash: %q, want one", temps)
	}
	if m := readJSON(t, filepath.Join(dir, temps[0])); m["svn"] != EncodeValue([]byte("new")) {
		t.Fatalf("temporary file holds %q", m)
	}
	// The lock died with the process: writing still works.
	if _, err := s.Set(ctx, "reference_value", "svn", []byte("newer"), true); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	if _, err := Open(Config{FileDirPath: dir}, Options{Now: later}); err != nil {
		t.Fatal(err)
	}
	for _, n := range dirNames(t, dir) {
		if fsutil.IsTemp(n) {
			t.Fatalf("stale temporary file %q survived Open", n)
		}
	}
}

// TestCrossProcess has several processes update one namespace file at once:
// no update may be lost and each shared key is won exactly once.
func TestCrossProcess(t *testing.T) {
	const (
		procs = 5
		keys  = 15
	)
	dir := t.TempDir()
	type proc struct {
		cmd      *exec.Cmd
		stdin    io.WriteCloser
		out, err bytes.Buffer
	}
	ps := make([]*proc, procs)
	for i := range ps {
		p := &proc{cmd: child(t, "race", dir, fmt.Sprintf("proc-%d", i), envKeys+"="+strconv.Itoa(keys))}
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
	for _, p := range ps {
		_ = p.stdin.Close()
	}
	winner := make(map[string]int)
	for i, p := range ps {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, p.err.String())
		}
		sc := bufio.NewScanner(&p.out)
		for sc.Scan() {
			if prev, dup := winner[sc.Text()]; dup {
				t.Fatalf("key %s won by both process %d and %d", sc.Text(), prev, i)
			}
			winner[sc.Text()] = i
		}
	}
	if len(winner) != keys {
		t.Fatalf("%d shared keys won, want %d", len(winner), keys)
	}
	s := open(t, dir)
	got, err := s.List(context.Background(), "reference_value")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(maps.Keys(winner))
	for i := range procs {
		for k := range keys {
			want = append(want, fmt.Sprintf("proc-%d/%d", i, k))
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("lost updates: List has %d keys, want %d", len(got), len(want))
	}
	for key, i := range winner {
		v, err := s.Get(context.Background(), "reference_value", key)
		if err != nil || string(v) != fmt.Sprintf("proc-%d", i) {
			t.Fatalf("Get(%s) = %q, %v; want the winner proc-%d's value", key, v, err, i)
		}
	}
}

func TestNamespaceTooLong(t *testing.T) {
	s := open(t, t.TempDir())
	ns := strings.Repeat("n", maxNameLen)
	if _, err := s.Set(context.Background(), ns, "k", []byte("v"), true); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Set(long namespace) = %v, want ErrInvalidKey", err)
	}
	if _, err := s.List(context.Background(), ns); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("List(long namespace) = %v, want ErrInvalidKey", err)
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{FileDirPath: file}, Options{}); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
	if got := DefaultConfig().FileDirPath; got != "/opt/confidential-containers/storage/local_json" {
		t.Fatalf("default file_dir_path %q", got)
	}
}

// FuzzDecodeFile feeds arbitrary bytes to the namespace file decoder: it
// must not panic, and whatever it accepts must survive a write and re-read
// unchanged.
func FuzzDecodeFile(f *testing.F) {
	for _, seed := range []string{
		`{}`, ``, `{"svn":"eyJ2YWx1ZSI6MX0="}`, `{"key1": "MTIzCg==", "key2": "MjM0Cg=="}`,
		`{"a":"+/8=","b":"-_8"}`, `null`, `[]`, `{"k":1}`, `{"k":"\u00e9"}`, `{"k":"a","k":"b"}`,
		"{\"a\":\"\xff\"}", `{"<>&":"x"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := DecodeFile(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		for _, v := range items {
			_, _ = DecodeValue(v) // must not panic
		}
		enc, err := EncodeFile(items)
		if err != nil {
			t.Fatalf("EncodeFile of decoded items: %v", err)
		}
		again, err := DecodeFile(enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if !maps.Equal(items, again) {
			t.Fatalf("round trip changed %q to %q", items, again)
		}
	})
}

// FuzzValue checks that every value survives EncodeValue and DecodeValue.
func FuzzValue(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xfb, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := DecodeValue(EncodeValue(v))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("round trip of %x = %x, %v", v, got, err)
		}
	})
}
