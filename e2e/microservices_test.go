package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

// Upstream's integration-test policies (integration-tests/tests/
// get_resource.rs at the vendored commit), word for word.
const (
	checkContraindicatedPolicy = `
package policy
import rego.v1

default allow = false

allow if {
    input["submods"]["cpu0"]["ear.status"] != "contraindicated"
}
`
	checkContraindicatedDevicePolicy = `
package policy
import rego.v1

default allow = false

allow if {
    input["submods"]["cpu0"]["ear.status"] != "contraindicated"
    input["submods"]["gpu0"]["ear.status"] != "contraindicated"
}
`
	earPolicyHead = `
package policy
import rego.v1

default hardware := 97
default executables := 33
default configuration := 36
default file_system := 0
default instance_identity := 0
default runtime_opaque := 0
default storage_opaque := 0
default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}
`
	earContraindicatedPolicy = earPolicyHead
	earRVPolicy              = earPolicyHead + `
hardware := 2 if {
    input.sample.svn in query_reference_value("svn")
}
`
	earDeviceRVPolicy = earPolicyHead + `
hardware := 2 if {
    input.sampledevice.svn in query_reference_value("device_svn")
}
`
)

// rvMessage is a sample reference-value message, as upstream's harness
// registers them.
func rvMessage(t *testing.T, name string, value any) []byte {
	t.Helper()
	p, _ := json.Marshal(map[string]any{name: value})
	m, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(p)})
	return m
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, dir string, env []string, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstderr: %s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// splitStack is rvps (+ grpc-as) + kbs as separate processes.
type splitStack struct {
	kbsURL, asAddr, rvpsAddr string
	as, rvps                 *proc
	dir                      string
	asArgs                   []string
}

