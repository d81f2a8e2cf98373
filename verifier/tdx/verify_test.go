package tdx_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier"

	"github.com/go-trustee/go-trustee/verifier/tdx"
	"github.com/go-trustee/go-trustee/verifier/tdx/fakepcs"
)

var testdataDir = testvectors.Path("trustee/verifier")

func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

func newVerifier(t testing.TB, pcs *fakepcs.Server, now time.Time, mod func(*tdx.Config, *tdx.Options)) *tdx.Verifier {
	t.Helper()
	cfg := tdx.Config{}
	opts := tdx.Options{Getter: pcs, Now: fixedNow(now)}
	if mod != nil {
		mod(&cfg, &opts)
	}
	v, err := tdx.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func evidence(quote, eventLog []byte) []byte {
	ev := map[string]any{"quote": base64.StdEncoding.EncodeToString(quote), "cc_eventlog": nil}
	if eventLog != nil {
		ev["cc_eventlog"] = base64.StdEncoding.EncodeToString(eventLog)
	}
	b, _ := json.Marshal(ev)
	return b
}

// reportData of tdx_quote_4.dat.
const quote4ReportData = "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429"

// wantSupplemental are the verification claims of tdx_quote_4.dat against
// the recorded collateral at fakepcs.ValidAt().
var wantSupplemental = map[string]any{
	"tcb_status":                   "UpToDate",
	"collateral_expiration_status": "0",
	"advisory_ids":                 []any{},
	"tcb_date":                     "2023-02-15T00:00:00Z",
	"tcb_eval_num":                 float64(15),
	"earliest_issue_date":          "2018-05-21T10:45:10Z",
	"latest_issue_date":            "2023-06-18T08:42:58Z",
	"earliest_expiration_date":     "2023-07-08T07:24:59Z",
	"pck_crl_num":                  float64(1),
	"root_ca_crl_num":              float64(1),
	"root_key_id":                  "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993",
	"platform_provider_id":         "df4c32a9d8d86009aaf380ec43cfcefb",
	"sgx_type":                     "Scalable",
	"is_dynamic_platform":          true,
	"is_cached_keys":               true,
	"is_smt_enabled":               true,
	"platform_instance_id":         "82548d228d94d5e204a95b354dc61a02",
}

func jsonOf(t testing.TB, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVerifyQuote4EndToEnd(t *testing.T) {
	pcs := fakepcs.New()
	v := newVerifier(t, pcs, fakepcs.ValidAt(), nil)
	claims, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	got := jsonOf(t, claims)
	for k, want := range wantSupplemental {
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("claim %s = %#v, want %#v", k, got[k], want)
		}
	}
	if got["report_data"] != quote4ReportData {
		t.Errorf("report_data = %v", got["report_data"])
	}
	if _, ok := got["uefi_event_logs"]; ok {
		t.Error("VerifyQuote returned event log claims")
	}
}

func TestEvaluate(t *testing.T) {
	quote := vector(t, "tdx_quote_4.dat")
	rd := mustHex(t, quote4ReportData)
	zeros48 := make([]byte, 48)
	tests := []struct {
		name    string
		ev      []byte
		exp     verifier.Expected
		wantErr error
	}{
		{name: "no expectations", ev: evidence(quote, nil)},
		{name: "report data", ev: evidence(quote, nil), exp: verifier.Expected{ReportData: rd}},
		{name: "report data and init-data digest (padded)", ev: evidence(quote, nil), exp: verifier.Expected{ReportData: rd, InitDataDigest: make([]byte, 32)}},
		{name: "init-data digest truncated to 48", ev: evidence(quote, nil), exp: verifier.Expected{InitDataDigest: append(zeros48, 1)}},
		{name: "empty event log is no event log", ev: []byte(`{"quote":"` + base64.StdEncoding.EncodeToString(quote) + `","cc_eventlog":""}`)},
		{name: "report data mismatch", ev: evidence(quote, nil), exp: verifier.Expected{ReportData: []byte("nonce")}, wantErr: verifier.ErrReportDataMismatch},
		{name: "report data mismatch in the padding", ev: evidence(quote, nil), exp: verifier.Expected{ReportData: append(append([]byte(nil), rd...), 1)[1:]}, wantErr: verifier.ErrReportDataMismatch},
		{name: "init-data mismatch", ev: evidence(quote, nil), exp: verifier.Expected{InitDataDigest: []byte{1}}, wantErr: verifier.ErrInitDataMismatch},
		{name: "event log of another TD", ev: evidence(quote, vector(t, "CCEL_data")), wantErr: tdx.ErrEventLog},
		{name: "malformed event log", ev: evidence(quote, []byte{1, 2, 3}), wantErr: tdx.ErrEventLog},
		{name: "SGX v3 quote", ev: evidence(vector(t, "occlum_quote.dat"), nil), wantErr: tdx.ErrUnsupportedQuote},
		{name: "not JSON", ev: []byte("{"), wantErr: verifier.ErrMalformedEvidence},
		{name: "missing quote", ev: []byte(`{"cc_eventlog":null}`), wantErr: verifier.ErrMalformedEvidence},
		{name: "empty quote", ev: []byte(`{"quote":""}`), wantErr: verifier.ErrMalformedEvidence},
		{name: "quote is case-sensitive", ev: []byte(`{"Quote":"AAAA"}`), wantErr: verifier.ErrMalformedEvidence},
		{name: "url-safe base64", ev: []byte(`{"quote":"-_-_"}`), wantErr: verifier.ErrMalformedEvidence},
		{name: "event log not a string", ev: []byte(`{"quote":"AAAA","cc_eventlog":1}`), wantErr: verifier.ErrMalformedEvidence},
		{name: "too large", ev: []byte(`{"quote":"` + strings.Repeat("A", limits.MaxEvidenceBytes) + `"}`), wantErr: verifier.ErrMalformedEvidence},
	}
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.Evaluate(context.Background(), tc.ev, tc.exp)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Evaluate = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].Class != verifier.ClassCPU {
				t.Fatalf("results %#v", res)
			}
			got := jsonOf(t, res[0].Claims)
			for k, want := range wantSupplemental {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("claim %s = %#v, want %#v", k, got[k], want)
				}
			}
			if got["init_data"] != strings.Repeat("00", 48) || got["report_data"] != quote4ReportData {
				t.Errorf("binding claims %v %v", got["init_data"], got["report_data"])
			}
			if got["td_attributes"].(map[string]any)["debug"] != true {
				t.Errorf("td_attributes %v", got["td_attributes"])
			}
		})
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Offsets in tdx_quote_4.dat.
const (
	offHeaderUserData = 28
	offBodyMRTD       = 48 + 136
	offBodyReportData = 48 + 520
	offSignature      = 48 + 584 + 4
	offAttestKey      = offSignature + 64
	offQEReport       = offAttestKey + 64 + 6
	offQEReportSig    = offQEReport + 384
	offQEAuthData     = offQEReportSig + 64 + 2
)

