package snp

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testwait"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/google/go-sev-guest/verify/testdata"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

func kdsConfig(base string) Config {
	return Config{VCEKSources: []VCEKSource{{Type: SourceKDS, BaseURL: base}}}
}

func TestTCBPrefix(t *testing.T) {
	fmc := uint8(5)
	tests := []struct {
		tcb  snpev.TCBVersion
		want string
	}{
		{snpev.TCBVersion{Bootloader: 2, TEE: 0, SNP: 6, Microcode: 21}, "bl02_tee00_snp06_ucode21"},
		{snpev.TCBVersion{FMC: &fmc, Bootloader: 3, TEE: 1, SNP: 8, Microcode: 15}, "bl03_tee01_snp08_ucode15_fmc05"},
		{snpev.TCBVersion{Bootloader: 10, TEE: 0, SNP: 23, Microcode: 213}, "bl10_tee00_snp23_ucode213"},
	}
	for _, tc := range tests {
		if got := tcbPrefix(tc.tcb); got != tc.want {
			t.Errorf("tcbPrefix = %q, want %q", got, tc.want)
		}
	}
}

// TestVCEKURL compares the verifier's KDS URLs with the ones the fake KDS
// computes on its own from the binary reports.
func TestVCEKURL(t *testing.T) {
	milanRaw := readVec(t, "test-report.bin")
	milanRep, err := snpev.ParseReport(milanRaw)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	fam, mod, fmc := uint8(0x1A), uint8(0x02), uint8(7)
	turin := ev.Report
	turin.CPUIDFamID, turin.CPUIDModID = &fam, &mod
	turin.ChipID = [64]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	for _, tcb := range []*snpev.TCBVersion{&turin.CurrentTCB, &turin.ReportedTCB, &turin.CommittedTCB, &turin.LaunchTCB} {
		tcb.FMC = &fmc
	}
	turinRaw, err := turin.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	turinPath, err := fakekds.VCEKPath("Turin", turinRaw)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		prod string
		rep  *snpev.Report
		want string
	}{
		{"milan test-report.bin", "Milan", milanRep, fakekds.MilanVCEKPath()},
		{"genoa evidence", "Genoa", &ev.Report, fakekds.GenoaVCEKPath()},
		{"turin", "Turin", &turin, turinPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vcekURL(DefaultKDSURL, mustProduct(t, tc.prod), tc.rep)
			if err != nil {
				t.Fatal(err)
			}
			if got != DefaultKDSURL+tc.want {
				t.Errorf("got  %s\nwant %s", got, DefaultKDSURL+tc.want)
			}
		})
	}
	if want := "/vcek/v1/Turin/deadbeef01020304?fmcSPL=07&blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=25"; turinPath != want {
		t.Errorf("turin path %s, want %s", turinPath, want)
	}
	if want := "/vcek/v1/Genoa/" + hex.EncodeToString(ev.Report.ChipID[:]) + "?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=25"; fakekds.GenoaVCEKPath() != want {
		t.Errorf("genoa path %s, want %s", fakekds.GenoaVCEKPath(), want)
	}
	turin.ReportedTCB.FMC = nil
	if _, err := vcekURL(DefaultKDSURL, mustProduct(t, "Turin"), &turin); err == nil {
		t.Error("Turin URL without an FMC SPL")
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOfflineStore(t *testing.T) {
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	hwDir := filepath.Join("vcek", hex.EncodeToString(ev.Report.ChipID[:]))
	tcbFile := filepath.Join(hwDir, "bl10_tee00_snp23_ucode25_vcek.der")
	flatFile := filepath.Join(hwDir, "vcek.der")
	vcek := fakekds.GenoaVCEK()
	tests := []struct {
		name  string
		files map[string][]byte
		want  error
	}{
		{"tcb-specific file", map[string][]byte{tcbFile: vcek}, nil},
		{"flat fallback", map[string][]byte{flatFile: vcek}, nil},
		{"tcb-specific file wins", map[string][]byte{tcbFile: vcek, flatFile: []byte("flat-layout-vcek")}, nil},
		{"no file", nil, ErrEndorsementKey},
		{"only the tcb-specific file is read", map[string][]byte{tcbFile: []byte("garbage"), flatFile: vcek}, ErrEndorsementKey},
		{"another chip's VCEK", map[string][]byte{tcbFile: fakekds.MilanVCEK()}, ErrEndorsementKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tc.files {
				writeFile(t, filepath.Join(dir, name), b)
			}
			cfg := Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore, Path: dir}}}
			v, _ := newTestVerifier(t, cfg, Options{}, nil)
			res, err := v.Evaluate(context.Background(), genoaNoChain(t), verifier.Expected{ReportData: genoaReportData(t)})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if err == nil && !reflect.DeepEqual(res[0].Claims, genoaClaims()) {
				t.Errorf("claims %v", res[0].Claims)
			}
		})
	}

	// Upstream's Milan vectors (a version 2 report, checked as Milan).
	t.Run("test-report.bin", func(t *testing.T) {
		raw := readVec(t, "test-report.bin")
		rep, err := snpev.ParseReport(raw)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "vcek", hex.EncodeToString(rep.ChipID[:]), tcbPrefix(rep.ReportedTCB)+"_vcek.der"), readVec(t, "test-vcek.der"))
		v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore, Path: dir}}}, Options{}, nil)
		if err := v.authenticate(context.Background(), mustProduct(t, "Milan"), rep, raw, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKDSCaching(t *testing.T) {
	ctx := context.Background()
	exp := verifier.Expected{ReportData: genoaReportData(t)}
	evidence := genoaNoChain(t)

	t.Run("second attestation makes no KDS call", func(t *testing.T) {
		kds := fakekds.New()
		v, _ := newTestVerifier(t, kdsConfig(""), Options{}, kds)
		for i := range 3 {
			res, err := v.Evaluate(ctx, evidence, exp)
			if err != nil {
				t.Fatalf("attestation %d: %v", i, err)
			}
			if !reflect.DeepEqual(res[0].Claims, genoaClaims()) {
				t.Errorf("claims %v", res[0].Claims)
			}
		}
		if n := kds.Requests(); n != 1 || kds.RequestsFor(fakekds.GenoaVCEKPath()) != 1 {
			t.Fatalf("%d KDS requests, want 1 for the VCEK", n)
		}
	})

	t.Run("concurrent first attestations make one KDS call", func(t *testing.T) {
		kds := fakekds.New()
		v, _ := newTestVerifier(t, kdsConfig(""), Options{}, kds)
		release := kds.Hold()
		const n = 10
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := v.Evaluate(ctx, evidence, exp)
				errs <- err
			}()
		}
		// Release the held KDS answer only once all n attestations wait
		// for the one fetch.
		testwait.Until(t, "every attestation joined to one fetch", func() bool { return v.joined.n.Load() >= n && kds.InFlight() == 1 })
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := kds.Requests(); got != 1 {
			t.Fatalf("%d KDS requests for %d concurrent attestations, want 1", got, n)
		}
	})

	t.Run("cache survives a new verifier", func(t *testing.T) {
		kds := fakekds.New()
		dir := t.TempDir()
		v1, _ := newTestVerifier(t, kdsConfig(""), Options{CacheDir: dir}, kds)
		if _, err := v1.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatal(err)
		}
		v2, _ := newTestVerifier(t, kdsConfig(""), Options{CacheDir: dir}, kds)
		if _, err := v2.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatal(err)
		}
		if got := kds.Requests(); got != 1 {
			t.Fatalf("%d KDS requests, want 1", got)
		}
		ev, _ := snpev.ParseEvidence(evidence)
		cached, _ := storePaths(dir, mustProduct(t, "Genoa"), &ev.Report)
		b, err := os.ReadFile(cached)
		if err != nil || string(b) != string(fakekds.GenoaVCEK()) {
			t.Fatalf("cache file %s: %v", cached, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(cached))
		if len(entries) != 1 {
			t.Errorf("cache directory holds %d files, want 1 (no temporary files)", len(entries))
		}
		// The cache is an OfflineStore.
		v3, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore, Path: dir}}}, Options{}, nil)
		if _, err := v3.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatalf("cache directory as an OfflineStore: %v", err)
		}
	})

	t.Run("corrupt cache file is replaced", func(t *testing.T) {
		kds := fakekds.New()
		dir := t.TempDir()
		ev, _ := snpev.ParseEvidence(evidence)
		cached, _ := storePaths(dir, mustProduct(t, "Genoa"), &ev.Report)
		writeFile(t, cached, []byte("not a certificate"))
		v, _ := newTestVerifier(t, kdsConfig(""), Options{CacheDir: dir}, kds)
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(cached); string(b) != string(fakekds.GenoaVCEK()) || kds.Requests() != 1 {
			t.Fatalf("cache not repaired (%d requests)", kds.Requests())
		}
	})

	t.Run("cancelled attestation leaves the fetch running", func(t *testing.T) {
		kds := fakekds.New()
		v, _ := newTestVerifier(t, kdsConfig(""), Options{}, kds)
		release := kds.Hold()
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := v.Evaluate(cctx, evidence, exp)
			done <- err
		}()
		testwait.Until(t, "the KDS fetch in flight", func() bool { return kds.InFlight() == 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrEndorsementKey) {
			t.Fatalf("cancelled Evaluate = %v", err)
		}
		release()
		// The shared fetch completes and is cached; wait for it.
		testwait.Until(t, "the shared fetch cached", func() bool {
			return v.mem.get("src\x00Genoa\x00"+hex.EncodeToString(mustReport(t, evidence).ChipID[:])+"\x00bl10_tee00_snp23_ucode25") != nil
		})
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil || kds.Requests() != 1 {
			t.Fatalf("Evaluate = %v with %d requests", err, kds.Requests())
		}
	})

	t.Run("milan test-report.bin and go-sev-guest attestation", func(t *testing.T) {
		kds := fakekds.New()
		gsgPath, err := fakekds.VCEKPath("Milan", testdata.AttestationBytes)
		if err != nil {
			t.Fatal(err)
		}
		kds.Add(gsgPath, testdata.VcekBytes)
		v, _ := newTestVerifier(t, kdsConfig(""), Options{}, kds)
		for _, raw := range [][]byte{readVec(t, "test-report.bin"), testdata.AttestationBytes} {
			rep, err := snpev.ParseReport(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.authenticate(ctx, mustProduct(t, "Milan"), rep, raw, nil); err != nil {
				t.Fatal(err)
			}
		}
		if kds.RequestsFor(fakekds.MilanVCEKPath()) != 1 || kds.RequestsFor(gsgPath) != 1 || kds.Requests() != 2 {
			t.Fatalf("requests: %d", kds.Requests())
		}
	})
}

