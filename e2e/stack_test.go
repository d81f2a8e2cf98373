package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// startDevKBS starts a kbs on loopback with the built-in Attestation
// Service, a LocalFs store under dir/kbs-store and an open admin API (test
// only: the admin flows themselves are tested in kbs_test.go). It returns
// the KBS URL.
func startDevKBS(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "kbs.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
type = "coco_as_builtin"
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = %q
`, filepath.Join(dir, "kbs-store"))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startProc(t, dir, bin.kbs, "--config-file", cfg)
	return "http://" + addr
}

// guestStack is an attestation-agent and a confidential-data-hub running
// as kata-agent starts them, bound to one KBS.
type guestStack struct {
	aaSock, cdhSock string
	cdh             *proc
}

// startGuestStack starts the attestation-agent (sample TEE on this
// machine) and the confidential-data-hub with cc_kbc for kbsURL; cdhExtra
// is appended to cdh.toml (e.g. an [image] table) and cdhArgs to the hub's
// flags. dir must be short: unix socket paths are limited to 108 bytes.
func startGuestStack(t *testing.T, dir, kbsURL, cdhExtra string, cdhArgs ...string) guestStack {
	t.Helper()
	g := guestStack{aaSock: filepath.Join(dir, "aa.sock"), cdhSock: filepath.Join(dir, "cdh.sock")}
	aaCfg := filepath.Join(dir, "aa.toml")
	cdhCfg := filepath.Join(dir, "cdh.toml")
	if err := os.WriteFile(aaCfg, []byte(fmt.Sprintf("[token_configs.kbs]\nurl = %q\n", kbsURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cdhCfg, []byte(fmt.Sprintf("socket = %q\n[aa]\naa_socket = %q\n[kbc]\nname = \"cc_kbc\"\nurl = %q\n%s",
		"unix://"+g.cdhSock, "unix://"+g.aaSock, kbsURL, cdhExtra)), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, socketReady(g.aaSock), bin.attestationAgent, "--attestation_sock", "unix://"+g.aaSock, "-c", aaCfg)
	g.cdh = startDaemon(t, dir, socketReady(g.cdhSock), bin.confidentialDataHub, append([]string{"-c", cdhCfg}, cdhArgs...)...)
	return g
}

// startRegistry starts Debian's docker-registry on loopback with its
// filesystem store under dir/registry; it returns the address and the
// store's root.
func startRegistry(t *testing.T, dir string) (addr, root string) {
	t.Helper()
	registryBin := lookTool(t, "DOCKER_REGISTRY", "docker-registry")
	addr = freeAddr(t)
	root = filepath.Join(dir, "registry")
	cfg := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", root, addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, tcpReady(addr), registryBin, "serve", cfg)
	return addr, root
}

// lookTool finds an external tool: $envVar, then PATH.
func lookTool(t *testing.T, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: scripts/test.sh installs it (set %s)", name, envVar)
		}
		t.Skipf("%s not found (set %s, or run scripts/test.sh, which installs docker-registry, skopeo and gnupg from Debian and cosign with go install)", name, envVar)
	}
	return p
}

// socketDir returns a short temporary directory, removed at the end of the
// test: unix socket paths are limited to 108 bytes, which t.TempDir can
// exceed.
func socketDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fileWriter returns a function writing name (a path under dir, parent
// directories created) with mode 0600 and returning its full path.
func fileWriter(t *testing.T, dir string) func(name string, b []byte) string {
	return func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
