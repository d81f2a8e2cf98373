package snp

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/verify/testdata"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol/evidence"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

func realReports(t testing.TB) map[string][]byte {
	t.Helper()
	ev, err := ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	genoa, err := ev.Report.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"trustee test-report.bin (v2 Milan)":      readVec(t, "test-report.bin"),
		"trustee test-vlek-report.bin (v3 Milan)": readVec(t, "test-vlek-report.bin"),
		"go-sev-guest attestation.bin (v2 Milan)": testdata.AttestationBytes,
		"trustee e2e evidence (v3 Genoa)":         genoa,
	}
}

// TestRoundTrip: binary → Report → binary and binary → evidence JSON →
// Report → binary are the identity on every real report.
func TestRoundTrip(t *testing.T) {
	for name, raw := range realReports(t) {
		t.Run(name, func(t *testing.T) {
			rep, err := ParseReport(raw)
			if err != nil {
				t.Fatal(err)
			}
			back, err := rep.MarshalBinary()
			if err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("binary round trip differs (%v)", err)
			}
			chain := []CertEntry{{Type: CertVCEK, Data: []byte{1, 2, 3}}, {Type: CertOther, GUID: "0f0e0d0c-0b0a-0908-0706-050403020100", Data: nil}}
			js, err := MarshalEvidence(raw, chain)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ParseEvidence(js)
			if err != nil {
				t.Fatal(err)
			}
			back, err = ev.Report.MarshalBinary()
			if err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("JSON round trip differs (%v)", err)
			}
			if !reflect.DeepEqual(ev.Report, *rep) {
				t.Errorf("report differs after JSON")
			}
			if len(ev.CertChain) != 2 || ev.CertChain[0].Type != CertVCEK || !bytes.Equal(ev.CertChain[0].Data, []byte{1, 2, 3}) ||
				ev.CertChain[1].Type != CertOther || ev.CertChain[1].GUID != chain[1].GUID || len(ev.CertChain[1].Data) != 0 {
				t.Errorf("cert_chain %+v", ev.CertChain)
			}
			// Pretty-printed JSON is the same evidence.
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, js, "", "  "); err != nil {
				t.Fatal(err)
			}
			ev2, err := ParseEvidence(pretty.Bytes())
			if err != nil || !reflect.DeepEqual(ev2, ev) {
				t.Errorf("indented evidence differs: %v", err)
			}
		})
	}
}

// TestSerdeForm checks our JSON against upstream's recorded evidence: it is
// the same bytes, but for the two mitigation vector members the newer sev
// crate adds (null before report version 5).
func TestSerdeForm(t *testing.T) {
	upstream := bytes.TrimSpace(fakekds.GenoaEvidence())
	ev, err := ParseEvidence(upstream)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ours, []byte(`"launch_mit_vector":null,"current_mit_vector":null,`)) {
		t.Fatalf("no mitigation vectors in %s", ours[:200])
	}
	ours = bytes.Replace(ours, []byte(`"launch_mit_vector":null,"current_mit_vector":null,`), nil, 1)
	if !bytes.Equal(ours, upstream) {
		t.Errorf("serde form differs:\nours     %s\nupstream %s", ours[:300], upstream[:300])
	}
}