func mustReport(t testing.TB, evidence []byte) *snpev.Report {
	t.Helper()
	ev, err := snpev.ParseEvidence(evidence)
	if err != nil {
		t.Fatal(err)
	}
	return &ev.Report
}

func TestKDSFailures(t *testing.T) {
	ctx := context.Background()
	exp := verifier.Expected{ReportData: genoaReportData(t)}
	evidence := genoaNoChain(t)
	retryDate := testNow.Add(5 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name     string
		faults   []fakekds.Fault
		want     error
		requests int
		sleeps   []time.Duration
	}{
		{"429 then success", []fakekds.Fault{{Status: 429, RetryAfter: "2"}}, nil, 2, []time.Duration{2 * time.Second}},
		{"503 without Retry-After", []fakekds.Fault{{Status: 503}}, nil, 2, []time.Duration{kdsDefaultBackoff}},
		{"429 with an HTTP-date", []fakekds.Fault{{Status: 429, RetryAfter: retryDate}}, nil, 2, []time.Duration{5 * time.Second}},
		{"429 three times then success", []fakekds.Fault{{Status: 429, RetryAfter: "1"}, {Status: 429, RetryAfter: "1"}, {Status: 503, RetryAfter: "1"}}, nil, 4,
			[]time.Duration{time.Second, time.Second, time.Second}},
		{"429 until the attempts run out", []fakekds.Fault{{Status: 429, RetryAfter: "1"}, {Status: 429, RetryAfter: "1"}, {Status: 429, RetryAfter: "1"}, {Status: 429, RetryAfter: "1"}},
			ErrKDS, 4, []time.Duration{time.Second, time.Second, time.Second}},
		{"Retry-After too long", []fakekds.Fault{{Status: 429, RetryAfter: "3600"}}, ErrKDS, 1, nil},
		{"500 is not retried", []fakekds.Fault{{Status: 500}}, ErrKDS, 1, nil},
		{"404", []fakekds.Fault{{Status: 404}}, ErrKDS, 1, nil},
		{"wrong bytes", []fakekds.Fault{{Body: []byte("<html>rate limited</html>")}}, ErrEndorsementKey, 1, nil},
		{"another chip's VCEK", []fakekds.Fault{{Body: fakekds.MilanVCEK()}}, ErrCertChain, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kds := fakekds.New()
			kds.Inject(tc.faults...)
			v, s := newTestVerifier(t, kdsConfig(""), Options{}, kds)
			_, err := v.Evaluate(ctx, evidence, exp)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if tc.want != nil && !errors.Is(err, ErrEndorsementKey) {
				t.Errorf("error %v does not wrap ErrEndorsementKey", err)
			}
			if got := kds.Requests(); got != tc.requests {
				t.Errorf("%d KDS requests, want %d", got, tc.requests)
			}
			if got := s.got(); !reflect.DeepEqual(got, tc.sleeps) {
				t.Errorf("waited %v, want %v", got, tc.sleeps)
			}
		})
	}

	t.Run("a failure is not cached", func(t *testing.T) {
		kds := fakekds.New()
		kds.Inject(fakekds.Fault{Body: []byte("garbage")})
		v, _ := newTestVerifier(t, kdsConfig(""), Options{CacheDir: t.TempDir()}, kds)
		if _, err := v.Evaluate(ctx, evidence, exp); err == nil {
			t.Fatal("accepted a garbage VCEK")
		}
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatal(err)
		}
		if kds.Requests() != 2 {
			t.Fatalf("%d requests", kds.Requests())
		}
	})

	t.Run("a long back-off fails later fetches without a request", func(t *testing.T) {
		kds := fakekds.New()
		kds.Inject(fakekds.Fault{Status: 429, RetryAfter: "3600"})
		v, _ := newTestVerifier(t, kdsConfig(""), Options{}, kds)
		for range 2 {
			if _, err := v.Evaluate(ctx, evidence, exp); !errors.Is(err, ErrKDS) {
				t.Fatalf("Evaluate = %v, want ErrKDS", err)
			}
		}
		if kds.Requests() != 1 {
			t.Fatalf("%d requests, want 1", kds.Requests())
		}
	})

	t.Run("next source after a KDS failure", func(t *testing.T) {
		kds := fakekds.New()
		kds.Inject(fakekds.Fault{Status: 404})
		dir := t.TempDir()
		ev, _ := snpev.ParseEvidence(evidence)
		tcbPath, _ := storePaths(dir, mustProduct(t, "Genoa"), &ev.Report)
		writeFile(t, tcbPath, fakekds.GenoaVCEK())
		cfg := Config{VCEKSources: []VCEKSource{{Type: SourceKDS}, {Type: SourceOfflineStore, Path: dir}}}
		v, _ := newTestVerifier(t, cfg, Options{}, kds)
		if _, err := v.Evaluate(ctx, evidence, exp); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no source configured", func(t *testing.T) {
		v, _ := newTestVerifier(t, Config{VCEKSources: []VCEKSource{}}, Options{}, nil)
		if _, err := v.Evaluate(ctx, evidence, exp); !errors.Is(err, ErrEndorsementKey) || !strings.Contains(err.Error(), "no VCEK source") {
			t.Fatalf("Evaluate = %v", err)
		}
	})
}

