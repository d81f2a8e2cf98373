// Package azsnpvtpm implements upstream Trustee's "az-snp-vtpm" verifier:
// an Azure confidential VM on AMD SEV-SNP, whose guest talks to a
// paravisor-provided vTPM instead of the SNP firmware.
//
// # Evidence
//
// Version 0 (no "version" member; the az-cvm-vtpm crate's serde types):
//
//	{"quote": {"signature": [u8...], "message": [u8...], "pcrs": [[u8; 32]...]},
//	 "report": [u8...],  // the HCL report
//	 "vcek": "<PEM certificate>"}
//
// Versions 1 and 2:
//
//	{"version": 1 | 2,
//	 "tpm_quote": {"signature": "<hex>", "message": "<hex>", "pcrs": ["<hex>"...]},
//	 "hcl_report": "<base64url>", "vcek": "<base64url of the DER VCEK>"}
//
// As upstream's untagged enum, a document is tried as version 2, then 1,
// then 0; member names match exactly and unknown members are ignored.
//
// # Checks
//
// In upstream's order (report data is required):
//
//  1. The TPM quote is signed (RSASSA-PKCS1-v1_5, SHA-256) by the vTPM AK
//     "HCLAkPub" of the HCL report's variable data, and is a TPM-generated
//     quote.
//  2. The quote's extraData equals the expected report data, exactly.
//  3. The PCR values match the quote's selection and pcrDigest.
//  4. The SNP report's REPORT_DATA starts with SHA-256 of the variable
//     data: the hardware binds the AK.
//  5. Version 2: the variable data's "user-data" (hex) starts with the
//     expected report data.
//  6. The SNP report is genuine: the VCEK chains to the bundled AMD root of
//     the report's processor generation and is valid at Options.Now, it
//     signs the report, its TCB extensions and hardware ID match the
//     report, and VMPL is 0 (verifier/snp's VerifyReport).
//  7. PCR 8 equals SHA-256(32×0x00 || init-data digest).
//
// # Claims (class cpu)
//
// The SNP report's fields as upstream formats them, all strings:
// policy_abi_major, policy_abi_minor, reported_tcb_bootloader,
// reported_tcb_tee, reported_tcb_snp, reported_tcb_microcode (decimal),
// policy_smt_allowed, policy_migrate_ma, policy_debug_allowed,
// policy_single_socket, platform_tsme_enabled, platform_smt_enabled
// ("true"/"false"), measurement (standard base64); then tpm: {pcr00..}
// (hex), init_data (hex of PCR 8) and report_data (hex of the quote's
// nonce), which replace the SNP report_data and init_data (HOST_DATA)
// values, as upstream's claim extension does.
package azsnpvtpm

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

// Policy and platform info bits of the SNP report (AMD SEV-SNP ABI).
const (
	policySMTAllowed   = 1 << 16
	policyMigrateMA    = 1 << 18
	policyDebugAllowed = 1 << 19
	policySingleSocket = 1 << 20
	platSMTEnabled     = 1 << 0
	platTSMEEnabled    = 1 << 1
	// reportDataOffset is where REPORT_DATA sits in the SNP report.
	reportDataOffset = 0x50
)

var (
	// ErrNoReportData means no report data was expected: the verifier
	// refuses to run without one, as upstream ("unexpected empty report
	// data").
	ErrNoReportData = errors.New("az-snp-vtpm: unexpected empty report data")
	// ErrInvalidConfig means the Verifier could not be built.
	ErrInvalidConfig = errors.New("az-snp-vtpm: invalid configuration")
)

// Config configures the verifier. Upstream's az-snp-vtpm verifier has no
// settings: the VCEK travels in the evidence and the AMD roots are
// bundled.
type Config struct{}

// Options configure a Verifier.
type Options struct {
	// Now is the time at which the VCEK chain must be valid; time.Now
	// when nil.
	Now func() time.Time
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
}

// Verifier verifies az-snp-vtpm evidence. It is safe for concurrent use.
type Verifier struct {
	snp *snp.Verifier
	log *slog.Logger
}

