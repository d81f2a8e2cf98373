package kbs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var upstreamKBS = testvectors.Path("trustee/kbs")

func TestLoadUpstreamConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(upstreamKBS, "test_data/configs/*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(upstreamKBS, "test/config/kbs.toml"))
	if len(files) < 15 {
		t.Fatalf("found only %d upstream config files; are the vectors under testdata/upstream?", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, ignored, err := LoadConfig(f)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if len(ignored) != 0 {
				t.Errorf("keys ignored: %v", ignored)
			}
			if len(cfg.HTTPServer.Sockets) == 0 || cfg.HTTPServer.PayloadRequestSize != 2 {
				t.Errorf("defaults not applied: %+v", cfg.HTTPServer)
			}
		})
	}
}

func TestConfigValues(t *testing.T) {
	cfg, _, err := LoadConfig(filepath.Join(upstreamKBS, "test/config/kbs.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AttestationService.TokenBroker.Signer; got == nil || got.KeyPath != "./work/token.key" || got.CertPath != "./work/token-cert-chain.pem" {
		t.Errorf("signer = %+v", got)
	}
	if cfg.AttestationService.TokenBroker.DurationMin != 5 {
		t.Errorf("duration_min = %d", cfg.AttestationService.TokenBroker.DurationMin)
	}
	if cfg.StorageBackend.Backends.LocalFs.DirPath != "./work/storage" {
		t.Errorf("local_fs dir_path = %q", cfg.StorageBackend.Backends.LocalFs.DirPath)
	}
	if len(cfg.AttestationToken.TrustedCertsPaths) != 1 || cfg.AttestationService.Timeout != DefaultSessionTimeout {
		t.Errorf("attestation_token = %+v timeout %d", cfg.AttestationToken, cfg.AttestationService.Timeout)
	}
	if len(cfg.Plugins) != 1 || cfg.Plugins[0].Name != "resource" {
		t.Errorf("plugins = %+v", cfg.Plugins)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, toml string
	}{
		{"unknown admin key", "[admin]\nauthorization_mode = \"DenyAll\"\nbogus = 1\n"},
		{"unknown AS type", "[attestation_service]\ntype = \"nope\"\n"},
		{"negative timeout", "[attestation_service]\ntimeout = -1\n"},
		{"payload too large", "[http_server]\npayload_request_size = 4096\n"},
		{"not toml", "[http_server\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseConfig([]byte(tc.toml)); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigLegacyKeysTolerated(t *testing.T) {
	legacy := `
[http_server]
insecure_http = true
[admin]
insecure_api = true
[attestation_token]
insecure_key = true
attestation_token_type = "CoCo"
[attestation_service]
work_dir = "/opt/confidential-containers/attestation-service"
policy_engine = "opa"
[attestation_service.attestation_token_broker]
type = "Ear"
[policy_engine]
policy_path = "/opa/confidential-containers/kbs/policy.rego"
[[plugins]]
type = "LocalFs"
dir_path = "/opt/confidential-containers/kbs/repository"
`
	if _, _, err := ParseConfig([]byte(legacy)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kbs.json")
	if err := os.WriteFile(p, []byte(`{"http_server":{"insecure_http":true,"sockets":["127.0.0.1:9999"]},"admin":{"authorization_mode":"DenyAll"},"attestation_service":{"timeout":7}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPServer.Sockets[0] != "127.0.0.1:9999" || cfg.AttestationService.Timeout != 7 || !cfg.HasSection("admin") {
		t.Errorf("cfg = %+v", cfg)
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(upstreamKBS, "test_data/configs/*.toml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseConfig(b)
	})
}
