package azsnpvtpm

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

var dir = testvectors.Path("trustee/verifier/az-snp-vtpm/")

// recorded is a time at which the VCEK of evidence-v0/v1.json (valid from
// 2025-01-28 to 2032-01-28) is valid.
var recorded = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

var challenge = []byte("challenge")

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(dir + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newVerifier(t testing.TB, now time.Time) *Verifier {
	t.Helper()
	v, err := New(Config{}, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantReportClaims are the SNP claims of the evidence-v0/v1.json report,
// formatted as upstream's parse_tee_evidence_az.
var wantReportClaims = verifier.Claims{
	"policy_abi_major":        "0",
	"policy_abi_minor":        "31",
	"policy_smt_allowed":      "true",
	"policy_migrate_ma":       "false",
	"policy_debug_allowed":    "false",
	"policy_single_socket":    "false",
	"reported_tcb_bootloader": "4",
	"reported_tcb_tee":        "0",
	"reported_tcb_snp":        "24",
	"reported_tcb_microcode":  "219",
	"platform_tsme_enabled":   "false",
	"platform_smt_enabled":    "true",
	"measurement":             "agY76d159jcchC5ID43DtccllhNE5XEw6Ixa30no9/bHm3Wl63f8dplZ9K6y+UAe",
}

func TestUpstreamEvidence(t *testing.T) {
	for _, name := range []string{"evidence-v0.json", "evidence-v1.json"} {
		t.Run(name, func(t *testing.T) {
			res, err := newVerifier(t, recorded).Evaluate(context.Background(), read(t, name), verifier.Expected{ReportData: challenge})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].Class != verifier.ClassCPU {
				t.Fatalf("results %+v", res)
			}
			c := res[0].Claims
			if c["report_data"] != "6368616c6c656e6765" {
				t.Errorf("report_data %v", c["report_data"])
			}
			tpm := c["tpm"].(map[string]any)
			if tpm["pcr00"] != "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced" || len(tpm) != 24 {
				t.Errorf("tpm.pcr00 %v (%d PCRs)", tpm["pcr00"], len(tpm))
			}
			if c["init_data"] != tpm["pcr08"] {
				t.Errorf("init_data %v is not PCR 8 %v", c["init_data"], tpm["pcr08"])
			}
			rest := verifier.Claims{}
			for k, v := range c {
				if k != "tpm" && k != "init_data" && k != "report_data" {
					rest[k] = v
				}
			}
			if !reflect.DeepEqual(rest, wantReportClaims) {
				t.Errorf("report claims\n got %v\nwant %v", rest, wantReportClaims)
			}
		})
	}
}

func TestParseEvidenceVersions(t *testing.T) {
	v0, v1 := read(t, "evidence-v0.json"), read(t, "evidence-v1.json")
	e0, err := ParseEvidence(v0)
	if err != nil {
		t.Fatal(err)
	}
	e1, err := ParseEvidence(v1)
	if err != nil {
		t.Fatal(err)
	}
	// Two quotes of the same VM: same PCRs, same VCEK.
	if e0.Version != 0 || e1.Version != 1 || !reflect.DeepEqual(e0.Quote.PCRs, e1.Quote.PCRs) || string(e0.VCEK) != string(e1.VCEK) ||
		len(e0.HCLReport) != 2600 || len(e1.HCLReport) != 2600 || len(e0.Quote.Signature) != 256 {
		t.Fatalf("v0 %+v\nv1 %+v", e0, e1)
	}
}

// v1 returns evidence-v1.json as a map, for edits.
func v1(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(read(t, "evidence-v1.json"), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encode(t testing.TB, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64url(t testing.TB, s string) []byte {
	t.Helper()
	b, err := tpmquote.DecodeBase64URL(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editHCL returns evidence-v1.json with its HCL report edited.
func editHCL(t testing.TB, f func([]byte) []byte) []byte {
	m := v1(t)
	m["hcl_report"] = base64.RawURLEncoding.EncodeToString(f(b64url(t, m["hcl_report"].(string))))
	return encode(t, m)
}

func editQuote(t testing.TB, f func(q map[string]any)) []byte {
	m := v1(t)
	f(m["tpm_quote"].(map[string]any))
	return encode(t, m)
}

func pemToDER(t testing.TB, name string) string {
	blk, _ := pem.Decode(read(t, name))
	return base64.RawURLEncoding.EncodeToString(blk.Bytes)
}

func TestErrors(t *testing.T) {
	exp := verifier.Expected{ReportData: challenge}
	varData := 0x4d4
	otherInit := make([]byte, 32)
	v0WithVersion := func(v string) []byte {
		return []byte(`{"version":` + v + `,` + strings.TrimPrefix(strings.TrimSpace(string(read(t, "evidence-v0.json"))), "{"))
	}
	tdxHCL := base64.RawURLEncoding.EncodeToString(func() []byte {
		b, err := os.ReadFile(testvectors.Path("trustee/verifier/az-tdx-vtpm/hcl-report.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}())
	tests := []struct {
		name     string
		evidence []byte
		exp      verifier.Expected
		now      time.Time
		want     []error // any of
		check    string
	}{
		{"no report data", read(t, "evidence-v1.json"), verifier.Expected{}, recorded, []error{ErrNoReportData}, "report data"},
		{"nonce mismatch", read(t, "evidence-v1.json"), verifier.Expected{ReportData: []byte("egnellahc")}, recorded, []error{verifier.ErrReportDataMismatch}, "nonce"},
		{"nonce padded", read(t, "evidence-v1.json"), verifier.Expected{ReportData: append([]byte("challenge"), 0)}, recorded, []error{verifier.ErrReportDataMismatch}, "nonce"},
		{"init-data mismatch", read(t, "evidence-v1.json"), verifier.Expected{ReportData: challenge, InitDataDigest: otherInit}, recorded, []error{verifier.ErrInitDataMismatch}, "PCR8"},
		{"PCR changed", editQuote(t, func(q map[string]any) { q["pcrs"].([]any)[11] = strings.Repeat("11", 32) }), exp, recorded, []error{tpmquote.ErrPCRDigest}, "PCRs"},
		{"PCR dropped", editQuote(t, func(q map[string]any) { q["pcrs"] = q["pcrs"].([]any)[:23] }), exp, recorded, []error{tpmquote.ErrPCRDigest}, "PCRs"},
		{"quote signature changed", editQuote(t, func(q map[string]any) { q["signature"] = "00" + q["signature"].(string)[2:] }), exp, recorded, []error{tpmquote.ErrSignature}, "AKpub"},
		{"quote message changed", editQuote(t, func(q map[string]any) {
			q["message"] = q["message"].(string)[:100] + "00" + q["message"].(string)[102:]
		}), exp, recorded, []error{tpmquote.ErrSignature}, "AKpub"},
		{"quote message truncated", editQuote(t, func(q map[string]any) { q["message"] = q["message"].(string)[:20] }), exp, recorded, []error{tpmquote.ErrSignature}, "AKpub"},
		{"quote signature not hex", editQuote(t, func(q map[string]any) { q["signature"] = "zz" }), exp, recorded, []error{verifier.ErrMalformedEvidence}, "signature"},
		{"HCL var data tampered", editHCL(t, func(b []byte) []byte {
			i := strings.Index(string(b), `"console-enabled":true`)
			copy(b[i:], `"console-enabled":1   `)
			return b
		}), exp, recorded, []error{tpmquote.ErrVarDataBinding}, "SNP report data"},
		{"HCL AK tampered", editHCL(t, func(b []byte) []byte { b[0x0540] = 0; return b }), exp, recorded, []error{tpmquote.ErrMalformedHCLReport}, "AKpub"},
		{"HCL var data size", editHCL(t, func(b []byte) []byte { b[varData-4]++; return b }), exp, recorded, []error{verifier.ErrMalformedEvidence}, ""},
		{"HCL truncated", editHCL(t, func(b []byte) []byte { return b[:1000] }), exp, recorded, []error{tpmquote.ErrMalformedHCLReport}, "size"},
		{"HCL of a TDX VM", func() []byte { m := v1(t); m["hcl_report"] = tdxHCL; return encode(t, m) }(), exp, recorded, []error{verifier.ErrMalformedEvidence}, "TDX"},
		{"SNP measurement tampered", editHCL(t, func(b []byte) []byte { b[0x20+0x90] ^= 1; return b }), exp, recorded, []error{snp.ErrReportSignature}, "SNP report"},
		{"SNP reported TCB tampered (upstream 0x01a6)", editHCL(t, func(b []byte) []byte { b[0x01a6] = 0; return b }), exp, recorded, []error{snp.ErrReportSignature, snp.ErrTCBMismatch}, "SNP report"},
		{"SNP report signature tampered", editHCL(t, func(b []byte) []byte { b[0x20+0x2a0] ^= 1; return b }), exp, recorded, []error{snp.ErrReportSignature}, "SNP report"},
		{"VCEK of another chip (vcek.pem)", func() []byte { m := v1(t); m["vcek"] = pemToDER(t, "vcek.pem"); return encode(t, m) }(), exp, recorded, []error{snp.ErrReportSignature, snp.ErrTCBMismatch}, "SNP report"},
		{"Genoa VCEK for a Milan report", func() []byte { m := v1(t); m["vcek"] = pemToDER(t, "vcek-genoa.pem"); return encode(t, m) }(), exp, recorded, []error{snp.ErrCertChain}, "SNP report"},
		{"VCEK not yet valid", read(t, "evidence-v1.json"), exp, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), []error{snp.ErrCertValidity}, "SNP report"},
		{"VCEK expired", read(t, "evidence-v0.json"), exp, time.Date(2033, 1, 1, 0, 0, 0, 0, time.UTC), []error{snp.ErrCertValidity}, "SNP report"},
		{"VCEK not a certificate", func() []byte { m := v1(t); m["vcek"] = "AAAA"; return encode(t, m) }(), exp, recorded, []error{snp.ErrEndorsementKey}, "SNP report"},
		{"v0 VCEK not PEM", []byte(strings.Replace(string(read(t, "evidence-v0.json")), "BEGIN CERTIFICATE", "BEGIN NOTHING", 1)), exp, recorded, []error{verifier.ErrMalformedEvidence}, "PEM"},
		{"v2: user-data is not the report data", func() []byte { m := v1(t); m["version"] = 2; return encode(t, m) }(), exp, recorded, []error{verifier.ErrReportDataMismatch}, "user-data"},
		{"version 0 is not a version", func() []byte { m := v1(t); m["version"] = 0; return encode(t, m) }(), exp, recorded, []error{verifier.ErrMalformedEvidence}, "version"},
		{"version as a string", func() []byte { m := v1(t); m["version"] = "1"; return encode(t, m) }(), exp, recorded, []error{verifier.ErrMalformedEvidence}, "version"},
		{"v1 without vcek", func() []byte { m := v1(t); delete(m, "vcek"); return encode(t, m) }(), exp, recorded, []error{verifier.ErrMalformedEvidence}, "vcek"},
		{"hcl_report not base64url", func() []byte { m := v1(t); m["hcl_report"] = "+/+/"; return encode(t, m) }(), exp, recorded, []error{verifier.ErrMalformedEvidence}, "hcl_report"},
		{"v0 report byte out of range", []byte(`{"quote":{"signature":[],"message":[],"pcrs":[]},"report":[256],"vcek":""}`), exp, recorded, []error{verifier.ErrMalformedEvidence}, "report"},
		{"not an object", []byte(`[1]`), exp, recorded, []error{verifier.ErrMalformedEvidence}, "object"},
		{"v0 members and version 5 are version 0", v0WithVersion("5"), verifier.Expected{ReportData: []byte("x")}, recorded, []error{verifier.ErrReportDataMismatch}, "nonce"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t, tc.now).Evaluate(context.Background(), tc.evidence, tc.exp)
			ok := false
			for _, w := range tc.want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Fatalf("Evaluate = %v, want one of %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.check) {
				t.Errorf("error %q does not name the check %q", err, tc.check)
			}
		})
	}
	// Untagged as upstream: version 1 with the members of version 0 is
	// read as version 0 when it is not valid version 1.
	if _, err := newVerifier(t, recorded).Evaluate(context.Background(), v0WithVersion("1"), exp); err != nil {
		t.Errorf("v0 evidence with \"version\":1: %v", err)
	}
}

// TestEveryQuoteByteFlipFails flips every byte of the vTPM quote's message
// and signature in evidence-v1.json.
func TestEveryQuoteByteFlipFails(t *testing.T) {
	v := newVerifier(t, recorded)
	m := v1(t)
	q := m["tpm_quote"].(map[string]any)
	for _, field := range []string{"message", "signature"} {
		orig, _ := hex.DecodeString(q[field].(string))
		for i := range orig {
			b := append([]byte(nil), orig...)
			b[i] ^= 0x01
			q[field] = hex.EncodeToString(b)
			if _, err := v.Evaluate(context.Background(), encode(t, m), verifier.Expected{ReportData: challenge}); !errors.Is(err, tpmquote.ErrSignature) {
				t.Fatalf("%s byte %d flipped: %v", field, i, err)
			}
		}
		q[field] = hex.EncodeToString(orig)
	}
}

// TestComponentVectors: hcl-report.bin (SNP report version 2) with
// tpm-quote-v1.json passes the vTPM and variable data checks, then the
// report is refused as too old (version 2 names no processor generation;
// upstream fails it the same way).
func TestComponentVectors(t *testing.T) {
	var q map[string]any
	if err := json.Unmarshal(read(t, "tpm-quote-v1.json"), &q); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{
		"version":    1,
		"tpm_quote":  q,
		"hcl_report": base64.URLEncoding.EncodeToString(read(t, "hcl-report.bin")),
		"vcek":       pemToDER(t, "vcek.pem"),
	}
	_, err := newVerifier(t, recorded).Evaluate(context.Background(), encode(t, m), verifier.Expected{ReportData: challenge})
	if !errors.Is(err, snp.ErrUnsupportedReport) {
		t.Fatalf("Evaluate = %v, want snp.ErrUnsupportedReport", err)
	}
}

func FuzzParseEvidence(f *testing.F) {
	f.Add(read(f, "evidence-v1.json"))
	f.Add(read(f, "evidence-v0.json"))
	f.Add([]byte(`{"version":2,"tpm_quote":{"signature":"","message":"","pcrs":[]},"hcl_report":"","vcek":""}`))
	v := newVerifier(f, recorded)
	f.Fuzz(func(t *testing.T, ev []byte) {
		res, err := v.Evaluate(context.Background(), ev, verifier.Expected{ReportData: challenge})
		if err != nil {
			return
		}
		// Accepted evidence is bound to the report data and carries the
		// recorded report's claims.
		if res[0].Claims["report_data"] != hex.EncodeToString(challenge) || res[0].Claims["measurement"] != wantReportClaims["measurement"] {
			t.Fatalf("accepted claims %v", res[0].Claims)
		}
	})
}
