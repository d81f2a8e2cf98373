// Package storagetest is the conformance suite every storage.Store backend
// must pass: it checks each point of the contract written in the storage
// package documentation.
//
// The suite never assumes the Store is empty: each test works in fresh,
// randomly named namespaces and deletes every key it wrote when it ends, so
// it can run against a shared database or Redis instance.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-trustee/go-trustee/storage"
)

// Run runs the conformance suite. newStore must return a working Store and
// register its Close with t.Cleanup; Stores from different calls may share
// one backend.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"NotFound", testNotFound},
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"InsertIfAbsent", testInsertIfAbsent},
		{"InsertAfterDelete", testInsertAfterDelete},
		{"ConcurrentInsert", testConcurrentInsert},
		{"ConcurrentOverwriteAtomic", testConcurrentOverwriteAtomic},
		{"Delete", testDelete},
		{"ListOrder", testListOrder},
		{"NamespaceIsolation", testNamespaceIsolation},
		{"KeysWithSlash", testKeysWithSlash},
		{"InvalidKeys", testInvalidKeys},
		{"ValueTooLarge", testValueTooLarge},
		{"NoAliasing", testNoAliasing},
		{"CanceledContext", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// Namespace returns a fresh namespace name starting with base, and deletes
// every key of it from s when the test ends. base should be at most 40
// bytes (PostgreSQL identifiers stop at 63).
func Namespace(t *testing.T, s storage.Store, base string) string {
	t.Helper()
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	ns := base + "_" + hex.EncodeToString(r[:])
	cleanupNamespace(t, s, ns)
	return ns
}

// cleanupNamespace deletes every key of ns from s when the test ends.
func cleanupNamespace(t *testing.T, s storage.Store, ns string) {
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := s.List(ctx, ns)
		if err != nil {
			t.Errorf("cleanup: listing %s: %v", ns, err)
			return
		}
		for _, k := range keys {
			if err := s.Delete(ctx, ns, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("cleanup: deleting %s/%s: %v", ns, k, err)
			}
		}
	})
}

func mustSet(t *testing.T, s storage.Store, ns, key string, v []byte, overwrite bool) bool {
	t.Helper()
	ok, err := s.Set(context.Background(), ns, key, v, overwrite)
	if err != nil {
		t.Fatalf("Set(%q, %q, overwrite=%v): %v", ns, key, overwrite, err)
	}
	return ok
}

func mustGet(t *testing.T, s storage.Store, ns, key string) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), ns, key)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", ns, key, err)
	}
	return v
}

func mustList(t *testing.T, s storage.Store, ns string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), ns)
	if err != nil {
		t.Fatalf("List(%q): %v", ns, err)
	}
	return keys
}

func wantList(t *testing.T, s storage.Store, ns string, want ...string) {
	t.Helper()
	got := mustList(t, s, ns)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %q, want %q", ns, got, want)
	}
}

func wantValue(t *testing.T, s storage.Store, ns, key string, want []byte) {
	t.Helper()
	got := mustGet(t, s, ns, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q, %q) = %s, want %s", ns, key, short(got), short(want))
	}
}

func wantNotFound(t *testing.T, s storage.Store, ns, key string) {
	t.Helper()
	v, err := s.Get(context.Background(), ns, key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q, %q) = %s, %v; want ErrNotFound", ns, key, short(v), err)
	}
}

