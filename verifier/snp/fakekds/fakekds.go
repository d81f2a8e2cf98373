// Package fakekds is an offline AMD Key Distribution Service for tests. It
// serves recorded, real data only: the AMD ARK/ASK and ARK/ASVK chains of
// Milan, Genoa and Turin (as go-sev-guest embeds them, at
// /{vcek,vlek}/v1/<product>/cert_chain) and two real VCEKs at the exact URLs
// the KDS serves them for their reports:
//
//   - Milan: upstream Trustee's test-vcek.der, for test-report.bin
//     (MilanReport, MilanVCEK);
//   - Genoa: the VCEK of upstream's end-to-end SNP evidence
//     (GenoaEvidence, GenoaVCEK).
//
// A KDS is both an http.Handler (for an httptest.Server) and a Getter for
// the snp verifier (Get). It counts requests, and can be told to answer the
// next requests with an error status and Retry-After, or with wrong bytes
// (Inject), or to hold requests until released (Hold), so that tests can
// prove caching, request coalescing and back-off without a network.
//
// A KDS is safe for concurrent use.
package fakekds

import (
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/google/go-sev-guest/verify/trust"
)

var (
	//go:embed testdata/milan-report.bin
	milanReport []byte
	//go:embed testdata/milan-vcek.der
	milanVCEK []byte
	//go:embed testdata/genoa-evidence.json
	genoaEvidence []byte
)

// MilanReport returns upstream's test-report.bin: a Milan attestation
// report, version 2 (so it names no processor generation itself).
func MilanReport() []byte { return clone(milanReport) }

// MilanVCEK returns the VCEK (DER) that signs MilanReport.
func MilanVCEK() []byte { return clone(milanVCEK) }

// GenoaEvidence returns upstream's end-to-end snp evidence JSON: a Genoa
// report (version 3) with its VCEK in the cert_chain.
func GenoaEvidence() []byte { return clone(genoaEvidence) }

// GenoaVCEK returns the VCEK (DER) of GenoaEvidence.
func GenoaVCEK() []byte { return clone(recorded().genoaVCEK) }

// MilanVCEKPath returns the KDS path (with query) of MilanVCEK.
func MilanVCEKPath() string { return recorded().milanPath }

// GenoaVCEKPath returns the KDS path (with query) of GenoaVCEK.
func GenoaVCEKPath() string { return recorded().genoaPath }

type recordedPaths struct {
	milanPath, genoaPath string
	genoaVCEK            []byte
}

// recorded derives the VCEK paths from the embedded reports once; the
// recordings are part of the binary, so a failure is a build defect.
var recorded = sync.OnceValue(func() recordedPaths {
	var r recordedPaths
	var err error
	if r.milanPath, err = VCEKPath("Milan", milanReport); err != nil {
		panic(err)
	}
	var ev struct {
		Report struct {
			ReportedTCB tcbJSON `json:"reported_tcb"`
			ChipID      []int   `json:"chip_id"`
		} `json:"attestation_report"`
		CertChain []struct {
			Type string `json:"cert_type"`
			Data []int  `json:"data"`
		} `json:"cert_chain"`
	}
	if err := json.Unmarshal(genoaEvidence, &ev); err != nil || len(ev.CertChain) == 0 || ev.CertChain[0].Type != "VCEK" {
		panic(fmt.Sprintf("fakekds: recorded Genoa evidence: %v", err))
	}
	r.genoaVCEK = ints(ev.CertChain[0].Data)
	t := ev.Report.ReportedTCB
	r.genoaPath = vcekPath("Genoa", ints(ev.Report.ChipID), nil, t.Bootloader, t.TEE, t.SNP, t.Microcode)
	return r
})

