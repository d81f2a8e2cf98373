// Package sealedsecret implements CoCo sealed secrets: a secret (or a
// pointer to one) signed by its owner so that the untrusted control plane
// can carry it into a confidential VM but cannot forge or alter it.
//
// Wire form, byte-compatible with upstream guest-components:
//
//	sealed.<b64url(JWS header)>.<b64url(payload JSON)>.<b64url(r||s)>
//
// The header is {"b64":true,"alg":"ES256","kid":"<kid>"}; only ES256 is
// accepted. The kid is either a kbs:// resource URI, whose resource is the
// P-256 public JWK, or the name of a JWK file inside the local key directory
// (DefaultKeyDir). The payload is a vault secret (the secret itself is read
// from a provider, e.g. the KBS) or an envelope secret (the data is
// encrypted under a DEK that a KMS provider unwraps).
//
// # Invariants
//
//   - Every input is size-bounded (MaxSealedBytes) before it is decoded, and
//     decoding is strict: exactly three JWS parts, base64url without padding,
//     JSON objects of the expected types, version "0.1.0", every field
//     upstream requires present.
//   - Unless Options.SkipVerification is set (upstream's
//     skip_sealed_secret_verification), no payload is acted upon before its
//     signature verified with the key the kid names.
//   - A local kid never leaves the key directory: it is opened through an
//     os.Root, so "..", absolute paths and symlinks out of it fail.
//   - Plaintexts, keys and DEKs are never logged and never appear in errors.
//
// # Concurrency
//
// An Unsealer is safe for concurrent use when its providers are.
package sealedsecret

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Prefix starts every sealed secret.
const Prefix = "sealed."

// Version is the only payload version upstream and we accept.
const Version = "0.1.0"

// MaxSealedBytes bounds a sealed secret before it is decoded: a Kubernetes
// Secret holds at most 1 MiB, so no legitimate sealed secret is larger.
const MaxSealedBytes = limits.MaxSealedSecretBytes

// DefaultKeyDir holds the verification keys of local (non-URI) kids.
const DefaultKeyDir = "/run/confidential-containers/cdh/sealed-secret"

// Secret types (the payload's "type").
const (
	TypeVault    = "vault"
	TypeEnvelope = "envelope"
)

// Wrap types of an envelope secret.
const (
	WrapA256GCM = "A256GCM"
	WrapA256CTR = "A256CTR"
)

// Sentinel errors.
var (
	// ErrMalformed: the input is not a well-formed sealed secret (prefix,
	// JWS parts, base64url, JSON shape, missing or mistyped field).
	ErrMalformed = errors.New("sealedsecret: malformed sealed secret")
	// ErrTooLarge: the input exceeds MaxSealedBytes.
	ErrTooLarge = errors.New("sealedsecret: sealed secret too large")
	// ErrUnsupportedAlgorithm: the JWS alg is not ES256, or the header asks
	// for something we do not implement (b64 false, crit).
	ErrUnsupportedAlgorithm = errors.New("sealedsecret: unsupported sealed secret signature algorithm")
	// ErrBadSignature: the signature does not verify with the kid's key.
	ErrBadSignature = errors.New("sealedsecret: sealed secret signature does not verify")
	// ErrVerificationKey: the kid's key could not be read or is not a P-256
	// public JWK.
	ErrVerificationKey = errors.New("sealedsecret: sealed secret verification key unavailable")
	// ErrUnsupportedVersion: the payload version is not Version.
	ErrUnsupportedVersion = errors.New("sealedsecret: unsupported sealed secret version")
	// ErrUnknownProvider: no vault or KMS provider of the requested name.
	ErrUnknownProvider = errors.New("sealedsecret: unknown sealed secret provider")
	// ErrDecrypt: an envelope secret did not decrypt (wrong DEK, tampered
	// data, bad IV length).
	ErrDecrypt = errors.New("sealedsecret: sealed secret decryption failed")
)

// Map is a provider_settings or annotations object; values keep their JSON
// form.
type Map map[string]json.RawMessage

// Secret is a decoded sealed-secret payload. Exactly one of Vault and
// Envelope is set.
type Secret struct {
	// Version is the payload version, Version for every secret we accept.
	Version  string
	Vault    *VaultSecret
	Envelope *EnvelopeSecret
}