func short(b []byte) string {
	if len(b) > 32 {
		return fmt.Sprintf("%q...(%d bytes)", b[:32], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func testNotFound(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ns := Namespace(t, s, "notfound")
	wantNotFound(t, s, ns, "missing")
	if err := s.Delete(ctx, ns, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete(missing) = %v, want ErrNotFound", err)
	}
	wantList(t, s, ns)
	// A namespace that has keys still reports missing ones as such.
	mustSet(t, s, ns, "present", []byte("v"), false)
	wantNotFound(t, s, ns, "missing")
	if err := s.Delete(ctx, ns, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete(missing) = %v, want ErrNotFound", err)
	}
	wantList(t, s, ns, "present")
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testRoundTrip(t *testing.T, s storage.Store) {
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"text", "text", []byte("hello, world")},
		{"every byte value", "bytes", allBytes()},
		{"empty", "empty", []byte{}},
		{"nil is empty", "nil", nil},
		{"NUL and invalid UTF-8", "binary", []byte{0, 0xff, 0xfe, 0, 'a', 0xc3, 0x28, 0}},
		{"JSON-looking", "json", []byte(`{"a":"b"}`)},
		{"large", "large", randomBytes(t, 2<<20+17)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := Namespace(t, s, "roundtrip")
			if !mustSet(t, s, ns, tc.key, tc.value, false) {
				t.Fatalf("Set(%q) on a fresh key reported inserted=false", tc.key)
			}
			got := mustGet(t, s, ns, tc.key)
			if !bytes.Equal(got, tc.value) || len(got) != len(tc.value) {
				t.Fatalf("Get(%q) = %s, want %s", tc.key, short(got), short(tc.value))
			}
			// An empty value is a value: the key exists.
			if mustSet(t, s, ns, tc.key, []byte("other"), false) {
				t.Fatalf("insert-if-absent over existing %q reported inserted=true", tc.key)
			}
			if !slices.Contains(mustList(t, s, ns), tc.key) {
				t.Fatalf("List does not include %q", tc.key)
			}
		})
	}
}

func testOverwrite(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "overwrite")
	if !mustSet(t, s, ns, "k", []byte("v1"), true) {
		t.Fatal("overwrite Set of an absent key reported inserted=false")
	}
	wantValue(t, s, ns, "k", []byte("v1"))
	if !mustSet(t, s, ns, "k", []byte("v2-longer"), true) {
		t.Fatal("overwrite Set of a present key reported inserted=false")
	}
	wantValue(t, s, ns, "k", []byte("v2-longer"))
	// Shrinking must not leave a tail of the old value.
	mustSet(t, s, ns, "k", []byte("v"), true)
	wantValue(t, s, ns, "k", []byte("v"))
	mustSet(t, s, ns, "k", []byte{}, true)
	wantValue(t, s, ns, "k", []byte{})
	wantList(t, s, ns, "k")
}

func testInsertIfAbsent(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "insert")
	if !mustSet(t, s, ns, "k", []byte("first"), false) {
		t.Fatal("first insert reported inserted=false")
	}
	if mustSet(t, s, ns, "k", []byte("second"), false) {
		t.Fatal("second insert reported inserted=true")
	}
	wantValue(t, s, ns, "k", []byte("first"))
	wantList(t, s, ns, "k")
}

