package snp

import (
	"context"
	"testing"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

// The benchmarks verify the same real Genoa report: ours through Evaluate
// (JSON evidence, VCEK from a warm cache) and go-sev-guest's
// verify.SnpAttestation on the binary report with its certificate chain.

func BenchmarkVerifyWarmCache(b *testing.B) {
	kds := fakekds.New()
	v, _ := newTestVerifier(b, kdsConfig(""), Options{}, kds)
	evidence := genoaNoChain(b)
	exp := verifier.Expected{ReportData: genoaReportData(b)}
	ctx := context.Background()
	if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
			b.Fatal(err)
		}
	}
	if kds.Requests() != 1 {
		b.Fatalf("%d KDS requests", kds.Requests())
	}
}

func BenchmarkVerifyWarmCacheCertChain(b *testing.B) {
	v, _ := newTestVerifier(b, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	evidence := fakekds.GenoaEvidence()
	exp := verifier.Expected{ReportData: genoaReportData(b)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyReport(b *testing.B) {
	v, _ := newTestVerifier(b, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	raw := mustReport(b, fakekds.GenoaEvidence())
	bin, err := raw.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	vcek := fakekds.GenoaVCEK()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyReport(ctx, bin, vcek); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareGoSevGuest(b *testing.B) {
	rep := mustReport(b, fakekds.GenoaEvidence())
	bin, err := rep.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	genoa := mustProduct(b, "Genoa")
	pr, err := abi.ReportToProto(bin)
	if err != nil {
		b.Fatal(err)
	}
	att := &spb.Attestation{Report: pr, CertificateChain: &spb.CertificateChain{
		VcekCert: fakekds.GenoaVCEK(), AskCert: genoa.ask.Raw, ArkCert: genoa.ark.Raw,
	}}
	// go-sev-guest v0.15.0 does not know CPUID model 0xA0 (it names the
	// product line "Unknown"), so its Genoa roots are given for that name.
	root, err := trust.GetDefaultRootCerts("Genoa")
	if err != nil {
		b.Fatal(err)
	}
	opts := &verify.Options{Now: testNow, DisableCertFetching: true, TrustedRoots: map[string][]*trust.AMDRootCerts{"Unknown": {root}}}
	if err := verify.SnpAttestation(att, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := verify.SnpAttestation(att, opts); err != nil {
			b.Fatal(err)
		}
	}
}
