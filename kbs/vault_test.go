package kbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/kbs/vaultkv/vaulttest"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
)

func vaultPluginConfig(addr, token, mount string, version int) string {
	return testConfig + fmt.Sprintf(`
[[plugins]]
name = "resource"
storage_backend_type = "Vault"
vault_url = %q
token = %q
mount_path = %q
kv_version = %d
`, addr, token, mount, version)
}

// TestVaultResourceBackend runs the resource plugin on a real Vault dev
// server, KV v1 and v2: an admin POST lands in Vault (not in the KBS
// store), an attested GET returns it as a JWE sealed to the TEE key, an
// admin DELETE removes it and a GET then answers the usual not-found
// error; a wrong token is a clear error without the token in it.
func TestVaultResourceBackend(t *testing.T) {
	v := vaulttest.Start(t, vaulttest.Options{})
	v.EnableKV("kv1", 1)
	v.EnableKV("kv2", 2)
	for _, tc := range []struct {
		mount    string
		version  int
		readPath string
	}{
		{"kv1", 1, "kv1/default/vault/secret"},
		{"kv2", 2, "kv2/data/default/vault/secret"},
	} {
		t.Run(tc.mount, func(t *testing.T) {
			e := newEnv(t, vaultPluginConfig(v.Addr, v.Token, tc.mount, tc.version), nil, nil)
			const secret = "vault-held-s3cret"
			e.provision("default/vault/secret", secret, allowAllPolicy)
			binary := string([]byte{0, 0xff, 0x10, 0x80})
			e.admin("POST", "/kbs/v0/resource/default/vault/binary", []byte(binary))

			// In Vault, in the field "data"; not in the KBS store.
			var stored struct {
				Data map[string]json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(v.Must(http.MethodGet, tc.readPath, nil), &stored); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(stored.Data["data"]), secret) {
				t.Fatalf("not in Vault: %s", stored.Data["data"])
			}
			if _, err := e.store.Get(context.Background(), storage.NamespaceRepository, "default/vault/secret"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the resource is also in the KBS store: %v", err)
			}

			g := e.guest(protocol.KeyEC256)
			g.rcar()
			for path, want := range map[string]string{"default/vault/secret": secret, "default/vault/binary": binary} {
				code, b := g.do("GET", "/kbs/v0/resource/"+path, nil, nil)
				if code != 200 {
					t.Fatalf("GET %s: %d %s", path, code, b)
				}
				if strings.Contains(string(b), secret) {
					t.Fatal("the resource travelled in clear")
				}
				if got := string(g.decrypt(b)); got != want {
					t.Fatalf("GET %s = %q, want %q", path, got, want)
				}
			}

			e.admin("DELETE", "/kbs/v0/resource/default/vault/secret", nil)
			code, b := g.do("GET", "/kbs/v0/resource/default/vault/secret", nil, nil)
			info := wantError(t, code, b, 401, "PluginInternalError")
			if info.Detail != "Plugin internal error: resource default/vault/secret not found" {
				t.Fatalf("detail = %q", info.Detail)
			}
			if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, v.Token) {
				t.Fatal("the secret or the Vault token is in the logs")
			}
		})
	}

	t.Run("wrong token", func(t *testing.T) {
		const bad = "hvs.wrong-token-for-the-test"
		e := newEnv(t, vaultPluginConfig(v.Addr, bad, "kv1", 1), nil, nil)
		e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(allowAllPolicy))))
		g := e.guest(protocol.KeyEC256)
		g.rcar()
		code, b := g.do("GET", "/kbs/v0/resource/default/vault/secret", nil, nil)
		info := wantError(t, code, b, 500, "InternalError")
		if !strings.Contains(info.Detail, "permission denied (HTTP 403)") || strings.Contains(info.Detail, bad) {
			t.Fatalf("detail = %q", info.Detail)
		}
		req, _ := http.NewRequest("POST", e.ts.URL+"/kbs/v0/resource/default/vault/secret", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("POST with a wrong token: %d", resp.StatusCode)
		}
		if strings.Contains(e.logs.String(), bad) {
			t.Fatal("the Vault token is in the logs")
		}
	})
}

// TestVaultPluginConfig checks the [[plugins]] keys, CheckConfig (which
// reads no file and opens nothing) and that a printed configuration does
// not show the token.
func TestVaultPluginConfig(t *testing.T) {
	cfg, ignored, err := ParseConfig([]byte(testConfig + `
[[plugins]]
name = "resource"
storage_backend_type = "Vault"
vault_url = "https://vault.example:8200"
token = "hvs.config-token"
mount_path = "kv"
verify_ssl = false
ca_certs = ["/nonexistent/ca.pem"]
kv_version = 2
namespace = "team-a"
timeout_secs = 3
`))
	if err != nil || len(ignored) != 0 {
		t.Fatalf("%v, ignored %v", err, ignored)
	}
	p := cfg.Plugins[0]
	if p.VaultURL != "https://vault.example:8200" || p.Token != "hvs.config-token" || p.MountPath != "kv" || p.VerifySSL == nil || *p.VerifySSL ||
		len(p.CACerts) != 1 || p.KVVersion != 2 || p.Namespace != "team-a" || p.TimeoutSecs != 3 {
		t.Fatalf("decoded %+v", p)
	}
	for _, s := range []string{fmt.Sprintf("%v", cfg.Plugins), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p)} {
		if strings.Contains(s, "hvs.config-token") || !strings.Contains(s, "redacted") {
			t.Fatalf("printed: %s", s)
		}
	}
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("CheckConfig read the CA file or connected: %v", err)
	}
	for _, bad := range []string{
		`storage_backend_type = "Vault"` + "\n" + `token = "t"`,
		`storage_backend_type = "vault"` + "\n" + `vault_url = "http://127.0.0.1:8200"`,
		`storage_backend_type = "Vault"` + "\n" + `vault_url = "http://127.0.0.1:8200"` + "\n" + `token = "t"` + "\n" + `kv_version = 3`,
		`storage_backend_type = "Vault"` + "\n" + `vault_url = "http://127.0.0.1:8200"` + "\n" + `token = "t"` + "\n" + `timeout_secs = 99999999999`,
		`storage_backend_type = "Aws"`,
	} {
		cfg, _, err := ParseConfig([]byte(testConfig + "\n[[plugins]]\nname = \"resource\"\n" + bad + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckConfig(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: CheckConfig = %v", bad, err)
		}
	}
	// New loads the CA files.
	cfg, _, _ = ParseConfig([]byte(vaultPluginConfig("https://127.0.0.1:1", "t", "kv", 1) + "ca_certs = [\"/nonexistent/ca.pem\"]\n"))
	_, err = New(context.Background(), cfg, Options{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("New with a missing CA file: %v", err)
	}
}
