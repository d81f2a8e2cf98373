// Package tdx implements the verifier of upstream Trustee's "tdx" TEE:
// Intel TDX quotes (v4 and v5, TDX 1.0 and 1.5 bodies) with an optional
// Confidential Computing Event Log.
//
// # Evidence
//
//	{"cc_eventlog":"<standard base64 of the CCEL>"|null,"quote":"<standard base64 of the TD quote>"}
//
// # Verification
//
// Verification follows Intel's DCAP Quote Verification Library, which
// upstream calls (tee_verify_quote), so that the same quotes pass and the
// claims carry the same values:
//
//  1. The quote's PCK certificate chain must end in the Intel SGX Root CA
//     (checked before any collateral is fetched, so only Intel-signed
//     FMSPCs are ever requested).
//  2. The collateral (TDX TCB info for the FMSPC, TD QE identity, PCK CRL
//     of the PCK CA, root CA CRL) comes from Intel's PCS, a PCCS or an
//     offline file (Config.CollateralService), through a two-level cache:
//     verified items in memory, raw responses in Options.CacheDir; one fetch
//     per key at a time. Each piece is verified once when fetched: issuer
//     chain to the trusted root, ECDSA signature, format.
//  3. No certificate may be revoked; the QE report must be signed by the
//     PCK and bind the attestation key; the QE must match its identity, the
//     TDX module its TCB info, and the attestation key must sign the quote.
//  4. The TCB status is evaluated as Intel's library does (platform level,
//     TDX module and QE levels converged; for TDX 1.5 bodies the current TCB
//     too, which may turn OutOfDate into TDRelaunchAdvised). Upstream accepts
//     UpToDate, SWHardeningNeeded, ConfigurationNeeded,
//     ConfigurationAndSWHardeningNeeded, OutOfDate,
//     OutOfDateConfigurationNeeded, TDRelaunchAdvised and
//     TDRelaunchAdvisedConfigurationNeeded, exposed as tcb_status; Revoked or
//     no matching TCB level fail with ErrTCBStatus. Expired collateral does
//     not fail verification: collateral_expiration_status is "1" when any
//     piece of it (certificates, CRLs, TCB info, QE identity) has expired at
//     Options.Now, and the default policy then withholds trust.
//
// Then the binding (Expected report data zero-padded or truncated to 64 bytes
// equals REPORT_DATA, the init-data digest to 48 bytes equals MR_CONFIG_ID)
// and the event log: replayed with SHA-384, event-log registers 1..4 must
// equal RTMR 0..3.
//
// # Claims
//
// The claims are upstream's (deps/verifier/src/tdx/claims.rs and
// intel_dcap/claims.rs): quote.header, quote.body (and quote.type,
// quote.size, tee_tcb_svn2 and mr_servicetd in v5), td_attributes,
// report_data, init_data, uefi_event_logs, platform_instance_id, and from
// the verification tcb_status, tcb_date, advisory_ids,
// collateral_expiration_status, earliest_issue_date, latest_issue_date,
// earliest_expiration_date, tcb_eval_num, pck_crl_num, root_ca_crl_num,
// root_key_id, platform_provider_id (the PPID), sgx_type and, for scalable
// platforms, is_dynamic_platform, is_cached_keys and is_smt_enabled.
// tcb_date_current, tcb_status_current and advisory_ids_current are not
// emitted: upstream only emits them with supplemental data minor version 5,
// which the current public Intel library does not produce.
//
// A Verifier is safe for concurrent use.
package tdx

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"

	"github.com/go-trustee/go-trustee/eventlog"
	"github.com/go-trustee/go-trustee/verifier"
)

var (
	// ErrInvalidConfig means the verifier configuration is unusable.
	ErrInvalidConfig = errors.New("tdx: invalid configuration")
	// ErrUnsupportedQuote means the quote is not a TDX quote v4 or v5 with an
	// ECDSA P-256 attestation key (for example an SGX v3 quote). It comes
	// wrapped with verifier.ErrMalformedEvidence.
	ErrUnsupportedQuote = errors.New("tdx: unsupported quote")
	// ErrUntrustedRoot means a certificate chain does not end in the
	// trusted root (the Intel SGX Root CA).
	ErrUntrustedRoot = errors.New("tdx: certificate chain not rooted in the trusted root CA")
	// ErrQuoteVerification means the quote failed a cryptographic or
	// identity check: PCK chain, QE report, QE identity, TDX module, quote
	// signature.
	ErrQuoteVerification = errors.New("tdx: quote verification failed")
	// ErrRevoked means a certificate of the PCK chain or of the collateral
	// is revoked; it comes wrapped with ErrQuoteVerification or
	// ErrCollateral.
	ErrRevoked = errors.New("tdx: certificate revoked")
	// ErrCollateral means the collateral could not be had or did not
	// verify (fetch failure, bad signature, malformed document).
	ErrCollateral = errors.New("tdx: collateral unavailable or invalid")
	// ErrTCBStatus means the TCB status is terminal: revoked, or no TCB
	// level matches the platform.
	ErrTCBStatus = errors.New("tdx: TCB status not acceptable")
	// ErrEventLog means the event log is malformed or does not replay to
	// the quote's RTMRs.
	ErrEventLog = errors.New("tdx: event log verification failed")
)

