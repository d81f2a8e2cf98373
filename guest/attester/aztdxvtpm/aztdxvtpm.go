// Package aztdxvtpm is the attester of Azure TDX confidential VMs
// ("az-tdx-vtpm"): the paravisor (HCL) publishes a TD report whose report
// data is the SHA-256 of its variable data (the vTPM AK and the caller's
// report data); the Azure instance metadata service (IMDS) turns the TD
// report into a TD quote; a vTPM quote binds the report data as its nonce.
//
// Evidence (version 2), exactly as upstream's attester emits it:
//
//	{"version":2,"tpm_quote":{"signature":"<hex>","message":"<hex>","pcrs":[...24]},
//	 "hcl_report":"<base64url, padded>","td_quote":"<base64url, padded>"}
package aztdxvtpm

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/azsnpvtpm"
	"github.com/go-trustee/go-trustee/guest/attester/tpm"
	"github.com/go-trustee/go-trustee/protocol"
)

// Options are azsnpvtpm.Options: the same vTPM, device and IMDS settings.
type Options = azsnpvtpm.Options

// Detect reports whether the vTPM holds an HCL report of a TDX guest.
func Detect(ctx context.Context, opts Options) bool {
	a, err := New(opts)
	if err != nil {
		return false
	}
	hcl, err := a.vtpm.HCLReport(ctx)
	if err != nil {
		return false
	}
	t, err := tpm.HCLReportType(hcl)
	return err == nil && t == tpm.HCLReportTDX
}

// Attester is the az-tdx-vtpm attester.
type Attester struct {
	vtpm *tpm.AzureVTPM
	hc   *http.Client
	imds string
}

var _ attester.Attester = (*Attester)(nil)

// New returns the attester for opts.
func New(opts Options) (*Attester, error) {
	open := opts.Open
	if open == nil {
		dev, ok := tpm.FindDevice(opts.Root, opts.Getenv)
		if !ok {
			return nil, tpm.ErrNoDevice
		}
		open = tpm.DeviceOpener(dev)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	u := opts.IMDSURL
	if u == "" {
		u = azsnpvtpm.DefaultIMDSURL
	}
	return &Attester{
		vtpm: &tpm.AzureVTPM{TPM: tpm.NewTPM(open), Settle: opts.Settle, Sleep: opts.Sleep},
		hc:   hc,
		imds: strings.TrimRight(u, "/"),
	}, nil
}

// Tee returns protocol.TeeAzTdxVtpm.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeAzTdxVtpm }

// Evidence is az-tdx-vtpm evidence.
type Evidence struct {
	Version   uint32              `json:"version"`
	TPMQuote  azsnpvtpm.QuoteJSON `json:"tpm_quote"`
	HCLReport string              `json:"hcl_report"`
	TDQuote   string              `json:"td_quote"`
}

// Evidence returns az-tdx-vtpm evidence binding reportData.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	hcl, q, err := azsnpvtpm.QuoteEvidence(ctx, a.vtpm, reportData)
	if err != nil {
		return nil, fmt.Errorf("az-tdx-vtpm: %w", err)
	}
	td, err := tpm.HCLHardwareReport(hcl)
	if err != nil {
		return nil, fmt.Errorf("az-tdx-vtpm: %w", err)
	}
	quote, err := a.tdQuote(ctx, td)
	if err != nil {
		return nil, fmt.Errorf("az-tdx-vtpm: %w", err)
	}
	return json.Marshal(Evidence{
		Version:   azsnpvtpm.EvidenceVersion,
		TPMQuote:  q,
		HCLReport: base64.URLEncoding.EncodeToString(hcl),
		TDQuote:   base64.URLEncoding.EncodeToString(quote),
	})
}

// tdQuote asks IMDS to turn a TD report into a TD quote.
func (a *Attester) tdQuote(ctx context.Context, td []byte) ([]byte, error) {
	body, _ := json.Marshal(map[string]string{"report": base64.RawURLEncoding.EncodeToString(td)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.imds+"/acc/tdquote", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Metadata", "true")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	b, err := azsnpvtpm.Do(a.hc, req)
	if err != nil {
		return nil, fmt.Errorf("fetching the TD quote from IMDS: %w", err)
	}
	var r struct {
		Quote string `json:"quote"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("IMDS TD quote response: %w", err)
	}
	quote, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.Quote, "="))
	if err != nil || len(quote) == 0 {
		return nil, fmt.Errorf("IMDS TD quote is not base64url")
	}
	return quote, nil
}

// EventLogHash returns crypto.SHA256 (the vTPM PCR bank).
func (a *Attester) EventLogHash() crypto.Hash { return crypto.SHA256 }

// MRIndex returns pcr: vTPM event logs name PCRs.
func (a *Attester) MRIndex(pcr uint64) uint32 { return uint32(pcr) }

// RuntimeMeasurement returns SHA-256 PCR pcr (upstream lacks it, so its
// event log cannot work on az-tdx-vtpm).
func (a *Attester) RuntimeMeasurement(ctx context.Context, pcr uint64) ([]byte, error) {
	return a.vtpm.TPM.PCR(ctx, pcr)
}

// ExtendRuntimeMeasurement extends SHA-256 PCR pcr with a 32-byte digest.
func (a *Attester) ExtendRuntimeMeasurement(ctx context.Context, digest []byte, pcr uint64) error {
	return a.vtpm.TPM.Extend(ctx, pcr, digest)
}

// BindInitData extends PCR 8 with the 32-byte (sha256) init-data digest.
func (a *Attester) BindInitData(ctx context.Context, digest []byte) error {
	return a.vtpm.TPM.Extend(ctx, tpm.InitDataPCR, digest)
}
