package kbs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/admin"
	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/kbs/extplugin"
	"github.com/go-trustee/go-trustee/storage/backends"
	"github.com/go-trustee/go-trustee/storage/localjson"
	"github.com/go-trustee/go-trustee/token"
)

// Config is upstream's kbs-config.toml. Every key of upstream's
// configuration is either honoured or refused when the file is parsed,
// with a message naming the key and what to do instead:
//
//   - Unknown keys are ignored and reported by LoadConfig as warnings, as
//     upstream ignores them, except in [admin] (refused, as upstream) and in
//     [http_server], [storage_backend] and the token signer, where every
//     key decides transport security, where data lives or which key signs:
//     an unknown key there (a misspelling, or a key of a newer release) is
//     refused rather than leaving the server running on defaults.
//   - Legacy keys of older releases are translated where their meaning is
//     still served (the [admin] formats, attestation_token_type,
//     attestation_token_config.duration_min), ignored with a warning where
//     ignoring them cannot weaken security or move data (insecure_key,
//     policy_engine = "opa", attestation_token_broker.type), and refused
//     where they named a data location this KBS does not read (work_dir,
//     attestation_token_broker.policy_dir, [policy_engine] policy_path,
//     [[plugins]] type/dir_path, rvps_config.storage, store_type,
//     store_config and remote_addr).
//   - http_server.worker_count is accepted and has no effect (Go serves
//     each connection on its own goroutine); Serve logs so.
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

	// Legacy section of releases before v0.16: accepted without
	// policy_path, which is refused (the resource policy lives in the
	// storage backend).
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
	// MaxConnections caps the open client connections of all sockets
	// (ours; 0 or unset: three quarters of the descriptor limit).
	MaxConnections int `toml:"max_connections" json:"max_connections"`
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
	// resource, storage_backend_type = "Vault" (package vaultkv): upstream's
	// keys. VerifySSL unset verifies (upstream: false).
	VaultURL  string   `toml:"vault_url" json:"vault_url"`
	Token     string   `toml:"token" json:"token"`
	MountPath string   `toml:"mount_path" json:"mount_path"`
	VerifySSL *bool    `toml:"verify_ssl" json:"verify_ssl"`
	CACerts   []string `toml:"ca_certs" json:"ca_certs"`
	// Ours: KV version 1 (default) or 2, Vault Enterprise namespace,
	// per-request deadline in seconds (0: 10).
	KVVersion   int    `toml:"kv_version" json:"kv_version"`
	Namespace   string `toml:"namespace" json:"namespace"`
	TimeoutSecs int    `toml:"timeout_secs" json:"timeout_secs"`
	// Ours: resource, storage_backend_type = "kubernetes" (package
	// k8ssecrets): the Secrets of one namespace, read-only. timeout_secs
	// bounds the initial sync there (0: 30).
	KubernetesNamespace string   `toml:"kubernetes_namespace" json:"kubernetes_namespace"`
	Kubeconfig          string   `toml:"kubeconfig" json:"kubeconfig"`
	LabelSelector       string   `toml:"label_selector" json:"label_selector"`
	SecretNames         []string `toml:"secret_names" json:"secret_names"`
	// provisioner: bytes of random key material (upstream: 32).
	KeyLength int `toml:"key_length" json:"key_length"`
	// sample
	Item string `toml:"item" json:"item"`
	// external (package extplugin): upstream's gRPC plugin backends.
	Backends []extplugin.Backend `toml:"backends" json:"backends"`
	// pkcs11 (package pkcs11plugin): upstream's Pkcs11Config keys. Pin
	// prints as <redacted>.
	Module       string       `toml:"module" json:"module"`
	SlotIndex    int          `toml:"slot_index" json:"slot_index"`
	Pin          SecretString `toml:"pin" json:"pin"`
	RsaMechanism string       `toml:"rsa_mechanism" json:"rsa_mechanism"`
	LookupLabel  string       `toml:"lookup_label" json:"lookup_label"`
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
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := c.refuseUnhonoured(raw, "toml"); err != nil {
		return nil, nil, err
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
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := c.refuseUnhonoured(raw, "json"); err != nil {
		return nil, nil, err
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
	if c.HTTPServer.WorkerCount < 0 {
		return fmt.Errorf("%w: http_server.worker_count %d is negative", ErrInvalidConfig, c.HTTPServer.WorkerCount)
	}
	// The TLS settings are checked here, before any file is read, so that a
	// setting this KBS cannot honour is refused wherever the configuration
	// is checked (the operator, too). With insecure_http upstream checks
	// the profile and versions only; so do we.
	if hs := c.HTTPServer; !hs.InsecureHTTP {
		if _, err := TLSSettings(hs); err != nil {
			return err
		}
	} else {
		if _, err := TLSSettings(HTTPServerConfig{TLSProfile: hs.TLSProfile}); err != nil {
			return err
		}
		if _, err := TLSSettings(HTTPServerConfig{TLSMinVersion: hs.TLSMinVersion, TLSMaxVersion: hs.TLSMaxVersion}); err != nil {
			return err
		}
	}
	if c.AttestationService.Type == "" {
		c.AttestationService.Type = ASTypeBuiltin
	}
	switch c.AttestationService.Type {
	case ASTypeBuiltin, ASTypeGRPC, ASTypeIntelTA:
	default:
		return fmt.Errorf("%w: unknown attestation_service type %q", ErrInvalidConfig, c.AttestationService.Type)
	}
	if asc := c.AttestationService; asc.Type == ASTypeIntelTA {
		// Upstream's IntelTrustAuthorityConfig requires these keys; empty,
		// no attestation could succeed. (The values are checked further
		// when the server starts: kbs/ita.New.)
		for _, k := range []struct{ key, val string }{{"base_url", asc.BaseURL}, {"api_key", asc.APIKey}, {"certs_file", asc.CertsFile}} {
			if k.val == "" {
				return fmt.Errorf("%w: attestation_service.%s is required for type = \"intel_ta\"", ErrInvalidConfig, k.key)
			}
		}
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

// strictSections are the sections in which an unknown key is refused:
// each of their keys decides transport security, where data lives, or the
// token signing key, so a misspelt or unsupported key must not leave the
// server running on a default.
var strictSections = []struct {
	path []string
	typ  reflect.Type
}{
	{[]string{"http_server"}, reflect.TypeFor[HTTPServerConfig]()},
	{[]string{"storage_backend"}, reflect.TypeFor[backends.Config]()},
	{[]string{"attestation_service", "attestation_token_broker", "signer"}, reflect.TypeFor[as.SignerConfig]()},
}

// refuseUnhonoured refuses the keys of the raw document (decoded as a
// generic map; tag is "toml" or "json") and of the decoded configuration
// that this KBS would otherwise ignore although they change security or
// where data lives. See Config.
func (c *Config) refuseUnhonoured(raw map[string]any, tag string) error {
	for _, sec := range strictSections {
		m, ok := lookup(raw, sec.path...).(map[string]any)
		if !ok {
			continue
		}
		for _, k := range unknownKeys(m, sec.typ, tag) {
			key := strings.Join(append(slices.Clone(sec.path), k...), ".")
			if key == "storage_backend.backends.local_json.dir_path" {
				if err := c.checkLocalJSONDirPath(m); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("%w: %s is not a key this KBS knows, and an unknown key in [%s] is refused rather than ignored: check its spelling against upstream's kbs/docs/config.md, or remove it",
				ErrInvalidConfig, key, strings.Join(sec.path, "."))
		}
	}
	// The RVPS's own storage (v0.12–v0.15: storage; v0.10: store_type,
	// store_config) and v0.10's remote_addr, which chose a remote RVPS.
	for _, k := range []string{"storage", "store_type", "store_config", "remote_addr"} {
		if lookup(raw, "attestation_service", "rvps_config", k) == nil {
			continue
		}
		if k == "remote_addr" {
			return fmt.Errorf("%w: attestation_service.rvps_config.remote_addr (a pre-v0.12 key) is not read: for a remote RVPS set type = \"GrpcRemote\" and address; remove remote_addr", ErrInvalidConfig)
		}
		return fmt.Errorf("%w: attestation_service.rvps_config.%s (a pre-v0.16 key) is not read: the built-in RVPS stores reference values in [storage_backend], optionally of the type rvps_config.storage_type; move the settings there", ErrInvalidConfig, k)
	}
	asc := c.AttestationService
	if asc.WorkDir != "" || asc.Config.WorkDir != "" {
		return fmt.Errorf("%w: attestation_service.work_dir (a pre-v0.16 key) is not read: attestation policies and reference values live in [storage_backend]; remove work_dir and set [storage_backend] to where they should be kept", ErrInvalidConfig)
	}
	if asc.TokenBroker.PolicyDir != "" {
		return fmt.Errorf("%w: attestation_service.attestation_token_broker.policy_dir (a pre-v0.16 key) is not read: attestation policies live in [storage_backend]; remove policy_dir and load the policies with POST /kbs/v0/attestation-policy (kbs-client config set-attestation-policy)", ErrInvalidConfig)
	}
	if _, ok := c.LegacyPolicyEngine["policy_path"]; ok {
		return fmt.Errorf("%w: [policy_engine] policy_path (a pre-v0.16 key) is not read: the resource policy lives in [storage_backend]; remove [policy_engine] and load the policy with POST /kbs/v0/resource-policy (kbs-client config set-resource-policy)", ErrInvalidConfig)
	}
	for i, p := range c.Plugins {
		if p.DirPath != "" || (p.Name == "" && p.Type != "") {
			return fmt.Errorf("%w: plugins[%d]: type = %q, dir_path = %q is the pre-v0.19 resource plugin, whose repository this KBS does not read: use name = \"resource\" with storage_backend_type = \"kvstorage\" (resources then live in [storage_backend]) and store them again",
				ErrInvalidConfig, i, p.Type, p.DirPath)
		}
	}
	return nil
}

// checkLocalJSONDirPath accepts storage_backend.backends.local_json.dir_path,
// a key upstream's LocalJson backend does not have (it reads file_dir_path
// and ignores dir_path; trustee-operator's templates write dir_path), only
// when it names the directory the backend uses anyway.
func (c *Config) checkLocalJSONDirPath(sb map[string]any) error {
	dir, _ := lookup(sb, "backends", "local_json", "dir_path").(string)
	use := c.StorageBackend.Backends.LocalJson.FileDirPath
	if use == "" {
		use = localjson.DefaultFileDirPath
	}
	if dir != "" && filepath.Clean(dir) == filepath.Clean(use) {
		return nil
	}
	return fmt.Errorf("%w: storage_backend.backends.local_json.dir_path %q is not read (upstream ignores it too): LocalJson stores in file_dir_path, here %q; rename dir_path to file_dir_path", ErrInvalidConfig, dir, use)
}

// lookup returns the value at path in a decoded document, or nil.
func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = mm[p]; !ok {
			return nil
		}
	}
	return v
}

// unknownKeys returns, sorted, the paths of the keys of m (a decoded
// table) that no field of the struct type t names under tag, descending
// into tables that decode into structs.
func unknownKeys(m map[string]any, t reflect.Type, tag string) [][]string {
	fields := map[string]reflect.Type{}
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				collect(f.Type)
				continue
			}
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
		}
	}
	collect(t)
	var out [][]string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ft, ok := fields[k]
		if !ok {
			out = append(out, []string{k})
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sub, isTable := m[k].(map[string]any); isTable && ft.Kind() == reflect.Struct {
			for _, u := range unknownKeys(sub, ft, tag) {
				out = append(out, append([]string{k}, u...))
			}
		}
	}
	return out
}

// HasSection reports whether the loaded file had the top-level section.
func (c *Config) HasSection(name string) bool { return c.present[name] }

// CheckConfig runs the checks New makes of a parsed configuration that
// need no file, store or network: today the [[plugins]] list (names and
// backends this build supports). ParseConfig has already checked the
// rest of the document. The operator uses it to refuse a kbs-config.toml
// before a pod would fail on it.
func CheckConfig(cfg *Config) error {
	_, err := newPlugins(context.Background(), cfg.Plugins, nil, slog.Default())
	return err
}
