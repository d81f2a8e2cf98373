// Package tpm implements upstream Trustee's "tpm" verifier: a TPM 2.0
// quote made by an attestation key (AK) of a physical or virtual TPM.
//
// # Evidence
//
//	{"ak_public": "<standard base64 of the AK's DER SubjectPublicKeyInfo>",
//	 "tpm_quote": {"message": "<standard base64 of the TPMS_ATTEST>",
//	               "signature": "<standard base64 of the TPMT_SIGNATURE>",
//	               "pcrs": ["<64 hex digits>", ...]}}
//
// Member names match exactly; unknown members are ignored. The evidence is
// bounded by limits.MaxEvidenceBytes.
//
// # Checks
//
// In upstream's order: the TPMT_SIGNATURE is RSASSA with SHA-256 and
// verifies over the message with the AK (an RSA key); the message is a
// TPM-generated quote (tpmquote.ParseAttest) whose PCR selection and
// pcrDigest match the PCR values (PCR 8 must be among them); the quote's
// extraData equals the expected report data zero-padded or truncated to 32
// bytes, as the guest's TPM attester sends it; PCR 8 equals
// SHA-256(32×0x00 || init-data digest).
//
// # Security
//
// The verifier proves only that the quote was made by the TPM holding the
// AK the evidence names. Whether that AK belongs to a trusted TPM is for
// the attestation policy: the default policy requires ak_public to be in
// the reference value "trusted_aks" (upstream moved this check out of the
// verifier; tpm_verifier.trusted_ak_keys_dir is accepted and ignored).
//
// # Claims (class cpu)
//
// pcr00..pcrNN (lowercase hex), init_data (hex of PCR 8), report_data (hex
// of the quote's extraData) and ak_public (the evidence's string).
package tpm

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

const (
	// ReportDataSize is the size the TPM attester pads or truncates the
	// report data to before using it as the quote's qualifying data.
	ReportDataSize = 32
	// DefaultTrustedAKKeysDir and DefaultMaxTrustedAKKeys are upstream's
	// defaults of the ignored tpm_verifier settings.
	DefaultTrustedAKKeysDir = "/etc/tpm/trusted_ak_keys"
	DefaultMaxTrustedAKKeys = 100
)

var (
	// ErrInvalidConfig means the tpm_verifier configuration is malformed.
	ErrInvalidConfig = errors.New("tpm: invalid configuration")
	// ErrInvalidAK means ak_public is not a base64 DER public key.
	ErrInvalidAK = fmt.Errorf("%w: AK public key", verifier.ErrMalformedEvidence)
)

// Config is the verifier_config.tpm_verifier section. Upstream once loaded
// the trusted AKs from TrustedAKKeysDir (at most MaxTrustedAKKeys "*.pub"
// PEM files); it now ignores both and leaves AK trust to the attestation
// policy, and so does this verifier. They are parsed so that existing
// configuration files keep loading.
type Config struct {
	TrustedAKKeysDir string
	MaxTrustedAKKeys int
}

// ParseConfig reads the "tpm_verifier" member of the Attestation
// Service's verifier_config map (absent or null: defaults).
func ParseConfig(m map[string]any) (Config, error) {
	cfg := Config{TrustedAKKeysDir: DefaultTrustedAKKeysDir, MaxTrustedAKKeys: DefaultMaxTrustedAKKeys}
	raw, ok := m["tpm_verifier"]
	if !ok || raw == nil {
		return cfg, nil
	}
	sec, ok := raw.(map[string]any)
	if !ok {
		return Config{}, fmt.Errorf("%w: tpm_verifier is a %T, expected a table", ErrInvalidConfig, raw)
	}
	if v, ok := sec["trusted_ak_keys_dir"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return Config{}, fmt.Errorf("%w: tpm_verifier.trusted_ak_keys_dir is a %T, expected a string", ErrInvalidConfig, v)
		}
		cfg.TrustedAKKeysDir = s
	}
	if v, ok := sec["max_trusted_ak_keys"]; ok && v != nil {
		n, ok := toInt(v)
		if !ok || n < 0 {
			return Config{}, fmt.Errorf("%w: tpm_verifier.max_trusted_ak_keys must be a non-negative integer, got %v", ErrInvalidConfig, v)
		}
		cfg.MaxTrustedAKKeys = n
	}
	return cfg, nil
}