func testInsertAfterDelete(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ns := Namespace(t, s, "reinsert")
	mustSet(t, s, ns, "k", []byte("first"), false)
	if err := s.Delete(ctx, ns, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if !mustSet(t, s, ns, "k", []byte("second"), false) {
		t.Fatal("insert after delete reported inserted=false")
	}
	wantValue(t, s, ns, "k", []byte("second"))
}

func testConcurrentInsert(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "race")
	const racers = 16
	for round := range 5 {
		key := fmt.Sprintf("session/%d", round)
		var (
			start  = make(chan struct{})
			wg     sync.WaitGroup
			mu     sync.Mutex
			wins   []int
			errs   []error
			values = make([][]byte, racers)
		)
		for i := range racers {
			values[i] = fmt.Appendf(nil, "racer-%02d-%s", i, bytes.Repeat([]byte{byte('a' + i)}, 1024*i))
			wg.Go(func() {
				<-start
				ok, err := s.Set(context.Background(), ns, key, values[i], false)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins = append(wins, i)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: concurrent inserts failed: %v", round, errs)
		}
		if len(wins) != 1 {
			t.Fatalf("round %d: %d inserts reported inserted=true (%v), want exactly 1", round, len(wins), wins)
		}
		wantValue(t, s, ns, key, values[wins[0]])
	}
}

func testConcurrentOverwriteAtomic(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "atomic")
	const (
		size    = 128 << 10 // many pages: a non-atomic write would show
		writers = 4
		writes  = 8
		readers = 4
		reads   = 20
	)
	uniform := func(b byte) []byte { return bytes.Repeat([]byte{b}, size) }
	mustSet(t, s, ns, "k", uniform('0'), true)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	report := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				if _, err := s.Set(context.Background(), ns, "k", uniform(byte('A'+w*writes+i)), true); err != nil {
					report(err)
					return
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range reads {
				v, err := s.Get(context.Background(), ns, "k")
				if err != nil {
					report(fmt.Errorf("Get during overwrites: %w", err))
					return
				}
				if len(v) != size || !bytes.Equal(v, uniform(v[0])) {
					report(fmt.Errorf("torn read: %d bytes, first %q", len(v), v[:min(len(v), 1)]))
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
}

func testDelete(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ns := Namespace(t, s, "delete")
	mustSet(t, s, ns, "a", []byte("1"), false)
	mustSet(t, s, ns, "b", []byte("2"), false)
	if err := s.Delete(ctx, ns, "a"); err != nil {
		t.Fatalf("Delete(a): %v", err)
	}
	wantNotFound(t, s, ns, "a")
	if err := s.Delete(ctx, ns, "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete(a) = %v, want ErrNotFound", err)
	}
	wantValue(t, s, ns, "b", []byte("2"))
	wantList(t, s, ns, "b")
	if err := s.Delete(ctx, ns, "b"); err != nil {
		t.Fatalf("Delete(b): %v", err)
	}
	wantList(t, s, ns)
}

func testListOrder(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "list")
	keys := []string{
		"b", "a", "A", "Z", "0", "9", "a/b", "a-b", "a.b", "a_b", "ab", "a/",
		"z/z/z", "default/key/1", ".hidden", "...", "-", "_", "a..b",
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	r := mrand.New(mrand.NewPCG(1, 2))
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		mustSet(t, s, ns, k, []byte(k), false)
	}
	wantList(t, s, ns, want...)
	for _, k := range keys {
		wantValue(t, s, ns, k, []byte(k))
	}
}

func testNamespaceIsolation(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := Namespace(t, s, "iso")
	b := Namespace(t, s, "iso.b-c")
	// c starts with a's name: prefix-based backends must not mix them.
	c := a + "x"
	cleanupNamespace(t, s, c)
	for _, ns := range []string{a, b, c} {
		mustSet(t, s, ns, "k", []byte("value of "+ns), false)
	}
	mustSet(t, s, c, "only-c", []byte("c"), false)
	for _, ns := range []string{a, b, c} {
		wantValue(t, s, ns, "k", []byte("value of "+ns))
	}
	wantNotFound(t, s, a, "only-c")
	wantList(t, s, a, "k")
	wantList(t, s, b, "k")
	wantList(t, s, c, "k", "only-c")
	if err := s.Delete(ctx, a, "k"); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, b, "k", []byte("value of "+b))
	wantValue(t, s, c, "k", []byte("value of "+c))
	if mustSet(t, s, c, "k", []byte("again"), false) {
		t.Fatal("insert into another namespace's existing key reported inserted=true")
	}
	if !mustSet(t, s, a, "k", []byte("again"), false) {
		t.Fatal("insert after delete in a reported inserted=false")
	}
}

func testKeysWithSlash(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "slash")
	// A key, its "parent" and its "child" all coexist: keys are flat.
	for _, k := range []string{"default", "default/key", "default/key/1", "default/key/1/2"} {
		mustSet(t, s, ns, k, []byte("v:"+k), false)
	}
	for _, k := range []string{"default", "default/key", "default/key/1", "default/key/1/2"} {
		wantValue(t, s, ns, k, []byte("v:"+k))
	}
	wantList(t, s, ns, "default", "default/key", "default/key/1", "default/key/1/2")
	if err := s.Delete(context.Background(), ns, "default/key"); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, ns, "default/key/1", []byte("v:default/key/1"))
	wantList(t, s, ns, "default", "default/key/1", "default/key/1/2")
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ns := Namespace(t, s, "invalid")
	tests := []struct {
		name    string
		ns, key string
	}{
		{"empty key", ns, ""},
		{"dot-dot key", ns, ".."},
		{"dot key", ns, "."},
		{"absolute key", ns, "/abs"},
		{"absolute etc", ns, "/etc/passwd"},
		{"parent prefix", ns, "../x"},
		{"parent inside", ns, "a/../b"},
		{"parent suffix", ns, "a/.."},
		{"dot prefix", ns, "./a"},
		{"dot inside", ns, "a/./b"},
		{"dot suffix", ns, "a/."},
		{"double slash", ns, "a//b"},
		{"space", ns, "a b"},
		{"backslash", ns, `a\x2Fb`},
		{"colon", ns, "a:b"},
		{"glob star", ns, "*"},
		{"question mark", ns, "a?"},
		{"quote", ns, "a'b"},
		{"semicolon", ns, "a;DROP TABLE x"},
		{"NUL", ns, "a\x00b"},
		{"newline", ns, "a\nb"},
		{"non-ASCII", ns, "clé"},
		{"empty namespace", "", "k"},
		{"dot-dot namespace", "..", "k"},
		{"dot namespace", ".", "k"},
		{"slash namespace", "a/b", "k"},
		{"absolute namespace", "/tmp", "k"},
		{"colon namespace", "a:b", "k"},
		{"quote namespace", `a"b`, "k"},
		{"space namespace", "a b", "k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := s.Set(ctx, tc.ns, tc.key, []byte("x"), true); !errors.Is(err, storage.ErrInvalidKey) || ok {
				t.Errorf("Set(%q, %q) = %v, %v; want ErrInvalidKey", tc.ns, tc.key, ok, err)
			}
			if ok, err := s.Set(ctx, tc.ns, tc.key, []byte("x"), false); !errors.Is(err, storage.ErrInvalidKey) || ok {
				t.Errorf("insert Set(%q, %q) = %v, %v; want ErrInvalidKey", tc.ns, tc.key, ok, err)
			}
			if _, err := s.Get(ctx, tc.ns, tc.key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Get(%q, %q) = %v; want ErrInvalidKey", tc.ns, tc.key, err)
			}
			if err := s.Delete(ctx, tc.ns, tc.key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Delete(%q, %q) = %v; want ErrInvalidKey", tc.ns, tc.key, err)
			}
			if tc.ns != ns {
				if _, err := s.List(ctx, tc.ns); !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("List(%q) = %v; want ErrInvalidKey", tc.ns, err)
				}
			}
		})
	}
	// None of the rejected writes landed anywhere visible.
	wantList(t, s, ns)
}

