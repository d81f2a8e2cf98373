package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var upstreamKBSConfig = testvectors.Path("trustee/kbs/test/config/kbs.toml")

// bgcheckPolicy is upstream's e2e resource policy shape: a fixed path and
// the sample TEE's evidence.
const bgcheckPolicy = `package policy
default allow = false
allow if {
	data["resource-path"][0] == "one"
	data["resource-path"][1] == "two"
	data["resource-path"][2] == "three"
	input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
}
`

// teeKeys writes one TEE key file per supported type, in the PEM forms
// upstream's kbs-client reads: PKCS#1 for RSA, PKCS#8 for EC.
func teeKeys(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	out["RSA-2048"] = filepath.Join(dir, "tee-rsa.pem")
	writePEM(t, out["RSA-2048"], "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	for name, curve := range map[string]elliptic.Curve{"EC-P256": elliptic.P256(), "EC-P521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		out[name] = filepath.Join(dir, "tee-"+name+".pem")
		writePEM(t, out[name], "PRIVATE KEY", der)
	}
	return out
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("output %q is not base64: %v", s, err)
	}
	return string(b)
}

// TestUpstreamE2EConfig runs upstream's own e2e configuration file,
// unchanged, over HTTPS: admin flows with an Ed25519 bearer JWT, the
// background-check flow (cookie) and the passport flow (Bearer) for every
// TEE key type, then a second KBS that only verifies tokens.
func TestUpstreamE2EConfig(t *testing.T) {
	wd := newWorkDir(t)
	cfg := filepath.Join(wd.Root, "kbs-config.toml")
	if err := os.WriteFile(cfg, readFile(t, upstreamKBSConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startProc(t, wd.Root, bin.kbs, "--config-file", cfg)
	url := "https://" + addr
	cli := func(args ...string) (string, error) {
		return run(t, wd.Root, bin.kbsClient, append([]string{"--url", url, "--cert-file", wd.HTTPSCert}, args...)...)
	}
	admin := func(args ...string) (string, error) {
		return cli(append([]string{"config", "--admin-token-file", wd.AdminToken}, args...)...)
	}
	secret := filepath.Join(wd.Root, "secret")
	os.WriteFile(secret, []byte("e2e secret \x00\xff"), 0o600)
	policy := filepath.Join(wd.Root, "policy.rego")
	os.WriteFile(policy, []byte(bgcheckPolicy), 0o600)

	if _, err := admin("set-resource", "--path", "one/two/three", "--resource-file", secret); err != nil {
		t.Fatal(err)
	}
	if _, err := admin("set-resource", "--path", "one/two/four", "--resource-file", secret); err != nil {
		t.Fatal(err)
	}
	// The default policy denies the sample TEE, and says why.
	if _, err := cli("get-resource", "--path", "one/two/three"); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("default policy: err = %v", err)
	}
	if _, err := admin("set-resource-policy", "--policy-file", policy); err != nil {
		t.Fatal(err)
	}

	t.Run("background check", func(t *testing.T) {
		out, err := cli("get-resource", "--path", "one/two/three")
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeB64(t, out); got != "e2e secret \x00\xff" {
			t.Fatalf("resource = %q", got)
		}
		if _, err := cli("get-resource", "--path", "one/two/four"); err == nil {
			t.Fatal("policy allowed one/two/four")
		}
	})

	var tokens = map[string]string{}
	for name, key := range teeKeys(t, wd.Root) {
		t.Run("passport "+name, func(t *testing.T) {
			tok, err := cli("attest", "--tee-key-file", key)
			if err != nil {
				t.Fatal(err)
			}
			tok = strings.TrimSpace(tok)
			if strings.Count(tok, ".") != 2 {
				t.Fatalf("attest printed %q", tok)
			}
			tokens[key] = tok
			tf := filepath.Join(wd.Root, "token-"+name)
			os.WriteFile(tf, []byte(tok), 0o600)
			out, err := cli("get-resource", "--path", "one/two/three", "--tee-key-file", key, "--attestation-token", tf)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeB64(t, out); got != "e2e secret \x00\xff" {
				t.Fatalf("resource = %q", got)
			}
		})
	}

	t.Run("admin denied without a valid token", func(t *testing.T) {
		bad := filepath.Join(wd.Root, "bad-token")
		other := newWorkDir(t)
		os.WriteFile(bad, readFile(t, other.AdminToken), 0o600) // signed by another key
		evil := filepath.Join(wd.Root, "evil")
		os.WriteFile(evil, []byte("evil"), 0o600)
		if _, err := cli("config", "--admin-token-file", bad, "set-resource", "--path", "one/two/three", "--resource-file", evil); err == nil {
			t.Fatal("foreign admin token accepted")
		}
		viewer := filepath.Join(wd.Root, "viewer-token")
		os.WriteFile(viewer, []byte(wd.adminJWT(t, map[string]any{"iss": "issuer", "aud": "kbs", "role": "viewer"}, time.Hour)), 0o600)
		if _, err := cli("config", "--admin-token-file", viewer, "delete-resource", "--path", "one/two/three"); err == nil {
			t.Fatal("role without ACL accepted")
		}
		expired := filepath.Join(wd.Root, "expired-token")
		os.WriteFile(expired, []byte(wd.adminJWT(t, map[string]any{"iss": "issuer", "aud": "kbs", "role": "admin"}, -time.Hour)), 0o600)
		if _, err := cli("config", "--admin-token-file", expired, "delete-resource", "--path", "one/two/three"); err == nil {
			t.Fatal("expired admin token accepted")
		}
		out, err := cli("get-resource", "--path", "one/two/three")
		if err != nil || decodeB64(t, out) != "e2e secret \x00\xff" {
			t.Fatalf("resource changed by a rejected admin request: %q %v", out, err)
		}
	})

	t.Run("attestation policy and reference values", func(t *testing.T) {
		if _, err := admin("set-sample-reference-value", "svn", "1"); err != nil {
			t.Fatal(err)
		}
		out, err := admin("get-reference-value", "--id", "svn")
		if err != nil || !strings.Contains(out, `"1"`) {
			t.Fatalf("get-reference-value: %q %v", out, err)
		}
		ap := filepath.Join(wd.Root, "ap.rego")
		os.WriteFile(ap, []byte("package policy\nimport rego.v1\ndefault trust_claims := {\"hardware\": 2}\n"), 0o600)
		if _, err := admin("set-attestation-policy", "--policy-file", ap, "--id", "default_cpu"); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(ap, []byte("package policy\nthis is not rego {"), 0o600)
		if _, err := admin("set-attestation-policy", "--policy-file", ap, "--id", "default_cpu"); err == nil {
			t.Fatal("a policy that does not compile was accepted")
		}
	})

	t.Run("second KBS verifies tokens only (passport)", func(t *testing.T) {
		dir := t.TempDir()
		cfg2 := filepath.Join(dir, "kbs2.toml")
		os.WriteFile(cfg2, []byte(fmt.Sprintf(`
[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[attestation_token]
trusted_certs_paths = [%q]
[attestation_service]
type = "coco_as_grpc"
as_addr = "http://127.0.0.1:1"
[admin]
authorization_mode = "InsecureAllowAll"
[storage_backend]
storage_type = "LocalJson"
[storage_backend.backends.local_json]
file_dir_path = %q
`, wd.CACert, filepath.Join(dir, "store"))), 0o600)
		_, addr2 := startProc(t, dir, bin.kbs, "--config-file", cfg2)
		url2 := "http://" + addr2
		if _, err := run(t, dir, bin.kbsClient, "--url", url2, "config", "set-resource", "--path", "one/two/three", "--resource-file", secret); err != nil {
			t.Fatal(err)
		}
		if _, err := run(t, dir, bin.kbsClient, "--url", url2, "config", "set-resource-policy", "--policy-file", policy); err != nil {
			t.Fatal(err)
		}
		for key, tok := range tokens {
			tf := filepath.Join(dir, "tok")
			os.WriteFile(tf, []byte(tok), 0o600)
			out, err := run(t, dir, bin.kbsClient, "--url", url2, "get-resource", "--path", "one/two/three", "--tee-key-file", key, "--attestation-token", tf)
			if err != nil {
				t.Fatal(err)
			}
			if decodeB64(t, out) != "e2e secret \x00\xff" {
				t.Fatalf("resource = %q", out)
			}
		}
		if len(tokens) == 0 {
			t.Fatal("no tokens from the passport subtests")
		}
		// A token whose signer does not chain to the trusted CA is refused.
		tf := filepath.Join(dir, "forged")
		var anyKey, anyTok string
		for k, v := range tokens {
			anyKey, anyTok = k, v
		}
		parts := strings.Split(anyTok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 1
		os.WriteFile(tf, []byte(parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig)), 0o600)
		if _, err := run(t, dir, bin.kbsClient, "--url", url2, "get-resource", "--path", "one/two/three", "--tee-key-file", anyKey, "--attestation-token", tf); err == nil {
			t.Fatal("forged token accepted")
		}
	})
}
