// Package verifier defines the interface every per-TEE evidence verifier
// implements, and the registry the Attestation Service looks them up in.
//
// A verifier does two things and keeps them apart: it verifies the
// evidence's authenticity (signatures, certificate chains, collateral) and
// the binding of the expected report data and init-data digest into it; and
// it turns the verified evidence into claims. Appraisal against reference
// values happens later, in the attestation policy, never here.
//
// Verifiers are safe for concurrent use and never panic on malformed input:
// every failure is an error that names the check that failed.
package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/protocol/evidence"
)

// Class is the kind of device a set of claims describes; it selects the
// attestation policy "<policy-id>_<class>" and names the EAR submodule
// "<class><index>".
type Class string

// Device classes of upstream Trustee.
const (
	ClassCPU    Class = "cpu"
	ClassGPU    Class = "gpu"
	ClassSwitch Class = "switch"
	ClassPPCIe  Class = "ppcie"
	ClassDCU    Class = "dcu"
)

// Claims are the claims a verifier derives from one piece of evidence. The
// keys "report_data" and "init_data", when present, are lifted to the top of
// the annotated evidence by the Attestation Service.
type Claims map[string]any

// Result is one device's claims and class. A verifier may return several
// (e.g. one per GPU).
type Result struct {
	Claims Claims
	Class  Class
}

// Expected carries what the evidence must be bound to. A nil field is not
// checked ("not provided" upstream).
type Expected struct {
	// ReportData is the expected report data, unpadded; each verifier pads
	// or compares it as its TEE does.
	ReportData []byte
	// InitDataDigest is the expected init-data digest, unpadded.
	InitDataDigest []byte
}

// Verifier verifies the evidence of one TEE type.
type Verifier interface {
	// Evaluate verifies evidence (the TEE-specific JSON document) against
	// exp and returns the claims it proves.
	Evaluate(ctx context.Context, evidence []byte, exp Expected) ([]Result, error)
}

var (
	// ErrUnsupportedTee is returned by Registry.Get for a TEE without a
	// registered verifier.
	ErrUnsupportedTee = errors.New("verifier: TEE not supported")
	// ErrReportDataMismatch means the evidence is not bound to the expected
	// report data (nonce and TEE key). It is evidence.ErrReportDataMismatch.
	ErrReportDataMismatch = evidence.ErrReportDataMismatch
	// ErrInitDataMismatch means the evidence is not bound to the expected
	// init-data digest. It is evidence.ErrInitDataMismatch.
	ErrInitDataMismatch = evidence.ErrInitDataMismatch
	// ErrMalformedEvidence means the evidence could not be parsed. It is
	// evidence.ErrMalformed.
	ErrMalformedEvidence = evidence.ErrMalformed
)

// Registry maps TEE types to verifiers. The zero value is empty and ready.
type Registry struct {
	mu sync.RWMutex
	m  map[protocol.Tee]Verifier
}

// Register adds v for tee, replacing any earlier one.
func (r *Registry) Register(tee protocol.Tee, v Verifier) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[protocol.Tee]Verifier)
	}
	r.m[tee] = v
}

// Get returns the verifier for tee.
func (r *Registry) Get(tee protocol.Tee) (Verifier, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.m[tee]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedTee, tee)
	}
	return v, nil
}
