package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// Authorization modes of the current (v0.21+) configuration.
const (
	ModeInsecureAllowAll           = "InsecureAllowAll"
	ModeDenyAll                    = "DenyAll"
	ModeAuthenticatedAuthorization = "AuthenticatedAuthorization"
)

// Backend types of the v0.16–v0.20 configuration ("type").
const (
	TypeSimple           = "Simple"
	TypeInsecureAllowAll = "InsecureAllowAll"
	TypeDenyAll          = "DenyAll"
)

// Config is the whole [admin] section, in any of the three generations
// upstream has had. Exactly one generation's keys may be used:
//
//   - current (v0.21+): authorization_mode, [admin.authentication.bearer_jwt],
//     [admin.authorization.regex_acl]. Unknown keys are errors, as upstream
//     (serde deny_unknown_fields).
//   - v0.16–v0.20: type, personas, [[admin.roles]]. Other keys are
//     tolerated (reported by New as a warning), as upstream; unknown keys
//     inside a role are errors, as upstream.
//   - up to v0.15: insecure_api, auth_public_key. Other keys are tolerated.
//
// Config decodes from TOML (BurntSushi/toml, via UnmarshalTOML) and JSON
// (UnmarshalJSON) with the same rules.
type Config struct {
	// Current generation.
	AuthorizationMode string          `toml:"authorization_mode" json:"authorization_mode,omitempty"`
	Authentication    *Authentication `toml:"authentication" json:"authentication,omitempty"`
	Authorization     *Authorization  `toml:"authorization" json:"authorization,omitempty"`

	// v0.16–v0.20.
	Type     string    `toml:"type" json:"type,omitempty"`
	Personas []Persona `toml:"personas" json:"personas,omitempty"`
	Roles    []Role    `toml:"roles" json:"roles,omitempty"`

	// Up to v0.15.
	InsecureAPI   *bool  `toml:"insecure_api" json:"insecure_api,omitempty"`
	AuthPublicKey string `toml:"auth_public_key" json:"auth_public_key,omitempty"`

	// ignored lists tolerated unknown keys of a legacy section.
	ignored []string
}

// Authentication is [admin.authentication]; exactly one method.
type Authentication struct {
	BearerJWT *BearerJWT `toml:"bearer_jwt" json:"bearer_jwt,omitempty"`
}

// BearerJWT is [admin.authentication.bearer_jwt].
type BearerJWT struct {
	IdentityProviders []IdentityProvider `toml:"identity_providers" json:"identity_providers"`
}

// IdentityProvider is one trusted token issuer. At least one of
// PublicKeyURI (a PEM public key) and JWKSetURI (a JWK set, OpenID
// discovery fallback) is required; each is an https:// URL, a file:// URL
// or a local path. Issuer and Audience, when set, must match the token's
// "iss" and be one of its "aud".
type IdentityProvider struct {
	Issuer       string `toml:"issuer" json:"issuer,omitempty"`
	Audience     string `toml:"audience" json:"audience,omitempty"`
	PublicKeyURI string `toml:"public_key_uri" json:"public_key_uri,omitempty"`
	JWKSetURI    string `toml:"jwk_set_uri" json:"jwk_set_uri,omitempty"`
}

// Authorization is [admin.authorization]; exactly one method.
type Authorization struct {
	RegexACL *RegexACL `toml:"regex_acl" json:"regex_acl,omitempty"`
}

// RegexACL is [admin.authorization.regex_acl].
type RegexACL struct {
	ACLs []ACLRule `toml:"acls" json:"acls"`
}

// ACLRule grants Role the request URIs (path and query) matching
// AllowedEndpoints, a regular expression that must start with "^/kbs" and
// end with "$".
type ACLRule struct {
	Role             string `toml:"role" json:"role"`
	AllowedEndpoints string `toml:"allowed_endpoints" json:"allowed_endpoints"`
}

// Persona is a v0.16–v0.20 admin identity: an Ed25519 PEM public key.
type Persona struct {
	ID            string `toml:"id" json:"id"`
	PublicKeyPath string `toml:"public_key_path" json:"public_key_path"`
}

// Role is a v0.16–v0.20 [[admin.roles]] entry: the persona ID and the
// endpoints it may use (same regex rules as ACLRule).
type Role struct {
	ID               string `toml:"id" json:"id"`
	AllowedEndpoints string `toml:"allowed_endpoints" json:"allowed_endpoints"`
}

type generation int

const (
	genNone generation = iota
	genCurrent
	genV2
	genV1
)