func TestTamperedQuote(t *testing.T) {
	tests := []struct {
		name string
		off  int
		want error
	}{
		{"header user data", offHeaderUserData, tdx.ErrQuoteVerification},
		{"body MRTD", offBodyMRTD, tdx.ErrQuoteVerification},
		{"body report data", offBodyReportData + 63, tdx.ErrQuoteVerification},
		{"quote signature", offSignature + 5, tdx.ErrQuoteVerification},
		{"attestation key", offAttestKey + 1, tdx.ErrQuoteVerification},
		{"QE report", offQEReport + 100, tdx.ErrQuoteVerification},
		{"QE report signature", offQEReportSig + 1, tdx.ErrQuoteVerification},
		{"QE authentication data", offQEAuthData + 1, tdx.ErrQuoteVerification},
		{"version", 0, verifier.ErrMalformedEvidence},
		{"TEE type", 4, tdx.ErrUnsupportedQuote},
	}
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := vector(t, "tdx_quote_4.dat")
			q[tc.off] ^= 0x01
			_, err := v.Evaluate(context.Background(), evidence(q, nil), verifier.Expected{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
		})
	}
	// The same verifier still accepts the untampered quote.
	if _, err := v.Evaluate(context.Background(), evidence(vector(t, "tdx_quote_4.dat"), nil), verifier.Expected{}); err != nil {
		t.Fatal(err)
	}
}

func TestTruncatedQuote(t *testing.T) {
	q := vector(t, "tdx_quote_4.dat")
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), nil)
	// Every cut inside the signature data or before it fails to parse.
	for _, n := range []int{0, 47, 48, 100, 632, 635, 636, 700, 1000, 2000, 4000, len(q) - 1} {
		_, err := v.VerifyQuote(context.Background(), q[:n])
		if !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("quote cut at %d: %v, want ErrMalformedEvidence", n, err)
		}
	}
}

