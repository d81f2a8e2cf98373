package snp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/google/go-sev-guest/verify/testdata"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

func genoaClaims() verifier.Claims {
	return verifier.Claims{
		"policy_abi_major":        0,
		"policy_abi_minor":        0,
		"policy_smt_allowed":      true,
		"policy_migrate_ma":       false,
		"policy_debug_allowed":    false,
		"policy_single_socket":    false,
		"reported_tcb_bootloader": 10,
		"reported_tcb_tee":        0,
		"reported_tcb_snp":        23,
		"reported_tcb_microcode":  25,
		"platform_tsme_enabled":   false,
		"platform_smt_enabled":    true,
		"measurement":             "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
		"report_data":             "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0",
		"init_data":               "0000000000000000000000000000000000000000000000000000000000000000",
		"chip_id":                 "371c55d6d15cb50f16dc31d39a24e300caaabff4431e841111429b73ec45ad67ea6e687ffae7bf84b54a5d0e6d79b3ef6ff0bd8b4cff94c2163af5c5de8718e8",
	}
}

// TestEvaluateGenoaCertChain verifies upstream's end-to-end evidence (a
// Genoa report with its VCEK in the cert_chain) and checks every claim.
func TestEvaluateGenoaCertChain(t *testing.T) {
	v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	rd := genoaReportData(t)
	tests := []struct {
		name string
		exp  verifier.Expected
	}{
		{"no expectations", verifier.Expected{}},
		{"report data", verifier.Expected{ReportData: rd}},
		{"report data longer than 64 bytes is truncated", verifier.Expected{ReportData: append(append([]byte(nil), rd...), 1, 2, 3)}},
		{"init-data digest of zeros", verifier.Expected{ReportData: rd, InitDataDigest: make([]byte, 32)}},
		{"empty init-data digest is padded", verifier.Expected{InitDataDigest: []byte{}}},
		{"short init-data digest is padded", verifier.Expected{InitDataDigest: []byte{0, 0, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.Evaluate(context.Background(), fakekds.GenoaEvidence(), tc.exp)
			if err != nil {
				t.Fatal(err)
			}
			want := []verifier.Result{{Claims: genoaClaims(), Class: verifier.ClassCPU}}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("got  %#v\nwant %#v", res, want)
			}
		})
	}
}

