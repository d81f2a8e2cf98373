package aa

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var aaTestdata = testvectors.Path("guest-components/attestation-agent/attestation-agent/test/")

// Upstream's config fixtures parse to what upstream's tests expect.
func TestUpstreamConfigs(t *testing.T) {
	for _, tc := range []struct {
		file      string
		coco, kbs bool
		cert, lvl string
	}{
		{"config1.toml", true, true, "cert", "warn"},
		{"config2.toml", false, true, "cert", "warn"},
		{"config3.toml", true, true, "", "warn"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := LoadConfig(aaTestdata + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if (c.TokenConfigs.CoCoAS != nil) != tc.coco || (c.TokenConfigs.KBS != nil) != tc.kbs {
				t.Fatalf("token configs %+v", c.TokenConfigs)
			}
			if tc.coco && c.TokenConfigs.CoCoAS.URL != "http://127.0.0.1:8000" {
				t.Errorf("coco_as url %q", c.TokenConfigs.CoCoAS.URL)
			}
			k := c.TokenConfigs.KBS
			if k.URL != "https://127.0.0.1:8080" || k.Cert != tc.cert || k.TeeKeyAlgorithm != "" {
				t.Errorf("kbs %+v", k)
			}
			if c.EventlogConfig.InitPCR != 17 || c.EventlogConfig.EnableEventlog || c.Log.Level != tc.lvl {
				t.Errorf("eventlog %+v log %+v", c.EventlogConfig, c.Log)
			}
			if !k.CacheEnabled() || k.CacheMargin() != time.Minute {
				t.Error("cache defaults")
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		json bool
		ok   bool
		want func(Config) bool
	}{
		{"empty (upstream config5)", "", false, true, func(c Config) bool { return c.EventlogConfig.InitPCR == 17 && c.Log.Level == "info" }},
		{"empty eventlog section (config6)", "[eventlog_config]", false, true, func(c Config) bool { return c.EventlogConfig.InitPCR == 17 }},
		{"json example", `{"token_configs":{"kbs":{"url":"https://k:8080","tee_key_algorithm":"ECDH-ES+A256KW-P256"}},"eventlog_config":{"init_pcr":17,"enable_eventlog":true},"log":{"level":"info"}}`, true, true,
			func(c Config) bool {
				return c.TokenConfigs.KBS.URL == "https://k:8080" && c.EventlogConfig.EnableEventlog
			}},
		{"old eventlog_algorithm accepted", "[eventlog_config]\neventlog_algorithm = \"sha384\"\ninit_pcr = 8", false, true, func(c Config) bool { return c.EventlogConfig.InitPCR == 8 }},
		{"cache settings", "[token_configs.kbs]\nurl = \"http://k\"\ntoken_cache = false\ntoken_cache_margin_secs = 5", false, true,
			func(c Config) bool {
				return !c.TokenConfigs.KBS.CacheEnabled() && c.TokenConfigs.KBS.CacheMargin() == 5*time.Second
			}},
		{"unknown keys ignored", "[foo]\nbar = 1\n[log]\nlevel = \"debug\"", false, true, func(c Config) bool { return c.Log.Level == "debug" }},
		{"bad key algorithm", "[token_configs.kbs]\nurl = \"http://k\"\ntee_key_algorithm = \"P-256\"", false, false, nil},
		{"url without scheme", "[token_configs.kbs]\nurl = \"http:10.0.0.3:8080\"", false, false, nil},
		{"coco_as without url", "[token_configs.coco_as]", false, false, nil},
		{"bad level", "[log]\nlevel = \"loud\"", false, false, nil},
		{"negative margin", "[token_configs.kbs]\nurl = \"http://k\"\ntoken_cache_margin_secs = -1", false, false, nil},
		{"wrong type", "[eventlog_config]\ninit_pcr = \"x\"", false, false, nil},
		{"not toml", "{{{", false, false, nil},
		{"not json", "{", true, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeConfig([]byte(tc.in), tc.json)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if tc.want != nil && !tc.want(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("missing file loaded")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "aa.conf"), []byte(`{"log":{"level":"warn"}}`), 0o600)
	if c, err := LoadConfig(filepath.Join(dir, "aa.conf")); err != nil || c.Log.Level != "warn" {
		t.Errorf("JSON without extension: %v", err)
	}
}

func TestKBCParams(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	for _, tc := range []struct {
		name, env, cmdline, url string
		warn                    bool
	}{
		{"env", "cc_kbc::http://kbs:8080", "", "http://kbs:8080", false},
		{"env wins", "cc_kbc::http://a:1", "agent.aa_kbc_params=cc_kbc::http://b:2", "http://a:1", false},
		{"cmdline", "", "console=ttyS0 agent.aa_kbc_params=cc_kbc::https://kbs.example agent.log=debug", "https://kbs.example", false},
		{"offline kbc", "offline_fs_kbc::null", "", "", true},
		{"malformed", "cc_kbc:http://kbs", "", "", true},
		{"bad url", "cc_kbc::http:10.0.0.3:8080", "", "", true},
		{"nothing", "", "console=ttyS0", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(cmdline, []byte(tc.cmdline), 0o600)
			k, warn := KBCParams(func(string) string { return tc.env }, cmdline)
			got := ""
			if k != nil {
				got = k.URL
			}
			if got != tc.url || (warn != "") != tc.warn {
				t.Fatalf("url %q warn %q", got, warn)
			}
		})
	}
	if k, _ := KBCParams(func(string) string { return "" }, filepath.Join(dir, "nope")); k != nil {
		t.Error("unreadable cmdline configured a KBS")
	}
}

func FuzzDecodeConfig(f *testing.F) {
	for _, n := range []string{"config1.toml", "config2.toml", "config3.toml"} {
		if b, err := os.ReadFile(aaTestdata + n); err == nil {
			f.Add(b, false)
		}
	}
	f.Add([]byte(`{"token_configs":{"kbs":{"url":"http://k"}}}`), true)
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		c, err := DecodeConfig(b, isJSON)
		if err == nil && c.TokenConfigs.KBS != nil && checkURL(c.TokenConfigs.KBS.URL) != nil {
			t.Fatal("accepted an invalid KBS URL")
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	enc := func(s string) string { return "h." + strings.TrimRight(b64(s), "=") + ".s" }
	// tokenExpiry reads exp through client.ParseTokenTimes; an unreadable
	// token has no expiry.
	tokenExpiry := func(token string) time.Time {
		tt, _ := client.ParseTokenTimes(token)
		return tt.Exp
	}
	if got := tokenExpiry(enc(`{"exp":1800000000}`)); got.Unix() != 1800000000 {
		t.Errorf("exp %v", got)
	}
	for _, bad := range []string{enc(`{}`), enc(`{"exp":"x"}`), enc(`{"exp":-1}`), "a.b", "a.!!.c"} {
		if !tokenExpiry(bad).IsZero() {
			t.Errorf("%q has an expiry", bad)
		}
	}
}

func b64(s string) string { return base64RawURL(s) }
