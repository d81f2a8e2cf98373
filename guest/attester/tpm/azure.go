package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/go-trustee/go-trustee/internal/clock"
)

// Azure confidential VM vTPM constants (the Azure guest attestation tools').
const (
	// AzureHCLReportIndex is the NV index of the HCL report.
	AzureHCLReportIndex = 0x01400001
	// AzureUserDataIndex is the NV index whose content the HCL puts in the
	// report's variable data as "user-data" (the report data).
	AzureUserDataIndex = 0x01400002
	// AzureAKHandle is the vTPM attestation key.
	AzureAKHandle = 0x81000003
	// AzureSettle is how long the Azure tools wait after writing the user
	// data before reading the refreshed HCL report.
	AzureSettle = 3 * time.Second
)

// HCL report layout: a 32-byte header, the hardware report area (sized for
// the larger of an SNP report, 1184 bytes, and a TD report, 1024 bytes),
// then the IGVM request data (u32 data size, version, report type, hash
// type, variable data size) and the variable data.
const (
	hclHeaderSize    = 32
	SNPReportSize    = 1184
	TDReportSize     = 1024
	hclRequestOffset = hclHeaderSize + SNPReportSize
	hclTypeOffset    = hclRequestOffset + 8
	hclVarSizeOffset = hclRequestOffset + 16
	hclVarDataOffset = hclRequestOffset + 20
)

// HCL report types.
const (
	HCLReportSNP = 2
	HCLReportTDX = 4
)

// ErrHCLReport means the HCL report is too short or of an unknown type.
var ErrHCLReport = errors.New("tpm: malformed HCL report")

// HCLReportType returns the type of an HCL report (HCLReportSNP or
// HCLReportTDX) after checking its size.
func HCLReportType(hcl []byte) (uint32, error) {
	if len(hcl) < hclVarDataOffset {
		return 0, fmt.Errorf("%w: %d bytes", ErrHCLReport, len(hcl))
	}
	if uint64(hclVarDataOffset)+uint64(binary.LittleEndian.Uint32(hcl[hclVarSizeOffset:])) > uint64(len(hcl)) {
		return 0, fmt.Errorf("%w: variable data exceeds the report", ErrHCLReport)
	}
	switch t := binary.LittleEndian.Uint32(hcl[hclTypeOffset:]); t {
	case HCLReportSNP, HCLReportTDX:
		return t, nil
	default:
		return 0, fmt.Errorf("%w: report type %d", ErrHCLReport, t)
	}
}

// HCLHardwareReport returns the SNP report or TD report inside an HCL report.
func HCLHardwareReport(hcl []byte) ([]byte, error) {
	t, err := HCLReportType(hcl)
	if err != nil {
		return nil, err
	}
	if t == HCLReportSNP {
		return hcl[hclHeaderSize : hclHeaderSize+SNPReportSize], nil
	}
	return hcl[hclHeaderSize : hclHeaderSize+TDReportSize], nil
}

// AzureVTPM is the Azure confidential VM vTPM: the HCL report in NV, the
// report data in the user-data NV index, quotes with the vTPM AK.
type AzureVTPM struct {
	TPM *TPM
	// Settle is the wait between writing the user data and reading the
	// HCL report; 0 is AzureSettle, negative is none.
	Settle time.Duration
	// Sleep waits; nil waits on a timer (returning early with ctx.Err()).
	Sleep func(ctx context.Context, d time.Duration) error
}

// HCLReport returns the current HCL report without refreshing it.
func (v *AzureVTPM) HCLReport(ctx context.Context) ([]byte, error) {
	return v.TPM.NVRead(ctx, AzureHCLReportIndex)
}

// HCLReportWithData writes reportData to the user-data index, waits for the
// HCL to refresh the report, and reads it.
func (v *AzureVTPM) HCLReportWithData(ctx context.Context, reportData []byte) ([]byte, error) {
	if err := v.TPM.NVWrite(ctx, AzureUserDataIndex, reportData); err != nil {
		return nil, err
	}
	d := v.Settle
	if d == 0 {
		d = AzureSettle
	}
	if d > 0 {
		sleep := v.Sleep
		if sleep == nil {
			sleep = clock.Sleep
		}
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
	return v.HCLReport(ctx)
}

// Quote quotes the 24 SHA-256 PCRs with the vTPM AK (its own scheme) and
// reportData as the nonce.
func (v *AzureVTPM) Quote(ctx context.Context, reportData []byte) (*Quote, []byte, error) {
	q, err := v.TPM.Quote(ctx, AzureAKHandle, reportData, tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull})
	if err != nil {
		return nil, nil, err
	}
	rs, err := q.Signature.Signature.RSASSA()
	if err != nil || q.Signature.SigAlg != tpm2.TPMAlgRSASSA {
		return nil, nil, fmt.Errorf("tpm: vTPM quote is not RSASSA-signed (algorithm %#x)", q.Signature.SigAlg)
	}
	return q, rs.Sig.Buffer, nil
}
