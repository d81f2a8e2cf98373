package snp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// ConfigKey is the key of the snp verifier's section in the Attestation
// Service's verifier_config.
const ConfigKey = "snp_verifier"

// ParseConfig reads the snp verifier's configuration from the Attestation
// Service's verifier_config map (as decoded from TOML or JSON), key
// "snp_verifier", the way upstream's serde types do: member names are
// case-sensitive, unknown members are ignored, vcek_sources defaults to
// [{type: "KDS"}], and each source's "type" is "KDS" (optional string
// base_url) or "OfflineStore" (optional string path). A missing or null
// snp_verifier is the default configuration.
func ParseConfig(m map[string]any) (Config, error) {
	section, ok := m[ConfigKey]
	if !ok || section == nil {
		return Config{}, nil
	}
	raw, err := json.Marshal(section)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, ConfigKey, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return Config{}, fmt.Errorf("%w: %s is not a table", ErrInvalidConfig, ConfigKey)
	}
	list, ok := obj["vcek_sources"]
	if !ok {
		return Config{}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(list, &items); err != nil || items == nil {
		return Config{}, fmt.Errorf("%w: %s.vcek_sources is not an array", ErrInvalidConfig, ConfigKey)
	}
	cfg := Config{VCEKSources: make([]VCEKSource, 0, len(items))}
	for i, item := range items {
		var src map[string]json.RawMessage
		if err := json.Unmarshal(item, &src); err != nil || src == nil {
			return Config{}, fmt.Errorf("%w: vcek_sources[%d] is not a table", ErrInvalidConfig, i)
		}
		var s VCEKSource
		if err := optString(src, "type", &s.Type); err != nil || s.Type == "" {
			return Config{}, fmt.Errorf("%w: vcek_sources[%d]: missing or invalid field `type`", ErrInvalidConfig, i)
		}
		switch s.Type {
		case SourceKDS:
			err = optString(src, "base_url", &s.BaseURL)
		case SourceOfflineStore:
			err = optString(src, "path", &s.Path)
		default:
			return Config{}, fmt.Errorf("%w: vcek_sources[%d]: unknown variant `%s`, expected `OfflineStore` or `KDS`", ErrInvalidConfig, i, s.Type)
		}
		if err != nil {
			return Config{}, fmt.Errorf("%w: vcek_sources[%d]: %v", ErrInvalidConfig, i, err)
		}
		cfg.VCEKSources = append(cfg.VCEKSources, s)
	}
	if _, err := cfg.normalize(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// optString decodes the optional string member name (absent or null is "").
func optString(obj map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := obj[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("field `%s` is not a string", name)
	}
	return nil
}

// normalize validates the configuration and returns the sources with their
// defaults filled in.
func (c Config) normalize() ([]VCEKSource, error) {
	if c.VCEKSources == nil {
		return []VCEKSource{{Type: SourceKDS, BaseURL: DefaultKDSURL}}, nil
	}
	out := make([]VCEKSource, 0, len(c.VCEKSources))
	for i, s := range c.VCEKSources {
		switch s.Type {
		case SourceKDS:
			if s.Path != "" {
				return nil, fmt.Errorf("%w: vcek_sources[%d]: a KDS source has no path", ErrInvalidConfig, i)
			}
			if s.BaseURL == "" {
				s.BaseURL = DefaultKDSURL
			}
			u, err := url.Parse(s.BaseURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("%w: vcek_sources[%d]: base_url %q is not an http(s) URL", ErrInvalidConfig, i, s.BaseURL)
			}
			s.BaseURL = strings.TrimRight(s.BaseURL, "/")
		case SourceOfflineStore:
			if s.BaseURL != "" {
				return nil, fmt.Errorf("%w: vcek_sources[%d]: an OfflineStore source has no base_url", ErrInvalidConfig, i)
			}
			if s.Path == "" {
				s.Path = DefaultOfflineStorePath
			}
		default:
			return nil, fmt.Errorf("%w: vcek_sources[%d]: unknown type %q, expected %q or %q", ErrInvalidConfig, i, s.Type, SourceOfflineStore, SourceKDS)
		}
		out = append(out, s)
	}
	return out, nil
}
