package kbs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/admin"
)

// upstreamConfigDir holds upstream's configuration files, copied
// unchanged (provenance in its README.md).
const upstreamConfigDir = "testdata/upstream-configs"

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

// TestConfigLegacyKeys: keys of older releases are translated or ignored
// where that cannot weaken security or move data, and refused, with what
// to do, where they named data this KBS would not read.
func TestConfigLegacyKeys(t *testing.T) {
	tolerated := `
[http_server]
insecure_http = true
[admin]
insecure_api = true
[attestation_token]
insecure_key = true
attestation_token_type = "CoCo"
[attestation_service]
policy_engine = "opa"
[attestation_service.attestation_token_broker]
type = "Ear"
[attestation_service.attestation_token_config]
duration_min = 7
[[plugins]]
name = "resource"
`
	cfg, _, err := ParseConfig([]byte(tolerated))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AttestationService.AttestationTokenConfig == nil || cfg.AttestationService.AttestationTokenConfig.DurationMin != 7 {
		t.Errorf("attestation_token_config = %+v", cfg.AttestationService.AttestationTokenConfig)
	}
	for _, tc := range []struct{ name, toml, want string }{
		{"work_dir", "[attestation_service]\nwork_dir = \"/opt/confidential-containers/attestation-service\"\n", "attestation_service.work_dir"},
		{"policy_dir", "[attestation_service.attestation_token_broker]\npolicy_dir = \"/opt/p\"\n", "attestation_token_broker.policy_dir"},
		{"policy_path", "[policy_engine]\npolicy_path = \"/opa/confidential-containers/kbs/policy.rego\"\n", "[policy_engine] policy_path"},
		{"LocalFs plugin", "[[plugins]]\ntype = \"LocalFs\"\ndir_path = \"/opt/confidential-containers/kbs/repository\"\n", "pre-v0.19 resource plugin"},
		{"LocalFs plugin without dir", "[[plugins]]\ntype = \"LocalFs\"\n", "pre-v0.19 resource plugin"},
		{"dir_path on resource", "[[plugins]]\nname = \"resource\"\ndir_path = \"/srv/repo\"\n", "pre-v0.19 resource plugin"},
		{"rvps storage", "[attestation_service.rvps_config.storage]\nstorage_type = \"LocalJson\"\n", "rvps_config.storage"},
		{"rvps store_type", "[attestation_service.rvps_config]\nstore_type = \"LocalFs\"\n", "rvps_config.store_type"},
		{"rvps remote_addr", "[attestation_service.rvps_config]\nremote_addr = \"http://rvps:50003\"\n", "GrpcRemote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tc.toml))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a refusal naming %q", err, tc.want)
			}
		})
	}
}