// VaultSecret names a secret a provider serves: for provider "kbs", Name is
// a kbs:///repo/type/tag URI.
type VaultSecret struct {
	Name             string
	Provider         string
	ProviderSettings Map
	Annotations      Map
}

// EnvelopeSecret carries data encrypted with a DEK that the KMS Provider
// decrypts (EncryptedKey under KeyID). Byte fields are standard base64.
type EnvelopeSecret struct {
	KeyID            string
	EncryptedKey     string
	EncryptedData    string
	WrapType         string
	IV               string
	Provider         string
	ProviderSettings Map
	Annotations      Map
}

// Type returns the payload type, TypeVault or TypeEnvelope.
func (s *Secret) Type() string {
	if s.Envelope != nil {
		return TypeEnvelope
	}
	return TypeVault
}

// Provider returns the provider name of either kind.
func (s *Secret) Provider() string {
	if s.Envelope != nil {
		return s.Envelope.Provider
	}
	if s.Vault != nil {
		return s.Vault.Provider
	}
	return ""
}

// MarshalJSON writes the payload with upstream's member order (version,
// type, then the fields in declaration order), compact.
func (s Secret) MarshalJSON() ([]byte, error) {
	obj := func(m Map) Map {
		if m == nil {
			return Map{}
		}
		return m
	}
	var kv []any // name, value, name, value, ...
	switch {
	case s.Vault != nil && s.Envelope == nil:
		v := s.Vault
		kv = []any{"version", s.Version, "type", TypeVault, "name", v.Name, "provider", v.Provider,
			"provider_settings", obj(v.ProviderSettings), "annotations", obj(v.Annotations)}
	case s.Envelope != nil && s.Vault == nil:
		e := s.Envelope
		kv = []any{"version", s.Version, "type", TypeEnvelope, "key_id", e.KeyID,
			"encrypted_key", e.EncryptedKey, "encrypted_data", e.EncryptedData, "wrap_type", e.WrapType,
			"iv", e.IV, "provider", e.Provider, "provider_settings", obj(e.ProviderSettings),
			"annotations", obj(e.Annotations)}
	default:
		return nil, errors.New("sealed secret: exactly one of Vault and Envelope must be set")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv[i])
		v, err := json.Marshal(kv[i+1])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// payloadFields is the union of both payload kinds; pointers tell absent
// from empty, since upstream requires every field.
type payloadFields struct {
	Version          *string `json:"version"`
	Type             *string `json:"type"`
	Name             *string `json:"name"`
	KeyID            *string `json:"key_id"`
	EncryptedKey     *string `json:"encrypted_key"`
	EncryptedData    *string `json:"encrypted_data"`
	WrapType         *string `json:"wrap_type"`
	IV               *string `json:"iv"`
	Provider         *string `json:"provider"`
	ProviderSettings *Map    `json:"provider_settings"`
	Annotations      *Map    `json:"annotations"`
}

// ParsePayload decodes a payload JSON document. Every field upstream
// requires must be present; unknown members are ignored, as upstream does.
// The version is not checked here (Unseal does).
func ParsePayload(b []byte) (*Secret, error) {
	if len(b) > MaxSealedBytes {
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrTooLarge, len(b))
	}
	var p payloadFields
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: payload JSON: %v", ErrMalformed, err)
	}
	missing := func(names ...string) error {
		return fmt.Errorf("%w: payload lacks %s", ErrMalformed, strings.Join(names, ", "))
	}
	if p.Version == nil || p.Type == nil {
		return nil, missing("version or type")
	}
	if p.Provider == nil || p.ProviderSettings == nil || p.Annotations == nil {
		return nil, missing("provider, provider_settings or annotations")
	}
	if *p.ProviderSettings == nil || *p.Annotations == nil {
		return nil, fmt.Errorf("%w: provider_settings and annotations must be objects", ErrMalformed)
	}
	s := &Secret{Version: *p.Version}
	switch *p.Type {
	case TypeVault:
		if p.Name == nil {
			return nil, missing("name")
		}
		s.Vault = &VaultSecret{Name: *p.Name, Provider: *p.Provider, ProviderSettings: *p.ProviderSettings, Annotations: *p.Annotations}
	case TypeEnvelope:
		if p.KeyID == nil || p.EncryptedKey == nil || p.EncryptedData == nil || p.WrapType == nil || p.IV == nil {
			return nil, missing("key_id, encrypted_key, encrypted_data, wrap_type or iv")
		}
		if *p.WrapType != WrapA256GCM && *p.WrapType != WrapA256CTR {
			return nil, fmt.Errorf("%w: wrap_type %q is neither %s nor %s", ErrMalformed, *p.WrapType, WrapA256GCM, WrapA256CTR)
		}
		s.Envelope = &EnvelopeSecret{
			KeyID: *p.KeyID, EncryptedKey: *p.EncryptedKey, EncryptedData: *p.EncryptedData,
			WrapType: *p.WrapType, IV: *p.IV, Provider: *p.Provider,
			ProviderSettings: *p.ProviderSettings, Annotations: *p.Annotations,
		}
	default:
		return nil, fmt.Errorf("%w: type %q is neither %s nor %s", ErrMalformed, *p.Type, TypeVault, TypeEnvelope)
	}
	return s, nil
}