// DefaultCollateralService is Intel's PCS, upstream's default.
const DefaultCollateralService = "https://api.trustedservices.intel.com/sgx/certification/v4/"

// Config is the dcap_verifier section of the Attestation Service's
// verifier_config (upstream's QcnlConfig).
type Config struct {
	// CollateralService is the collateral_service URL: Intel's PCS or a
	// PCCS ("https://host[:port]/..."; only the scheme and authority are
	// used, as upstream), or "file:///path" to the JSON written by Intel's
	// PCS client tool. Empty means DefaultCollateralService.
	CollateralService string
	// TCBUpdateType is tcb_update_type: "early" (default) or "standard".
	TCBUpdateType string
	// UseSecureCert is use_secure_cert, accepted for compatibility. TLS
	// certificates of the collateral service are always verified.
	UseSecureCert *bool
}

// Options are the verifier's dependencies. Zero values mean the
// production defaults.
type Options struct {
	// Getter fetches collateral over HTTP; NewHTTPGetter(nil) when nil.
	Getter Getter
	// CacheDir keeps fetched collateral across restarts (files written
	// atomically, mode 0600); no durable cache when empty.
	CacheDir string
	// CacheMaxAge is how long collateral is used before it is fetched
	// again, at most until its own nextUpdate; 24 hours when zero.
	CacheMaxAge time.Duration
	// Now is the verification time (collateral expiry); time.Now when nil.
	Now func() time.Time
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
	// TrustedRoot replaces the Intel SGX Root CA as trust anchor. Only for
	// tests: production must leave it nil.
	TrustedRoot *x509.Certificate
}

// Verifier verifies TDX evidence.
type Verifier struct {
	cfg     Config
	src     source
	cache   *collateralCache
	now     func() time.Time
	log     *slog.Logger
	root    *x509.Certificate
	rootKey []byte

	mu     sync.Mutex
	chains map[[32]byte]*pckChain // PCK chains verified up to the root
}

var _ verifier.Verifier = (*Verifier)(nil)

// New returns a TDX verifier. It fails with ErrInvalidConfig for an
// unusable configuration.
func New(cfg Config, opts Options) (*Verifier, error) {
	if cfg.CollateralService == "" {
		cfg.CollateralService = DefaultCollateralService
	}
	switch cfg.TCBUpdateType {
	case "":
		cfg.TCBUpdateType = "early"
	case "early", "standard":
	default:
		return nil, fmt.Errorf("%w: tcb_update_type %q (want \"early\" or \"standard\")", ErrInvalidConfig, cfg.TCBUpdateType)
	}
	v := &Verifier{cfg: cfg, now: opts.Now, log: opts.Logger, root: opts.TrustedRoot, chains: map[[32]byte]*pckChain{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.root == nil {
		v.root = IntelRootCA()
	}
	if err := checkIssued(v.root, v.root); err != nil {
		return nil, fmt.Errorf("%w: trusted root is not a self-signed certificate: %v", ErrInvalidConfig, err)
	}
	var err error
	if v.rootKey, err = uncompressedKey(v.root); err != nil {
		return nil, fmt.Errorf("%w: trusted root: %v", ErrInvalidConfig, err)
	}

	u, err := url.Parse(cfg.CollateralService)
	if err != nil {
		return nil, fmt.Errorf("%w: collateral_service: %v", ErrInvalidConfig, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("%w: collateral_service %q is not a file:// URL of an absolute path", ErrInvalidConfig, cfg.CollateralService)
		}
		v.src = &fileSource{path: u.Path, update: cfg.TCBUpdateType}
	case "https", "http":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: collateral_service %q has no host", ErrInvalidConfig, cfg.CollateralService)
		}
		getter := opts.Getter
		if getter == nil {
			getter = NewHTTPGetter(nil)
		}
		v.src = newHTTPSource(getter, u, cfg.TCBUpdateType)
	default:
		return nil, fmt.Errorf("%w: collateral_service scheme %q (want https, http or file)", ErrInvalidConfig, u.Scheme)
	}

	maxAge := opts.CacheMaxAge
	if maxAge < 0 {
		return nil, fmt.Errorf("%w: negative cache max age", ErrInvalidConfig)
	}
	if maxAge == 0 {
		maxAge = defaultCacheMaxAge
	}
	if opts.CacheDir != "" {
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: cache directory: %v", ErrInvalidConfig, err)
		}
	}
	v.cache = &collateralCache{dir: opts.CacheDir, maxAge: maxAge, now: v.now, log: v.log, entries: map[string]*cacheEntry{}}
	return v, nil
}

