package snp

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/go-trustee/go-trustee/protocol/evidence"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

// FuzzEvaluate runs the whole verification over arbitrary evidence (the
// wire parser alone is fuzzed in protocol/evidence/snp): it never panics,
// fails only with the verifier's error classes, and accepts only the one
// genuine report among the inputs.
func FuzzEvaluate(f *testing.F) {
	f.Add(fakekds.GenoaEvidence())
	js, _ := snpev.MarshalEvidence(readVec(f, "test-vlek-report.bin"), []snpev.CertEntry{{Type: snpev.CertVLEK, Data: readVec(f, "test-vlek.der")}})
	f.Add(js)
	f.Add([]byte(`{"attestation_report":{"version":3},"cert_chain":[{"cert_type":{"OTHER":"c0b406a4-a803-4952-9743-3fb6014cd0ae"},"data":[1,2]}]}`))
	f.Add([]byte(`{"attestation_report":null}`))
	v, _ := newTestVerifier(f, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	genoa := mustReport(f, fakekds.GenoaEvidence())
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := v.Evaluate(context.Background(), b, verifier.Expected{})
		if err == nil {
			if !reflect.DeepEqual(res[0].Claims, claims(genoa)) {
				t.Fatalf("accepted forged evidence: %v", res[0].Claims)
			}
			return
		}
		if !errors.Is(err, evidence.ErrMalformed) && !errors.Is(err, ErrUnsupportedReport) &&
			!errors.Is(err, ErrEndorsementKey) && !errors.Is(err, ErrCertChain) && !errors.Is(err, ErrReportSignature) &&
			!errors.Is(err, ErrTCBMismatch) && !errors.Is(err, ErrVMPL) && !errors.Is(err, ErrCertValidity) {
			t.Fatalf("error class: %v", err)
		}
	})
}
