package tpmquote

import (
	"encoding/hex"
	"fmt"

	"github.com/go-trustee/go-trustee/verifier"
)

// VerifyAzureQuote runs the vTPM checks shared by the Azure verifiers
// (upstream's verify_tpm_signature, verify_tpm_nonce and verify_tpm_pcrs):
// the quote is signed by the HCL report's AK and is a TPM-generated quote,
// its nonce equals reportData exactly, and the PCR values are the quoted
// ones.
func VerifyAzureQuote(q Quote, hcl *HCLReport, reportData []byte) (*Attest, error) {
	ak, err := hcl.AKPub()
	if err != nil {
		return nil, fmt.Errorf("failed to get AKpub: %w", err)
	}
	if err := VerifySignature(ak, q.Message, q.Signature); err != nil {
		return nil, fmt.Errorf("vTPM quote is not signed by AKpub: %w", err)
	}
	attest, err := ParseAttest(q.Message)
	if err != nil {
		return nil, fmt.Errorf("parsing vTPM quote: %w", err)
	}
	if err := attest.CheckNonce(reportData); err != nil {
		return nil, fmt.Errorf("verifying vTPM quote nonce: %w", err)
	}
	if err := attest.CheckPCRs(q.PCRs); err != nil {
		return nil, fmt.Errorf("verifying vTPM PCRs: %w", err)
	}
	return attest, nil
}

// ExtendAzureClaims adds upstream's vTPM claims: tpm {pcr00..} (hex),
// init_data (hex of PCR 8, when quoted) and report_data (hex of the
// quote's nonce), replacing any hardware-report values of the last two.
func ExtendAzureClaims(c verifier.Claims, pcrs [][]byte, attest *Attest) {
	c["tpm"] = PCRClaims(pcrs)
	if len(pcrs) > InitDataPCR {
		c["init_data"] = hex.EncodeToString(pcrs[InitDataPCR])
	}
	c["report_data"] = hex.EncodeToString(attest.ExtraData)
}
