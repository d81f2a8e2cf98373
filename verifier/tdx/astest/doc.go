// Package astest holds the end-to-end tests of the TDX verifier through the
// Attestation Service's REST API: real evidence (upstream's tdx_quote_4.dat)
// verified against recorded Intel collateral and appraised by the default
// CPU policy. It is a package of its own so that the Attestation Service
// (and its policy engine) stays out of the verifier's fuzzing binary.
package astest