// New returns an az-snp-vtpm verifier.
func New(_ Config, opts Options) (*Verifier, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// No VCEK sources: the evidence carries the VCEK, and VerifyReport
	// never fetches.
	s, err := snp.New(snp.Config{VCEKSources: []snp.VCEKSource{}}, snp.Options{Now: opts.Now, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Verifier{snp: s, log: log}, nil
}

// Evidence is parsed az-snp-vtpm evidence.
type Evidence struct {
	// Version is 0, 1 or 2.
	Version int
	// Quote is the vTPM quote.
	Quote tpmquote.Quote
	// HCLReport is the raw HCL report.
	HCLReport []byte
	// VCEK is the DER VCEK certificate.
	VCEK []byte
}

// ParseEvidence decodes evidence of any version (see the package
// documentation).
func ParseEvidence(evidence []byte) (Evidence, error) {
	var ev Evidence
	err := tpmquote.DecodeVersioned(evidence, "Azure vTPM SEV-SNP evidence",
		func(top tpmquote.Fields, version int) (err error) { ev, err = parseV1(top, version); return err },
		func(top tpmquote.Fields) (err error) { ev, err = parseV0(top); return err })
	if err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

func parseV1(top tpmquote.Fields, version int) (Evidence, error) {
	ev := Evidence{Version: version}
	q, err := top.Object("tpm_quote")
	if err != nil {
		return Evidence{}, err
	}
	if ev.Quote, err = tpmquote.HexQuote(q); err != nil {
		return Evidence{}, fmt.Errorf("tpm_quote: %w", err)
	}
	if ev.HCLReport, err = top.Base64URL("hcl_report"); err != nil {
		return Evidence{}, err
	}
	if ev.VCEK, err = top.Base64URL("vcek"); err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

func parseV0(top tpmquote.Fields) (Evidence, error) {
	var ev Evidence
	q, err := top.Object("quote")
	if err != nil {
		return Evidence{}, err
	}
	if ev.Quote, err = tpmquote.ByteQuote(q); err != nil {
		return Evidence{}, fmt.Errorf("quote: %w", err)
	}
	if ev.HCLReport, err = top.Bytes("report"); err != nil {
		return Evidence{}, err
	}
	vcek, err := top.String("vcek")
	if err != nil {
		return Evidence{}, err
	}
	// As OpenSSL's PEM reader: the first CERTIFICATE block counts.
	rest := []byte(vcek)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return Evidence{}, fmt.Errorf("%w: invalid VCEK PEM: no CERTIFICATE block", verifier.ErrMalformedEvidence)
		}
		if blk.Type == "CERTIFICATE" {
			ev.VCEK = blk.Bytes
			return ev, nil
		}
	}
}

// Evaluate verifies az-snp-vtpm evidence against exp and returns its
// claims.
func (v *Verifier) Evaluate(ctx context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	if exp.ReportData == nil {
		return nil, ErrNoReportData
	}
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	hcl, err := tpmquote.ParseHCLReport(ev.HCLReport)
	if err != nil {
		return nil, err
	}
	if hcl.Type != tpmquote.HCLReportSNP {
		return nil, fmt.Errorf("%w: HCL report holds a %s report, expected SNP", verifier.ErrMalformedEvidence, hcl.Type)
	}
	attest, err := tpmquote.VerifyAzureQuote(ev.Quote, hcl, exp.ReportData)
	if err != nil {
		return nil, err
	}
	// 4. The SNP report binds the variable data (and so the AK).
	if err := hcl.CheckVarDataBinding(hcl.HWReport[reportDataOffset:]); err != nil {
		return nil, fmt.Errorf("verifying SNP report data: %w", err)
	}
	// 5. Version 2 puts the report data into the variable data.
	if ev.Version >= 2 {
		if err := hcl.CheckUserData(exp.ReportData); err != nil {
			return nil, fmt.Errorf("verifying HCL user-data: %w", err)
		}
	}
	// 6. The SNP report is genuine and from VMPL 0.
	if _, err := v.snp.VerifyReport(ctx, hcl.HWReport, ev.VCEK); err != nil {
		return nil, fmt.Errorf("verifying SNP report: %w", err)
	}
	rep, err := snpev.ParseReport(hcl.HWReport)
	if err != nil {
		return nil, fmt.Errorf("parsing SNP report: %w", err)
	}
	// 7. PCR 8 binds the init-data digest.
	if err := tpmquote.CheckInitData(ev.Quote.PCRs, exp.InitDataDigest); err != nil {
		return nil, fmt.Errorf("verifying init-data: %w", err)
	}
	claims := reportClaims(rep)
	tpmquote.ExtendAzureClaims(claims, ev.Quote.PCRs, attest)
	return []verifier.Result{{Claims: claims, Class: verifier.ClassCPU}}, nil
}

// reportClaims are upstream's parse_tee_evidence_az: the SNP report's
// fields formatted as strings.
func reportClaims(r *snpev.Report) verifier.Claims {
	p, pi := r.Policy, r.PlatInfo
	b := strconv.FormatBool
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return verifier.Claims{
		"policy_abi_major":     u(p >> 8 & 0xff),
		"policy_abi_minor":     u(p & 0xff),
		"policy_smt_allowed":   b(p&policySMTAllowed != 0),
		"policy_migrate_ma":    b(p&policyMigrateMA != 0),
		"policy_debug_allowed": b(p&policyDebugAllowed != 0),
		"policy_single_socket": b(p&policySingleSocket != 0),

		"reported_tcb_bootloader": u(uint64(r.ReportedTCB.Bootloader)),
		"reported_tcb_tee":        u(uint64(r.ReportedTCB.TEE)),
		"reported_tcb_snp":        u(uint64(r.ReportedTCB.SNP)),
		"reported_tcb_microcode":  u(uint64(r.ReportedTCB.Microcode)),

		"platform_tsme_enabled": b(pi&platTSMEEnabled != 0),
		"platform_smt_enabled":  b(pi&platSMTEnabled != 0),

		"measurement": base64.StdEncoding.EncodeToString(r.Measurement[:]),
		"report_data": base64.StdEncoding.EncodeToString(r.ReportData[:]),
		"init_data":   base64.StdEncoding.EncodeToString(r.HostData[:]),
	}
}
