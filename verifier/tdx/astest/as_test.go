package astest_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
)

var testdataDir = testvectors.Path("trustee/verifier")

// reportData of tdx_quote_4.dat.
const quote4ReportData = "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429"

func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

func newVerifier(t testing.TB, pcs *fakepcs.Server, now time.Time) *tdx.Verifier {
	t.Helper()
	v, err := tdx.New(tdx.Config{}, tdx.Options{Getter: pcs, Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func evidence(quote []byte) []byte {
	b, _ := json.Marshal(map[string]any{"quote": base64.StdEncoding.EncodeToString(quote), "cc_eventlog": nil})
	return b
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// earPayload decodes the claims of an EAR token (its signature is the
// Attestation Service's own concern, tested there).
func earPayload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func registerRVs(t *testing.T, svc *as.Service, rvs map[string]any) {
	t.Helper()
	payload, err := json.Marshal(rvs)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload)})
	if err := svc.RVPS().Register(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// TestAttestationService runs tdx_quote_4.dat, verified against the
// recorded collateral, through the Attestation Service's REST API with the
// default CPU policy.
func TestAttestationService(t *testing.T) {
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt())
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeTdx, v)
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: fixedNow(fakepcs.ValidAt())})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	quote := vector(t, "tdx_quote_4.dat")
	post := func(t *testing.T, rd []byte) (int, string) {
		t.Helper()
		body := `{"verification_requests":[{"tee":"tdx","evidence":"` + b64url(evidence(quote)) +
			`","runtime_data":{"raw":"` + b64url(rd) + `"},"init_data":{"init_data_digest":"` + b64url(make([]byte, 32)) +
			`"}}],"policy_ids":[]}`
		resp, err := srv.Client().Post(srv.URL+"/attestation", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	submod := func(t *testing.T, token string) map[string]any {
		t.Helper()
		return earPayload(t, token)["submods"].(map[string]any)["cpu0"].(map[string]any)
	}
	rd, err := hex.DecodeString(quote4ReportData)
	if err != nil {
		t.Fatal(err)
	}

	// Without reference values the hardware is not recognized.
	status, token := post(t, rd)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, token)
	}
	sm := submod(t, token)
	if sm["ear.status"] != "contraindicated" {
		t.Fatalf("ear.status = %v", sm["ear.status"])
	}
	ev := sm["ear.veraison.annotated-evidence"].(map[string]any)
	claims := ev["tdx"].(map[string]any)
	if claims["tcb_status"] != "UpToDate" || claims["collateral_expiration_status"] != "0" {
		t.Fatalf("tdx claims %v", claims)
	}
	if ev["report_data"] != quote4ReportData || ev["init_data"] != strings.Repeat("00", 48) {
		t.Fatalf("lifted report_data/init_data: %v %v", ev["report_data"], ev["init_data"])
	}
	if _, ok := claims["report_data"]; ok {
		t.Fatal("report_data not lifted out of the tdx claims")
	}

	// With the reference values of the default policy, the hardware is
	// genuine (2) and the executables approved by RTMRs (4, no event log),
	// but this TD runs with debug on, so the configuration stays
	// unavailable (36): warning, not affirming.
	body := claims["quote"].(map[string]any)["body"].(map[string]any)
	registerRVs(t, svc, map[string]any{
		"mr_td":  []string{body["mr_td"].(string)},
		"rtmr_1": []string{body["rtmr_1"].(string)},
		"rtmr_2": []string{body["rtmr_2"].(string)},
		"xfam":   []string{body["xfam"].(string)},
	})
	status, token = post(t, rd)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, token)
	}
	sm = submod(t, token)
	tv := sm["ear.trustworthiness-vector"].(map[string]any)
	if tv["hardware"] != float64(2) || tv["executables"] != float64(4) || tv["configuration"] != float64(36) {
		t.Fatalf("trust vector %v", tv)
	}
	if sm["ear.status"] != "warning" {
		t.Fatalf("ear.status = %v", sm["ear.status"])
	}

	// Evidence bound to other report data is refused.
	if status, body := post(t, []byte("another nonce")); status == http.StatusOK || !strings.Contains(body, "REPORT_DATA") {
		t.Fatalf("status %d: %s", status, body)
	}
}

// TestAttestationServiceExpiredCollateral: the same evidence after the
// collateral expired verifies, but the default policy no longer recognizes
// the hardware.
func TestAttestationServiceExpiredCollateral(t *testing.T) {
	later := fakepcs.ValidAt().AddDate(0, 1, 0)
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeTdx, newVerifier(t, fakepcs.New(), later))
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: fixedNow(later)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tdx.ParseQuote(vector(t, "tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	registerRVs(t, svc, map[string]any{
		"mr_td":  []string{hexOf(q.Body.MRTD[:])},
		"rtmr_1": []string{hexOf(q.Body.RTMR[1][:])},
		"rtmr_2": []string{hexOf(q.Body.RTMR[2][:])},
		"xfam":   []string{hexOf(q.Body.XFAM[:])},
	})
	token, err := svc.Evaluate(context.Background(), []as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: evidence(vector(t, "tdx_quote_4.dat"))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sm := earPayload(t, token)["submods"].(map[string]any)["cpu0"].(map[string]any)
	tv := sm["ear.trustworthiness-vector"].(map[string]any)
	claims := sm["ear.veraison.annotated-evidence"].(map[string]any)["tdx"].(map[string]any)
	if claims["collateral_expiration_status"] != "1" || tv["hardware"] != float64(97) || sm["ear.status"] != "contraindicated" {
		t.Fatalf("expired collateral: %v, vector %v, status %v", claims["collateral_expiration_status"], tv, sm["ear.status"])
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