func TestWrongRoot(t *testing.T) {
	root := selfSigned(t)
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), func(_ *tdx.Config, o *tdx.Options) { o.TrustedRoot = root })
	_, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
	if !errors.Is(err, tdx.ErrUntrustedRoot) || !errors.Is(err, tdx.ErrQuoteVerification) {
		t.Fatalf("VerifyQuote = %v, want ErrUntrustedRoot", err)
	}
}

func selfSigned(t testing.TB) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Intel SGX Root CA"},
		NotBefore:             time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2049, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExpiredCollateral(t *testing.T) {
	tests := []struct {
		name string
		now  time.Time
	}{
		{"PCK CRL and QE identity expired", time.Date(2023, 7, 10, 0, 0, 0, 0, time.UTC)},
		{"everything but the root expired", time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, fakepcs.New(), tc.now, nil)
			claims, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
			if err != nil {
				t.Fatal(err)
			}
			if claims["collateral_expiration_status"] != "1" || claims["tcb_status"] != "UpToDate" {
				t.Fatalf("expiration %v, status %v", claims["collateral_expiration_status"], claims["tcb_status"])
			}
		})
	}
	// One second before the earliest expiration it is still current.
	v := newVerifier(t, fakepcs.New(), time.Date(2023, 7, 8, 7, 24, 58, 0, time.UTC), nil)
	claims, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
	if err != nil || claims["collateral_expiration_status"] != "0" {
		t.Fatalf("just before expiry: %v %v", claims["collateral_expiration_status"], err)
	}
}

// TestTCBNotSupported uses go-tdx-guest's real sample quote, whose TDX TCB
// SVN (3,0,4) is below every level of the recorded TCB info.
func TestTCBNotSupported(t *testing.T) {
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), nil)
	_, err := v.VerifyQuote(context.Background(), testdata.RawQuote)
	if !errors.Is(err, tdx.ErrTCBStatus) {
		t.Fatalf("VerifyQuote = %v, want ErrTCBStatus", err)
	}
}

// TestQuote5WithoutCollateral: no recorded collateral exists for the FMSPC
// of tdx_quote_5.dat (90c06f000000), so it parses and its chain verifies,
// but its collateral is not found.
func TestQuote5WithoutCollateral(t *testing.T) {
	pcs := fakepcs.New()
	v := newVerifier(t, pcs, fakepcs.ValidAt(), nil)
	_, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_5.dat"))
	var se *tdx.StatusError
	if !errors.Is(err, tdx.ErrCollateral) || !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("VerifyQuote = %v, want ErrCollateral with a 404", err)
	}
	if !strings.Contains(se.URL, "fmspc=90C06F000000") {
		t.Fatalf("requested %s", se.URL)
	}
}

// recorder is a Getter that records the URLs it is asked for.
type recorder struct {
	tdx.Getter
	mu   sync.Mutex
	urls []string
}

func (r *recorder) Get(ctx context.Context, u string) (http.Header, []byte, error) {
	r.mu.Lock()
	r.urls = append(r.urls, u)
	r.mu.Unlock()
	return r.Getter.Get(ctx, u)
}

