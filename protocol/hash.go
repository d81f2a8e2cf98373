package protocol

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"hash"
	"strings"

	"github.com/gowebpki/jcs"
)

// HashAlgorithm names a digest as kbs-types spells it.
type HashAlgorithm string

// The hash algorithms of kbs-types. SM3 is recognised but not implemented.
const (
	SHA256 HashAlgorithm = "sha256"
	SHA384 HashAlgorithm = "sha384"
	SHA512 HashAlgorithm = "sha512"
	SM3    HashAlgorithm = "sm3"
)

// DefaultHashAlgorithm is used when a challenge selects none.
const DefaultHashAlgorithm = SHA384

// ParseHashAlgorithm parses a name case-insensitively, as the guest does.
func ParseHashAlgorithm(s string) (HashAlgorithm, error) {
	switch h := HashAlgorithm(strings.ToLower(s)); h {
	case SHA256, SHA384, SHA512:
		return h, nil
	case SM3:
		return "", fmt.Errorf("hash algorithm sm3 is not supported")
	}
	return "", fmt.Errorf("unknown hash algorithm %q", s)
}

// New returns a new hash.Hash for h.
func (h HashAlgorithm) New() (hash.Hash, error) {
	switch h {
	case SHA256:
		return sha256.New(), nil
	case SHA384:
		return sha512.New384(), nil
	case SHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported hash algorithm %q", h)
}

// Sum returns the digest of b.
func (h HashAlgorithm) Sum(b []byte) ([]byte, error) {
	hh, err := h.New()
	if err != nil {
		return nil, err
	}
	hh.Write(b)
	return hh.Sum(nil), nil
}

// Canonicalize returns the RFC 8785 (JCS) form of a JSON document.
func Canonicalize(doc []byte) ([]byte, error) {
	out, err := jcs.Transform(doc)
	if err != nil {
		return nil, fmt.Errorf("canonicalizing JSON: %w", err)
	}
	return out, nil
}

// CanonicalHash marshals v to JSON, canonicalizes it (RFC 8785) and hashes it.
func CanonicalHash(h HashAlgorithm, v any) ([]byte, error) {
	doc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	c, err := Canonicalize(doc)
	if err != nil {
		return nil, err
	}
	return h.Sum(c)
}

// PrimaryRuntimeData is the structured runtime data bound into the primary
// evidence.
type PrimaryRuntimeData struct {
	AdditionalEvidence string    `json:"additional-evidence"`
	Nonce              string    `json:"nonce"`
	TeePubKey          TeePubKey `json:"tee-pubkey"`
}

// DeviceRuntimeData is the structured runtime data bound into each
// additional (device) evidence.
type DeviceRuntimeData struct {
	Nonce     string    `json:"nonce"`
	TeePubKey TeePubKey `json:"tee-pubkey"`
}

// ReportData returns the report data a guest must bind into its primary
// evidence: H(JCS({"additional-evidence", "nonce", "tee-pubkey"})).
func ReportData(h HashAlgorithm, nonce string, key TeePubKey, additionalEvidence string) ([]byte, error) {
	return CanonicalHash(h, PrimaryRuntimeData{AdditionalEvidence: additionalEvidence, Nonce: nonce, TeePubKey: key})
}

// DeviceReportData returns the report data bound into device evidence:
// H(JCS({"nonce", "tee-pubkey"})).
func DeviceReportData(h HashAlgorithm, nonce string, key TeePubKey) ([]byte, error) {
	return CanonicalHash(h, DeviceRuntimeData{Nonce: nonce, TeePubKey: key})
}

// SelectedHashAlgorithm reads "selected-hash-algorithm" from a challenge's
// extra-params: absent (or extra-params not an object) gives the default
// SHA-384; a non-string value or unknown name is an error.
func SelectedHashAlgorithm(extra json.RawMessage) (HashAlgorithm, error) {
	var obj map[string]json.RawMessage
	if len(extra) == 0 || json.Unmarshal(extra, &obj) != nil || obj == nil {
		return DefaultHashAlgorithm, nil
	}
	v, ok := obj["selected-hash-algorithm"]
	if !ok {
		return DefaultHashAlgorithm, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("selected-hash-algorithm is not a string")
	}
	return ParseHashAlgorithm(s)
}