func TestSyntheticReports(t *testing.T) {
	ev, err := ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	fam, mod, fmc := uint8(0x1A), uint8(0x11), uint8(9)
	lmv, cmv := uint64(0x0102030405060708), uint64(0xfffffffffffffffe)
	turin := ev.Report
	turin.Version = 5
	turin.CPUIDFamID, turin.CPUIDModID = &fam, &mod
	turin.LaunchMitVector, turin.CurrentMitVector = &lmv, &cmv
	for _, tcb := range []*TCBVersion{&turin.CurrentTCB, &turin.ReportedTCB, &turin.CommittedTCB, &turin.LaunchTCB} {
		f := fmc
		tcb.FMC = &f
	}
	raw, err := turin.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if raw[offReportedTCB] != fmc || raw[offLaunchMitVector] != 8 || raw[offCurMitVector+7] != 0xff {
		t.Errorf("Turin v5 layout: tcb %x, mit %x", raw[offReportedTCB:offReportedTCB+8], raw[offLaunchMitVector:offCurMitVector+8])
	}
	back, err := ParseReport(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, turin) {
		t.Errorf("Turin v5 round trip differs")
	}
	js, err := back.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"reported_tcb":{"fmc":9,"bootloader":10,"tee":0,"snp":23,"microcode":25}`)) ||
		!bytes.Contains(js, []byte(`"launch_mit_vector":72623859790382856,"current_mit_vector":18446744073709551614`)) {
		t.Errorf("Turin JSON %s", js)
	}

	tests := []struct {
		name string
		edit func(r *Report)
	}{
		{"version 1", func(r *Report) { r.Version = 1 }},
		{"fmc on Genoa", func(r *Report) { f := uint8(1); r.LaunchTCB.FMC = &f }},
		{"mitigation vector in v4", func(r *Report) { r.Version = 4; r.CurrentMitVector = &lmv }},
		{"CPUID in v2", func(r *Report) { r.Version = 2 }},
		{"unknown family", func(r *Report) { f := uint8(0x17); r.CPUIDFamID = &f }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ev.Report
			tc.edit(&r)
			if _, err := r.MarshalBinary(); err == nil {
				t.Fatal("MarshalBinary accepted a report the binary form cannot carry")
			}
			if _, err := r.MarshalJSON(); err == nil {
				t.Fatal("MarshalJSON accepted a report the binary form cannot carry")
			}
		})
	}
}

func TestParseReportErrors(t *testing.T) {
	raw := readVec(t, "test-vlek-report.bin")
	set := func(off int, vals ...byte) []byte {
		b := bytes.Clone(raw)
		copy(b[off:], vals)
		return b
	}
	v2 := readVec(t, "test-report.bin")
	masked := bytes.Clone(v2)
	clear(masked[offChipID : offChipID+64])
	tests := []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"empty", nil, evidence.ErrMalformed, "0 bytes"},
		{"truncated", raw[:ReportSize-1], evidence.ErrMalformed, "1183 bytes"},
		{"too long", append(bytes.Clone(raw), 0), evidence.ErrMalformed, "1185 bytes"},
		{"version 0", set(0, 0), ErrUnsupportedReport, ""},
		{"version 1", set(0, 1), ErrUnsupportedReport, ""},
		{"reserved after key_info", set(0x4C, 1), evidence.ErrMalformed, "byte 0x04c"},
		{"reserved after CPUID", set(0x18B, 1), evidence.ErrMalformed, "byte 0x18b"},
		{"reserved TCB byte", set(offReportedTCB+3, 1), evidence.ErrMalformed, "byte 0x183"},
		{"reserved after current version", set(0x1EB, 1), evidence.ErrMalformed, "byte 0x1eb"},
		{"mitigation vector in v3", set(offLaunchMitVector, 1), evidence.ErrMalformed, "byte 0x1f8"},
		{"signature tail", set(ReportSize-1, 1), evidence.ErrMalformed, "byte 0x49f"},
		{"unknown CPU", set(offCPUIDFamID, 0x17), ErrUnsupportedReport, "family 0x17"},
		{"v2 with a masked chip id", masked, ErrUnsupportedReport, "masked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReport(tc.b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseReport = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestParseEvidenceShapes(t *testing.T) {
	genoa := string(fakekds.GenoaEvidence())
	body := genoa[strings.Index(genoa, `{"version"`):strings.Index(genoa, `,"cert_chain"`)]
	tests := []struct {
		name      string
		json      string
		ok        bool
		nilChain  bool
		chainLen  int
		firstType string
	}{
		{"null cert_chain", `{"attestation_report":` + body + `,"cert_chain":null}`, true, true, 0, ""},
		{"no cert_chain", `{"attestation_report":` + body + `}`, true, true, 0, ""},
		{"empty cert_chain", `{"attestation_report":` + body + `,"cert_chain":[]}`, true, false, 0, ""},
		{"unknown members are ignored", `{"x":{"y":[1,{}]},"attestation_report":` + body + `,"cert_chain":[{"cert_type":"ARK","data":[],"z":1}]}`, true, false, 1, CertARK},
		{"OTHER entry", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":{"OTHER":"C0B406A4A80349529743 3FB6014CD0AE"},"data":[1]}]}`, false, false, 0, ""},
		{"OTHER braced uuid", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":{"OTHER":"{c0b406a4-a803-4952-9743-3fb6014cd0ae}"},"data":[1]}]}`, true, false, 1, CertOther},
		{"OTHER as a string", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":"OTHER","data":[1]}]}`, false, false, 0, ""},
		{"lowercase cert type", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":"vcek","data":[1]}]}`, false, false, 0, ""},
		{"data as base64", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":"VCEK","data":"AQID"}]}`, false, false, 0, ""},
		{"missing data", `{"attestation_report":` + body + `,"cert_chain":[{"cert_type":"VCEK"}]}`, false, false, 0, ""},
		{"cert_chain object", `{"attestation_report":` + body + `,"cert_chain":{}}`, false, false, 0, ""},
		{"too many entries", `{"attestation_report":` + body + `,"cert_chain":[` + strings.Repeat(`{"cert_type":"CRL","data":[]},`, limits.MaxCertChain) + `{"cert_type":"CRL","data":[]}]}`, false, false, 0, ""},
		{"trailing document", `{"attestation_report":` + body + `} {}`, false, false, 0, ""},
		{"missing report", `{"cert_chain":null}`, false, false, 0, ""},
		{"null report", `{"attestation_report":null}`, false, false, 0, ""},
		{"duplicate report", `{"attestation_report":` + body + `,"attestation_report":` + body + `}`, false, false, 0, ""},
		{"fmc null accepted", strings.Replace(`{"attestation_report":`+body+`}`, `"current_tcb":{"fmc":null,`, `"current_tcb":{`, 1), true, true, 0, ""},
		{"nested byte array", strings.Replace(`{"attestation_report":`+body+`}`, `"host_data":[0,`, `"host_data":[[0],`, 1), false, false, 0, ""},
		{"byte array too long", strings.Replace(`{"attestation_report":`+body+`}`, `"host_data":[0,`, `"host_data":[0,0,`, 1), false, false, 0, ""},
		{"u32 overflow", strings.Replace(`{"attestation_report":`+body+`}`, `"vmpl":0`, `"vmpl":4294967296`, 1), false, false, 0, ""},
		{"u64 max", strings.Replace(`{"attestation_report":`+body+`}`, `"plat_info":37`, `"plat_info":18446744073709551615`, 1), true, true, 0, ""},
		{"escaped member name", strings.Replace(`{"attestation_report":`+body+`}`, `"version":3`, `"\u0076ersion":3`, 1), true, true, 0, ""},
		{"brackets inside an unknown string", `{"x":"}]{[\"","attestation_report":` + body + `,"y":["]"]}`, true, true, 0, ""},
		{"exponent", strings.Replace(`{"attestation_report":`+body+`}`, `"vmpl":0`, `"vmpl":0e0`, 1), false, false, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseEvidence([]byte(tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseEvidence error %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, evidence.ErrMalformed) {
					t.Fatalf("error %v does not wrap ErrMalformedEvidence", err)
				}
				return
			}
			if (ev.CertChain == nil) != tc.nilChain || len(ev.CertChain) != tc.chainLen {
				t.Fatalf("cert_chain %#v", ev.CertChain)
			}
			if tc.chainLen > 0 && ev.CertChain[0].Type != tc.firstType {
				t.Errorf("type %s", ev.CertChain[0].Type)
			}
			if tc.firstType == CertOther && ev.CertChain[0].GUID != "c0b406a4-a803-4952-9743-3fb6014cd0ae" {
				t.Errorf("GUID %s", ev.CertChain[0].GUID)
			}
		})
	}
}

func FuzzParseEvidence(f *testing.F) {
	f.Add(fakekds.GenoaEvidence())
	js, _ := MarshalEvidence(readVec(f, "test-vlek-report.bin"), []CertEntry{{Type: CertVLEK, Data: readVec(f, "test-vlek.der")}})
	f.Add(js)
	f.Add([]byte(`{"attestation_report":{"version":3},"cert_chain":[{"cert_type":{"OTHER":"c0b406a4-a803-4952-9743-3fb6014cd0ae"},"data":[1,2]}]}`))
	f.Add([]byte(`{"attestation_report":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			if !errors.Is(err, evidence.ErrMalformed) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		// Whatever parses and encodes comes back the same.
		js, err := ev.MarshalJSON()
		if err != nil {
			return
		}
		ev2, err := ParseEvidence(js)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("evidence changed through JSON")
		}
		raw, err := ev.Report.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalJSON accepted what MarshalBinary refuses: %v", err)
		}
		rep, err := ParseReport(raw)
		if err != nil {
			t.Fatalf("ParseReport of an encoded report: %v", err)
		}
		if back, _ := rep.MarshalBinary(); !bytes.Equal(back, raw) {
			t.Fatal("binary changed")
		}
	})
}

func FuzzParseReport(f *testing.F) {
	for _, raw := range realReports(f) {
		f.Add(raw)
	}
	f.Add(make([]byte, ReportSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ParseReport(b)
		if err != nil {
			if !errors.Is(err, evidence.ErrMalformed) && !errors.Is(err, ErrUnsupportedReport) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		back, err := rep.MarshalBinary()
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("round trip: %v", err)
		}
		js, err := MarshalEvidence(b, nil)
		if err != nil {
			t.Fatalf("MarshalEvidence: %v", err)
		}
		ev, err := ParseEvidence(js)
		if err != nil {
			t.Fatalf("ParseEvidence: %v", err)
		}
		if back, err := ev.Report.MarshalBinary(); err != nil || !bytes.Equal(back, b) {
			t.Fatalf("JSON round trip: %v", err)
		}
	})
}

func readVec(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testvectors.Path("trustee/verifier/snp/" + name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
