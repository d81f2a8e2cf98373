// Package snp implements the verifier of AMD SEV-SNP evidence ("snp" TEE),
// a drop-in for upstream Trustee's deps/verifier/src/snp.
//
// # Evidence
//
// The evidence is upstream's JSON document
//
//	{"attestation_report": {...}, "cert_chain": [{"cert_type": "VCEK", "data": [48, 130, ...]}] | null}
//
// whose attestation_report is the serde form of the Rust sev crate's
// AttestationReport (byte arrays as JSON arrays of integers, bit fields as
// integers, optional fields as null). ParseEvidence decodes it strictly and
// Report.MarshalBinary turns it back, losslessly, into the 1184-byte report
// the AMD secure processor signed; MarshalEvidence does the reverse, for
// guest attesters. See report.go for why the binary form is rebuilt.
//
// # Checks
//
// Evaluate keeps authenticity apart from binding, in upstream's order:
//
//  1. Authenticity: report version 3..5; the processor generation (Milan,
//     Genoa, Turin) from CPUID family/model; the endorsement key (VCEK or
//     VLEK) from the evidence cert_chain — whose ARK, if present, must be
//     the bundled AMD root — or else from the configured VCEK sources
//     (OfflineStore directories and the AMD KDS, in order); the chain
//     ARK → ASK (ASVK for a VLEK) → VCEK/VLEK, each certificate valid at
//     Options.Now; the report signature (ECDSA P-384, SHA-384 over bytes
//     0x000..0x29F); the endorsement key's TCB extensions equal to the
//     report's REPORTED_TCB, and its hardware ID to CHIP_ID.
//  2. Binding: VMPL 0; the expected report data, zero-padded (or truncated)
//     to 64 bytes, equal to REPORT_DATA; the expected init-data digest,
//     padded to 32 bytes, equal to HOST_DATA. A nil expectation is not
//     checked.
//
// Debug-enabled guests are not rejected (as upstream): policy_debug_allowed
// is a claim, and the default attestation policy refuses it.
//
// Each failure is an error that names its check ("snp: report signature:
// ...", "snp: VMPL is 1, want 0") and wraps one of this package's sentinels
// or verifier.ErrMalformedEvidence, verifier.ErrReportDataMismatch,
// verifier.ErrInitDataMismatch.
//
// # Claims
//
// One result of class cpu with upstream's claims: policy_abi_major,
// policy_abi_minor (int), policy_smt_allowed, policy_migrate_ma,
// policy_debug_allowed, policy_single_socket (bool),
// reported_tcb_bootloader, reported_tcb_tee, reported_tcb_snp,
// reported_tcb_microcode (int), platform_tsme_enabled, platform_smt_enabled
// (bool), and lowercase hex strings measurement, report_data, init_data
// (HOST_DATA) and chip_id.
//
// # Endorsement keys and the KDS
//
// The AMD KDS rate-limits (HTTP 429) and is slow, so a VCEK is fetched at
// most once per chip and TCB: verified endorsement keys are kept in memory
// (bounded), KDS answers in Options.CacheDir (same layout as an
// OfflineStore, written atomically, re-verified when read), concurrent
// attestations of one chip share one fetch, and 429/503 answers are retried
// after their Retry-After (bounded; while a back-off is pending, other KDS
// fetches wait for it too). A verified certificate chain is remembered by
// the digest of its certificates, so a warm attestation costs one ECDSA
// verification. Nothing an attacker sends is cached unless it chains to
// the bundled AMD roots.
//
// # Differences from upstream
//
// Deliberate, all stricter or equal for genuine evidence: a JSON member
// given twice is refused (serde_json keeps the last); the certificates'
// validity periods are checked at Options.Now (upstream checks signatures
// only); the hardware ID of a VCEK is compared with CHIP_ID whenever the
// certificate has one and CHIP_ID is not masked (upstream's comparison is
// keyed on a common name "VCEK" that AMD certificates do not have, so it
// never runs); an evidence ARK must carry the bundled ARK's key (upstream:
// be signed by it); the binary form of a report may not set reserved
// bytes. As upstream: CPUID model 0xAF of family 0x19 is not supported (a
// half-open range upstream), report versions 3 to 5 only, and a cert_chain
// in the evidence, even empty, replaces the VCEK sources.
//
// A Verifier is safe for concurrent use and never panics on malformed input.
// CRLs are not checked (upstream does not either): the AMD CRLs revoke
// only ASKs, none of which is revoked today.
package snp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"golang.org/x/sync/singleflight"

	"github.com/go-trustee/go-trustee/verifier"
)

