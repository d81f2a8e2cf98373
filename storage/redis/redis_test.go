package redis

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

// EnvTestURL names the variable holding the test server's URL, as printed
// by scripts/services.sh.
const EnvTestURL = "GOTRUSTEE_TEST_REDIS_URL"

// testURL returns the test server's URL. Without one the test is skipped
// locally and fails in CI, where no suite may be skipped.
func testURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(EnvTestURL)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI; run: eval \"$(scripts/services.sh start)\"", EnvTestURL)
		}
		t.Skipf("%s is not set; run: eval \"$(scripts/services.sh start)\"", EnvTestURL)
	}
	return u
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenURL(context.Background(), testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformance runs the suite; it works in random namespaces and
// deletes what it wrote, so the server may be shared.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) })
}

// TestConformanceTwoClients alternates every call between two clients, as
// two KBS replicas sharing sessions would.
func TestConformanceTwoClients(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return storagetest.RoundRobin(newStore(t), newStore(t))
	})
}

// TestUpstreamLayout reads keys written as upstream writes them and checks
// the keys Set writes.
func TestUpstreamLayout(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ns := storagetest.Namespace(t, s, "kbs_protocol_session")
	raw := s.Client()
	if err := raw.Set(ctx, ns+":policy/default", []byte("allow\x00\xff"), 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, ns, "policy/default")
	if err != nil || string(got) != "allow\x00\xff" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if _, err := s.Set(ctx, ns, "session/1", []byte("state"), false); err != nil {
		t.Fatal(err)
	}
	if v, err := raw.Get(ctx, ns+":session/1").Result(); err != nil || v != "state" {
		t.Fatalf("raw GET %s:session/1 = %q, %v", ns, v, err)
	}
	// Keys under the prefix that are not valid keys are neither listed
	// nor a reason to fail; another namespace sharing a name prefix is
	// not mixed in.
	for _, k := range []string{ns + ":bad key", ns + "x:other", ns + "_y:other"} {
		if err := raw.Set(ctx, k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Del(context.Background(), k) })
	}
	keys, err := s.List(ctx, ns)
	if err != nil || !slices.Equal(keys, []string{"policy/default", "session/1"}) {
		t.Fatalf("List = %q, %v", keys, err)
	}
}

func TestListManyKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ns := storagetest.Namespace(t, s, "many")
	const n = 2500 // several SCAN pages
	pipe := s.Client().Pipeline()
	var want []string
	for i := range n {
		k := fmt.Sprintf("k/%05d", i)
		want = append(want, k)
		pipe.Set(ctx, Key(ns, k), "v", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, ns)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List returned %d keys (err %v), want %d in order", len(got), err, n)
	}
}

func TestEscapeGlob(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kbs:", "kbs:"},
		{"a*b?c", `a\*b\?c`},
		{"[x]", `\[x\]`},
		{`back\slash`, `back\\slash`},
		{"a-b^c", `a\-b\^c`},
	}
	for _, tc := range tests {
		if got := escapeGlob(tc.in); got != tc.want {
			t.Errorf("escapeGlob(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEnvURLOverridesConfig(t *testing.T) {
	t.Setenv(EnvURL, testURL(t))
	s, err := Open(context.Background(), Config{URL: "redis://host.invalid:1"})
	if err != nil {
		t.Fatalf("Open with %s set: %v", EnvURL, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ns := storagetest.Namespace(t, s, "env")
	if _, err := s.Set(context.Background(), ns, "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
}

func TestConfigHidesPassword(t *testing.T) {
	t.Setenv(EnvURL, "")
	cfg := Config{URL: "redis://user:s3cr3t-pw@127.0.0.1:1/0"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, cfg); strings.Contains(s, "s3cr3t-pw") {
			t.Fatalf("%s of Config shows the password: %s", f, s)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, cfg)
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("Open error %v: want an error without the password", err)
	}
	_, err = OpenURL(ctx, "redis://user:s3cr3t-pw@127.0.0.1:notaport/0")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("parse error %v: want an error without the password", err)
	}
	_, err = OpenURL(ctx, "redis://user:s3cr3t-pw@[bad/0")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("parse error %v: want an error without the password", err)
	}
	if d := DefaultConfig(); d.URL != "redis://127.0.0.1:6379" {
		t.Fatalf("DefaultConfig() = %#v", d)
	}
}