var genKeys = map[string]generation{
	"authorization_mode": genCurrent, "authentication": genCurrent, "authorization": genCurrent,
	"type": genV2, "personas": genV2, "roles": genV2,
	"insecure_api": genV1, "auth_public_key": genV1,
}

var genNames = map[generation]string{
	genCurrent: "current (authorization_mode)",
	genV2:      "v0.16-v0.20 (type/personas/roles)",
	genV1:      "v0.15 (insecure_api/auth_public_key)",
}

// generation reports which generation's keys cfg uses, or an error when it
// mixes them.
func (c *Config) generation() (generation, error) {
	var used []generation
	if c.AuthorizationMode != "" || c.Authentication != nil || c.Authorization != nil {
		used = append(used, genCurrent)
	}
	if c.Type != "" || c.Personas != nil || c.Roles != nil {
		used = append(used, genV2)
	}
	if c.InsecureAPI != nil || c.AuthPublicKey != "" {
		used = append(used, genV1)
	}
	switch len(used) {
	case 0:
		return genNone, nil
	case 1:
		return used[0], nil
	}
	names := make([]string, len(used))
	for i, g := range used {
		names[i] = genNames[g]
	}
	return genNone, fmt.Errorf("%w: [admin] mixes keys of several configuration generations: %s", ErrInvalidConfig, strings.Join(names, ", "))
}

// UnmarshalTOML decodes the [admin] table as BurntSushi/toml hands it over.
func (c *Config) UnmarshalTOML(data any) error {
	m, ok := data.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: [admin] must be a table", ErrInvalidConfig)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%w: [admin]: %v", ErrInvalidConfig, err)
	}
	return c.UnmarshalJSON(b)
}

// UnmarshalJSON decodes the admin section from JSON with the rules of the
// Config documentation.
func (c *Config) UnmarshalJSON(b []byte) error {
	if len(b) > limits.MaxConfigBytes {
		return fmt.Errorf("%w: [admin] exceeds %d bytes", ErrInvalidConfig, limits.MaxConfigBytes)
	}
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return fmt.Errorf("%w: [admin]: %v", ErrInvalidConfig, err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return fmt.Errorf("%w: [admin]: %v", ErrInvalidConfig, err)
	}
	if members == nil {
		return fmt.Errorf("%w: [admin] must be a table", ErrInvalidConfig)
	}
	gens := map[generation]bool{}
	var unknown []string
	for k := range members {
		if g, ok := genKeys[k]; ok {
			gens[g] = true
		} else {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(gens) > 1 {
		var names []string
		for _, g := range []generation{genCurrent, genV2, genV1} {
			if gens[g] {
				names = append(names, genNames[g])
			}
		}
		return fmt.Errorf("%w: [admin] mixes keys of several configuration generations: %s", ErrInvalidConfig, strings.Join(names, ", "))
	}
	out := Config{}
	switch {
	case gens[genCurrent]:
		if len(unknown) > 0 {
			return fmt.Errorf("%w: [admin]: unknown field(s) %s (with authorization_mode only authentication and authorization are allowed)", ErrInvalidConfig, strings.Join(unknown, ", "))
		}
		if err := strictField(members, "authorization_mode", &out.AuthorizationMode); err != nil {
			return err
		}
		if err := strictField(members, "authentication", &out.Authentication); err != nil {
			return err
		}
		if err := strictField(members, "authorization", &out.Authorization); err != nil {
			return err
		}
	case gens[genV2]:
		if err := strictField(members, "type", &out.Type); err != nil {
			return err
		}
		if err := lenientField(members, "personas", &out.Personas); err != nil {
			return err
		}
		if err := strictField(members, "roles", &out.Roles); err != nil {
			return err
		}
		out.ignored = unknown
	case gens[genV1]:
		if err := lenientField(members, "insecure_api", &out.InsecureAPI); err != nil {
			return err
		}
		if err := lenientField(members, "auth_public_key", &out.AuthPublicKey); err != nil {
			return err
		}
		out.ignored = unknown
	default:
		out.ignored = unknown
	}
	*c = out
	return nil
}

func strictField(m map[string]json.RawMessage, name string, dst any) error {
	raw, ok := m[name]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%w: [admin] %s: %v", ErrInvalidConfig, name, err)
	}
	return nil
}

func lenientField(m map[string]json.RawMessage, name string, dst any) error {
	raw, ok := m[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: [admin] %s: %v", ErrInvalidConfig, name, err)
	}
	return nil
}

// Ignored returns the keys of a legacy [admin] section that were tolerated
// and ignored when decoding.
func (c *Config) Ignored() []string { return slices.Clone(c.ignored) }