// Sentinel errors. Evaluate and VerifyReport wrap one of them, or one of
// the verifier package's, in every error.
var (
	// ErrInvalidConfig is returned by New and ParseConfig for an unusable
	// configuration.
	ErrInvalidConfig = errors.New("snp: invalid verifier configuration")
	// ErrUnsupportedReport means the report version or processor
	// generation is not one this verifier supports. It is the wire
	// package's snpev.ErrUnsupportedReport.
	ErrUnsupportedReport = snpev.ErrUnsupportedReport
	// ErrEndorsementKey means no usable VCEK/VLEK certificate: missing
	// from the cert_chain, unavailable from every VCEK source, or not a
	// well-formed AMD endorsement key certificate.
	ErrEndorsementKey = errors.New("snp: endorsement key unavailable")
	// ErrCertChain means the certificate chain does not lead to the
	// bundled AMD root of the report's processor generation (including an
	// evidence ARK that is not the bundled one).
	ErrCertChain = errors.New("snp: certificate chain verification failed")
	// ErrCertValidity means a certificate of the chain is not valid at the
	// verification time (expired or not yet valid).
	ErrCertValidity = errors.New("snp: certificate not valid at the verification time")
	// ErrReportSignature means the report signature does not verify with
	// the endorsement key.
	ErrReportSignature = errors.New("snp: report signature verification failed")
	// ErrTCBMismatch means the endorsement key certifies another TCB (or
	// chip) than the report's REPORTED_TCB (CHIP_ID).
	ErrTCBMismatch = errors.New("snp: endorsement key does not match the reported TCB")
	// ErrVMPL means the report was not requested from VMPL 0.
	ErrVMPL = errors.New("snp: VMPL check failed")
	// ErrKDS means the AMD KDS could not provide a VCEK (HTTP error, rate
	// limit, transport failure); it is wrapped inside ErrEndorsementKey.
	ErrKDS = errors.New("snp: KDS request failed")
)

// Source types of Config.VCEKSources, as upstream's VCEKSource tags.
const (
	SourceKDS          = "KDS"
	SourceOfflineStore = "OfflineStore"
)

// Defaults of upstream's VCEK sources.
const (
	// DefaultKDSURL is the AMD Key Distribution Service.
	DefaultKDSURL = "https://kdsintf.amd.com"
	// DefaultOfflineStorePath is the default OfflineStore directory; it
	// holds vcek/<hwid>/[<tcb>_]vcek.der.
	DefaultOfflineStorePath = "/opt/confidential-containers/attestation-service/kds-store"
)

// Config is verifier_config.snp_verifier.
type Config struct {
	// VCEKSources are tried in order when the evidence carries no
	// cert_chain. nil means [{type: "KDS"}]; an empty, non-nil list means
	// no source: the evidence must then carry its VCEK or VLEK.
	VCEKSources []VCEKSource `json:"vcek_sources" toml:"vcek_sources"`
}

// VCEKSource is one place to get VCEKs from.
type VCEKSource struct {
	// Type is SourceKDS or SourceOfflineStore (case-sensitive).
	Type string `json:"type" toml:"type"`
	// BaseURL is the KDS base URL (DefaultKDSURL when empty); KDS only.
	BaseURL string `json:"base_url" toml:"base_url"`
	// Path is the OfflineStore directory (DefaultOfflineStorePath when
	// empty); OfflineStore only.
	Path string `json:"path" toml:"path"`
}

// Getter fetches the body of a URL with HTTP GET, like go-sev-guest's
// trust.ContextHTTPSGetter. For a response other than 200 it returns an
// error that implements StatusError (as *HTTPError does), so that the
// verifier can back off on 429 and 503.
type Getter interface {
	Get(ctx context.Context, url string) ([]byte, error)
}

// StatusError is implemented by Getter errors for an HTTP answer other
// than 200.
type StatusError interface {
	error
	// HTTPStatus is the HTTP status code.
	HTTPStatus() int
	// RetryAfter is the raw Retry-After header ("" when absent).
	RetryAfter() string
}

// HTTPError is the StatusError of the default Getter.
type HTTPError struct {
	URL        string
	StatusCode int
	// RetryAfterHeader is the raw Retry-After header.
	RetryAfterHeader string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("GET %s: HTTP status %d", e.URL, e.StatusCode)
}

// HTTPStatus implements StatusError.
func (e *HTTPError) HTTPStatus() int { return e.StatusCode }

// RetryAfter implements StatusError.
func (e *HTTPError) RetryAfter() string { return e.RetryAfterHeader }

