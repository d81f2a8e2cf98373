package aa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// Defaults of the configuration, upstream's where upstream has one.
const (
	DefaultInitPCR = 17
	// DefaultTokenCacheMargin: a cached KBS token is replaced this long
	// before its exp.
	DefaultTokenCacheMargin = 60 * time.Second
	// EnvKBCParams is the environment variable upstream reads the KBS
	// address from when no config file is given ("cc_kbc::<url>").
	EnvKBCParams = "AA_KBC_PARAMS"
	// CmdlineKBCParams is the kernel command line parameter read next.
	CmdlineKBCParams = "agent.aa_kbc_params="
	// DefaultCmdlinePath is the kernel command line file.
	DefaultCmdlinePath = "/proc/cmdline"
)

// ErrInvalidConfig is returned for a configuration that cannot be decoded
// or holds invalid values.
var ErrInvalidConfig = errors.New("aa: invalid configuration")

// Config is the attestation-agent configuration, upstream's aa.toml (or
// JSON) layout. Unknown keys are ignored, as upstream's config crate does.
type Config struct {
	TokenConfigs   TokenConfigs   `toml:"token_configs" json:"token_configs"`
	EventlogConfig EventlogConfig `toml:"eventlog_config" json:"eventlog_config"`
	Log            LogConfig      `toml:"log" json:"log"`
}

// TokenConfigs are the token sources; a nil member is not configured.
type TokenConfigs struct {
	CoCoAS *CoCoASConfig `toml:"coco_as" json:"coco_as"`
	KBS    *KBSConfig    `toml:"kbs" json:"kbs"`
}

// CoCoASConfig is [token_configs.coco_as].
type CoCoASConfig struct {
	// URL of the Attestation Service (its /attestation endpoint is used).
	URL string `toml:"url" json:"url"`
}

// KBSConfig is [token_configs.kbs].
type KBSConfig struct {
	// URL of the KBS.
	URL string `toml:"url" json:"url"`
	// Cert is an extra trusted root CA (PEM) for an https URL.
	Cert string `toml:"cert" json:"cert"`
	// TeeKeyAlgorithm is "ECDH-ES+A256KW-P256" (default),
	// "ECDH-ES+A256KW-P521" or "RSA-OAEP-256".
	TeeKeyAlgorithm string `toml:"tee_key_algorithm" json:"tee_key_algorithm"`
	// TokenCache (not upstream; default true) reuses a token and its key
	// pair until TokenCacheMarginSecs before its exp.
	TokenCache *bool `toml:"token_cache" json:"token_cache"`
	// TokenCacheMarginSecs (not upstream; default 60).
	TokenCacheMarginSecs *int64 `toml:"token_cache_margin_secs" json:"token_cache_margin_secs"`
}

// KeyAlgorithm returns the TEE key algorithm.
func (k *KBSConfig) KeyAlgorithm() (protocol.KeyAlgorithm, error) {
	if k.TeeKeyAlgorithm == "" {
		return protocol.KeyEC256, nil
	}
	a, err := protocol.ParseKeyAlgorithm(k.TeeKeyAlgorithm)
	if err != nil {
		return 0, fmt.Errorf("%w: token_configs.kbs.tee_key_algorithm: %w", ErrInvalidConfig, err)
	}
	return a, nil
}

// CacheEnabled reports whether tokens are reused.
func (k *KBSConfig) CacheEnabled() bool { return k.TokenCache == nil || *k.TokenCache }

// CacheMargin is how long before exp a cached token is replaced.
func (k *KBSConfig) CacheMargin() time.Duration {
	if k.TokenCacheMarginSecs == nil {
		return DefaultTokenCacheMargin
	}
	return time.Duration(*k.TokenCacheMarginSecs) * time.Second
}

// EventlogConfig is [eventlog_config].
type EventlogConfig struct {
	// InitPCR is the register runtime events go to (default 17).
	InitPCR uint64 `toml:"init_pcr" json:"init_pcr"`
	// EnableEventlog turns runtime measurement on (default false).
	EnableEventlog bool `toml:"enable_eventlog" json:"enable_eventlog"`
	// EventlogAlgorithm is accepted for older configs; upstream dropped it
	// (the platform fixes the algorithm) and so is it ignored here.
	EventlogAlgorithm string `toml:"eventlog_algorithm" json:"eventlog_algorithm"`
}

