// Package evidence holds what the guest attesters and the server verifiers
// share about TEE evidence: the sentinel errors both sides return, and, in
// its subpackages, the evidence wire forms (snp: the SEV-SNP report and the
// serde JSON evidence; tdx: the TDX evidence document).
//
// Invariant: nothing here verifies anything. Parsers decode and bound the
// input; signatures, chains and collateral are the verifiers' business
// (verifier/...), so a guest binary links the wire forms without the
// verifiers, their KDS/PCS clients and caches.
package evidence

import "errors"

var (
	// ErrReportDataMismatch means the evidence is not bound to the expected
	// report data (nonce and TEE key).
	ErrReportDataMismatch = errors.New("evidence: report data mismatch")
	// ErrInitDataMismatch means the evidence (or the TEE register an
	// attester reads) is not bound to the expected init-data digest.
	ErrInitDataMismatch = errors.New("evidence: init-data digest mismatch")
	// ErrMalformed means the evidence could not be parsed.
	ErrMalformed = errors.New("evidence: malformed evidence")
)