// TestConfigStrictSections: an unknown key where keys decide transport
// security, data location or the signing key is refused, in TOML and JSON;
// elsewhere it is ignored and reported.
func TestConfigStrictSections(t *testing.T) {
	for _, tc := range []struct{ name, toml, json, want string }{
		{"http_server typo", "[http_server]\ntls_cipher = \"x\"\n", `{"http_server":{"tls_cipher":"x"}}`, "http_server.tls_cipher"},
		{"storage_backend typo", "[storage_backend]\nstorage_typ = \"LocalFs\"\n", `{"storage_backend":{"storage_typ":"LocalFs"}}`, "storage_backend.storage_typ"},
		{"local_fs typo", "[storage_backend.backends.local_fs]\ndirpath = \"/x\"\n", `{"storage_backend":{"backends":{"local_fs":{"dirpath":"/x"}}}}`, "storage_backend.backends.local_fs.dirpath"},
		{"unknown backend", "[storage_backend.backends.vault]\nurl = \"x\"\n", `{"storage_backend":{"backends":{"vault":{}}}}`, "storage_backend.backends.vault"},
		{"signer typo", "[attestation_service.attestation_token_broker.signer]\nkey = \"/k\"\n", `{"attestation_service":{"attestation_token_broker":{"signer":{"key":"/k"}}}}`, "signer.key"},
		{"local_json dir_path elsewhere", "[storage_backend.backends.local_json]\ndir_path = \"/srv/json\"\n", `{"storage_backend":{"backends":{"local_json":{"dir_path":"/srv/json"}}}}`, "rename dir_path to file_dir_path"},
		{"local_json dir_path beside another file_dir_path", "[storage_backend.backends.local_json]\nfile_dir_path = \"/a\"\ndir_path = \"/opt/confidential-containers/storage/local_json\"\n",
			`{"storage_backend":{"backends":{"local_json":{"file_dir_path":"/a","dir_path":"/opt/confidential-containers/storage/local_json"}}}}`, "local_json.dir_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseConfig([]byte(tc.toml)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("TOML: err = %v, want a refusal naming %q", err, tc.want)
			}
			if _, _, err := ParseConfigJSON([]byte(tc.json)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("JSON: err = %v, want a refusal naming %q", err, tc.want)
			}
		})
	}
	// dir_path naming the directory LocalJson uses anyway is accepted (the
	// trustee-operator templates write it) and reported as ignored.
	_, ignored, err := ParseConfig([]byte("[storage_backend.backends.local_json]\ndir_path = \"/opt/confidential-containers/storage/local_json/\"\n"))
	if err != nil || !slices.Contains(ignored, "storage_backend.backends.local_json.dir_path") {
		t.Fatalf("ParseConfig = %v, ignored %v", err, ignored)
	}
	// Elsewhere unknown keys are reported, as upstream ignores them.
	_, ignored, err = ParseConfig([]byte("[attestation_token]\nnew_key = 1\n[attestation_service]\nnew_key = 2\n"))
	if err != nil || !slices.Equal(ignored, []string{"attestation_token.new_key", "attestation_service.new_key"}) {
		t.Fatalf("ParseConfig = %v, ignored %v", err, ignored)
	}
	if _, _, err := ParseConfig([]byte("[http_server]\nworker_count = -1\n")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative worker_count: %v", err)
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
	var files []string
	filepath.WalkDir(upstreamConfigDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".toml") {
			files = append(files, p)
		}
		return nil
	})
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _, err := ParseConfig(b)
		checkAccepted(t, c, err)
	})
}

// checkAccepted checks what ParseConfig promises of an accepted
// configuration: its TLS settings resolve, and nothing this KBS refuses
// survived.
func checkAccepted(t *testing.T, c *Config, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, admin.ErrInvalidConfig) {
			t.Fatalf("error %v wraps neither ErrInvalidConfig", err)
		}
		return
	}
	if !c.HTTPServer.InsecureHTTP {
		if _, err := TLSSettings(c.HTTPServer); err != nil {
			t.Fatalf("accepted, but TLSSettings: %v", err)
		}
	}
	if c.AttestationService.WorkDir != "" || c.AttestationService.TokenBroker.PolicyDir != "" {
		t.Fatalf("legacy data location accepted: %+v", c.AttestationService)
	}
	for _, p := range c.Plugins {
		if p.DirPath != "" {
			t.Fatalf("legacy plugin dir_path accepted: %+v", p)
		}
	}
}

func FuzzParseConfigJSON(f *testing.F) {
	for _, s := range []string{
		`{"http_server":{"insecure_http":true,"sockets":["127.0.0.1:9999"]},"admin":{"authorization_mode":"DenyAll"},"attestation_service":{"timeout":7}}`,
		`{"http_server":{"tls_profile":"custom","tls_min_version":"1.3","tls_ciphers":"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256","tls_groups":"X25519MLKEM768:X25519"}}`,
		`{"storage_backend":{"storage_type":"LocalJson","backends":{"local_json":{"file_dir_path":"/a","dir_path":"/a"}}}}`,
		`{"attestation_service":{"attestation_token_broker":{"signer":{"key_path":"/k"}}},"plugins":[{"name":"resource","storage_backend_type":"kvstorage"}]}`,
		`{"admin":{"authorization_mode":"AuthenticatedAuthorization","authentication":{"bearer_jwt":{"identity_providers":[{"public_key_uri":"/p"}]}},"authorization":{"regex_acl":{"acls":[{"role":"a","allowed_endpoints":"^/kbs/.+$"}]}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _, err := ParseConfigJSON(b)
		checkAccepted(t, c, err)
	})
}