// TestEvaluateErrors covers the failures of the full path, each naming
// its check.
func TestEvaluateErrors(t *testing.T) {
	rd := genoaReportData(t)
	genoa := fakekds.GenoaEvidence()
	edit := func(old, new string) []byte {
		t.Helper()
		if !bytes.Contains(genoa, []byte(old)) {
			t.Fatalf("evidence has no %q", old)
		}
		return bytes.Replace(genoa, []byte(old), []byte(new), 1)
	}
	milanARK := mustProduct(t, "Milan").ark.Raw
	withChain := func(entries ...snpev.CertEntry) []byte {
		ev, err := snpev.ParseEvidence(genoa)
		if err != nil {
			t.Fatal(err)
		}
		ev.CertChain = append(ev.CertChain, entries...)
		b, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	otherRD := bytes.Clone(rd)
	otherRD[63] ^= 1
	tests := []struct {
		name     string
		evidence []byte
		exp      verifier.Expected
		now      time.Time
		want     error
		msg      string
	}{
		{name: "report data mismatch", evidence: genoa, exp: verifier.Expected{ReportData: otherRD}, want: verifier.ErrReportDataMismatch, msg: "REPORT_DATA"},
		{name: "short report data is zero-padded, so differs", evidence: genoa, exp: verifier.Expected{ReportData: rd[:32]}, want: verifier.ErrReportDataMismatch},
		{name: "init-data mismatch", evidence: genoa, exp: verifier.Expected{ReportData: rd, InitDataDigest: []byte{1}}, want: verifier.ErrInitDataMismatch, msg: "HOST_DATA"},
		{name: "expired VCEK", evidence: genoa, now: time.Date(2032, 5, 28, 0, 0, 0, 0, time.UTC), want: ErrCertValidity, msg: "VCEK certificate"},
		{name: "VCEK not yet valid", evidence: genoa, now: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), want: ErrCertValidity, msg: "not at 2025-05-01"},
		{name: "wrong product root (CPUID says Milan)", evidence: edit(`"cpuid_mod_id":160`, `"cpuid_mod_id":1`), want: ErrCertChain, msg: "Milan"},
		{name: "evidence ARK of another product", evidence: withChain(snpev.CertEntry{Type: snpev.CertARK, Data: milanARK}), want: ErrCertChain, msg: "ARK (CN=ARK-Milan) is not the AMD Genoa ARK"},
		{name: "evidence ARK garbage", evidence: withChain(snpev.CertEntry{Type: snpev.CertARK, Data: []byte{1, 2, 3}}), want: ErrCertChain},
		{name: "evidence ASK of another product", evidence: withChain(snpev.CertEntry{Type: snpev.CertASK, Data: mustProduct(t, "Milan").ask.Raw}), want: ErrCertChain},
		{name: "evidence ASVK instead of ASK", evidence: withChain(snpev.CertEntry{Type: snpev.CertASK, Data: mustProduct(t, "Genoa").asvk.Raw}), want: ErrCertChain},
		{name: "VCEK entry typed ARK", evidence: edit(`"cert_type":"VCEK","data":[`, `"cert_type":"ARK","data":[`), want: ErrCertChain, msg: "ARK"},
		{name: "VCEK entry typed CRL", evidence: edit(`"cert_type":"VCEK","data":[`, `"cert_type":"CRL","data":[`), want: ErrEndorsementKey, msg: "no VCEK or VLEK"},
		{name: "empty cert_chain", evidence: withChainOnly(t, genoa, []snpev.CertEntry{}), want: ErrEndorsementKey, msg: "no VCEK or VLEK"},
		{name: "VCEK that is not a certificate", evidence: withChainFirst(t, genoa, snpev.CertEntry{Type: snpev.CertVCEK, Data: []byte("garbage")}), want: ErrEndorsementKey},
		{name: "Milan VCEK for a Genoa report", evidence: withChainFirst(t, genoa, snpev.CertEntry{Type: snpev.CertVCEK, Data: fakekds.MilanVCEK()}), want: ErrCertChain},
		{name: "report signature", evidence: edit(`"guest_svn":0`, `"guest_svn":1`), want: ErrReportSignature, msg: "does not sign the attestation report"},
		{name: "report version 2", evidence: edit(`"version":3`, `"version":2`), want: ErrUnsupportedReport, msg: "too old"},
		{name: "report version 6", evidence: edit(`"version":3`, `"version":6`), want: ErrUnsupportedReport, msg: "unexpected attestation report version"},
		{name: "unknown processor family", evidence: edit(`"cpuid_fam_id":25`, `"cpuid_fam_id":23`), want: ErrUnsupportedReport},
		{name: "Genoa model 0xAF is not supported upstream", evidence: edit(`"cpuid_mod_id":160`, `"cpuid_mod_id":175`), want: ErrUnsupportedReport},
		{name: "missing CPUID", evidence: edit(`"cpuid_fam_id":25`, `"cpuid_fam_id":null`), want: ErrUnsupportedReport, msg: "family"},
		{name: "fmc on Genoa", evidence: edit(`"fmc":null`, `"fmc":1`), want: verifier.ErrMalformedEvidence, msg: "fmc"},
		{name: "mitigation vector in a v3 report", evidence: edit(`"signature":`, `"launch_mit_vector":1,"signature":`), want: verifier.ErrMalformedEvidence},
		{name: "truncated report data", evidence: edit(`"report_data":[126,`, `"report_data":[`), want: verifier.ErrMalformedEvidence, msg: "invalid length 63"},
		{name: "truncated JSON", evidence: genoa[:len(genoa)/2], want: verifier.ErrMalformedEvidence},
		{name: "byte out of range", evidence: edit(`"report_data":[126,`, `"report_data":[256,`), want: verifier.ErrMalformedEvidence, msg: "out of range"},
		{name: "float in a byte array", evidence: edit(`"report_data":[126,`, `"report_data":[126.0,`), want: verifier.ErrMalformedEvidence, msg: "floating point"},
		{name: "negative", evidence: edit(`"vmpl":0`, `"vmpl":-1`), want: verifier.ErrMalformedEvidence},
		{name: "string version", evidence: edit(`"version":3`, `"version":"3"`), want: verifier.ErrMalformedEvidence},
		{name: "missing field", evidence: edit(`"guest_svn":0,`, ``), want: verifier.ErrMalformedEvidence, msg: "missing field `guest_svn`"},
		{name: "duplicate field", evidence: edit(`"guest_svn":0,`, `"guest_svn":0,"guest_svn":0,`), want: verifier.ErrMalformedEvidence, msg: "duplicate field"},
		{name: "field names are case-sensitive", evidence: edit(`"guest_svn":0,`, `"Guest_svn":0,`), want: verifier.ErrMalformedEvidence, msg: "missing field"},
		{name: "unknown cert type", evidence: edit(`"cert_type":"VCEK"`, `"cert_type":"VCEKX"`), want: verifier.ErrMalformedEvidence, msg: "unknown variant"},
		{name: "not an object", evidence: []byte(`[]`), want: verifier.ErrMalformedEvidence},
		{name: "too large", evidence: append(bytes.Repeat([]byte(" "), 2<<20), genoa...), want: verifier.ErrMalformedEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{}
			if !tc.now.IsZero() {
				now := tc.now
				opts.Now = func() time.Time { return now }
			}
			v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, opts, nil)
			_, err := v.Evaluate(context.Background(), tc.evidence, tc.exp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "snp: ") && !errors.Is(err, verifier.ErrMalformedEvidence) &&
				!errors.Is(err, verifier.ErrReportDataMismatch) && !errors.Is(err, verifier.ErrInitDataMismatch) {
				t.Errorf("error %q does not start with snp:", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func withChainOnly(t *testing.T, evidence []byte, chain []snpev.CertEntry) []byte {
	t.Helper()
	ev, err := snpev.ParseEvidence(evidence)
	if err != nil {
		t.Fatal(err)
	}
	ev.CertChain = chain
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withChainFirst(t *testing.T, evidence []byte, e snpev.CertEntry) []byte {
	t.Helper()
	ev, err := snpev.ParseEvidence(evidence)
	if err != nil {
		t.Fatal(err)
	}
	ev.CertChain = append([]snpev.CertEntry{e}, ev.CertChain...)
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVLEK verifies the VLEK vector through the ASVK. The report was
// requested from VMPL 1, so the full evaluation fails at the VMPL check,
// after authenticity passed: a real VMPL != 0 case.
func TestVLEK(t *testing.T) {
	report, vlek := readVec(t, "test-vlek-report.bin"), readVec(t, "test-vlek.der")
	v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	rep, err := snpev.ParseReport(report)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := productOf(rep)
	if err != nil || prod.name != "Milan" {
		t.Fatalf("product %v, %v", prod, err)
	}
	chain := []snpev.CertEntry{{Type: snpev.CertVLEK, Data: vlek}}
	if err := v.authenticate(context.Background(), prod, rep, report, chain); err != nil {
		t.Fatalf("authenticity: %v", err)
	}
	evidence, err := snpev.MarshalEvidence(report, chain)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Evaluate(context.Background(), evidence, verifier.Expected{})
	if !errors.Is(err, ErrVMPL) || !strings.Contains(err.Error(), "VMPL is 1, want 0") {
		t.Fatalf("Evaluate = %v, want the VMPL check to fail", err)
	}
	_, err = v.VerifyReport(context.Background(), report, vlek)
	if !errors.Is(err, ErrVMPL) {
		t.Fatalf("VerifyReport = %v, want ErrVMPL", err)
	}
	// A VLEK entry typed VCEK is checked against the ASK, and fails.
	if err := v.authenticate(context.Background(), prod, rep, report, []snpev.CertEntry{{Type: snpev.CertVCEK, Data: vlek}}); !errors.Is(err, ErrCertChain) {
		t.Fatalf("VLEK as VCEK: %v, want ErrCertChain", err)
	}
	// After its expiry (2025-12-10) it is rejected.
	v.now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	if err := v.authenticate(context.Background(), prod, rep, report, chain); !errors.Is(err, ErrCertValidity) || !strings.Contains(err.Error(), "VLEK certificate") {
		t.Fatalf("expired VLEK: %v", err)
	}
}

// TestVersion2Reports: upstream's test-report.bin and go-sev-guest's
// attestation.bin are version 2 reports, which name no processor
// generation; upstream rejects them for attestation but its tests check
// their authenticity as Milan reports, as these do.
func TestVersion2Reports(t *testing.T) {
	tests := []struct {
		name         string
		report, vcek []byte
	}{
		{"trustee test-report.bin", readVec(t, "test-report.bin"), readVec(t, "test-vcek.der")},
		{"go-sev-guest attestation.bin", testdata.AttestationBytes, testdata.VcekBytes},
	}
	milan := mustProduct(t, "Milan")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
			rep, err := snpev.ParseReport(tc.report)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Version != 2 {
				t.Fatalf("version %d", rep.Version)
			}
			chain := []snpev.CertEntry{{Type: snpev.CertVCEK, Data: tc.vcek}}
			if err := v.authenticate(context.Background(), milan, rep, tc.report, chain); err != nil {
				t.Fatalf("authenticity: %v", err)
			}
			if err := v.authenticate(context.Background(), mustProduct(t, "Genoa"), rep, tc.report, chain); !errors.Is(err, ErrCertChain) {
				t.Fatalf("as Genoa: %v, want ErrCertChain", err)
			}
			evidence, err := snpev.MarshalEvidence(tc.report, chain)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Evaluate(context.Background(), evidence, verifier.Expected{}); !errors.Is(err, ErrUnsupportedReport) || !strings.Contains(err.Error(), "too old") {
				t.Fatalf("Evaluate = %v, want the version check to fail", err)
			}
			if _, err := v.VerifyReport(context.Background(), tc.report, tc.vcek); !errors.Is(err, ErrUnsupportedReport) {
				t.Fatalf("VerifyReport = %v, want ErrUnsupportedReport", err)
			}
		})
	}
}

// TestFlipEverySignedByte flips each of the 0x2A0 signed bytes of real
// reports, one at a time, and expects every one to fail: through the full
// JSON path (Genoa, v3) and through the binary path (Milan, v2, pinned as
// upstream's own tests do).
func TestFlipEverySignedByte(t *testing.T) {
	ctx := context.Background()
	t.Run("genoa evidence", func(t *testing.T) {
		v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
		ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ev.Report.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Evaluate(ctx, fakekds.GenoaEvidence(), verifier.Expected{}); err != nil {
			t.Fatalf("unmodified: %v", err)
		}
		for i := range snpev.SignedSize {
			flipped := bytes.Clone(raw)
			flipped[i] ^= 0x01
			evidence, err := snpev.MarshalEvidence(flipped, ev.CertChain)
			if err != nil {
				// Not representable (a reserved byte): the converter refuses it.
				if !errors.Is(err, verifier.ErrMalformedEvidence) && !errors.Is(err, ErrUnsupportedReport) {
					t.Fatalf("byte 0x%03x: converter error %v", i, err)
				}
				continue
			}
			if _, err := v.Evaluate(ctx, evidence, verifier.Expected{}); err == nil {
				t.Fatalf("byte 0x%03x flipped: evidence accepted", i)
			}
		}
	})
	t.Run("milan report", func(t *testing.T) {
		v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
		raw := readVec(t, "test-report.bin")
		chain := []snpev.CertEntry{{Type: snpev.CertVCEK, Data: readVec(t, "test-vcek.der")}}
		milan := mustProduct(t, "Milan")
		signatureFailures := 0
		for i := range snpev.SignedSize {
			flipped := bytes.Clone(raw)
			flipped[i] ^= 0x80
			rep, err := snpev.ParseReport(flipped)
			if err != nil {
				// A reserved byte, or a version without a layout: refused.
				if !errors.Is(err, verifier.ErrMalformedEvidence) && !errors.Is(err, ErrUnsupportedReport) {
					t.Fatalf("byte 0x%03x: %v", i, err)
				}
				continue
			}
			err = v.authenticate(ctx, milan, rep, flipped, chain)
			if err == nil {
				t.Fatalf("byte 0x%03x flipped: report accepted", i)
			}
			if errors.Is(err, ErrReportSignature) {
				signatureFailures++
			}
		}
		// 0x2A0 bytes less the reserved ones (about 200) and the version.
		if signatureFailures < 400 {
			t.Errorf("only %d flips failed the signature check", signatureFailures)
		}
	})
}

// TestTCBMismatch checks the TCB and chip ID comparison on a real
// endorsement, with a modified report (as upstream's tests; a modified
// report no longer verifies, so the comparison is tested on its own).
func TestTCBMismatch(t *testing.T) {
	v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	milan := mustProduct(t, "Milan")
	e, err := v.endorsementFromDER(milan, readVec(t, "test-vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := snpev.ParseReport(readVec(t, "test-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.checkTCB(base); err != nil {
		t.Fatal(err)
	}
	fmc := uint8(1)
	tests := []struct {
		name string
		edit func(r *snpev.Report)
		msg  string
	}{
		{"boot loader", func(r *snpev.Report) { r.ReportedTCB.Bootloader++ }, "boot loader"},
		{"tee", func(r *snpev.Report) { r.ReportedTCB.TEE++ }, "TEE"},
		{"snp", func(r *snpev.Report) { r.ReportedTCB.SNP++ }, "SNP"},
		{"microcode", func(r *snpev.Report) { r.ReportedTCB.Microcode++ }, "microcode"},
		{"chip id", func(r *snpev.Report) { r.ChipID[5] ^= 1 }, "CHIP_ID"},
		{"fmc is not compared on Milan", func(r *snpev.Report) { r.ReportedTCB.FMC = &fmc }, ""},
		{"masked chip id is not compared", func(r *snpev.Report) { r.ChipID = [64]byte{} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := *base
			tc.edit(&r)
			err := e.checkTCB(&r)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrTCBMismatch) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("checkTCB = %v, want ErrTCBMismatch naming %s", err, tc.msg)
			}
		})
	}
}

// TestHWIDEncodings parses the hwID extension of the legacy (raw 64 bytes)
// and new (DER OCTET STRING) test certificates; neither is signed by AMD.
func TestHWIDEncodings(t *testing.T) {
	milan := mustProduct(t, "Milan")
	want, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
	for _, name := range []string{"test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"} {
		t.Run(name, func(t *testing.T) {
			c, err := parseCert(readVec(t, name))
			if err != nil {
				t.Fatal(err)
			}
			var e endorsement
			if err := e.readExtensions(c, milan); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.hwid, want) {
				t.Errorf("hwid %x", e.hwid)
			}
			v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
			if _, err := v.endorsementFromDER(milan, readVec(t, name)); !errors.Is(err, ErrCertChain) {
				t.Errorf("chain of a non-AMD VCEK: %v, want ErrCertChain", err)
			}
		})
	}
	genuine, err := parseCert(readVec(t, "test-vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	var e endorsement
	if err := e.readExtensions(genuine, milan); err != nil {
		t.Fatal(err)
	}
	rep, _ := snpev.ParseReport(readVec(t, "test-report.bin"))
	if !bytes.Equal(e.hwid, rep.ChipID[:]) {
		t.Errorf("hwid %x is not the report's chip id", e.hwid)
	}
	tests := []struct {
		name    string
		value   []byte
		product string
		ok      bool
	}{
		{"raw 64", bytes.Repeat([]byte{7}, 64), "Milan", true},
		{"octet string 64", append([]byte{0x04, 64}, bytes.Repeat([]byte{7}, 64)...), "Genoa", true},
		{"raw 8 on Turin", bytes.Repeat([]byte{7}, 8), "Turin", true},
		{"octet string 8 on Turin", append([]byte{0x04, 8}, bytes.Repeat([]byte{7}, 8)...), "Turin", true},
		{"raw 8 on Milan", bytes.Repeat([]byte{7}, 8), "Milan", false},
		{"octet string with trailing bytes", append([]byte{0x04, 8}, bytes.Repeat([]byte{7}, 9)...), "Turin", false},
		{"empty", nil, "Milan", false},
	}
	for _, tc := range tests {
		_, err := parseHWID(tc.value, mustProduct(t, tc.product))
		if (err == nil) != tc.ok {
			t.Errorf("%s: parseHWID error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestValidate checks the binding step on a parsed report (VMPL, report
// data, init-data), which real reports cannot be re-signed to exercise.
func TestValidate(t *testing.T) {
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	rd := ev.Report.ReportData
	tests := []struct {
		name string
		edit func(r *snpev.Report)
		exp  verifier.Expected
		want error
	}{
		{"ok", func(*snpev.Report) {}, verifier.Expected{ReportData: rd[:]}, nil},
		{"vmpl 1", func(r *snpev.Report) { r.VMPL = 1 }, verifier.Expected{}, ErrVMPL},
		{"vmpl 3", func(r *snpev.Report) { r.VMPL = 3 }, verifier.Expected{ReportData: rd[:]}, ErrVMPL},
		{"padded report data", func(r *snpev.Report) { r.ReportData = [64]byte{1, 2, 3} }, verifier.Expected{ReportData: []byte{1, 2, 3}}, nil},
		{"padded report data mismatch", func(r *snpev.Report) { r.ReportData = [64]byte{1, 2, 3, 4} }, verifier.Expected{ReportData: []byte{1, 2, 3}}, verifier.ErrReportDataMismatch},
		{"padded host data", func(r *snpev.Report) { r.HostData = [32]byte{9} }, verifier.Expected{InitDataDigest: []byte{9}}, nil},
		{"host data mismatch", func(r *snpev.Report) { r.HostData = [32]byte{9} }, verifier.Expected{InitDataDigest: []byte{8}}, verifier.ErrInitDataMismatch},
		{"long digest is truncated", func(r *snpev.Report) { r.HostData = [32]byte{9} }, verifier.Expected{InitDataDigest: append([]byte{9}, make([]byte, 40)...)}, nil},
		{"vmpl checked before report data", func(r *snpev.Report) { r.VMPL = 2 }, verifier.Expected{ReportData: []byte{0xff}}, ErrVMPL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ev.Report
			tc.edit(&r)
			err := validate(&r, tc.exp)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("validate = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDebugPolicyIsAClaim: upstream does not reject debug-enabled guests;
// the claim reports it and the policy decides.
func TestDebugPolicyIsAClaim(t *testing.T) {
	r := &snpev.Report{Policy: 0x30000 | policyDebugAllowed | policyMigrateMAAllowed | policySingleSocketRequire | 0x0105, PlatInfo: platTSMEEnabled}
	c := claims(r)
	want := map[string]any{
		"policy_debug_allowed": true, "policy_migrate_ma": true, "policy_single_socket": true, "policy_smt_allowed": true,
		"policy_abi_major": 1, "policy_abi_minor": 5, "platform_tsme_enabled": true, "platform_smt_enabled": false,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	if err := validate(r, verifier.Expected{}); err != nil {
		t.Errorf("debug policy rejected: %v", err)
	}
}

func TestVerifyReport(t *testing.T) {
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ev.Report.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	vcek := fakekds.GenoaVCEK()
	v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
	got, err := v.VerifyReport(context.Background(), raw, vcek)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, genoaClaims()) {
		t.Errorf("claims %v", got)
	}
	pemVCEK := []byte("-----BEGIN CERTIFICATE-----\n" + wrap64(vcek) + "-----END CERTIFICATE-----\n")
	if _, err := v.VerifyReport(context.Background(), raw, pemVCEK); err != nil {
		t.Fatalf("PEM VCEK: %v", err)
	}
	tampered := bytes.Clone(raw)
	tampered[0x090] ^= 1 // MEASUREMENT
	tests := []struct {
		name   string
		report []byte
		vcek   []byte
		want   error
	}{
		{"tampered", tampered, vcek, ErrReportSignature},
		{"truncated", raw[:snpev.ReportSize-1], vcek, verifier.ErrMalformedEvidence},
		{"empty", nil, vcek, verifier.ErrMalformedEvidence},
		{"reserved byte set", func() []byte { b := bytes.Clone(raw); b[0x4C] = 1; return b }(), vcek, verifier.ErrMalformedEvidence},
		{"signature reserved tail set", func() []byte { b := bytes.Clone(raw); b[snpev.ReportSize-1] = 1; return b }(), vcek, verifier.ErrMalformedEvidence},
		{"milan vcek", raw, fakekds.MilanVCEK(), ErrCertChain},
		{"garbage vcek", raw, []byte("nope"), ErrEndorsementKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.VerifyReport(context.Background(), tc.report, tc.vcek); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyReport = %v, want %v", err, tc.want)
			}
		})
	}
}

func wrap64(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s + "\n"
}

func TestBundledRoots(t *testing.T) {
	for _, name := range []string{"Milan", "Genoa", "Turin"} {
		p := mustProduct(t, name)
		for _, c := range []struct{ got, want string }{
			{p.ark.Subject.CommonName, "ARK-" + name},
			{p.ask.Subject.CommonName, "SEV-" + name},
			{p.asvk.Subject.CommonName, "SEV-VLEK-" + name},
		} {
			if c.got != c.want {
				t.Errorf("%s: CN %q, want %q", name, c.got, c.want)
			}
		}
	}
}