// ParseConfig reads the dcap_verifier member of the Attestation Service's
// verifier_config map (the map may also be that section itself). A missing
// or null section means the defaults; a present one must have a
// collateral_service string, as upstream. Unknown members are ignored.
func ParseConfig(m map[string]any) (Config, error) {
	sec, ok := m["dcap_verifier"]
	if !ok {
		if _, direct := m["collateral_service"]; !direct {
			return Config{}, nil
		}
		sec = m
	}
	if sec == nil {
		return Config{}, nil
	}
	s, ok := sec.(map[string]any)
	if !ok {
		return Config{}, fmt.Errorf("%w: dcap_verifier must be a table", ErrInvalidConfig)
	}
	var cfg Config
	cs, ok := s["collateral_service"].(string)
	if !ok {
		return Config{}, fmt.Errorf("%w: dcap_verifier.collateral_service must be a string", ErrInvalidConfig)
	}
	cfg.CollateralService = cs
	if t, ok := s["tcb_update_type"]; ok && t != nil {
		ts, ok := t.(string)
		if !ok || (ts != "early" && ts != "standard") {
			return Config{}, fmt.Errorf("%w: dcap_verifier.tcb_update_type must be \"early\" or \"standard\"", ErrInvalidConfig)
		}
		cfg.TCBUpdateType = ts
	}
	if b, ok := s["use_secure_cert"]; ok && b != nil {
		bv, ok := b.(bool)
		if !ok {
			return Config{}, fmt.Errorf("%w: dcap_verifier.use_secure_cert must be a boolean", ErrInvalidConfig)
		}
		cfg.UseSecureCert = &bv
	}
	return cfg, nil
}

// regularize zero-pads or truncates data to n bytes, as upstream's
// regularize_data.
func regularize(data []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, data)
	return out
}

// CheckBinding checks that a quote is bound to what exp expects: the report
// data, zero-padded or truncated to 64 bytes, equals REPORT_DATA, and the
// init-data digest, padded or truncated to 48 bytes, equals MR_CONFIG_ID.
// Nil expectations are not checked.
func CheckBinding(q *Quote, exp verifier.Expected) error {
	if exp.ReportData != nil && !bytes.Equal(regularize(exp.ReportData, 64), q.Body.ReportData[:]) {
		return fmt.Errorf("%w: REPORT_DATA is different from that in TDX Quote", verifier.ErrReportDataMismatch)
	}
	if exp.InitDataDigest != nil && !bytes.Equal(regularize(exp.InitDataDigest, 48), q.Body.MRConfigID[:]) {
		return fmt.Errorf("%w: MRCONFIGID is different from that in TDX Quote", verifier.ErrInitDataMismatch)
	}
	return nil
}

// CheckEventLog replays the event log with SHA-384 and checks that its
// registers 1..4 equal the quote's RTMR 0..3.
func CheckEventLog(q *Quote, log *eventlog.Log) error {
	refs := make([]eventlog.Reference, len(q.Body.RTMR))
	for i := range q.Body.RTMR {
		refs[i] = eventlog.Reference{Index: uint32(i + 1), Algorithm: eventlog.AlgSHA384, Value: q.Body.RTMR[i][:]}
	}
	if err := log.ReplayAndMatch(refs); err != nil {
		return fmt.Errorf("%w: %w", ErrEventLog, err)
	}
	return nil
}

// Evaluate verifies TDX evidence against exp and returns its claims (class
// cpu).
func (v *Verifier) Evaluate(ctx context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	ev, err := tdxev.ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	q, err := ParseQuote(ev.Quote)
	if err != nil {
		return nil, err
	}
	chain, supp, err := v.verifyQuote(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("TDX Verifier: %w", err)
	}
	if err := CheckBinding(q, exp); err != nil {
		return nil, fmt.Errorf("TDX Verifier: %w", err)
	}
	var log *eventlog.Log
	if ev.EventLog != nil {
		if log, err = eventlog.Parse(ev.EventLog); err != nil {
			return nil, fmt.Errorf("TDX Verifier: %w: Parse CC Eventlog failed: %w", ErrEventLog, err)
		}
		if err := CheckEventLog(q, log); err != nil {
			return nil, fmt.Errorf("TDX Verifier: %w", err)
		}
	} else {
		v.log.Warn("no event log in the TDX evidence")
	}
	claims := parsedClaims(q, log, &chain.info)
	for k, val := range supp {
		claims[k] = val
	}
	return []verifier.Result{{Claims: claims, Class: verifier.ClassCPU}}, nil
}

// VerifyQuote verifies a raw TD quote (no binding, no event log) and
// returns its claims: those of Evaluate without uefi_event_logs. It is the
// building block of verifiers that carry a TD quote inside other evidence
// (az-tdx-vtpm).
func (v *Verifier) VerifyQuote(ctx context.Context, quote []byte) (verifier.Claims, error) {
	q, err := ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	chain, supp, err := v.verifyQuote(ctx, q)
	if err != nil {
		return nil, err
	}
	claims := parsedClaims(q, nil, &chain.info)
	for k, val := range supp {
		claims[k] = val
	}
	return claims, nil
}
