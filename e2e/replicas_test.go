package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/protocol"
)

// backendCase is a storage configuration two KBS processes can share.
type backendCase struct {
	name string
	toml string   // [storage_backend] section
	env  []string // extra environment for the kbs processes
}

func serviceURL(t *testing.T, env string) string {
	t.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: run the suite through scripts/test.sh, which starts the servers", env)
		}
		t.Skipf("%s not set (run scripts/test.sh, or eval \"$(scripts/services.sh start)\")", env)
	}
	return u
}

func backendCases(t *testing.T) []func(t *testing.T) backendCase {
	return []func(t *testing.T) backendCase{
		func(t *testing.T) backendCase {
			dir := t.TempDir()
			return backendCase{name: "LocalFs", toml: fmt.Sprintf("[storage_backend]\nstorage_type = \"LocalFs\"\n[storage_backend.backends.local_fs]\ndir_path = %q\n", dir)}
		},
		func(t *testing.T) backendCase {
			u := serviceURL(t, "GOTRUSTEE_TEST_REDIS_URL")
			return backendCase{name: "Redis", toml: "[storage_backend]\nstorage_type = \"Redis\"\n", env: []string{"REDIS_URL=" + u}}
		},
		func(t *testing.T) backendCase {
			u := serviceURL(t, "GOTRUSTEE_TEST_POSTGRES_URL")
			return backendCase{name: "Postgres", toml: "[storage_backend]\nstorage_type = \"Postgres\"\n", env: []string{"POSTGRES_URL=" + u}}
		},
	}
}

func startKBSWithEnv(t *testing.T, dir, cfg string, env []string) string {
	t.Helper()
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	_, addr := startProc(t, dir, bin.kbs, "--config-file", cfg)
	return "http://" + addr
}

// TestTwoReplicasSharedStore runs two kbs processes on one store and does
// /auth on the first, /attest on the second and the resource GET on the
// first: no sticky sessions needed. It also runs kbs-client's full flow on
// each backend and checks that a resource written through one replica is
// served by the other.
func TestTwoReplicasSharedStore(t *testing.T) {
	for _, mk := range backendCases(t) {
		bc := mk(t)
		t.Run(bc.name, func(t *testing.T) {
			// Both replicas sign with one token key and trust its CA, as a
			// replicated deployment does.
			wd := newWorkDir(t)
			dir := wd.Root
			cfg := filepath.Join(dir, "kbs.toml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`
[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
type = "coco_as_builtin"
[attestation_service.attestation_token_broker.signer]
key_path = %q
cert_path = %q
[attestation_token]
trusted_certs_paths = [%q]
`, wd.TokenKey, wd.TokenCertChain, wd.CACert)+bc.toml), 0o600)
			a := startKBSWithEnv(t, dir, cfg, bc.env)
			b := startKBSWithEnv(t, dir, cfg, bc.env)
			path := "replica/" + strings.ToLower(bc.name) + "/secret"
			secret := filepath.Join(dir, "secret")
			os.WriteFile(secret, []byte("shared by replicas"), 0o600)
			mustRun(t, dir, bin.kbsClient, "--url", a, "config", "set-resource", "--path", path, "--resource-file", secret)
			mustRun(t, dir, bin.kbsClient, "--url", b, "config", "set-resource-policy", "--allow-all")

			// kbs-client against the replica that did not store the resource.
			out := mustRun(t, dir, bin.kbsClient, "--url", b, "get-resource", "--path", path)
			if decodeB64(t, out) != "shared by replicas" {
				t.Fatalf("kbs-client on B: %q", out)
			}

			kp, err := protocol.GenerateKeyPair(protocol.KeyEC256, nil)
			if err != nil {
				t.Fatal(err)
			}
			hc := &http.Client{}
			post := func(url string, body any, cookie string) (*http.Response, []byte) {
				bb, _ := json.Marshal(body)
				req, _ := http.NewRequest("POST", url, bytes.NewReader(bb))
				req.Header.Set("Content-Type", "application/json")
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				return resp, readAll(t, resp.Body)
			}
			resp, body := post(a+"/kbs/v0/auth", map[string]any{"version": "0.4.0", "tee": "sample",
				"extra-params": map[string]any{"supported-hash-algorithms": []string{"sha384"}}}, "")
			if resp.StatusCode != 200 {
				t.Fatalf("auth on A: %d %s", resp.StatusCode, body)
			}
			var ch protocol.Challenge
			json.Unmarshal(body, &ch)
			cookie := strings.SplitN(resp.Header.Get("Set-Cookie"), ";", 2)[0]
			if !strings.HasPrefix(cookie, "kbs-session-id=") {
				t.Fatalf("cookie = %q", cookie)
			}
			rd, _ := protocol.ReportData(protocol.SHA384, ch.Nonce, kp.PublicKey(), "")
			ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
			resp, body = post(b+"/kbs/v0/attest", protocol.Attestation{
				RuntimeData: protocol.RuntimeData{Nonce: ch.Nonce, TeePubKey: kp.PublicKey()},
				TeeEvidence: protocol.CompositeEvidence{PrimaryEvidence: ev},
			}, cookie)
			if resp.StatusCode != 200 {
				t.Fatalf("attest on B: %d %s", resp.StatusCode, body)
			}
			req, _ := http.NewRequest("GET", a+"/kbs/v0/resource/"+path, nil)
			req.Header.Set("Cookie", cookie)
			gr, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			jb, _ := io.ReadAll(gr.Body)
			gr.Body.Close()
			if gr.StatusCode != 200 {
				t.Fatalf("GET on A: %d %s", gr.StatusCode, jb)
			}
			jwe, err := protocol.ParseResponse(jb)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := kp.Decrypt(jwe)
			if err != nil || string(pt) != "shared by replicas" {
				t.Fatalf("decrypt: %q %v", pt, err)
			}
		})
	}
}
