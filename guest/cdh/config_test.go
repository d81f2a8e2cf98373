package cdh

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/guest/aa"
)

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   *Config // nil: must fail
	}{
		{
			name: "upstream full example",
			in: `
socket = "unix:///run/confidential-containers/cdh.sock"

[aa]
aa_socket = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"

[kbc]
name = "offline_fs_kbc"
url = ""
kbs_cert = ""

[image]
max_concurrent_layer_downloads_per_image = 3
image_security_policy_uri = "kbs:///default/security-policy/test"

[image.image_pull_proxy]
https_proxy = "http://127.0.0.1:8080"
`,
			want: &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: "info",
				KBC: KBCConfig{Name: KBCOfflineFS},
				Image: map[string]any{
					"max_concurrent_layer_downloads_per_image": int64(3),
					"image_security_policy_uri":                "kbs:///default/security-policy/test",
					"image_pull_proxy":                         map[string]any{"https_proxy": "http://127.0.0.1:8080"},
				}},
		},
		{
			name: "upstream: an empty [[credentials]] entry fails",
			in:   "socket = \"unix:///run/confidential-containers/cdh.sock\"\n[kbc]\nname = \"offline_fs_kbc\"\nurl = \"\"\n[[credentials]]\n",
		},
		{
			name: "upstream: minimal",
			in:   "[kbc]\nname = \"offline_fs_kbc\"\n",
			want: &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: "info", KBC: KBCConfig{Name: KBCOfflineFS}},
		},
		{
			name: "upstream: log level and unknown image key",
			in:   "[log]\nlevel = \"warn\"\n[kbc]\nname = \"offline_fs_kbc\"\n[image]\nsome_undefined_field = \"unknown value\"\n",
			want: &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: "warn", KBC: KBCConfig{Name: KBCOfflineFS},
				Image: map[string]any{"some_undefined_field": "unknown value"}},
		},
		{
			name: "cc_kbc with credentials",
			in: `[kbc]
name = "cc_kbc"
url = "http://kbs:8080"
[[credentials]]
path = "/run/confidential-containers/cdh/kbs/kms-credential/aliyun/ecsRamRole.json"
resource_uri = "kbs:///default/aliyun/ecs_ram_role"
`,
			want: &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: "info",
				KBC: KBCConfig{Name: KBCCC, URL: "http://kbs:8080"},
				Credentials: []Credential{{ResourceURI: "kbs:///default/aliyun/ecs_ram_role",
					Path: "/run/confidential-containers/cdh/kbs/kms-credential/aliyun/ecsRamRole.json"}}},
		},
		{
			name:   "JSON form",
			format: FormatJSON,
			in:     `{"socket":"unix:///tmp/cdh.sock","skip_sealed_secret_verification":true,"kbc":{"name":"cc_kbc","url":"https://kbs.example"},"aa":{"aa_socket":"unix:///tmp/aa.sock"}}`,
			want: &Config{Socket: "unix:///tmp/cdh.sock", AASocket: "unix:///tmp/aa.sock", LogLevel: "info",
				SkipSealedSecretVerification: true, KBC: KBCConfig{Name: KBCCC, URL: "https://kbs.example"}},
		},
		{name: "no [kbc]", in: "socket = \"unix:///run/cdh.sock\"\n"},
		{name: "[kbc] without name", in: "[kbc]\nurl = \"http://kbs:8080\"\n"},
		{name: "unknown kbc", in: "[kbc]\nname = \"sample_kbc\"\n"},
		{name: "cc_kbc without url", in: "[kbc]\nname = \"cc_kbc\"\n"},
		{name: "cc_kbc with a malformed url (CAA#1518)", in: "[kbc]\nname = \"cc_kbc\"\nurl = \"http:10.0.0.3:8080\"\n"},
		{name: "socket without unix://", in: "socket = \"/run/cdh.sock\"\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "relative socket", in: "socket = \"unix://run/cdh.sock\"\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "tcp socket", in: "socket = \"127.0.0.1:50000\"\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "bad aa_socket", in: "[aa]\naa_socket = \"tcp://x\"\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "bad log level", in: "[log]\nlevel = \"loud\"\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "kbs_cert not PEM", in: "[kbc]\nname = \"cc_kbc\"\nurl = \"https://kbs\"\nkbs_cert = \"garbage\"\n"},
		{name: "credential path escape", in: "[kbc]\nname = \"cc_kbc\"\nurl = \"http://kbs\"\n[[credentials]]\npath = \"/run/confidential-containers/cdh/kbs/../../../etc/shadow\"\nresource_uri = \"kbs:///a/b/c\"\n"},
		{name: "credential path outside", in: "[kbc]\nname = \"cc_kbc\"\nurl = \"http://kbs\"\n[[credentials]]\npath = \"/etc/config.toml\"\nresource_uri = \"kbs:///a/b/c\"\n"},
		{name: "credential bad uri", in: "[kbc]\nname = \"cc_kbc\"\nurl = \"http://kbs\"\n[[credentials]]\npath = \"/run/confidential-containers/cdh/kbs/x\"\nresource_uri = \"/a/b/c\"\n"},
		{name: "wrong type", in: "socket = 3\n[kbc]\nname = \"offline_fs_kbc\"\n"},
		{name: "not TOML", in: "[kbc\n"},
		{name: "JSON trailing data", format: FormatJSON, in: `{"kbc":{"name":"offline_fs_kbc"}} {}`},
		{name: "too large", in: "# " + strings.Repeat("x", 1<<20) + "\n[kbc]\nname = \"offline_fs_kbc\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeConfig([]byte(tt.in), tt.format)
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("DecodeConfig: %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeConfig =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig(gcTestdata + "confidential-data-hub/hub/tests/cdh.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.KBC.Name != KBCOfflineFS || c.KBC.URL != "null" || c.Socket != DefaultSocket ||
		c.Image["image_security_policy_uri"] != "kbs:///default/security-policy/test" {
		t.Fatalf("upstream cdh.toml = %+v", c)
	}
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "unreadable.toml")
	os.WriteFile(unreadable, []byte("[kbc]\nname = \"offline_fs_kbc\"\n"), 0o000)
	tests := []struct {
		name string
		path string
	}{
		{"missing file", filepath.Join(dir, "nope.toml")},
		{"a directory", dir},
	}
	if os.Geteuid() != 0 { // root reads anything
		tests = append(tests, struct {
			name string
			path string
		}{"unreadable file", unreadable})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadConfig(tt.path); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("LoadConfig: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestValidateCredentialPath(t *testing.T) {
	base := DefaultCredentialDir
	tests := []struct {
		path string
		ok   bool
	}{
		// upstream's path_valid table
		{"/etc/config.toml", false},
		{base + "/../../config.toml", false},
		{base + "/kms-credential/../../../config.toml", false},
		{base + "/kms-credential/./config.toml", false},
		{base + "/kms-credential/aliyun/config.toml", true},
		// stricter than upstream's prefix check
		{base + "x/config.toml", false},
		{base, false},
		{base + "/", false},
		{base + "/dir/", false},
		{"kbs/relative", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if err := ValidateCredentialPath(base, tt.path); (err == nil) != tt.ok {
				t.Fatalf("ValidateCredentialPath(%q): %v, want ok=%v", tt.path, err, tt.ok)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "AA_KBC_PARAMS" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		env     string
		cmdline string
		want    KBCConfig
		ok      bool
	}{
		{"nothing: offline", "", "console=ttyS0", KBCConfig{Name: KBCOfflineFS}, true},
		{"env", "cc_kbc::http://kbs:8080", "agent.aa_kbc_params=cc_kbc::http://other:1", KBCConfig{Name: KBCCC, URL: "http://kbs:8080"}, true},
		{"kernel cmdline", "", "quiet agent.aa_kbc_params=cc_kbc::http://10.0.0.3:8080 x", KBCConfig{Name: KBCCC, URL: "http://10.0.0.3:8080"}, true},
		{"offline null", "offline_fs_kbc::null", "", KBCConfig{Name: KBCOfflineFS, URL: "null"}, true},
		{"no separator", "cc_kbc", "", KBCConfig{}, false},
		{"bad url", "cc_kbc::http:10.0.0.3:8080", "", KBCConfig{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DefaultConfig(env(tt.env), tt.cmdline)
			if (err == nil) != tt.ok {
				t.Fatalf("DefaultConfig: %v, want ok=%v", err, tt.ok)
			}
			if err == nil && c.KBC != tt.want {
				t.Fatalf("KBC = %+v, want %+v", c.KBC, tt.want)
			}
		})
	}
	got := CredentialsFromCmdline("a cdh.kbs_resources=kbs:///default/key/1::/run/temp1,bad,kbs:///default/key/2::/run/temp2 b")
	want := []Credential{{"kbs:///default/key/1", "/run/temp1"}, {"kbs:///default/key/2", "/run/temp2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CredentialsFromCmdline = %v", got)
	}
}
