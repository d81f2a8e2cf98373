//go:build cgo

package pkcs11plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/go-trustee/go-trustee/kbs/pkcs11plugin/softhsmtest"
)

const (
	testPin   = "87654321"
	wrapLabel = "trustee-test"
)

func openTest(t *testing.T, tk *softhsmtest.Token, cfg Config) *Plugin {
	t.Helper()
	if cfg.Module == "" {
		cfg.Module = tk.Module
	}
	if cfg.Pin == "" {
		cfg.Pin = tk.Pin
	}
	p, err := Open(cfg, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestResourceObjects: a write is a persistent (CKA_TOKEN) private,
// extractable CKK_GENERIC_SECRET secret key labelled
// <repository>/<type>/<tag> (upstream's template), readable after the
// plugin is closed and the module reopened; a second write replaces the
// first (one object); delete removes it and a read then is upstream's
// "Could not find object with label ..."; empty and MaxResourceBytes
// values round-trip, one byte more is ErrTooLarge.
func TestResourceObjects(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	ctx := context.Background()
	p := openTest(t, tk, Config{})
	const desc = "default/hsm/secret"
	binary := []byte{0, 0xff, 0x10, 0x80, 'x'}
	if err := p.WriteResource(ctx, desc, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteResource(ctx, desc, binary); err != nil {
		t.Fatal(err)
	}
	objs := tk.SecretObjects(t, desc)
	if len(objs) != 1 {
		t.Fatalf("%d objects labelled %s, want 1", len(objs), desc)
	}
	o := objs[0]
	if !bytes.Equal(o.Value, binary) || !o.Token || !o.Private || !o.Extractable || o.KeyType != pkcs11.CKK_GENERIC_SECRET {
		t.Fatalf("object %+v", o)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadResource(ctx, desc); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	p = openTest(t, tk, Config{})
	got, err := p.ReadResource(ctx, desc)
	if err != nil || !bytes.Equal(got, binary) {
		t.Fatalf("after reopening: %q, %v", got, err)
	}
	if err := p.DeleteResource(ctx, desc); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error { _, err := p.ReadResource(ctx, desc); return err }(),
		p.DeleteResource(ctx, desc),
	} {
		if !errors.Is(err, ErrNotFound) || err.Error() != "Could not find object with label "+desc {
			t.Fatalf("after delete: %v", err)
		}
	}
	if n := len(tk.SecretObjects(t, desc)); n != 0 {
		t.Fatalf("%d objects left", n)
	}
	if err := p.WriteResource(ctx, "default/hsm/empty", nil); err != nil {
		t.Fatalf("an empty resource: %v", err)
	}
	if got, err := p.ReadResource(ctx, "default/hsm/empty"); err != nil || len(got) != 0 {
		t.Fatalf("empty resource: %q, %v", got, err)
	}
	big := make([]byte, MaxResourceBytes+1)
	if err := p.WriteResource(ctx, desc, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized write: %v", err)
	}
	if err := p.WriteResource(ctx, desc, big[:MaxResourceBytes]); err != nil {
		t.Fatalf("write of MaxResourceBytes: %v", err)
	}
	if got, err := p.ReadResource(ctx, desc); err != nil || len(got) != MaxResourceBytes {
		t.Fatalf("read of MaxResourceBytes: %d, %v", len(got), err)
	}
}

// TestObjectsOfOtherWriters: objects made outside the plugin are read as
// upstream reads them: upstream's own template (secret key, no
// CKA_TOKEN... here with it, to outlive the session), a data object as
// pkcs11-tool --write-object --type data makes, and a sensitive key is
// upstream's "Key does not have value attribute available.".
func TestObjectsOfOtherWriters(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	ctx := context.Background()
	p := openTest(t, tk, Config{})
	create := func(attrs ...*pkcs11.Attribute) {
		t.Helper()
		err := p.withSession(ctx, true, func(sh pkcs11.SessionHandle) error {
			_, err := p.raw.CreateObject(sh, append(attrs, pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	create(
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("upstream")),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "default/upstream/key"),
	)
	create(
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("data object")),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "default/data/obj"),
	)
	create(
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("hidden")),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "default/sensitive/key"),
	)
	for desc, want := range map[string]string{"default/upstream/key": "upstream", "default/data/obj": "data object"} {
		got, err := p.ReadResource(ctx, desc)
		if err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v", desc, got, err)
		}
	}
	_, err := p.ReadResource(ctx, "default/sensitive/key")
	if !errors.Is(err, ErrNotReadable) || err.Error() != "Key does not have value attribute available." {
		t.Fatalf("sensitive: %v", err)
	}
	// A write replaces the data object too.
	if err := p.WriteResource(ctx, "default/data/obj", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if got, err := p.ReadResource(ctx, "default/data/obj"); err != nil || string(got) != "v2" {
		t.Fatalf("after replace: %q, %v", got, err)
	}
}

// TestWrapKey: with RsaPkcsTest (what SoftHSM 2.6 supports, as upstream's
// test) a wrap is RSA-OAEP to the token's public key and unwraps back;
// plaintexts and ciphertexts of the wrong size and a forged ciphertext
// are ErrInvalidInput; without lookup_label the endpoints say so.
func TestWrapKey(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	tk.GenerateRSA(t, wrapLabel, 2048)
	ctx := context.Background()
	p := openTest(t, tk, Config{RsaMechanism: MechanismTest, LookupLabel: wrapLabel})
	for _, n := range []int{0, 1, 32, 2048/8 - 2*20 - 2} {
		msg := make([]byte, n)
		rand.Read(msg)
		ct, err := p.Wrap(ctx, msg)
		if err != nil {
			t.Fatalf("wrap %d bytes: %v", n, err)
		}
		if len(ct) != 256 || (n >= 8 && bytes.Contains(ct, msg)) {
			t.Fatalf("wrapped %d bytes to %d", n, len(ct))
		}
		pt, err := p.Unwrap(ctx, ct)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("unwrap %d bytes: %v", n, err)
		}
	}
	if _, err := p.Wrap(ctx, make([]byte, 2048/8-2*20-1)); !errors.Is(err, ErrInvalidInput) || !strings.HasPrefix(err.Error(), "unable to encrypt HTTP body with public wrap key") {
		t.Fatalf("oversized wrap: %v", err)
	}
	for _, ct := range [][]byte{nil, make([]byte, 255), make([]byte, 257), bytes.Repeat([]byte{0x42}, 256)} {
		if _, err := p.Unwrap(ctx, ct); !errors.Is(err, ErrInvalidInput) || !strings.HasPrefix(err.Error(), "unable to decrypt HTTP body with private wrap key") {
			t.Fatalf("unwrap of %d bytes: %v", len(ct), err)
		}
	}

	q := openTest(t, tk, Config{})
	if _, err := q.Wrap(ctx, []byte("x")); !errors.Is(err, ErrNoWrapKey) || !strings.HasPrefix(err.Error(), "unable to find public wrap key in PKCS11 module") {
		t.Fatalf("wrap without lookup_label: %v", err)
	}
	if _, err := q.Unwrap(ctx, []byte("x")); !errors.Is(err, ErrNoWrapKey) || !strings.HasPrefix(err.Error(), "unable to find private wrap key in PKCS11 module") {
		t.Fatalf("unwrap without lookup_label: %v", err)
	}
}

// TestDefaultMechanismOnSoftHSM: rsa_mechanism RsaPkcsOaep (SHA-256) with
// a token that cannot do it (SoftHSM 2.6, upstream's
// expected_failure_using_softhsm_mfg_sha256) is a start-up error naming
// the mechanism; a token that can, round-trips.
func TestDefaultMechanismOnSoftHSM(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	tk.GenerateRSA(t, wrapLabel, 2048)
	p, err := Open(Config{Module: tk.Module, Pin: tk.Pin, LookupLabel: wrapLabel}, Options{})
	if err != nil {
		if !strings.Contains(err.Error(), "cannot unwrap with rsa_mechanism RsaPkcsOaep") {
			t.Fatalf("Open: %v", err)
		}
		t.Logf("SoftHSM refuses OAEP-SHA256, as upstream expects: %v", err)
		return
	}
	defer p.Close()
	ct, err := p.Wrap(context.Background(), []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := p.Unwrap(context.Background(), ct); err != nil || string(pt) != "k" {
		t.Fatalf("%q, %v", pt, err)
	}
}

// TestOpenErrors: a wrong PIN, a slot_index without a token, a missing or
// bogus module and a missing wrap key are clear start-up errors without
// the PIN in them, and leave the module closed (a later Open works).
func TestOpenErrors(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	notLib := filepath.Join(t.TempDir(), "not-a-library.so")
	os.WriteFile(notLib, []byte("nope"), 0o600)
	const wrongPin = "wrong-pin-4711"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
		is   error
	}{
		{"wrong pin", Config{Module: tk.Module, Pin: wrongPin}, "the pin is wrong", nil},
		// SoftHSM lists its free slot as holding an (uninitialised) token.
		{"uninitialised token", Config{Module: tk.Module, Pin: wrongPin, SlotIndex: 1}, "(slot_index 1) is not initialized", ErrNoToken},
		{"no such slot", Config{Module: tk.Module, Pin: wrongPin, SlotIndex: 2}, "Slot index out of range: slot_index 2, the module has 2 slot(s) with a token", ErrNoToken},
		{"missing module", Config{Module: "/nonexistent/libpkcs11.so", Pin: wrongPin}, "unable to open pkcs11 module: stat /nonexistent/libpkcs11.so", nil},
		{"not a library", Config{Module: notLib, Pin: wrongPin}, "is not a loadable PKCS#11 library", nil},
		{"no wrap key", Config{Module: tk.Module, Pin: tk.Pin, LookupLabel: "absent", RsaMechanism: MechanismTest}, `unable to find public wrap key in PKCS11 module: no key pair labelled "absent"`, ErrNoWrapKey},
		{"invalid", Config{Module: tk.Module}, "pin is required", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Open(tc.cfg, Options{})
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), wrongPin) || strings.Contains(err.Error(), testPin) {
				t.Fatalf("err = %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, not %v", err, tc.is)
			}
		})
	}
	p := openTest(t, tk, Config{})
	if err := p.WriteResource(context.Background(), "a/b/c", []byte("ok")); err != nil {
		t.Fatalf("after the failures: %v", err)
	}
}