func testValueTooLarge(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ns := Namespace(t, s, "toolarge")
	big := make([]byte, storage.MaxValueSize+1)
	for _, overwrite := range []bool{false, true} {
		if ok, err := s.Set(ctx, ns, "big", big, overwrite); !errors.Is(err, storage.ErrValueTooLarge) || ok {
			t.Fatalf("Set(MaxValueSize+1, overwrite=%v) = %v, %v; want ErrValueTooLarge", overwrite, ok, err)
		}
	}
	wantNotFound(t, s, ns, "big")
	// A failed overwrite leaves the old value.
	mustSet(t, s, ns, "k", []byte("old"), false)
	if _, err := s.Set(ctx, ns, "k", big, true); !errors.Is(err, storage.ErrValueTooLarge) {
		t.Fatalf("oversized overwrite = %v, want ErrValueTooLarge", err)
	}
	wantValue(t, s, ns, "k", []byte("old"))
}

func testNoAliasing(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "alias")
	in := []byte("original")
	mustSet(t, s, ns, "k", in, false)
	copy(in, "XXXXXXXX")
	got := mustGet(t, s, ns, "k")
	if string(got) != "original" {
		t.Fatalf("value changed with the caller's input slice: %q", got)
	}
	copy(got, "YYYYYYYY")
	wantValue(t, s, ns, "k", []byte("original"))
}

func testCanceledContext(t *testing.T, s storage.Store) {
	ns := Namespace(t, s, "canceled")
	mustSet(t, s, ns, "k", []byte("v"), false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Set(ctx, ns, "k2", []byte("v"), false); !errors.Is(err, context.Canceled) {
		t.Errorf("Set with canceled context = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, ns, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled context = %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, ns); !errors.Is(err, context.Canceled) {
		t.Errorf("List with canceled context = %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, ns, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with canceled context = %v, want context.Canceled", err)
	}
	// Nothing the canceled calls attempted took effect.
	wantValue(t, s, ns, "k", []byte("v"))
	wantNotFound(t, s, ns, "k2")
}

// RoundRobin returns a Store that sends each call to the next of stores in
// turn, so that running Run on it checks that Stores sharing one backend
// (two Opens of one directory, two pools on one database) behave as one.
// Its Close does nothing: the caller owns stores.
func RoundRobin(stores ...storage.Store) storage.Store {
	if len(stores) == 0 {
		panic("storagetest: RoundRobin of no stores")
	}
	return &roundRobin{stores: stores}
}

type roundRobin struct {
	stores []storage.Store
	next   atomic.Uint64
}

func (r *roundRobin) pick() storage.Store {
	return r.stores[(r.next.Add(1)-1)%uint64(len(r.stores))]
}

func (r *roundRobin) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	return r.pick().Set(ctx, ns, key, value, overwrite)
}

func (r *roundRobin) Get(ctx context.Context, ns, key string) ([]byte, error) {
	return r.pick().Get(ctx, ns, key)
}

func (r *roundRobin) List(ctx context.Context, ns string) ([]string, error) {
	return r.pick().List(ctx, ns)
}

func (r *roundRobin) Delete(ctx context.Context, ns, key string) error {
	return r.pick().Delete(ctx, ns, key)
}

func (r *roundRobin) Close() error { return nil }
