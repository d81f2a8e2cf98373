package as

import (
	"fmt"
	"log/slog"

	"github.com/go-trustee/go-trustee/rvps"
)

// Defaults of the EAR token broker, as upstream.
const (
	DefaultDurationMin   = 5
	DefaultIssuerName    = "CoCo-Attestation-Service"
	DefaultDeveloperName = "https://confidentialcontainers.org"
	// DefaultBuildName is upstream's "<crate name> <crate version>", kept
	// verbatim so that policies and verifiers keyed on the EAR verifier-id
	// see the same value.
	DefaultBuildName   = "attestation-service 0.1.0"
	DefaultProfileName = "tag:github.com,2024:confidential-containers/Trustee"
)

// Config is the [attestation_service] section of kbs-config.toml when its
// type is coco_as_builtin, and the standalone Attestation Service JSON
// configuration (whose "storage_backend" member is read by the binary, not
// here). Unknown keys are ignored, as upstream.
type Config struct {
	TokenBroker TokenBrokerConfig `toml:"attestation_token_broker" json:"attestation_token_broker"`
	RVPS        rvps.Config       `toml:"rvps_config" json:"rvps_config"`
	// VerifierConfig holds the per-TEE verifier configuration
	// (snp_verifier, dcap_verifier, tpm_verifier, nvidia_verifier, ...). It
	// is kept for the TEE verifiers; the sample verifiers need none.
	VerifierConfig map[string]any `toml:"verifier_config" json:"verifier_config"`

	// Legacy keys seen in older configurations. WorkDir and PolicyEngine are
	// accepted and ignored; AttestationTokenConfig.DurationMin is used when
	// attestation_token_broker.duration_min is not set.
	WorkDir                string             `toml:"work_dir" json:"work_dir"`
	PolicyEngine           string             `toml:"policy_engine" json:"policy_engine"`
	AttestationTokenConfig *LegacyTokenConfig `toml:"attestation_token_config" json:"attestation_token_config"`
}

// LegacyTokenConfig is the pre-EAR [attestation_token_config] section.
type LegacyTokenConfig struct {
	DurationMin int `toml:"duration_min" json:"duration_min"`
}

// TokenBrokerConfig is [attestation_service.attestation_token_broker].
// Empty strings and a zero duration mean the upstream defaults.
type TokenBrokerConfig struct {
	// Type is "Ear" or empty; the EAR broker is the only one (upstream
	// removed the "Simple" token), so other values are ignored with a
	// warning, as upstream ignores them.
	Type string `toml:"type" json:"type"`
	// DurationMin is the token lifetime in minutes (default 5).
	DurationMin   int    `toml:"duration_min" json:"duration_min"`
	IssuerName    string `toml:"issuer_name" json:"issuer_name"`
	DeveloperName string `toml:"developer_name" json:"developer_name"`
	BuildName     string `toml:"build_name" json:"build_name"`
	ProfileName   string `toml:"profile_name" json:"profile_name"`
	// VerboseToken (default true) keeps the additional-evidence string in
	// runtime_data_claims; false drops it to keep tokens with many devices
	// small.
	VerboseToken *bool `toml:"verbose_token" json:"verbose_token"`
	// PolicyDir is a legacy key, ignored: policies live in the store.
	PolicyDir string `toml:"policy_dir" json:"policy_dir"`
	// Signer configures the token signing key; nil means an ephemeral key.
	Signer *SignerConfig `toml:"signer" json:"signer"`
}

// SignerConfig is [attestation_service.attestation_token_broker.signer].
type SignerConfig struct {
	// KeyPath is a PEM P-256 private key (SEC1 or PKCS#8).
	KeyPath string `toml:"key_path" json:"key_path"`
	// CertPath is an optional PEM certificate chain, leaf first, published
	// as x5c; the leaf must certify the key.
	CertPath string `toml:"cert_path" json:"cert_path"`
	// CertURL is an optional URL published as x5u.
	CertURL string `toml:"cert_url" json:"cert_url"`
}

// brokerSettings are the resolved token broker settings.
type brokerSettings struct {
	durationMin int
	issuer      string
	developer   string
	build       string
	profile     string
	verbose     bool
	signer      *SignerConfig
}

func (c Config) resolve(log *slog.Logger) (brokerSettings, error) {
	tb := c.TokenBroker
	switch tb.Type {
	case "", "Ear", "ear", "EAR":
	default:
		log.Warn("attestation_token_broker.type is ignored: only EAR tokens are issued", "type", tb.Type)
	}
	if c.WorkDir != "" || c.PolicyEngine != "" || tb.PolicyDir != "" {
		log.Warn("legacy attestation service keys work_dir, policy_engine and policy_dir are ignored; policies live in the storage backend")
	}
	s := brokerSettings{
		durationMin: tb.DurationMin,
		issuer:      orDefault(tb.IssuerName, DefaultIssuerName),
		developer:   orDefault(tb.DeveloperName, DefaultDeveloperName),
		build:       orDefault(tb.BuildName, DefaultBuildName),
		profile:     orDefault(tb.ProfileName, DefaultProfileName),
		verbose:     tb.VerboseToken == nil || *tb.VerboseToken,
		signer:      tb.Signer,
	}
	if s.durationMin == 0 && c.AttestationTokenConfig != nil {
		s.durationMin = c.AttestationTokenConfig.DurationMin
	}
	if s.durationMin == 0 {
		s.durationMin = DefaultDurationMin
	}
	if s.durationMin < 0 {
		return brokerSettings{}, fmt.Errorf("%w: attestation_token_broker.duration_min %d is negative", ErrInvalidConfig, s.durationMin)
	}
	if s.signer != nil && s.signer.KeyPath == "" {
		return brokerSettings{}, fmt.Errorf("%w: attestation_token_broker.signer.key_path is required", ErrInvalidConfig)
	}
	return s, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