type tcbJSON struct {
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

func ints(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// VCEKPath computes, independently of the snp verifier, the KDS path and
// query of the VCEK of a binary attestation report of the given product
// ("Milan", "Genoa" or "Turin"): /vcek/v1/<product>/<hwid>?[fmcSPL=NN&]
// blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN, the hwid being the hex
// CHIP_ID (its first 8 bytes on Turin) and the SPLs those of REPORTED_TCB.
func VCEKPath(product string, report []byte) (string, error) {
	if len(report) != 1184 {
		return "", fmt.Errorf("fakekds: a report is 1184 bytes, not %d", len(report))
	}
	tcb := report[0x180:0x188]
	chip := report[0x1A0:0x1E0]
	switch product {
	case "Milan", "Genoa":
		return vcekPath(product, chip, nil, tcb[0], tcb[1], tcb[6], tcb[7]), nil
	case "Turin":
		fmc := tcb[0]
		return vcekPath(product, chip, &fmc, tcb[1], tcb[2], tcb[3], tcb[7]), nil
	}
	return "", fmt.Errorf("fakekds: unknown product %q", product)
}

func vcekPath(product string, chip []byte, fmc *uint8, bl, tee, snp, ucode uint8) string {
	hwid := chip
	q := ""
	if product == "Turin" {
		hwid = chip[:8]
		q = fmt.Sprintf("fmcSPL=%02d&", *fmc)
	}
	q += fmt.Sprintf("blSPL=%02d&teeSPL=%02d&snpSPL=%02d&ucodeSPL=%02d", bl, tee, snp, ucode)
	return fmt.Sprintf("/vcek/v1/%s/%s?%s", product, hex.EncodeToString(hwid), q)
}

// Fault is an answer to give instead of the recorded one.
type Fault struct {
	// Status is the HTTP status to answer; 0 means 200 with Body.
	Status int
	// RetryAfter is the Retry-After header of the answer ("" for none).
	RetryAfter string
	// Body is the body of a 200 answer (wrong bytes on purpose).
	Body []byte
}

// KDS is a fake AMD KDS. The zero value is not usable; call New.
type KDS struct {
	mu       sync.Mutex
	routes   map[string][]byte
	counts   map[string]int
	total    int
	inFlight int
	faults   []Fault
	hold     chan struct{}
}

// New returns a KDS serving the recorded data.
func New() *KDS {
	k := &KDS{routes: map[string][]byte{}, counts: map[string]int{}}
	for _, c := range []struct {
		product    string
		vcek, vlek []byte
	}{
		{"Milan", trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{"Genoa", trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{"Turin", trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	} {
		k.routes["/vcek/v1/"+c.product+"/cert_chain"] = c.vcek
		k.routes["/vlek/v1/"+c.product+"/cert_chain"] = c.vlek
	}
	k.routes[MilanVCEKPath()] = milanVCEK
	k.routes[GenoaVCEKPath()] = recorded().genoaVCEK
	return k
}

// Add serves body at path (with its query, exactly as requested).
func (k *KDS) Add(path string, body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes[path] = clone(body)
}

// Inject queues faults: each of the next requests, whatever its path,
// gets the next fault instead of its recorded answer.
func (k *KDS) Inject(faults ...Fault) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults = append(k.faults, faults...)
}

// Hold makes requests wait (counted and in flight) until release is
// called. Call release exactly once.
func (k *KDS) Hold() (release func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ch := make(chan struct{})
	k.hold = ch
	return func() {
		k.mu.Lock()
		if k.hold == ch {
			k.hold = nil
		}
		k.mu.Unlock()
		close(ch)
	}
}

// Requests is the number of requests received.
func (k *KDS) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.total
}

// RequestsFor is the number of requests received for path (with query).
func (k *KDS) RequestsFor(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.counts[path]
}

// InFlight is the number of requests being answered (held ones included).
func (k *KDS) InFlight() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.inFlight
}

// answer is what the KDS answers for a path.
type answer struct {
	status     int
	retryAfter string
	body       []byte
}

func (k *KDS) serve(ctx context.Context, path string) answer {
	k.mu.Lock()
	k.total++
	k.counts[path]++
	k.inFlight++
	hold := k.hold
	var a answer
	if len(k.faults) > 0 {
		f := k.faults[0]
		k.faults = k.faults[1:]
		a = answer{status: f.Status, retryAfter: f.RetryAfter, body: clone(f.Body)}
		if a.status == 0 {
			a.status = http.StatusOK
		}
	} else if body, ok := k.routes[path]; ok {
		a = answer{status: http.StatusOK, body: clone(body)}
	} else {
		a = answer{status: http.StatusNotFound}
	}
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.inFlight--
		k.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return answer{status: http.StatusServiceUnavailable}
		}
	}
	return a
}

func requestPath(u *url.URL) string {
	if u.RawQuery == "" {
		return u.Path
	}
	return u.Path + "?" + u.RawQuery
}

// ServeHTTP implements http.Handler.
func (k *KDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a := k.serve(r.Context(), requestPath(r.URL))
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.status == http.StatusOK {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// StatusError is the error Get returns for an answer other than 200; it
// implements the snp verifier's StatusError.
type StatusError struct {
	URL    string
	Code   int
	Header string // Retry-After
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("fakekds: GET %s: HTTP status %d", e.URL, e.Code)
}

// HTTPStatus is the HTTP status code.
func (e *StatusError) HTTPStatus() int { return e.Code }

// RetryAfter is the Retry-After header.
func (e *StatusError) RetryAfter() string { return e.Header }

// Get answers rawURL (any scheme and host) without a network: the snp
// verifier's Getter.
func (k *KDS) Get(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	a := k.serve(ctx, requestPath(u))
	if a.status != http.StatusOK {
		return nil, &StatusError{URL: rawURL, Code: a.status, Header: a.retryAfter}
	}
	return a.body, nil
}
