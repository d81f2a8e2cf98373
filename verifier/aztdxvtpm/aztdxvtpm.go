// Package aztdxvtpm implements upstream Trustee's "az-tdx-vtpm" verifier:
// an Azure confidential VM on Intel TDX, whose guest talks to a
// paravisor-provided vTPM.
//
// # Evidence
//
// Version 0 (no "version" member; the az-cvm-vtpm crate's serde types):
//
//	{"tpm_quote": {"signature": [u8...], "message": [u8...], "pcrs": [[u8; 32]...]},
//	 "hcl_report": [u8...], "td_quote": [u8...]}
//
// Versions 1 and 2:
//
//	{"version": 1 | 2,
//	 "tpm_quote": {"signature": "<hex>", "message": "<hex>", "pcrs": ["<hex>"...]},
//	 "hcl_report": "<base64url>", "td_quote": "<base64url>"}
//
// As upstream's untagged enum, a document is tried as version 2, then 1,
// then 0; member names match exactly and unknown members are ignored.
//
// # Checks
//
// Report data is required. The offline checks run first, the DCAP
// verification of the TD quote (which may fetch collateral) last; the set
// of accepted evidence is upstream's, only the order differs:
//
//  1. The TPM quote is signed (RSASSA-PKCS1-v1_5, SHA-256) by the vTPM AK
//     "HCLAkPub" of the HCL report's variable data, and is a TPM-generated
//     quote; its extraData equals the expected report data exactly; the
//     PCR values match its selection and pcrDigest.
//  2. The TD quote parses as a TDX quote v4 or v5 (an SGX quote is
//     refused), and its REPORT_DATA starts with SHA-256 of the variable
//     data: the TD binds the AK.
//  3. Version 2: the variable data's "user-data" (hex) starts with the
//     expected report data.
//  4. PCR 8 equals SHA-256(32×0x00 || init-data digest).
//  5. The TD quote is genuine: Options.Quote (by default a verifier/tdx
//     Verifier built from Config.DCAP) verifies it with Intel's DCAP
//     collateral, and fails closed when the collateral cannot be had.
//
// # Claims (class cpu)
//
// Those of the QuoteVerifier (verifier/tdx: quote.header, quote.body,
// td_attributes, the DCAP supplemental claims such as tcb_status), then
// tpm: {pcr00..} (hex), init_data (hex of PCR 8) and report_data (hex of
// the TPM quote's nonce), which replace the TD quote's values, as
// upstream's claim extension does.
package aztdxvtpm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/tdx"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

var (
	// ErrNoReportData means no report data was expected: the verifier
	// refuses to run without one, as upstream ("unexpected empty report
	// data").
	ErrNoReportData = errors.New("az-tdx-vtpm: unexpected empty report data")
	// ErrInvalidConfig means the Verifier could not be built.
	ErrInvalidConfig = errors.New("az-tdx-vtpm: invalid configuration")
)

// QuoteVerifier verifies a raw TD quote's authenticity with Intel's DCAP
// collateral and returns its claims. *tdx.Verifier implements it.
type QuoteVerifier interface {
	VerifyQuote(ctx context.Context, quote []byte) (verifier.Claims, error)
}

// Config is the verifier's configuration: upstream's az-tdx-vtpm verifier
// reads verifier_config.dcap_verifier, as the tdx verifier does.
type Config struct {
	DCAP tdx.Config
}

// ParseConfig reads the "dcap_verifier" member of the Attestation
// Service's verifier_config map (see tdx.ParseConfig).
func ParseConfig(m map[string]any) (Config, error) {
	c, err := tdx.ParseConfig(m)
	if err != nil {
		return Config{}, err
	}
	return Config{DCAP: c}, nil
}

// Options configure a Verifier.
type Options struct {
	// Quote verifies TD quotes. nil means a tdx.Verifier built from
	// Config.DCAP with Getter, CacheDir, Now and Logger; pass the tdx
	// verifier of the Attestation Service to share its collateral cache.
	Quote QuoteVerifier
	// Getter and CacheDir are the tdx.Options of the default QuoteVerifier.
	Getter   tdx.Getter
	CacheDir string
	// Now is the verification time of the default QuoteVerifier
	// (collateral expiry); time.Now when nil.
	Now func() time.Time
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
}