func TestCollateralURLs(t *testing.T) {
	tests := []struct {
		name    string
		service string
		update  string
		want    []string
	}{
		{"Intel PCS (default)", "", "", []string{
			"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
			"https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity?update=early",
			"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806F000000&update=early",
			"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
		}},
		{"PCCS, standard updates", "https://pccs.example:8081/sgx/certification/v4/", "standard", []string{
			"https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
			"https://pccs.example:8081/sgx/certification/v4/rootcacrl",
			"https://pccs.example:8081/tdx/certification/v4/qe/identity?update=standard",
			"https://pccs.example:8081/tdx/certification/v4/tcb?fmspc=50806F000000&update=standard",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{Getter: fakepcs.New()}
			v := newVerifier(t, nil, fakepcs.ValidAt(), func(c *tdx.Config, o *tdx.Options) {
				c.CollateralService, c.TCBUpdateType, o.Getter = tc.service, tc.update, rec
			})
			if _, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat")); err != nil {
				t.Fatal(err)
			}
			slices.Sort(rec.urls)
			if !reflect.DeepEqual(rec.urls, tc.want) {
				t.Fatalf("requested\n%s\nwant\n%s", strings.Join(rec.urls, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestOverHTTP serves the collateral from an HTTP server (a PCCS) through
// the production Getter.
func TestOverHTTP(t *testing.T) {
	pcs := fakepcs.New()
	srv := httptest.NewServer(pcs)
	defer srv.Close()
	v := newVerifier(t, nil, fakepcs.ValidAt(), func(c *tdx.Config, o *tdx.Options) {
		c.CollateralService = srv.URL + "/sgx/certification/v4/"
		o.Getter = tdx.NewHTTPGetter(srv.Client())
	})
	if _, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat")); err != nil {
		t.Fatal(err)
	}
	if pcs.Total() != 4 {
		t.Fatalf("%d requests, want 4", pcs.Total())
	}
	// HTTP errors come back as StatusError.
	pcs.Inject(fakepcs.RouteTCBInfo, fakepcs.FaultTooManyRequests, 1)
	v2 := newVerifier(t, nil, fakepcs.ValidAt(), func(c *tdx.Config, o *tdx.Options) {
		c.CollateralService = srv.URL
		o.Getter = tdx.NewHTTPGetter(srv.Client())
	})
	_, err := v2.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
	var se *tdx.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests || !errors.Is(err, tdx.ErrCollateral) {
		t.Fatalf("VerifyQuote = %v, want a 429 StatusError", err)
	}
}

func TestOfflineCollateralFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "collateral.json")
	if err := fakepcs.WriteCollateralFile(path); err != nil {
		t.Fatal(err)
	}
	for _, update := range []string{"early", "standard"} {
		v := newVerifier(t, nil, fakepcs.ValidAt(), func(c *tdx.Config, _ *tdx.Options) {
			c.CollateralService, c.TCBUpdateType = "file://"+path, update
		})
		claims, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
		if err != nil {
			t.Fatalf("%s: %v", update, err)
		}
		if claims["tcb_status"] != "UpToDate" {
			t.Fatalf("tcb_status %v", claims["tcb_status"])
		}
	}
	// The file is re-read when it changes: a file without the FMSPC fails.
	v := newVerifier(t, nil, fakepcs.ValidAt(), func(c *tdx.Config, _ *tdx.Options) { c.CollateralService = "file://" + path })
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), `"fmspc": "50806f000000"`, `"fmspc": "00906ed50000"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour)
	os.Chtimes(path, now, now)
	if _, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat")); !errors.Is(err, tdx.ErrCollateral) {
		t.Fatalf("VerifyQuote = %v, want ErrCollateral", err)
	}
}

func TestCollateralFaults(t *testing.T) {
	tests := []struct {
		name  string
		route fakepcs.Route
		fault fakepcs.Fault
	}{
		{"rate limited", fakepcs.RouteTCBInfo, fakepcs.FaultTooManyRequests},
		{"unavailable", fakepcs.RouteQEIdentity, fakepcs.FaultUnavailable},
		{"not found", fakepcs.RoutePCKCRL, fakepcs.FaultNotFound},
		{"corrupt TCB info", fakepcs.RouteTCBInfo, fakepcs.FaultCorruptBody},
		{"corrupt QE identity", fakepcs.RouteQEIdentity, fakepcs.FaultCorruptBody},
		{"corrupt PCK CRL", fakepcs.RoutePCKCRL, fakepcs.FaultCorruptBody},
		{"corrupt root CRL", fakepcs.RouteRootCRL, fakepcs.FaultCorruptBody},
		{"no TCB info issuer chain", fakepcs.RouteTCBInfo, fakepcs.FaultNoIssuerChain},
		{"no PCK CRL issuer chain", fakepcs.RoutePCKCRL, fakepcs.FaultNoIssuerChain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pcs := fakepcs.New()
			pcs.Inject(tc.route, tc.fault, 1)
			v := newVerifier(t, pcs, fakepcs.ValidAt(), nil)
			_, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat"))
			if !errors.Is(err, tdx.ErrCollateral) {
				t.Fatalf("VerifyQuote = %v, want ErrCollateral", err)
			}
			// Failures are not cached: the next attempt fetches again and
			// succeeds, and then everything is cached.
			if _, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat")); err != nil {
				t.Fatal(err)
			}
			if n := pcs.Count(tc.route); n != 2 {
				t.Fatalf("route %s fetched %d times, want 2", tc.route, n)
			}
			before := pcs.Total()
			if _, err := v.VerifyQuote(context.Background(), vector(t, "tdx_quote_4.dat")); err != nil {
				t.Fatal(err)
			}
			if pcs.Total() != before {
				t.Fatalf("%d requests with everything cached", pcs.Total()-before)
			}
		})
	}
}

func TestCacheCountsAndCoalescing(t *testing.T) {
	pcs := fakepcs.New()
	v := newVerifier(t, pcs, fakepcs.ValidAt(), nil)
	quote := vector(t, "tdx_quote_4.dat")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.VerifyQuote(context.Background(), quote)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []fakepcs.Route{fakepcs.RouteTCBInfo, fakepcs.RouteQEIdentity, fakepcs.RoutePCKCRL, fakepcs.RouteRootCRL} {
		if n := pcs.Count(r); n != 1 {
			t.Errorf("route %s fetched %d times by 16 concurrent verifications, want 1", r, n)
		}
	}
}

// clock is an adjustable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestCacheRefreshAndStaleFallback(t *testing.T) {
	pcs := fakepcs.New()
	clk := &clock{t: fakepcs.ValidAt()}
	v, err := tdx.New(tdx.Config{}, tdx.Options{Getter: pcs, Now: clk.now, CacheMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	quote := vector(t, "tdx_quote_4.dat")
	verify := func() map[string]any {
		t.Helper()
		c, err := v.VerifyQuote(context.Background(), quote)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	verify()
	clk.set(fakepcs.ValidAt().Add(59 * time.Minute))
	verify()
	if pcs.Total() != 4 {
		t.Fatalf("%d requests within the max age, want 4", pcs.Total())
	}
	// Past the max age everything is fetched again.
	clk.set(fakepcs.ValidAt().Add(61 * time.Minute))
	verify()
	if pcs.Total() != 8 {
		t.Fatalf("%d requests after the max age, want 8", pcs.Total())
	}
	// When the refresh fails, the cached collateral is still used, and the
	// next attempt waits for the backoff.
	pcs.Inject(fakepcs.RouteTCBInfo, fakepcs.FaultTooManyRequests, -1)
	clk.set(fakepcs.ValidAt().Add(3 * time.Hour))
	if c := verify(); c["tcb_status"] != "UpToDate" {
		t.Fatalf("stale claims %v", c)
	}
	n := pcs.Count(fakepcs.RouteTCBInfo)
	verify()
	if pcs.Count(fakepcs.RouteTCBInfo) != n {
		t.Fatal("refresh retried within the backoff")
	}
	clk.set(fakepcs.ValidAt().Add(3*time.Hour + 2*time.Minute))
	verify()
	if pcs.Count(fakepcs.RouteTCBInfo) != n+1 {
		t.Fatal("refresh not retried after the backoff")
	}
}

func TestDurableCache(t *testing.T) {
	dir := t.TempDir()
	pcs := fakepcs.New()
	quote := vector(t, "tdx_quote_4.dat")
	v := newVerifier(t, pcs, fakepcs.ValidAt(), func(_ *tdx.Config, o *tdx.Options) { o.CacheDir = dir })
	if _, err := v.VerifyQuote(context.Background(), quote); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) != 4 {
		t.Fatalf("cache files %v, %v", files, err)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("cache file %s: %v %v", f, fi.Mode(), err)
		}
	}
	// A new verifier (a restart) with the service down verifies from disk.
	down := fakepcs.New()
	for _, r := range []fakepcs.Route{fakepcs.RouteTCBInfo, fakepcs.RouteQEIdentity, fakepcs.RoutePCKCRL, fakepcs.RouteRootCRL} {
		down.Inject(r, fakepcs.FaultUnavailable, -1)
	}
	v2 := newVerifier(t, down, fakepcs.ValidAt().Add(time.Hour), func(_ *tdx.Config, o *tdx.Options) { o.CacheDir = dir })
	if _, err := v2.VerifyQuote(context.Background(), quote); err != nil {
		t.Fatal(err)
	}
	if down.Total() != 0 {
		t.Fatalf("%d requests with fresh collateral on disk", down.Total())
	}
	// A corrupted cache file is ignored and the collateral fetched again.
	for _, f := range files {
		if err := os.WriteFile(f, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pcs2 := fakepcs.New()
	v3 := newVerifier(t, pcs2, fakepcs.ValidAt(), func(_ *tdx.Config, o *tdx.Options) { o.CacheDir = dir })
	if _, err := v3.VerifyQuote(context.Background(), quote); err != nil {
		t.Fatal(err)
	}
	if pcs2.Total() != 4 {
		t.Fatalf("%d requests with a corrupt cache, want 4", pcs2.Total())
	}
}

func TestContextCancelled(t *testing.T) {
	v := newVerifier(t, fakepcs.New(), fakepcs.ValidAt(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.VerifyQuote(ctx, vector(t, "tdx_quote_4.dat")); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyQuote = %v, want context.Canceled", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  tdx.Config
		opts tdx.Options
	}{
		{"bad update type", tdx.Config{TCBUpdateType: "all"}, tdx.Options{}},
		{"bad scheme", tdx.Config{CollateralService: "ftp://pcs"}, tdx.Options{}},
		{"no host", tdx.Config{CollateralService: "https:///x"}, tdx.Options{}},
		{"relative file", tdx.Config{CollateralService: "file:rel/path.json"}, tdx.Options{}},
		{"negative max age", tdx.Config{}, tdx.Options{CacheMaxAge: -time.Second}},
		{"cache dir is a file", tdx.Config{}, tdx.Options{CacheDir: "/dev/null/x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tdx.New(tc.cfg, tc.opts); !errors.Is(err, tdx.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	yes := true
	tests := []struct {
		name    string
		in      map[string]any
		want    tdx.Config
		wantErr bool
	}{
		{name: "no section", in: map[string]any{"snp_verifier": map[string]any{}}},
		{name: "null section", in: map[string]any{"dcap_verifier": nil}},
		{name: "full", in: map[string]any{"dcap_verifier": map[string]any{"collateral_service": "https://pccs:8081/sgx/certification/v4/", "tcb_update_type": "standard", "use_secure_cert": true, "unknown": 1}},
			want: tdx.Config{CollateralService: "https://pccs:8081/sgx/certification/v4/", TCBUpdateType: "standard", UseSecureCert: &yes}},
		{name: "section itself", in: map[string]any{"collateral_service": "file:///etc/collateral.json"}, want: tdx.Config{CollateralService: "file:///etc/collateral.json"}},
		{name: "missing collateral_service", in: map[string]any{"dcap_verifier": map[string]any{"tcb_update_type": "early"}}, wantErr: true},
		{name: "bad update type", in: map[string]any{"dcap_verifier": map[string]any{"collateral_service": "x", "tcb_update_type": "Early"}}, wantErr: true},
		{name: "use_secure_cert not a bool", in: map[string]any{"dcap_verifier": map[string]any{"collateral_service": "x", "use_secure_cert": "yes"}}, wantErr: true},
		{name: "section not a table", in: map[string]any{"dcap_verifier": "x"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tdx.ParseConfig(tc.in)
			if tc.wantErr {
				if !errors.Is(err, tdx.ErrInvalidConfig) {
					t.Fatalf("ParseConfig = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseConfig = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseEvidence(f *testing.F) {
	f.Add(evidence(vector(f, "tdx_quote_4.dat"), nil))
	f.Add(evidence([]byte{4, 0, 2, 0, 0x81}, []byte{1}))
	f.Add([]byte(`{"quote":"AAAA","cc_eventlog":null}`))
	f.Add([]byte(`{"quote":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := tdxev.ParseEvidence(b)
		if err != nil {
			if !errors.Is(err, verifier.ErrMalformedEvidence) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(ev.Quote) == 0 || (ev.EventLog != nil && len(ev.EventLog) == 0) {
			t.Fatalf("accepted evidence with an empty quote or event log")
		}
	})
}

func BenchmarkVerifyQuoteWarmCollateral(b *testing.B) {
	v := newVerifier(b, fakepcs.New(), fakepcs.ValidAt(), nil)
	quote := vector(b, "tdx_quote_4.dat")
	ev := evidence(quote, nil)
	exp := verifier.Expected{ReportData: mustHex(b, quote4ReportData)}
	if _, err := v.Evaluate(context.Background(), ev, exp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Evaluate(context.Background(), ev, exp); err != nil {
			b.Fatal(err)
		}
	}
}
