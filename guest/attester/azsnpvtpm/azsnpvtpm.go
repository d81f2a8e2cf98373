// Package azsnpvtpm is the attester of Azure SEV-SNP confidential VMs
// ("az-snp-vtpm"): the paravisor (HCL) publishes an SNP report whose report
// data is the SHA-256 of its variable data, which holds the vTPM AK and the
// caller's report data ("user-data"); a vTPM quote signed by that AK binds
// the report data as its nonce and covers the 24 SHA-256 PCRs; the VCEK
// comes from the Azure instance metadata service (IMDS).
//
// Evidence (version 2), exactly as upstream's attester emits it:
//
//	{"version":2,
//	 "tpm_quote":{"signature":"<hex raw RSA signature>","message":"<hex TPMS_ATTEST>",
//	              "pcrs":["<hex SHA-256 PCR>", ... 24]},
//	 "hcl_report":"<base64url, padded>","vcek":"<base64url, padded, DER>"}
//
// The report data is used as given (no padding; at most 64 bytes).
package azsnpvtpm

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/tpm"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// EvidenceVersion is the evidence format version upstream emits.
const EvidenceVersion = 2

// DefaultIMDSURL is the Azure instance metadata service.
const DefaultIMDSURL = "http://169.254.169.254"

// Options configure New and Detect. Zero values take the documented defaults.
type Options struct {
	// Open opens the vTPM; nil opens the device tpm.FindDevice selects.
	Open tpm.Opener
	// Root prefixes device paths ("" is "/").
	Root string
	// Getenv reads the environment; nil is os.Getenv.
	Getenv func(string) string
	// HTTPClient reaches IMDS; nil is a client with a 10 s timeout.
	HTTPClient *http.Client
	// IMDSURL is the IMDS base URL; "" is DefaultIMDSURL.
	IMDSURL string
	// Settle and Sleep: see tpm.AzureVTPM.
	Settle time.Duration
	Sleep  func(ctx context.Context, d time.Duration) error
}

func opener(o Options) (tpm.Opener, error) {
	if o.Open != nil {
		return o.Open, nil
	}
	dev, ok := tpm.FindDevice(o.Root, o.Getenv)
	if !ok {
		return nil, tpm.ErrNoDevice
	}
	return tpm.DeviceOpener(dev), nil
}

// Detect reports whether the vTPM holds an HCL report of an SNP guest.
func Detect(ctx context.Context, opts Options) bool {
	open, err := opener(opts)
	if err != nil {
		return false
	}
	hcl, err := (&tpm.AzureVTPM{TPM: tpm.NewTPM(open)}).HCLReport(ctx)
	if err != nil {
		return false
	}
	t, err := tpm.HCLReportType(hcl)
	return err == nil && t == tpm.HCLReportSNP
}

// Attester is the az-snp-vtpm attester.
type Attester struct {
	vtpm *tpm.AzureVTPM
	hc   *http.Client
	imds string
}

var _ attester.Attester = (*Attester)(nil)