// startSplit starts rvps, then — when withAS — grpc-as on a fixed port
// (so that it can be restarted on the same address) with a remote RVPS,
// then a KBS whose attestation service is that grpc-as (coco_as_grpc) or,
// without grpc-as, a built-in AS with rvps_config GrpcRemote (upstream's
// EarTokenRemoteRvps integration configuration).
func startSplit(t *testing.T, wd *workDir, withAS bool) *splitStack {
	t.Helper()
	dir := wd.Root
	st := &splitStack{dir: dir}
	rvpsCfg := filepath.Join(dir, "rvps.json")
	os.WriteFile(rvpsCfg, []byte(fmt.Sprintf(`{"storage":{"storage_type":"LocalFs","backends":{"local_fs":{"dir_path":%q}}}}`, filepath.Join(dir, "rvps-store"))), 0o600)
	st.rvps, st.rvpsAddr = startProc(t, dir, bin.rvps, "-c", rvpsCfg, "-a", "127.0.0.1:0")

	signer := fmt.Sprintf(`"signer": {"key_path": %q, "cert_path": %q}`, wd.TokenKey, wd.TokenCertChain)
	asSection := fmt.Sprintf(`[attestation_service]
type = "coco_as_builtin"
[attestation_service.rvps_config]
type = "GrpcRemote"
address = "http://%s"
[attestation_service.attestation_token_broker.signer]
key_path = %q
cert_path = %q
`, st.rvpsAddr, wd.TokenKey, wd.TokenCertChain)
	if withAS {
		asCfg := filepath.Join(dir, "as-config.json")
		os.WriteFile(asCfg, []byte(fmt.Sprintf(`{
  "storage_backend": {"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": %q}}},
  "rvps_config": {"type": "GrpcRemote", "address": "http://%s"},
  "attestation_token_broker": {"duration_min": 5, %s}
}`, filepath.Join(dir, "as-store"), st.rvpsAddr, signer)), 0o600)
		st.asArgs = []string{"--socket", freeAddr(t), "--config-file", asCfg}
		st.as, st.asAddr = startProc(t, dir, bin.grpcAS, st.asArgs...)
		asSection = fmt.Sprintf("[attestation_service]\ntype = \"coco_as_grpc\"\nas_addr = \"http://%s\"\npool_size = 4\n", st.asAddr)
	}
	cfg := filepath.Join(dir, "kbs.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_token]
trusted_certs_paths = [%q]
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = %q
`, wd.CACert, filepath.Join(dir, "kbs-store"))+asSection), 0o600)
	_, addr := startProc(t, dir, bin.kbs, "--config-file", cfg)
	st.kbsURL = "http://" + addr
	return st
}

// TestSplitServicesUpstreamIntegration runs upstream's remote-RVPS
// integration scenarios (get_resource.rs: the EarTokenRemoteRvps cases)
// against our processes, in both of upstream's topologies: a KBS with a
// built-in AS and a remote rvps, and the full split kbs → grpc-as → rvps.
// Reference values reach the RVPS as upstream's harness sends them: with
// rvps-tool straight to the RVPS, and (ours) through the KBS admin API,
// which travels kbs → grpc-as → rvps.
func TestSplitServicesUpstreamIntegration(t *testing.T) {
	for _, withAS := range []bool{false, true} {
		name := "kbs+rvps"
		if withAS {
			name = "kbs+grpc-as+rvps"
		}
		t.Run(name, func(t *testing.T) {
			wd := newWorkDir(t)
			st := startSplit(t, wd, withAS)
			dir := wd.Root
			cli := func(env []string, args ...string) (string, error) {
				return runEnv(t, dir, env, bin.kbsClient, append([]string{"--url", st.kbsURL}, args...)...)
			}
			write := fileWriter(t, dir)
			mustCLI := func(args ...string) string {
				t.Helper()
				out, err := cli(nil, args...)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			mustCLI("config", "set-resource", "--path", "default/test/secret", "--resource-file", write("secret", []byte("shhhhhhh")))

			cases := []struct {
				name, resourcePolicy, cpuPolicy, gpuPolicy string
				rvs                                        map[string]any
				device, allowed                            bool
			}{
				{"policy_contraindicated", checkContraindicatedPolicy, earContraindicatedPolicy, "", nil, false, false},
				{"policy_not_contraindicated", checkContraindicatedPolicy, earRVPolicy, "",
					map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1}, false, true},
				{"device_contraindicated", checkContraindicatedDevicePolicy, earRVPolicy, earRVPolicy,
					map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1}, true, false},
				{"device_not_contraindicated", checkContraindicatedDevicePolicy, earRVPolicy, earDeviceRVPolicy,
					map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1, "device_svn": []string{"2"}}, true, true},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					mustCLI("config", "set-resource-policy", "--policy-file", write("rp.rego", []byte(tc.resourcePolicy)))
					mustCLI("config", "set-attestation-policy", "--policy-file", write("cpu.rego", []byte(tc.cpuPolicy)), "--id", "default_cpu")
					if tc.gpuPolicy != "" {
						mustCLI("config", "set-attestation-policy", "--policy-file", write("gpu.rego", []byte(tc.gpuPolicy)), "--id", "default_gpu")
					}
					for k, v := range tc.rvs {
						mustRun(t, dir, bin.rvpsTool, "register", "--addr", "http://"+st.rvpsAddr, "--path", write("rv.json", rvMessage(t, k, v)))
					}
					var env []string
					if tc.device {
						env = []string{"ENABLE_SAMPLE_DEVICE=YES"}
					}
					out, err := cli(env, "get-resource", "--path", "default/test/secret")
					if tc.allowed {
						if err != nil {
							t.Fatal(err)
						}
						if got := decodeB64(t, out); got != "shhhhhhh" {
							t.Fatalf("secret = %q", got)
						}
					} else if err == nil {
						t.Fatalf("secret released: %q", out)
					} else if !strings.Contains(err.Error(), "denied") && !strings.Contains(err.Error(), "unauthorized") {
						t.Fatalf("refused without saying so: %v", err)
					}
				})
			}

			// Reference values registered through the KBS admin API land in
			// the remote RVPS (through grpc-as when it is there).
			mustCLI("config", "set-sample-reference-value", "via_kbs", "7", "--as-integer")
			if out := mustRun(t, dir, bin.rvpsTool, "query", "--addr", st.rvpsAddr, "--reference-value-id", "via_kbs"); strings.TrimSpace(out) != "[7]" {
				t.Errorf("rvps-tool query via_kbs = %q", out)
			}
			if out := mustCLI("config", "get-reference-value", "--id", "via_kbs"); strings.TrimSpace(out) != "[7]" {
				t.Errorf("kbs-client get-reference-value = %q", out)
			}
			if out := mustRun(t, dir, bin.rvpsTool, "query", "--addr", st.rvpsAddr, "--reference-value-id", "absent"); !strings.Contains(out, "No reference values found") {
				t.Errorf("rvps-tool query absent = %q", out)
			}
			if !withAS {
				return
			}

			// What grpc-as serves beside gRPC on its port: the JWKS of its
			// token signer, over plain HTTP/1.1.
			resp, err := http.Get("http://" + st.asAddr + "/.well-known/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			jwks := readAll(t, resp.Body)
			resp.Body.Close()
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(jwks, &set) != nil || len(set.Keys) != 1 {
				t.Fatalf("jwks: %d %s", resp.StatusCode, jwks)
			}

			// grpc-as down: the KBS keeps serving, attestation fails with a
			// clear error, a token issued before still releases the secret.
			mustCLI("config", "set-resource-policy", "--policy-file", write("rp.rego", []byte(checkContraindicatedPolicy)))
			keyFile := teeKeys(t, dir)["EC-P256"]
			tok := strings.TrimSpace(mustCLI("attest", "--tee-key-file", keyFile))
			tokFile := write("token", []byte(tok))
			st.as.stop()
			hr, err := http.Get(st.kbsURL + "/healthz")
			if err != nil || hr.StatusCode != 200 {
				t.Fatalf("kbs /healthz while grpc-as is down: %v %v", hr, err)
			}
			hr.Body.Close()
			start := time.Now()
			_, err = cli(nil, "get-resource", "--path", "default/test/secret")
			if err == nil || !strings.Contains(err.Error(), "unavailable") {
				t.Fatalf("attestation while grpc-as is down: %v", err)
			}
			// (kbs-client retries five times, a second apart; each refusal
			// of the KBS itself takes milliseconds, see its request logs.)
			t.Logf("kbs-client gave up %v after grpc-as went down: %v", time.Since(start), firstLine(err))
			out, err := cli(nil, "get-resource", "--path", "default/test/secret", "--tee-key-file", keyFile, "--attestation-token", tokFile)
			if err != nil || decodeB64(t, out) != "shhhhhhh" {
				t.Fatalf("passport token while grpc-as is down: %q %v", out, err)
			}

			// grpc-as back on its address: attestation works again at once.
			st.as, _ = startProc(t, dir, bin.grpcAS, st.asArgs...)
			deadline := time.Now().Add(20 * time.Second)
			start = time.Now()
			for {
				out, err = cli(nil, "get-resource", "--path", "default/test/secret")
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still failing 20 s after grpc-as returned: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("attestation succeeded again %v after grpc-as restarted", time.Since(start))
			if decodeB64(t, out) != "shhhhhhh" {
				t.Fatalf("secret = %q", out)
			}
		})
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

var composeDir = testvectors.Path("trustee/docker-compose/")

// TestUpstreamDockerCompose runs upstream's docker-compose deployment
// (docker-compose.yml with kbs/config/docker-compose/{kbs-config.toml,
// as-config.json, rvps.json, setup.sh}) with our kbs, grpc-as and rvps in
// place of upstream's images: the files are changed only in addresses
// (service names → loopback ports) and paths (container mounts → a
// temporary directory); setup.sh makes the keys and the admin token with
// the real openssl, as the compose "setup" service does.
func TestUpstreamDockerCompose(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found")
		}
		t.Skip("openssl not found")
	}
	_ = openssl
	root := t.TempDir()
	keys := filepath.Join(root, "user-keys")
	os.MkdirAll(keys, 0o700)
	asAddr, rvpsAddr := freeAddr(t), freeAddr(t)
	paths := strings.NewReplacer(
		"/opt/confidential-containers/kbs/user-keys", keys,
		"/opt/confidential-containers/kbs", filepath.Join(root, "kbs-data"),
		"/var/lib/attestation-service/storage", filepath.Join(root, "as-data"),
		"/opt/confidential-containers/attestation-service/reference_values", filepath.Join(root, "reference-values"),
		"http://as:50004", "http://"+asAddr,
		"http://rvps:50003", "http://"+rvpsAddr,
		`"0.0.0.0:8080"`, `"127.0.0.1:0"`,
	)
	copyWith := func(name, dst string) string {
		b, err := os.ReadFile(filepath.Join(composeDir, "kbs/config/docker-compose", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, name)
		if err := os.WriteFile(p, []byte(paths.Replace(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	setup := copyWith("setup.sh", keys)
	kbsCfg := copyWith("kbs-config.toml", keys)
	asCfg := copyWith("as-config.json", root)
	rvpsCfg := copyWith("rvps.json", root)

	// The compose services' commands, as docker-compose.yml gives them.
	compose := string(readFile(t, filepath.Join(composeDir, "docker-compose.yml")))
	for _, want := range []string{`"grpc-as",`, `"--socket",`, `"--config-file",`, `"rvps",`, `"--address",`, `"/usr/local/bin/kbs",`} {
		if !strings.Contains(compose, want) {
			t.Fatalf("docker-compose.yml no longer has %s: update this test", want)
		}
	}
	// setup: the alpine/openssl container runs setup.sh with ash.
	if out, err := exec.Command("bash", setup).CombinedOutput(); err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"private.key", "public.pub", "admin-token", "token.key", "token-cert-chain.pem", "ca-cert.pem"} {
		if _, err := os.Stat(filepath.Join(keys, f)); err != nil {
			t.Fatalf("setup.sh did not make %s: %v", f, err)
		}
	}
	// rvps: `rvps --address 0.0.0.0:50003`, its config mounted at the
	// default /etc/rvps.json (here passed with -c: a path).
	rv, _ := startProc(t, root, bin.rvps, "--address", rvpsAddr, "-c", rvpsCfg)
	// The compose rvps.json uses keys of an older layout that upstream
	// ignores too: we say so, and where the values really go.
	if !regexp.MustCompile(`storage\.file_path is not read`).MatchString(rv.Logs()) {
		t.Errorf("rvps did not warn about the ignored keys:\n%s", rv.Logs())
	}
	asArgs := []string{"--socket", asAddr, "--config-file", asCfg}
	as, _ := startProc(t, root, bin.grpcAS, asArgs...)
	_, kbsAddr := startProc(t, root, bin.kbs, "--config-file", kbsCfg)
	url := "http://" + kbsAddr
	token := filepath.Join(keys, "admin-token")
	cli := func(args ...string) (string, error) {
		return run(t, root, bin.kbsClient, append([]string{"--url", url}, args...)...)
	}
	admin := func(args ...string) (string, error) {
		return cli(append([]string{"config", "--admin-token-file", token}, args...)...)
	}
	write := fileWriter(t, root)

	// The compose README's flow: a resource, a policy, a secret released
	// to the (sample) TEE through kbs → grpc-as → rvps.
	if _, err := admin("set-resource", "--path", "default/compose/key", "--resource-file", write("key", []byte("compose secret"))); err != nil {
		t.Fatal(err)
	}
	if _, err := cli("config", "set-resource", "--path", "default/compose/key", "--resource-file", write("k2", []byte("x"))); err == nil {
		t.Fatal("admin API accepted a request without the admin token")
	}
	if _, err := cli("get-resource", "--path", "default/compose/key"); err == nil {
		t.Fatal("the default resource policy released the secret to the sample TEE")
	}
	if _, err := admin("set-resource-policy", "--allow-all"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin("set-sample-reference-value", "svn", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin("set-attestation-policy", "--policy-file", write("cpu.rego", []byte(earRVPolicy)), "--id", "default_cpu"); err != nil {
		t.Fatal(err)
	}
	out, err := cli("get-resource", "--path", "default/compose/key")
	if err != nil {
		t.Fatal(err)
	}
	if decodeB64(t, out) != "compose secret" {
		t.Fatalf("resource = %q", out)
	}
	// The reference value went kbs → grpc-as → rvps.
	if out := mustRun(t, root, bin.rvpsTool, "query", "--addr", rvpsAddr, "--reference-value-id", "svn"); strings.TrimSpace(out) != `["1"]` {
		t.Errorf("rvps holds svn = %q", out)
	}
	// The JWKS grpc-as serves beside gRPC is the compose token signer's.
	resp, err := http.Get("http://" + asAddr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp.Body); resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"kty":"EC"`)) {
		t.Errorf("jwks: %d %s", resp.StatusCode, b)
	}
	resp.Body.Close()

	// "restart: always": grpc-as goes down and comes back.
	as.stop()
	if _, err := cli("get-resource", "--path", "default/compose/key"); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("while grpc-as is down: %v", err)
	}
	startProc(t, root, bin.grpcAS, asArgs...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err = cli("get-resource", "--path", "default/compose/key"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 20 s after grpc-as returned: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