// LogConfig is [log].
type LogConfig struct {
	// Level is "trace", "debug", "info" (default), "warn" or "error".
	Level string `toml:"level" json:"level"`
}

// DefaultConfig is the configuration with no file and no KBS address.
func DefaultConfig() Config {
	return Config{EventlogConfig: EventlogConfig{InitPCR: DefaultInitPCR}, Log: LogConfig{Level: "info"}}
}

// LoadConfig reads the configuration file at path: JSON when its extension
// is .json, TOML otherwise (upstream picks by extension too; a file without
// a known extension is read as TOML, or JSON when it starts with '{').
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("aa: reading config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("aa: reading config %s: %w", path, err)
	}
	json := strings.EqualFold(filepath.Ext(path), ".json")
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".json" && ext != ".toml" {
		json = bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))
	}
	c, err := DecodeConfig(b, json)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DecodeConfig decodes a TOML (or, with isJSON, JSON) configuration of at
// most limits.MaxConfigBytes and validates it.
func DecodeConfig(b []byte, isJSON bool) (Config, error) {
	if len(b) > limits.MaxConfigBytes {
		return Config{}, fmt.Errorf("%w: %d bytes exceed %d", ErrInvalidConfig, len(b), limits.MaxConfigBytes)
	}
	c := DefaultConfig()
	if isJSON {
		if err := json.Unmarshal(b, &c); err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	} else if _, err := toml.Decode(string(b), &c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	if k := c.TokenConfigs.KBS; k != nil {
		if err := checkURL(k.URL); err != nil {
			return fmt.Errorf("%w: token_configs.kbs.url: %v", ErrInvalidConfig, err)
		}
		if _, err := k.KeyAlgorithm(); err != nil {
			return err
		}
		if k.TokenCacheMarginSecs != nil && *k.TokenCacheMarginSecs < 0 {
			return fmt.Errorf("%w: token_configs.kbs.token_cache_margin_secs is negative", ErrInvalidConfig)
		}
	}
	if a := c.TokenConfigs.CoCoAS; a != nil {
		if err := checkURL(a.URL); err != nil {
			return fmt.Errorf("%w: token_configs.coco_as.url: %v", ErrInvalidConfig, err)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "trace", "debug", "info", "warn", "error", "off":
	default:
		return fmt.Errorf("%w: log.level %q", ErrInvalidConfig, c.Log.Level)
	}
	return nil
}

// checkURL accepts http(s)://host[:port][/path] only, so that a malformed
// address (e.g. "http:10.0.0.3:8080") fails at start-up, not as a hang.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an http(s)://host[:port] URL", s)
	}
	return nil
}

// KBCParams resolves the KBS address when no config file is given, as
// upstream: the environment variable AA_KBC_PARAMS, else the kernel
// parameter agent.aa_kbc_params, each "<kbc>::<url>". Only kbc "cc_kbc"
// configures a KBS. A value that is malformed, names another KBC, or holds
// an invalid URL configures none and is reported in warn (upstream drops
// it silently).
func KBCParams(getenv func(string) string, cmdlinePath string) (kbs *KBSConfig, warn string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if cmdlinePath == "" {
		cmdlinePath = DefaultCmdlinePath
	}
	v, src := getenv(EnvKBCParams), EnvKBCParams
	if v == "" {
		src = "kernel parameter agent.aa_kbc_params"
		f, err := os.Open(cmdlinePath)
		if err != nil {
			return nil, ""
		}
		defer f.Close()
		b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
		for _, p := range strings.Fields(string(b)) {
			if rest, ok := strings.CutPrefix(p, CmdlineKBCParams); ok {
				v = rest
				break
			}
		}
		if v == "" {
			return nil, ""
		}
	}
	parts := strings.Split(v, "::")
	if len(parts) != 2 {
		return nil, fmt.Sprintf("%s %q is not <kbc>::<url>; no KBS configured", src, v)
	}
	if parts[0] != "cc_kbc" {
		return nil, fmt.Sprintf("%s names KBC %q, not cc_kbc; no KBS configured", src, parts[0])
	}
	if err := checkURL(parts[1]); err != nil {
		return nil, fmt.Sprintf("%s: invalid KBS URL: %v; no KBS configured", src, err)
	}
	return &KBSConfig{URL: parts[1]}, ""
}