// New returns the attester for opts.
func New(opts Options) (*Attester, error) {
	open, err := opener(opts)
	if err != nil {
		return nil, err
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	u := opts.IMDSURL
	if u == "" {
		u = DefaultIMDSURL
	}
	return &Attester{
		vtpm: &tpm.AzureVTPM{TPM: tpm.NewTPM(open), Settle: opts.Settle, Sleep: opts.Sleep},
		hc:   hc,
		imds: strings.TrimRight(u, "/"),
	}, nil
}

// Tee returns protocol.TeeAzSnpVtpm.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeAzSnpVtpm }

// QuoteJSON is the tpm_quote of Azure vTPM evidence (hex fields).
type QuoteJSON struct {
	Signature string   `json:"signature"`
	Message   string   `json:"message"`
	PCRs      []string `json:"pcrs"`
}

// Evidence is az-snp-vtpm evidence.
type Evidence struct {
	Version   uint32    `json:"version"`
	TPMQuote  QuoteJSON `json:"tpm_quote"`
	HCLReport string    `json:"hcl_report"`
	VCEK      string    `json:"vcek"`
}

// QuoteEvidence refreshes the HCL report with reportData and quotes the
// PCRs with it as the nonce; both Azure attesters use it.
func QuoteEvidence(ctx context.Context, v *tpm.AzureVTPM, reportData []byte) (hcl []byte, q QuoteJSON, err error) {
	if len(reportData) == 0 || len(reportData) > 64 {
		return nil, q, fmt.Errorf("vTPM report data of %d bytes (want 1..64)", len(reportData))
	}
	if hcl, err = v.HCLReportWithData(ctx, reportData); err != nil {
		return nil, q, err
	}
	if _, err := tpm.HCLReportType(hcl); err != nil {
		return nil, q, err
	}
	quote, sig, err := v.Quote(ctx, reportData)
	if err != nil {
		return nil, q, err
	}
	return hcl, QuoteJSON{Signature: hex.EncodeToString(sig), Message: hex.EncodeToString(quote.Attest), PCRs: tpm.HexPCRs(quote.PCRs)}, nil
}

// Evidence returns az-snp-vtpm evidence binding reportData.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	hcl, q, err := QuoteEvidence(ctx, a.vtpm, reportData)
	if err != nil {
		return nil, fmt.Errorf("az-snp-vtpm: %w", err)
	}
	vcek, err := a.vcek(ctx)
	if err != nil {
		return nil, fmt.Errorf("az-snp-vtpm: %w", err)
	}
	return json.Marshal(Evidence{
		Version:   EvidenceVersion,
		TPMQuote:  q,
		HCLReport: base64.URLEncoding.EncodeToString(hcl),
		VCEK:      base64.URLEncoding.EncodeToString(vcek),
	})
}

// vcek fetches the VCEK (DER) from IMDS.
func (a *Attester) vcek(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.imds+"/metadata/THIM/amd/certification", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Metadata", "true")
	body, err := Do(a.hc, req)
	if err != nil {
		return nil, fmt.Errorf("fetching the VCEK from IMDS: %w", err)
	}
	var certs struct {
		VCEK string `json:"vcekCert"`
	}
	if err := json.Unmarshal(body, &certs); err != nil {
		return nil, fmt.Errorf("IMDS certification response: %w", err)
	}
	blk, _ := pem.Decode([]byte(certs.VCEK))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("IMDS vcekCert is not a PEM CERTIFICATE")
	}
	return blk.Bytes, nil
}

// Do sends req and returns the body of a 200 answer, read through a limit.
func Do(hc *http.Client, req *http.Request) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limits.MaxIMDSResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limits.MaxIMDSResponseBytes {
		return nil, fmt.Errorf("response exceeds %d bytes", limits.MaxIMDSResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return b, nil
}

// EventLogHash returns crypto.SHA256 (the vTPM PCR bank).
func (a *Attester) EventLogHash() crypto.Hash { return crypto.SHA256 }

// MRIndex returns pcr: vTPM event logs name PCRs.
func (a *Attester) MRIndex(pcr uint64) uint32 { return uint32(pcr) }

// RuntimeMeasurement returns SHA-256 PCR pcr.
func (a *Attester) RuntimeMeasurement(ctx context.Context, pcr uint64) ([]byte, error) {
	return a.vtpm.TPM.PCR(ctx, pcr)
}

// ExtendRuntimeMeasurement extends SHA-256 PCR pcr with a 32-byte digest.
func (a *Attester) ExtendRuntimeMeasurement(ctx context.Context, digest []byte, pcr uint64) error {
	return a.vtpm.TPM.Extend(ctx, pcr, digest)
}

// BindInitData extends PCR 8 with the init-data digest, which must be 32
// bytes: Azure init-data uses sha256.
func (a *Attester) BindInitData(ctx context.Context, digest []byte) error {
	return a.vtpm.TPM.Extend(ctx, tpm.InitDataPCR, digest)
}