// toInt converts a TOML (int64) or JSON (float64) integer.
func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		if n > math.MaxInt32 || n < math.MinInt32 {
			return 0, false
		}
		return int(n), true
	case float64:
		if n != math.Trunc(n) || n > math.MaxInt32 || n < math.MinInt32 {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

// Options configure a Verifier.
type Options struct {
	// Now is accepted for uniformity with the other verifiers; TPM
	// evidence carries nothing time-dependent (no certificates).
	Now func() time.Time
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
}

// Verifier verifies tpm evidence. It is safe for concurrent use.
type Verifier struct {
	log *slog.Logger
}

// New returns a tpm verifier.
func New(cfg Config, opts Options) (*Verifier, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxTrustedAKKeys < 0 {
		return nil, fmt.Errorf("%w: max_trusted_ak_keys %d is negative", ErrInvalidConfig, cfg.MaxTrustedAKKeys)
	}
	if cfg != (Config{}) && cfg != (Config{TrustedAKKeysDir: DefaultTrustedAKKeysDir, MaxTrustedAKKeys: DefaultMaxTrustedAKKeys}) {
		log.Warn("tpm_verifier.trusted_ak_keys_dir and max_trusted_ak_keys are ignored, as upstream: " +
			"register the trusted AK public keys (base64 DER) as the reference value \"trusted_aks\" for the attestation policy")
	}
	return &Verifier{log: log}, nil
}

// Evidence is parsed tpm evidence.
type Evidence struct {
	// AKPublic is the evidence's ak_public string.
	AKPublic string
	// Quote holds the decoded message, the raw RSASSA signature (from the
	// TPMT_SIGNATURE) and the PCR values.
	Quote tpmquote.Quote
}

// ParseEvidence decodes tpm evidence as upstream does: the members'
// types, standard base64 (canonical padding), the TPMT_SIGNATURE (RSASSA
// with SHA-256 only) and PCR values of exactly 64 hex digits.
func ParseEvidence(evidence []byte) (Evidence, error) {
	top, err := tpmquote.ParseObject(evidence)
	if err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: %w", err)
	}
	var ev Evidence
	if ev.AKPublic, err = top.String("ak_public"); err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: %w", err)
	}
	q, err := top.Object("tpm_quote")
	if err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: %w", err)
	}
	sigB64, err := q.String("signature")
	if err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: tpm_quote: %w", err)
	}
	msgB64, err := q.String("message")
	if err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: tpm_quote: %w", err)
	}
	pcrHex, err := q.Strings("pcrs")
	if err != nil {
		return Evidence{}, fmt.Errorf("failed to deserialize TPM evidence: tpm_quote: %w", err)
	}

	tsig, err := tpmquote.DecodeBase64Std(sigB64)
	if err != nil {
		return Evidence{}, fmt.Errorf("%w: failed to decode signature from base64: %v", verifier.ErrMalformedEvidence, err)
	}
	if ev.Quote.Signature, err = tpmquote.ParseSignature(tsig); err != nil {
		return Evidence{}, fmt.Errorf("failed to unmarshal TPM signature: %w", err)
	}
	if ev.Quote.Message, err = tpmquote.DecodeBase64Std(msgB64); err != nil {
		return Evidence{}, fmt.Errorf("%w: failed to decode message from base64: %v", verifier.ErrMalformedEvidence, err)
	}
	if len(pcrHex) > tpmquote.MaxPCRs {
		return Evidence{}, fmt.Errorf("%w: %d PCR values, at most %d", verifier.ErrMalformedEvidence, len(pcrHex), tpmquote.MaxPCRs)
	}
	for i, s := range pcrHex {
		if len(s) != 2*tpmquote.PCRSize {
			return Evidence{}, fmt.Errorf("%w: PCR %d should be %d hex characters, got %d", verifier.ErrMalformedEvidence, i, 2*tpmquote.PCRSize, len(s))
		}
		p, err := hex.DecodeString(s)
		if err != nil {
			return Evidence{}, fmt.Errorf("%w: failed to decode PCR %d from hex: %v", verifier.ErrMalformedEvidence, i, err)
		}
		ev.Quote.PCRs = append(ev.Quote.PCRs, p)
	}
	return ev, nil
}

// Evaluate verifies tpm evidence against exp and returns its claims.
func (v *Verifier) Evaluate(_ context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	claims, err := verifyEvidence(ev, exp)
	if err != nil {
		return nil, err
	}
	return []verifier.Result{{Claims: claims, Class: verifier.ClassCPU}}, nil
}

func verifyEvidence(ev Evidence, exp verifier.Expected) (verifier.Claims, error) {
	der, err := tpmquote.DecodeBase64Std(ev.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: base64 decode of AK public failed: %v", ErrInvalidAK, err)
	}
	ak, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: failed to parse AK public key: %v", ErrInvalidAK, err)
	}
	// 1. The quote is signed by the AK.
	if err := tpmquote.VerifySignature(ak, ev.Quote.Message, ev.Quote.Signature); err != nil {
		return nil, fmt.Errorf("verifying TPM quote signature: %w", err)
	}
	attest, err := tpmquote.ParseAttest(ev.Quote.Message)
	if err != nil {
		return nil, fmt.Errorf("parsing TPM quote: %w", err)
	}
	// 2. The PCR values are the quoted ones; PCR 8 is needed for the
	// init-data claim.
	if err := attest.CheckPCRs(ev.Quote.PCRs); err != nil {
		return nil, fmt.Errorf("verifying PCRs: %w", err)
	}
	if len(ev.Quote.PCRs) <= tpmquote.InitDataPCR {
		return nil, fmt.Errorf("verifying PCRs: %w: the quote does not cover PCR%d (init-data)", verifier.ErrMalformedEvidence, tpmquote.InitDataPCR)
	}
	// 3. The nonce is the report data, as the attester sized it.
	if exp.ReportData != nil {
		want := make([]byte, ReportDataSize)
		copy(want, exp.ReportData)
		if err := attest.CheckNonce(want); err != nil {
			return nil, fmt.Errorf("verifying report data: %w", err)
		}
	}
	// 4. PCR 8 binds the init-data digest.
	if err := tpmquote.CheckInitData(ev.Quote.PCRs, exp.InitDataDigest); err != nil {
		return nil, fmt.Errorf("verifying init-data: %w", err)
	}
	claims := verifier.Claims{
		"init_data":   hex.EncodeToString(ev.Quote.PCRs[tpmquote.InitDataPCR]),
		"report_data": hex.EncodeToString(attest.ExtraData),
		"ak_public":   ev.AKPublic,
	}
	for k, v := range tpmquote.PCRClaims(ev.Quote.PCRs) {
		claims[k] = v
	}
	return claims, nil
}