// TestKDSOverHTTP runs the default Getter against the fake KDS behind a
// local HTTP server.
func TestKDSOverHTTP(t *testing.T) {
	kds := fakekds.New()
	srv := httptest.NewServer(kds)
	defer srv.Close()
	ctx := context.Background()
	exp := verifier.Expected{ReportData: genoaReportData(t)}
	kds.Inject(fakekds.Fault{Status: 429, RetryAfter: "3"})
	v, s := newTestVerifier(t, kdsConfig(srv.URL+"/"), Options{HTTPClient: srv.Client()}, nil)
	if _, err := v.Evaluate(ctx, genoaNoChain(t), exp); err != nil {
		t.Fatal(err)
	}
	if got := s.got(); !reflect.DeepEqual(got, []time.Duration{3 * time.Second}) {
		t.Errorf("waited %v", got)
	}
	if kds.RequestsFor(fakekds.GenoaVCEKPath()) != 2 {
		t.Errorf("%d requests for the VCEK", kds.RequestsFor(fakekds.GenoaVCEKPath()))
	}
	// Oversized bodies are refused.
	kds.Inject(fakekds.Fault{Body: make([]byte, limits.MaxSNPCertBytes+1)})
	g := NewHTTPGetter(srv.Client())
	if _, err := g.Get(ctx, srv.URL+fakekds.GenoaVCEKPath()); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized body: %v", err)
	}
	_, err := g.Get(ctx, srv.URL+"/nowhere")
	var se StatusError
	if !errors.As(err, &se) || se.HTTPStatus() != 404 {
		t.Errorf("404: %v", err)
	}
}
