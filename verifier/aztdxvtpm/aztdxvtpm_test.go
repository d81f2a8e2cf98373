package aztdxvtpm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/tdx"
	"github.com/go-trustee/go-trustee/verifier/tdx/fakepcs"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

var dir = testvectors.Path("trustee/verifier/")

var (
	challenge = []byte("challenge")
	// recorded is a time at which the quote's PCK certificate (valid from
	// 2023-09-13 to 2030-09-13) is valid.
	recorded = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
)

// upstream's expected PCR 0 of the az-tdx-vtpm vectors.
const pcr00 = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(dir + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parsedOnly stands in for DCAP in the tests of the other checks: no
// recorded Intel collateral exists for the vectors' platform (FMSPC
// 00806F050000), so their TD quote cannot be verified offline. It parses
// the quote and returns a few of verifier/tdx's claims; it verifies
// nothing and exists only in this test file.
type parsedOnly struct{ calls int }

func (p *parsedOnly) VerifyQuote(_ context.Context, quote []byte) (verifier.Claims, error) {
	p.calls++
	q, err := tdx.ParseQuote(quote)
	if err != nil {
		return nil, err
	}
	return verifier.Claims{
		"quote": map[string]any{
			"header": map[string]any{"tee_type": hex.EncodeToString(q.Header.TEEType[:])},
			"body":   map[string]any{"mr_td": hex.EncodeToString(q.Body.MRTD[:])},
		},
		"report_data": hex.EncodeToString(q.Body.ReportData[:]),
		"init_data":   hex.EncodeToString(q.Body.MRConfigID[:]),
		"tcb_status":  "UpToDate",
	}, nil
}

// failing is a DCAP step that fails, as when the collateral is unavailable.
type failing struct{}

var errDCAP = errors.New("collateral unavailable")

func (failing) VerifyQuote(context.Context, []byte) (verifier.Claims, error) { return nil, errDCAP }

func newVerifier(t testing.TB, q QuoteVerifier) *Verifier {
	t.Helper()
	v, err := New(Config{}, Options{Quote: q})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOfflineChecks runs every check but DCAP on upstream's vectors.
func TestOfflineChecks(t *testing.T) {
	for _, name := range []string{"az-tdx-vtpm/evidence-v0.json", "az-tdx-vtpm/evidence-v1.json"} {
		t.Run(name, func(t *testing.T) {
			p := &parsedOnly{}
			res, err := newVerifier(t, p).Evaluate(context.Background(), read(t, name), verifier.Expected{ReportData: challenge})
			if err != nil {
				t.Fatal(err)
			}
			c := res[0].Claims
			tpm := c["tpm"].(map[string]any)
			if c["report_data"] != "6368616c6c656e6765" || tpm["pcr00"] != pcr00 || len(tpm) != 24 || c["init_data"] != tpm["pcr08"] {
				t.Errorf("claims %v", c)
			}
			if c["tcb_status"] != "UpToDate" || c["quote"] == nil || p.calls != 1 || res[0].Class != verifier.ClassCPU {
				t.Errorf("quote verifier claims not kept: %v (%d calls)", c, p.calls)
			}
		})
	}
}

// TestDCAPFailsClosed: the DCAP step is a real dependency; when it fails,
// so does the evidence, after every offline check passed.
func TestDCAPFailsClosed(t *testing.T) {
	ev := read(t, "az-tdx-vtpm/evidence-v1.json")
	_, err := newVerifier(t, failing{}).Evaluate(context.Background(), ev, verifier.Expected{ReportData: challenge})
	if !errors.Is(err, errDCAP) || !strings.Contains(err.Error(), "verifying TD quote") {
		t.Fatalf("Evaluate = %v", err)
	}

	// The production tdx verifier with recorded Intel collateral of another
	// platform (fakepcs serves FMSPC 50806f000000): the PCK chain of the
	// quote verifies to the Intel root, then the TCB info for its FMSPC
	// cannot be had, and the evidence is refused.
	pcs := fakepcs.New()
	v, err := New(Config{}, Options{Getter: pcs, Now: func() time.Time { return recorded }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Evaluate(context.Background(), ev, verifier.Expected{ReportData: challenge})
	if !errors.Is(err, tdx.ErrCollateral) || errors.Is(err, tdx.ErrUntrustedRoot) {
		t.Fatalf("Evaluate with collateral of another FMSPC = %v, want tdx.ErrCollateral", err)
	}
	if pcs.Count(fakepcs.RouteTCBInfo) == 0 {
		t.Error("no TCB info was requested")
	}
}

func v1(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(read(t, "az-tdx-vtpm/evidence-v1.json"), &m); err != nil {
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

func edit(t testing.TB, field string, f func([]byte) []byte) []byte {
	m := v1(t)
	b, err := tpmquote.DecodeBase64URL(m[field].(string))
	if err != nil {
		t.Fatal(err)
	}
	m[field] = base64.RawURLEncoding.EncodeToString(f(b))
	return encode(t, m)
}

func TestErrors(t *testing.T) {
	exp := verifier.Expected{ReportData: challenge}
	tests := []struct {
		name     string
		evidence []byte
		exp      verifier.Expected
		want     error
		check    string
	}{
		{"no report data", read(t, "az-tdx-vtpm/evidence-v1.json"), verifier.Expected{}, ErrNoReportData, "report data"},
		{"nonce mismatch", read(t, "az-tdx-vtpm/evidence-v1.json"), verifier.Expected{ReportData: []byte("egnellahc")}, verifier.ErrReportDataMismatch, "nonce"},
		{"init-data mismatch", read(t, "az-tdx-vtpm/evidence-v1.json"), verifier.Expected{ReportData: challenge, InitDataDigest: make([]byte, 32)}, verifier.ErrInitDataMismatch, "PCR8"},
		{"PCR changed", func() []byte {
			m := v1(t)
			m["tpm_quote"].(map[string]any)["pcrs"].([]any)[11] = strings.Repeat("22", 32)
			return encode(t, m)
		}(), exp, tpmquote.ErrPCRDigest, "PCRs"},
		{"HCL variable data tampered (upstream 0x0880)", edit(t, "hcl_report", func(b []byte) []byte { b[0x0880]++; return b }), exp, tpmquote.ErrVarDataBinding, "TD quote report data"},
		{"HCL AK tampered", edit(t, "hcl_report", func(b []byte) []byte { b[0x0540] = 0; return b }), exp, tpmquote.ErrMalformedHCLReport, "AKpub"},
		{"HCL of an SNP VM", func() []byte {
			m := v1(t)
			m["hcl_report"] = base64.RawURLEncoding.EncodeToString(read(t, "az-snp-vtpm/hcl-report.bin"))
			return encode(t, m)
		}(), exp, verifier.ErrMalformedEvidence, "SNP"},
		{"TD quote report data tampered", edit(t, "td_quote", func(b []byte) []byte { b[48+520] ^= 1; return b }), exp, tpmquote.ErrVarDataBinding, "TD quote report data"},
		{"TD quote truncated", edit(t, "td_quote", func(b []byte) []byte { return b[:600] }), exp, verifier.ErrMalformedEvidence, "TD quote"},
		{"SGX quote", func() []byte {
			m := v1(t)
			m["td_quote"] = base64.RawURLEncoding.EncodeToString(read(t, "occlum_quote.dat"))
			return encode(t, m)
		}(), exp, verifier.ErrMalformedEvidence, "TD quote"},
		{"v2: user-data is not the report data", func() []byte { m := v1(t); m["version"] = 2; return encode(t, m) }(), exp, verifier.ErrReportDataMismatch, "user-data"},
		{"td_quote missing", func() []byte { m := v1(t); delete(m, "td_quote"); return encode(t, m) }(), exp, verifier.ErrMalformedEvidence, "td_quote"},
		{"v0 hcl_report as a string", []byte(`{"tpm_quote":{"signature":[],"message":[],"pcrs":[]},"hcl_report":"AA","td_quote":[]}`), exp, verifier.ErrMalformedEvidence, "hcl_report"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &parsedOnly{}
			_, err := newVerifier(t, p).Evaluate(context.Background(), tc.evidence, tc.exp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.check) {
				t.Errorf("error %q does not name the check %q", err, tc.check)
			}
			if p.calls != 0 {
				t.Errorf("DCAP ran after a failed offline check")
			}
		})
	}
}

// TestEveryQuoteByteFlipFails flips every byte of the vTPM quote's message
// and signature of evidence-v0.json (byte arrays).
func TestEveryQuoteByteFlipFails(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(read(t, "az-tdx-vtpm/evidence-v0.json"), &m); err != nil {
		t.Fatal(err)
	}
	q := m["tpm_quote"].(map[string]any)
	v := newVerifier(t, &parsedOnly{})
	for _, field := range []string{"message", "signature"} {
		orig := q[field].([]any)
		for i := range orig {
			b := append([]any(nil), orig...)
			b[i] = float64(int(b[i].(float64)) ^ 1)
			q[field] = b
			if _, err := v.Evaluate(context.Background(), encode(t, m), verifier.Expected{ReportData: challenge}); !errors.Is(err, tpmquote.ErrSignature) {
				t.Fatalf("%s byte %d flipped: %v", field, i, err)
			}
		}
		q[field] = orig
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(map[string]any{"dcap_verifier": map[string]any{"collateral_service": "https://pccs.example:8081/sgx/certification/v4/"}})
	if err != nil || c.DCAP.CollateralService != "https://pccs.example:8081/sgx/certification/v4/" {
		t.Fatalf("ParseConfig = %+v, %v", c, err)
	}
	if _, err := ParseConfig(map[string]any{"dcap_verifier": "x"}); !errors.Is(err, tdx.ErrInvalidConfig) {
		t.Errorf("bad section: %v", err)
	}
	if _, err := New(Config{DCAP: tdx.Config{CollateralService: "ftp://x"}}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad collateral service: %v", err)
	}
}

// TestRESTFailsClosed posts the evidence to the Attestation Service's
// POST /attestation with the production DCAP step and recorded collateral
// of another platform: no token.
func TestRESTFailsClosed(t *testing.T) {
	v, err := New(Config{}, Options{Getter: fakepcs.New(), Now: func() time.Time { return recorded }})
	if err != nil {
		t.Fatal(err)
	}
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeAzTdxVtpm, v)
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: func() time.Time { return recorded }})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"verification_requests": []map[string]any{{
			"tee":          "az-tdx-vtpm",
			"evidence":     base64.RawURLEncoding.EncodeToString(read(t, "az-tdx-vtpm/evidence-v1.json")),
			"runtime_data": map[string]any{"raw": base64.RawURLEncoding.EncodeToString(challenge)},
		}},
		"policy_ids": []string{},
	})
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/attestation", bytes.NewReader(body)))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "verifying TD quote") {
		t.Fatalf("POST /attestation: %d %s", rec.Code, rec.Body)
	}
}

func FuzzParseEvidence(f *testing.F) {
	f.Add(read(f, "az-tdx-vtpm/evidence-v1.json"))
	f.Add(read(f, "az-tdx-vtpm/evidence-v0.json"))
	f.Add([]byte(`{"version":2,"tpm_quote":{"signature":"","message":"","pcrs":[]},"hcl_report":"","td_quote":""}`))
	f.Fuzz(func(t *testing.T, ev []byte) {
		if _, err := ParseEvidence(ev); err != nil && !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Fatalf("unexpected error class: %v", err)
		}
		res, err := newVerifier(t, &parsedOnly{}).Evaluate(context.Background(), ev, verifier.Expected{ReportData: challenge})
		if err != nil {
			return
		}
		if res[0].Claims["report_data"] != hex.EncodeToString(challenge) {
			t.Fatalf("accepted report data %v", res[0].Claims["report_data"])
		}
	})
}
