package kbs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/admin"
	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage/backends"
	"github.com/go-trustee/go-trustee/token"
)

// Config is upstream's kbs-config.toml. Every upstream configuration file
// loads unchanged: unknown keys outside [admin] are ignored (and reported
// by LoadConfig as warnings), legacy keys of older releases are tolerated.
type Config struct {
	HTTPServer         HTTPServerConfig         `toml:"http_server" json:"http_server"`
	Admin              admin.Config             `toml:"admin" json:"admin"`
	AttestationToken   token.Config             `toml:"attestation_token" json:"attestation_token"`
	AttestationService AttestationServiceConfig `toml:"attestation_service" json:"attestation_service"`
	StorageBackend     backends.Config          `toml:"storage_backend" json:"storage_backend"`
	// SessionStorageType overrides the storage type for RCAR sessions only
	// (e.g. Redis shared by replicas); its parameters come from
	// StorageBackend.Backends.
	SessionStorageType string         `toml:"session_storage_type" json:"session_storage_type"`
	Plugins            []PluginConfig `toml:"plugins" json:"plugins"`

	// Legacy sections of releases before v0.16, accepted and ignored.
	LegacyPolicyEngine map[string]any `toml:"policy_engine" json:"policy_engine"`

	// present records which top-level sections the file had.
	present map[string]bool
}

// HTTPServerConfig is [http_server].
type HTTPServerConfig struct {
	Sockets            []string `toml:"sockets" json:"sockets"`
	PrivateKey         string   `toml:"private_key" json:"private_key"`
	Certificate        string   `toml:"certificate" json:"certificate"`
	InsecureHTTP       bool     `toml:"insecure_http" json:"insecure_http"`
	PayloadRequestSize int      `toml:"payload_request_size" json:"payload_request_size"` // MiB
	WorkerCount        int      `toml:"worker_count" json:"worker_count"`
	TLSProfile         string   `toml:"tls_profile" json:"tls_profile"`
	TLSMinVersion      string   `toml:"tls_min_version" json:"tls_min_version"`
	TLSMaxVersion      string   `toml:"tls_max_version" json:"tls_max_version"`
	TLSCiphers         string   `toml:"tls_ciphers" json:"tls_ciphers"`
	TLSGroups          string   `toml:"tls_groups" json:"tls_groups"`
}

// Attestation service types.
const (
	ASTypeBuiltin = "coco_as_builtin"
	ASTypeGRPC    = "coco_as_grpc"
	ASTypeIntelTA = "intel_ta"
)

// AttestationServiceConfig is [attestation_service]: the KBS-level keys of
// every backend type plus, inline, the built-in AS configuration.
type AttestationServiceConfig struct {
	Type string `toml:"type" json:"type"`
	// Timeout is the RCAR session lifetime in minutes (default 5).
	Timeout int `toml:"timeout" json:"timeout"`
	// StorageType optionally overrides the storage type of the built-in AS.
	StorageType string `toml:"storage_type" json:"storage_type"`

	// coco_as_grpc
	ASAddr   string `toml:"as_addr" json:"as_addr"`
	PoolSize int    `toml:"pool_size" json:"pool_size"`

	// intel_ta
	BaseURL              string   `toml:"base_url" json:"base_url"`
	APIKey               string   `toml:"api_key" json:"api_key"`
	CertsFile            string   `toml:"certs_file" json:"certs_file"`
	PolicyIDs            []string `toml:"policy_ids" json:"policy_ids"`
	AllowUnmatchedPolicy bool     `toml:"allow_unmatched_policy" json:"allow_unmatched_policy"`

	// coco_as_builtin
	as.Config

	// Legacy keys (releases before v0.16).
	WorkDir      string `toml:"work_dir" json:"work_dir"`
	PolicyEngine string `toml:"policy_engine" json:"policy_engine"`
}