// Verifier verifies az-tdx-vtpm evidence. It is safe for concurrent use.
type Verifier struct {
	quote QuoteVerifier
	log   *slog.Logger
}

// New returns an az-tdx-vtpm verifier.
func New(cfg Config, opts Options) (*Verifier, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := opts.Quote
	if q == nil {
		t, err := tdx.New(cfg.DCAP, tdx.Options{Getter: opts.Getter, CacheDir: opts.CacheDir, Now: opts.Now, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		q = t
	}
	return &Verifier{quote: q, log: log}, nil
}

// Evidence is parsed az-tdx-vtpm evidence.
type Evidence struct {
	// Version is 0, 1 or 2.
	Version int
	// Quote is the vTPM quote.
	Quote tpmquote.Quote
	// HCLReport is the raw HCL report.
	HCLReport []byte
	// TDQuote is the raw TD quote.
	TDQuote []byte
}

// ParseEvidence decodes evidence of any version (see the package
// documentation).
func ParseEvidence(evidence []byte) (Evidence, error) {
	var ev Evidence
	err := tpmquote.DecodeVersioned(evidence, "Azure vTPM TDX evidence",
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
	if ev.TDQuote, err = top.Base64URL("td_quote"); err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

func parseV0(top tpmquote.Fields) (Evidence, error) {
	var ev Evidence
	q, err := top.Object("tpm_quote")
	if err != nil {
		return Evidence{}, err
	}
	if ev.Quote, err = tpmquote.ByteQuote(q); err != nil {
		return Evidence{}, fmt.Errorf("tpm_quote: %w", err)
	}
	if ev.HCLReport, err = top.Bytes("hcl_report"); err != nil {
		return Evidence{}, err
	}
	if ev.TDQuote, err = top.Bytes("td_quote"); err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

// Evaluate verifies az-tdx-vtpm evidence against exp and returns its
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
	if hcl.Type != tpmquote.HCLReportTDX {
		return nil, fmt.Errorf("%w: HCL report holds a %s report, expected TDX", verifier.ErrMalformedEvidence, hcl.Type)
	}
	// 1. The vTPM quote: AK signature, nonce, PCRs.
	attest, err := tpmquote.VerifyAzureQuote(ev.Quote, hcl, exp.ReportData)
	if err != nil {
		return nil, err
	}
	// 2. The TD quote binds the variable data (and so the AK).
	q, err := tdx.ParseQuote(ev.TDQuote)
	if err != nil {
		return nil, fmt.Errorf("parsing TD quote: %w", err)
	}
	if err := hcl.CheckVarDataBinding(q.Body.ReportData[:]); err != nil {
		return nil, fmt.Errorf("verifying TD quote report data: %w", err)
	}
	// 3. Version 2 puts the report data into the variable data.
	if ev.Version >= 2 {
		if err := hcl.CheckUserData(exp.ReportData); err != nil {
			return nil, fmt.Errorf("verifying HCL user-data: %w", err)
		}
	}
	// 4. PCR 8 binds the init-data digest.
	if err := tpmquote.CheckInitData(ev.Quote.PCRs, exp.InitDataDigest); err != nil {
		return nil, fmt.Errorf("verifying init-data: %w", err)
	}
	// 5. The TD quote is genuine (DCAP).
	tdClaims, err := v.quote.VerifyQuote(ctx, ev.TDQuote)
	if err != nil {
		return nil, fmt.Errorf("verifying TD quote: %w", err)
	}
	claims := make(verifier.Claims, len(tdClaims)+3)
	for k, val := range tdClaims {
		claims[k] = val
	}
	tpmquote.ExtendAzureClaims(claims, ev.Quote.PCRs, attest)
	return []verifier.Result{{Claims: claims, Class: verifier.ClassCPU}}, nil
}
