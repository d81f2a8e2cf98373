//go:build cgo

package softhsmtest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// DefaultModule is where Debian's softhsm2 installs the library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// EnvModule overrides DefaultModule.
const EnvModule = "SOFTHSM2_MODULE"

// Module returns the SoftHSM library, skipping the test without one
// (failing in CI).
func Module(t testing.TB) string {
	t.Helper()
	mod := os.Getenv(EnvModule)
	if mod == "" {
		mod = DefaultModule
	}
	_, errLib := os.Stat(mod)
	_, errUtil := exec.LookPath("softhsm2-util")
	if errLib != nil || errUtil != nil {
		msg := fmt.Sprintf("SoftHSM2 is not installed (%s: %v; softhsm2-util: %v); run: apt-get install softhsm2", mod, errLib, errUtil)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return mod
}

// Token is an initialised token of a fresh SoftHSM token directory.
type Token struct {
	Module string
	Label  string
	Pin    string
	SOPin  string
	Dir    string
}

// New creates the token directory, points SOFTHSM2_CONF at it and
// initialises a token labelled label with user PIN pin. The first token
// of a directory is slot_index 0.
func New(t *testing.T, label, pin string) *Token {
	t.Helper()
	mod := Module(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tk := &Token{Module: mod, Label: label, Pin: pin, SOPin: "so-" + pin, Dir: tokens}
	tk.Init(t, label, pin)
	return tk
}

// Init initialises one more token in the directory.
func (tk *Token) Init(t testing.TB, label, pin string) {
	t.Helper()
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-"+pin).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v: %s", err, out)
	}
}

func (tk *Token) open(t testing.TB) *crypto11.Context {
	t.Helper()
	c, err := crypto11.Configure(&crypto11.Config{Path: tk.Module, TokenLabel: tk.Label, Pin: tk.Pin})
	if err != nil {
		t.Fatalf("opening token %q: %v", tk.Label, err)
	}
	return c
}

// GenerateRSA makes a token RSA key pair labelled label, as upstream's
// test script does with pkcs11-tool --keypairgen --label.
func (tk *Token) GenerateRSA(t testing.TB, label string, bits int) {
	t.Helper()
	c := tk.open(t)
	defer c.Close()
	id := make([]byte, 8)
	rand.Read(id)
	if _, err := c.GenerateRSAKeyPairWithLabel(id, []byte(label), bits); err != nil {
		t.Fatalf("generating RSA key pair %q: %v", label, err)
	}
}

// Object is a secret-key object of the token.
type Object struct {
	Value       []byte
	Token       bool // CKA_TOKEN: persistent
	Private     bool
	Extractable bool
	KeyType     uint
}

// SecretObjects lists the secret-key objects labelled label.
func (tk *Token) SecretObjects(t testing.TB, label string) []Object {
	t.Helper()
	c := tk.open(t)
	defer c.Close()
	set := crypto11.NewAttributeSet()
	set.Set(crypto11.CkaLabel, []byte(label))
	keys, err := c.FindKeysWithAttributes(set)
	if err != nil {
		t.Fatalf("listing %q: %v", label, err)
	}
	var out []Object
	for _, k := range keys {
		a, err := c.GetAttributes(k, []crypto11.AttributeType{pkcs11.CKA_VALUE, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_KEY_TYPE})
		if err != nil {
			t.Fatalf("reading %q: %v", label, err)
		}
		flag := func(typ crypto11.AttributeType) bool {
			v := a[typ]
			return v != nil && len(v.Value) == 1 && v.Value[0] == 1
		}
		o := Object{Token: flag(pkcs11.CKA_TOKEN), Private: flag(pkcs11.CKA_PRIVATE), Extractable: flag(pkcs11.CKA_EXTRACTABLE)}
		if v := a[pkcs11.CKA_VALUE]; v != nil {
			o.Value = v.Value
		}
		if v := a[pkcs11.CKA_KEY_TYPE]; v != nil && len(v.Value) == 8 {
			o.KeyType = uint(binary.NativeEndian.Uint64(v.Value))
		}
		out = append(out, o)
	}
	return out
}
