package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Default values of the [image] table (upstream image-rs config.rs).
const (
	DefaultWorkDir                = "/run/kata-containers/image"
	DefaultMaxConcurrentDownloads = 3
	DefaultMaxManifestBytes       = 4 << 20
	DefaultMaxConfigBytes         = 4 << 20
)

// Config is the [image] table of the confidential-data-hub configuration.
// URIs may be kbs:/// resource URIs (fetched after attestation through
// the hub), file:// URIs or plain paths. Inline values lose to their URI
// counterpart, except registry_config, which wins over
// registry_configuration_uri (as upstream).
type Config struct {
	WorkDir                             string          `json:"work_dir"`
	ImageSecurityPolicyURI              string          `json:"image_security_policy_uri"`
	ImageSecurityPolicy                 string          `json:"image_security_policy"`
	SigstoreConfigURI                   string          `json:"sigstore_config_uri"`
	SigstoreConfig                      string          `json:"sigstore_config"`
	AuthenticatedRegistryCredentialsURI string          `json:"authenticated_registry_credentials_uri"`
	RegistryConfigurationURI            string          `json:"registry_configuration_uri"`
	RegistryConfig                      *RegistryConfig `json:"registry_config"`
	MaxConcurrentLayerDownloads         int             `json:"max_concurrent_layer_downloads_per_image"`
	ImagePullProxy                      *ProxyConfig    `json:"image_pull_proxy"`
	ExtraRootCertificates               []string        `json:"extra_root_certificates"`
}

// ProxyConfig is [image.image_pull_proxy].
type ProxyConfig struct {
	HTTPSProxy string `json:"https_proxy"`
	HTTPProxy  string `json:"http_proxy"`
	NoProxy    string `json:"no_proxy"`
}

// ParseConfig decodes the [image] table as the cdh configuration keeps it
// (a decoded TOML or JSON map). A nil map gives the defaults.
func ParseConfig(m map[string]any) (*Config, error) {
	c := &Config{}
	if m != nil {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%w: [image]: %v", ErrInvalidConfig, err)
		}
		if len(b) > limits.MaxConfigBytes {
			return nil, fmt.Errorf("%w: [image] exceeds %d bytes", ErrInvalidConfig, limits.MaxConfigBytes)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("%w: [image]: %v", ErrInvalidConfig, err)
		}
	}
	if c.WorkDir == "" {
		c.WorkDir = DefaultWorkDir
	}
	if c.MaxConcurrentLayerDownloads <= 0 {
		c.MaxConcurrentLayerDownloads = DefaultMaxConcurrentDownloads
	}
	if len(c.ExtraRootCertificates) > limits.MaxExtraRootCertificates {
		return nil, fmt.Errorf("%w: more than %d extra_root_certificates", ErrInvalidConfig, limits.MaxExtraRootCertificates)
	}
	if c.RegistryConfig != nil {
		if err := c.RegistryConfig.validate(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// RegistryConfig is the registry configuration (a containers
// registries.conf subset, upstream registry-configuration.toml).
type RegistryConfig struct {
	UnqualifiedSearchRegistries []string   `toml:"unqualified-search-registries" json:"unqualified-search-registries"`
	Registries                  []Registry `toml:"registry" json:"registry"`
}

// Registry is one [[registry]] entry. Prefix defaults to Location.
type Registry struct {
	Prefix   string   `toml:"prefix" json:"prefix"`
	Location string   `toml:"location" json:"location"`
	Insecure bool     `toml:"insecure" json:"insecure"`
	Blocked  bool     `toml:"blocked" json:"blocked"`
	Mirrors  []Mirror `toml:"mirror" json:"mirror"`
}

// Mirror is one [[registry.mirror]] entry.
type Mirror struct {
	Location string `toml:"location" json:"location"`
	Insecure bool   `toml:"insecure" json:"insecure"`
}

// ParseRegistryConfig decodes a registry configuration TOML document.
func ParseRegistryConfig(b []byte) (*RegistryConfig, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: registry configuration exceeds %d bytes", ErrInvalidConfig, limits.MaxConfigBytes)
	}
	var rc RegistryConfig
	md, err := toml.Decode(string(b), &rc)
	if err != nil {
		return nil, fmt.Errorf("%w: registry configuration: %v", ErrInvalidConfig, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return nil, fmt.Errorf("%w: registry configuration: unknown key %q", ErrInvalidConfig, u[0].String())
	}
	if err := rc.validate(); err != nil {
		return nil, err
	}
	return &rc, nil
}

func (rc *RegistryConfig) validate() error {
	if len(rc.UnqualifiedSearchRegistries) > limits.MaxUnqualifiedSearchRegistries || len(rc.Registries) > limits.MaxRegistryEntries {
		return fmt.Errorf("%w: registry configuration has too many entries", ErrInvalidConfig)
	}
	for _, r := range rc.UnqualifiedSearchRegistries {
		if !validHost(r) {
			return fmt.Errorf("%w: unqualified search registry %q", ErrInvalidConfig, r)
		}
	}
	for i := range rc.Registries {
		r := &rc.Registries[i]
		if r.Prefix == "" {
			r.Prefix = r.Location
		}
		if r.Prefix == "" {
			return fmt.Errorf("%w: [[registry]] %d has neither prefix nor location", ErrInvalidConfig, i)
		}
		if strings.HasPrefix(r.Prefix, "*.") {
			if strings.ContainsAny(r.Prefix[2:], "/*") || r.Location != "" {
				return fmt.Errorf("%w: wildcard prefix %q must be a bare host and have no location", ErrInvalidConfig, r.Prefix)
			}
		} else if !validLocation(r.Prefix) {
			return fmt.Errorf("%w: registry prefix %q", ErrInvalidConfig, r.Prefix)
		}
		if r.Location != "" && !validLocation(r.Location) {
			return fmt.Errorf("%w: registry location %q", ErrInvalidConfig, r.Location)
		}
		if len(r.Mirrors) > limits.MaxRegistryMirrors {
			return fmt.Errorf("%w: [[registry]] %q has too many mirrors", ErrInvalidConfig, r.Prefix)
		}
		for _, m := range r.Mirrors {
			if !validLocation(m.Location) {
				return fmt.Errorf("%w: mirror location %q", ErrInvalidConfig, m.Location)
			}
		}
	}
	return nil
}

// validHost accepts host[:port] without scheme or path.
func validHost(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, "/@ \t\n*") && !strings.Contains(s, "://")
}

// validLocation accepts host[:port][/path] without scheme, tag or digest.
func validLocation(s string) bool {
	if s == "" || len(s) > 1024 || strings.Contains(s, "://") || strings.ContainsAny(s, "@ \t\n*") {
		return false
	}
	host, rest, _ := strings.Cut(s, "/")
	if !validHost(host) {
		return false
	}
	if rest != "" && (strings.Contains(rest, ":") || strings.Contains(rest, "//") || strings.HasSuffix(rest, "/")) {
		return false
	}
	return true
}