// Header is the JWS protected header of a sealed secret.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Sealed is a sealed secret split into its parts, before verification.
type Sealed struct {
	Header Header
	// SigningInput is "<header b64>.<payload b64>", the bytes signed.
	SigningInput string
	// Payload is the decoded payload JSON.
	Payload []byte
	// Signature is the raw 64-byte r||s.
	Signature []byte
}

var b64 = base64.RawURLEncoding.Strict()

// Parse splits and decodes a sealed secret without verifying it: the
// "sealed." prefix, three base64url (no padding) parts, a header naming
// alg ES256 and a kid, and a 64-byte signature.
func Parse(s []byte) (*Sealed, error) {
	if len(s) > MaxSealedBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(s), MaxSealedBytes)
	}
	rest, ok := bytes.CutPrefix(s, []byte(Prefix))
	if !ok {
		return nil, fmt.Errorf("%w: no %q prefix", ErrMalformed, Prefix)
	}
	parts := strings.Split(string(rest), ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: a compact JWS has 3 parts, got %d", ErrMalformed, len(parts))
	}
	hdr, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: JWS header is not base64url: %v", ErrMalformed, err)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: JWS payload is not base64url: %v", ErrMalformed, err)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: JWS signature is not base64url: %v", ErrMalformed, err)
	}
	h, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: ES256 signature of %d bytes, want 64", ErrMalformed, len(sig))
	}
	return &Sealed{Header: h, SigningInput: parts[0] + "." + parts[1], Payload: payload, Signature: sig}, nil
}

func parseHeader(b []byte) (Header, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return Header{}, fmt.Errorf("%w: JWS header is not a JSON object", ErrMalformed)
	}
	var h Header
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok {
			return fmt.Errorf("%w: JWS header lacks %q", ErrMalformed, name)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%w: JWS header %q is not a string", ErrMalformed, name)
		}
		return nil
	}
	if err := str("alg", &h.Alg); err != nil {
		return Header{}, err
	}
	if err := str("kid", &h.Kid); err != nil {
		return Header{}, err
	}
	if h.Kid == "" {
		return Header{}, fmt.Errorf("%w: empty kid", ErrMalformed)
	}
	if h.Alg != "ES256" {
		return Header{}, fmt.Errorf("%w: %q (only ES256)", ErrUnsupportedAlgorithm, h.Alg)
	}
	if v, ok := raw["b64"]; ok && string(v) != "true" {
		return Header{}, fmt.Errorf("%w: unencoded payload (b64 %s)", ErrUnsupportedAlgorithm, v)
	}
	if _, ok := raw["crit"]; ok {
		return Header{}, fmt.Errorf("%w: critical header parameters", ErrUnsupportedAlgorithm)
	}
	return h, nil
}

// lenientB64 decodes the payload of the unverified legacy form: base64url
// or standard, padded or not (old upstream docs show padded standard
// base64, which upstream's current decoder refuses).
func lenientB64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: payload is not base64", ErrMalformed)
}

// parseUnverified is upstream's skip-verification path: four "."-separated
// parts, the third is the payload; nothing is checked but the payload.
func parseUnverified(s []byte) ([]byte, error) {
	if len(s) > MaxSealedBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(s), MaxSealedBytes)
	}
	parts := strings.Split(string(s), ".")
	if len(parts) != 4 {
		return nil, fmt.Errorf("%w: want 4 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	return lenientB64(parts[2])
}
