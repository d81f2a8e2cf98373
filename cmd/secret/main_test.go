package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var kata = testvectors.Path("kata/")

func secret(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &bytes.Buffer{})
	return out.String(), err
}

// offlineKBS writes an offline_fs_kbc file with resources and points the
// tool at it.
func offlineKBS(t *testing.T, res map[string][]byte) {
	t.Helper()
	m := map[string]string{}
	for k, v := range res {
		m[k] = base64.StdEncoding.EncodeToString(v)
	}
	b, _ := json.Marshal(m)
	p := filepath.Join(t.TempDir(), "resources.json")
	os.WriteFile(p, b, 0o600)
	t.Setenv("OFFLINE_FS_KBC_EXTRA_FILE_PATH", p)
	t.Setenv("AA_KBC_PARAMS", "")
}

func TestRealKataSecret(t *testing.T) {
	jwk, _ := os.ReadFile(kata + "sealed-secret-signing-key.pub.jwk")
	offlineKBS(t, map[string][]byte{
		"default/signing-key/sealed-secret": jwk,
		"default/sealed-secret/test":        []byte("unsealed_secret"),
	})
	dir := t.TempDir()
	sealed, _ := os.ReadFile(kata + "sealed-secret.txt")
	f := filepath.Join(dir, "s")
	os.WriteFile(f, sealed, 0o600)
	out, err := secret(t, "unseal", "--file-path", f, "-a", "offline_fs_kbc::null")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, f+".unsealed") {
		t.Fatalf("output %q", out)
	}
	got, _ := os.ReadFile(f + ".unsealed")
	if string(got) != "unsealed_secret" {
		t.Fatalf("unsealed %q", got)
	}
	// Never overwrites.
	if _, err := secret(t, "unseal", "-f", f, "-a", "offline_fs_kbc::null"); err == nil {
		t.Fatal("unseal overwrote its output")
	}
}

func TestKeygenSealUnseal(t *testing.T) {
	dir := t.TempDir()
	if _, err := secret(t, "keygen", "--kid", "my-key", "--output-dir", dir); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "my-key-public.json"))
	if !strings.Contains(string(pub), `"kid": "my-key"`) || strings.Contains(string(pub), `"d"`) {
		t.Fatalf("public key file %s", pub)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "my-key-private.json")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	if _, err := secret(t, "keygen", "--kid", "my-key", "--output-dir", dir); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	if _, err := secret(t, "keygen", "--kid", "../x", "--output-dir", dir); err == nil {
		t.Fatal("keygen accepted a kid with a path")
	}
	priv := filepath.Join(dir, "my-key-private.json")
	kek := bytes.Repeat([]byte{9}, 32)
	kekFile := filepath.Join(dir, "kek")
	os.WriteFile(kekFile, kek, 0o600)
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("envelope secret"), 0o600)
	offlineKBS(t, map[string][]byte{
		"default/signing/key":  pub,
		"default/vault/secret": []byte("vault secret"),
		"default/kek/1":        kek,
	})
	keyDir := filepath.Join(dir, "keys")
	os.Mkdir(keyDir, 0o700)
	os.WriteFile(filepath.Join(keyDir, "local-key"), pub, 0o600)

	tests := []struct {
		name string
		seal []string
		want string
	}{
		{"vault, kbs kid", []string{"seal", "--signing-kid", "kbs:///default/signing/key", "--signing-jwk-path", priv,
			"vault", "--resource-uri", "kbs:///default/vault/secret", "--provider", "kbs"}, "vault secret"},
		{"vault, local kid", []string{"seal", "--signing-kid", "local-key", "--signing-jwk-path", priv,
			"vault", "-r", "kbs:///default/vault/secret", "-p", "kbs", "-a", `{"x":"y"}`}, "vault secret"},
		{"envelope kbs", []string{"seal", "--signing-kid", "kbs:///default/signing/key", "--signing-jwk-path", priv,
			"envelope", "--key-id", "kbs:///default/kek/1", "--file-path", plain, "kbs", "--kek-path", kekFile}, "envelope secret"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := secret(t, tt.seal...)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "sealed"+string(rune('a'+i)))
			os.WriteFile(f, []byte(out), 0o600)
			if _, err := secret(t, "unseal", "-f", f, "-a", "offline_fs_kbc::null", "--key-dir", keyDir); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(f + ".unsealed")
			if string(got) != tt.want {
				t.Fatalf("unsealed %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	offlineKBS(t, map[string][]byte{})
	sealed, _ := os.ReadFile(kata + "sealed-secret.txt")
	tampered := bytes.Replace(sealed, []byte("ZI2f"), []byte("ZI2g"), 1)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	jwk, _ := os.ReadFile(kata + "sealed-secret-signing-key.pub.jwk")
	tests := []struct {
		name string
		args []string
	}{
		{"no subcommand", nil},
		{"unknown subcommand", []string{"open"}},
		{"unseal without file", []string{"unseal"}},
		{"unseal missing file", []string{"unseal", "-f", filepath.Join(dir, "nope")}},
		{"unseal malformed", []string{"unseal", "-f", write("m", []byte("sealed.x.y")), "-a", "offline_fs_kbc::null"}},
		{"unseal tampered", []string{"unseal", "-f", write("t", tampered), "-a", "offline_fs_kbc::null"}},
		{"unseal without a KBC for a kbs kid", []string{"unseal", "-f", write("k", sealed)}},
		{"unseal bad kbc params", []string{"unseal", "-f", write("p", sealed), "-a", "cc_kbc"}},
		{"seal without kid", []string{"seal", "--signing-jwk-path", write("j", jwk), "vault", "-r", "kbs:///a/b/c", "-p", "kbs"}},
		{"seal with a public key", []string{"seal", "--signing-kid", "k", "--signing-jwk-path", write("j2", jwk), "vault", "-r", "kbs:///a/b/c", "-p", "kbs"}},
		{"seal unsupported KMS", []string{"seal", "--signing-kid", "k", "--signing-jwk-path", write("j3", jwk), "envelope", "-k", "x", "-f", write("pl", []byte("x")), "ali"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := secret(t, tt.args...); err == nil {
				t.Fatal("accepted")
			}
			for _, e := range mustReadDir(t, dir) {
				if strings.HasSuffix(e, ".unsealed") {
					t.Fatalf("wrote %s", e)
				}
			}
		})
	}
}

func mustReadDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