// TestConcurrent: reads, writes, deletes and unwraps from many goroutines
// (run under -race) see only whole values, and Close waits for them.
func TestConcurrent(t *testing.T) {
	tk := softhsmtest.New(t, "kbs", testPin)
	tk.GenerateRSA(t, wrapLabel, 2048)
	ctx := context.Background()
	p := openTest(t, tk, Config{RsaMechanism: MechanismTest, LookupLabel: wrapLabel})
	ct, err := p.Wrap(ctx, []byte("wrapped"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteResource(ctx, "default/c/0", []byte("v-0")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				switch (g + i) % 4 {
				case 0:
					if err := p.WriteResource(ctx, "default/c/0", fmt.Appendf(nil, "v-%d", i)); err != nil {
						errs <- err
					}
				case 1:
					v, err := p.ReadResource(ctx, "default/c/0")
					if err != nil || !strings.HasPrefix(string(v), "v-") {
						errs <- fmt.Errorf("read %q: %v", v, err)
					}
				case 2:
					if pt, err := p.Unwrap(ctx, ct); err != nil || string(pt) != "wrapped" {
						errs <- fmt.Errorf("unwrap %q: %v", pt, err)
					}
				case 3:
					desc := fmt.Sprintf("default/g%d/%d", g, i)
					if err := p.WriteResource(ctx, desc, []byte("x")); err != nil {
						errs <- err
					} else if err := p.DeleteResource(ctx, desc); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(tk.SecretObjects(t, "default/c/0")); n != 1 {
		t.Fatalf("%d objects labelled default/c/0", n)
	}
}