// PluginConfig is one [[plugins]] entry, tagged by name.
type PluginConfig struct {
	Name string `toml:"name" json:"name"`
	// resource
	StorageBackendType string `toml:"storage_backend_type" json:"storage_backend_type"`
	// sample
	Item string `toml:"item" json:"item"`
	// Legacy (pre-v0.19) resource plugin keys.
	Type    string `toml:"type" json:"type"`
	DirPath string `toml:"dir_path" json:"dir_path"`
}

// Defaults.
const (
	DefaultSocket         = "127.0.0.1:8080"
	DefaultSessionTimeout = 5 // minutes
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("kbs: invalid configuration")

// LoadConfig reads a configuration file: TOML, or JSON when the name ends in
// .json. It returns the decoded configuration with defaults applied and the
// keys it ignored.
func LoadConfig(path string) (*Config, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reading %s: %v", ErrInvalidConfig, path, err)
	}
	if len(b) > limits.MaxConfigBytes {
		return nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidConfig, path, limits.MaxConfigBytes)
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return ParseConfigJSON(b)
	}
	return ParseConfig(b)
}

// ParseConfig decodes a TOML configuration.
func ParseConfig(b []byte) (*Config, []string, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var ignored []string
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "admin" {
			// [admin] decodes itself (admin.Config.UnmarshalTOML) and
			// rejects unknown keys there, as upstream's deny_unknown_fields.
			continue
		}
		if len(k) > 2 && k[0] == "attestation_service" && k[1] == "verifier_config" {
			continue // kept whole, as a map, for the TEE verifiers
		}
		ignored = append(ignored, k.String())
	}
	c.present = map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) == 1 {
			c.present[k[0]] = true
		}
	}
	if err := c.finish(); err != nil {
		return nil, nil, err
	}
	return &c, ignored, nil
}

// ParseConfigJSON decodes a JSON configuration.
func ParseConfigJSON(b []byte) (*Config, []string, error) {
	var c Config
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	c.present = map[string]bool{}
	for k := range top {
		c.present[k] = true
	}
	if err := c.finish(); err != nil {
		return nil, nil, err
	}
	return &c, nil, nil
}

func (c *Config) finish() error {
	if len(c.HTTPServer.Sockets) == 0 {
		c.HTTPServer.Sockets = []string{DefaultSocket}
	}
	if c.HTTPServer.PayloadRequestSize == 0 {
		c.HTTPServer.PayloadRequestSize = limits.DefaultPayloadMB
	}
	if c.HTTPServer.PayloadRequestSize < 0 || c.HTTPServer.PayloadRequestSize > 1024 {
		return fmt.Errorf("%w: payload_request_size %d MiB out of range", ErrInvalidConfig, c.HTTPServer.PayloadRequestSize)
	}
	if c.AttestationService.Type == "" {
		c.AttestationService.Type = ASTypeBuiltin
	}
	switch c.AttestationService.Type {
	case ASTypeBuiltin, ASTypeGRPC, ASTypeIntelTA:
	default:
		return fmt.Errorf("%w: unknown attestation_service type %q", ErrInvalidConfig, c.AttestationService.Type)
	}
	if c.AttestationService.Timeout == 0 {
		c.AttestationService.Timeout = DefaultSessionTimeout
	}
	if c.AttestationService.Timeout < 0 {
		return fmt.Errorf("%w: attestation_service timeout must be positive", ErrInvalidConfig)
	}
	for _, p := range c.Plugins {
		switch p.Name {
		case "resource", "sample":
		case "":
			if p.Type == "" {
				return fmt.Errorf("%w: [[plugins]] entry without name", ErrInvalidConfig)
			}
		}
	}
	return nil
}

// HasSection reports whether the loaded file had the top-level section.
func (c *Config) HasSection(name string) bool { return c.present[name] }

// CheckConfig runs the checks New makes of a parsed configuration that
// need no file, store or network: today the [[plugins]] list (names and
// backends this build supports). ParseConfig has already checked the
// rest of the document. The operator uses it to refuse a kbs-config.toml
// before a pod would fail on it.
func CheckConfig(cfg *Config) error {
	_, err := newPlugins(cfg.Plugins, nil)
	return err
}
