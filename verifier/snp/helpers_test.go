package snp

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

// vecDir holds upstream Trustee's SNP vectors (/work/shared beside the repo).
var vecDir = testvectors.Path("trustee/verifier/snp")

// testNow is inside the validity of every recorded certificate (the VLEK
// expires 2025-12-10, the Genoa VCEK starts 2025-05-27).
var testNow = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

func readVec(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vecDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sleeps records the back-offs a Verifier waited for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newTestVerifier returns a Verifier at testNow whose KDS is kds (if not
// nil) and whose back-offs are recorded in the returned sleeps.
func newTestVerifier(t testing.TB, cfg Config, opts Options, kds *fakekds.KDS) (*Verifier, *sleeps) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	if kds != nil && opts.Getter == nil && opts.HTTPClient == nil {
		opts.Getter = kds
	}
	if opts.Getter == nil && opts.HTTPClient == nil {
		// Fail closed: no test touches the network.
		opts.Getter = offlineGetter{t}
	}
	v, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &sleeps{}
	v.sleep = s.sleep
	// A fixed wall clock: a back-off, once set, stays pending, so that
	// every later KDS request has to wait for it (recorded, not slept).
	v.clock = func() time.Time { return testNow }
	return v, s
}

type offlineGetter struct{ t testing.TB }

func (g offlineGetter) Get(_ context.Context, url string) ([]byte, error) {
	g.t.Errorf("unexpected KDS request %s", url)
	return nil, &HTTPError{URL: url, StatusCode: 599}
}

// genoaNoChain is the recorded Genoa evidence without its cert_chain, so
// that the VCEK must come from a source.
func genoaNoChain(t testing.TB) []byte {
	t.Helper()
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	ev.CertChain = nil
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genoaReportData is the REPORT_DATA of the recorded Genoa evidence.
func genoaReportData(t testing.TB) []byte {
	t.Helper()
	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), ev.Report.ReportData[:]...)
}

func mustProduct(t testing.TB, name string) *product {
	t.Helper()
	roots, err := bundledRoots()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := roots[name]
	if !ok {
		t.Fatalf("no product %s", name)
	}
	return p
}