// Options are a Verifier's injected dependencies. The zero value is usable.
type Options struct {
	// HTTPClient is used by the default Getter; nil means a client with a
	// 30-second timeout. Ignored when Getter is set.
	HTTPClient *http.Client
	// Getter fetches from the KDS; nil means NewHTTPGetter(HTTPClient).
	Getter Getter
	// CacheDir, when set, keeps KDS answers on disk (the OfflineStore
	// layout) so that a restart makes no KDS call. It is created if needed.
	CacheDir string
	// Now is the verification time of certificate validity and of
	// Retry-After dates; time.Now when nil.
	Now func() time.Time
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
}

// Verifier verifies "snp" evidence. Create it with New.
type Verifier struct {
	sources []VCEKSource
	getter  Getter
	cache   string
	now     func() time.Time
	log     *slog.Logger

	// clock is the wall clock of KDS back-offs (not Options.Now, which is
	// the verification time); tests replace it.
	clock func() time.Time
	// sleep waits between KDS retries; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	flight singleflight.Group
	mem    *endorsementCache // verified endorsement keys

	gateMu    sync.Mutex
	notBefore time.Time // no KDS request before this (Retry-After)

	// joined counts lookups that missed the memory cache and joined (or
	// started) a shared fetch; tests of request coalescing watch it.
	joined countingInt
}

var _ verifier.Verifier = (*Verifier)(nil)

// New validates cfg and returns a Verifier.
func New(cfg Config, opts Options) (*Verifier, error) {
	if _, err := bundledRoots(); err != nil {
		return nil, fmt.Errorf("%w: bundled AMD roots: %w", ErrInvalidConfig, err)
	}
	sources, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		sources: sources,
		getter:  opts.Getter,
		cache:   opts.CacheDir,
		now:     opts.Now,
		log:     opts.Logger,
		clock:   time.Now,
		sleep:   sleepContext,
		mem:     newEndorsementCache(limits.MaxCachedEndorsements),
	}
	if v.getter == nil {
		v.getter = NewHTTPGetter(opts.HTTPClient)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.cache != "" {
		if err := ensureDir(v.cache); err != nil {
			return nil, fmt.Errorf("%w: cache_dir: %w", ErrInvalidConfig, err)
		}
	}
	return v, nil
}

// Evaluate verifies snp evidence (see the package documentation) and
// returns its claims, class cpu.
func (v *Verifier) Evaluate(ctx context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	ev, err := snpev.ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	rep := &ev.Report
	if err := snpev.CheckVersion(rep.Version); err != nil {
		return nil, err
	}
	prod, err := productOf(rep)
	if err != nil {
		return nil, err
	}
	raw, err := rep.MarshalLayout(prod.layout())
	if err != nil {
		return nil, fmt.Errorf("%w: attestation report: %w", verifier.ErrMalformedEvidence, err)
	}
	if err := v.authenticate(ctx, prod, rep, raw, ev.CertChain); err != nil {
		return nil, err
	}
	if err := validate(rep, exp); err != nil {
		return nil, err
	}
	return []verifier.Result{{Claims: claims(rep), Class: verifier.ClassCPU}}, nil
}

// authenticate verifies that rep, whose signed encoding is raw, is signed
// by an endorsement key of prod: the one in chain, or, when chain is nil,
// the VCEK from the configured sources.
func (v *Verifier) authenticate(ctx context.Context, prod *product, rep *snpev.Report, raw []byte, chain []snpev.CertEntry) error {
	var end *endorsement
	var err error
	if chain != nil {
		end, err = v.endorsementFromChain(prod, chain)
	} else {
		end, err = v.endorsementFromSources(ctx, prod, rep)
	}
	if err != nil {
		return err
	}
	return v.verifyWith(end, rep, raw, prod)
}

// VerifyReport verifies the authenticity of a binary (1184-byte) report
// signed by the VCEK or VLEK vekDER (DER or PEM): version, generation,
// chain to the bundled AMD roots (via the ASK or ASVK that issued it),
// signature, TCB and chip ID, and VMPL 0. It checks no report data or
// init-data binding (the caller's TEE binds those its own way) and returns
// the same claims as Evaluate. It is what the az-snp-vtpm verifier builds
// on.
func (v *Verifier) VerifyReport(ctx context.Context, report []byte, vekDER []byte) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep, err := snpev.ParseReport(report)
	if err != nil {
		return nil, err
	}
	if err := snpev.CheckVersion(rep.Version); err != nil {
		return nil, err
	}
	prod, err := productOf(rep)
	if err != nil {
		return nil, err
	}
	end, err := v.endorsementFromDER(prod, vekDER)
	if err != nil {
		return nil, err
	}
	if err := v.verifyWith(end, rep, report, prod); err != nil {
		return nil, err
	}
	if err := checkVMPL(rep); err != nil {
		return nil, err
	}
	return claims(rep), nil
}
