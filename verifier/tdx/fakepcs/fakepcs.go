// Package fakepcs is an offline stand-in for Intel's Provisioning
// Certification Service (and a PCCS) that serves recorded, real Intel
// collateral: the TDX TCB info for FMSPC 50806f000000, the TD QE identity,
// the PCK Platform CA CRL and the Intel SGX Root CA CRL, as published by
// go-tdx-guest's testing data (all current at ValidAt). Upstream's quote
// tdx_quote_4.dat has that FMSPC, so it verifies end to end against this
// server.
//
// The server counts requests per route and can misbehave on purpose: rate
// limiting (429), server errors, not found, corrupted bodies (signatures no
// longer verify) and missing issuer chains. It serves in process, as a
// tdx.Getter, or over HTTP, as an http.Handler; it never touches the
// network. It is safe for concurrent use.
package fakepcs

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	tdxtesting "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/go-trustee/go-trustee/verifier/tdx"
)

// FMSPC is the platform the recorded collateral is for.
const FMSPC = "50806f000000"

// RootCRLURL is the root CA CRL distribution point of the Intel SGX Root CA.
const RootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// ValidAt returns a time at which all the recorded collateral is current: the
// PCK CRL and the QE identity expire on 2023-07-08, the TCB info on
// 2023-07-18.
func ValidAt() time.Time { return time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC) }

// Route is one kind of collateral request.
type Route string

// The routes, by the path they answer (any host).
const (
	RouteTCBInfo    Route = "tcb"        // /tdx/certification/v4/tcb?fmspc=...
	RouteQEIdentity Route = "qeidentity" // /tdx/certification/v4/qe/identity
	RoutePCKCRL     Route = "pckcrl"     // /sgx/certification/v4/pckcrl?ca=platform
	RouteRootCRL    Route = "rootcacrl"  // /IntelSGXRootCA.der, /sgx/certification/v4/rootcacrl
)

// Fault is a way to misbehave.
type Fault int

// Faults.
const (
	// FaultTooManyRequests answers 429, as PCS rate limiting.
	FaultTooManyRequests Fault = iota + 1
	// FaultUnavailable answers 503.
	FaultUnavailable
	// FaultNotFound answers 404.
	FaultNotFound
	// FaultCorruptBody flips one byte of the body: a signature (or the
	// CRL's) no longer verifies.
	FaultCorruptBody
	// FaultNoIssuerChain omits the issuer chain header.
	FaultNoIssuerChain
)

type fault struct {
	f     Fault
	times int // remaining; negative means forever
}

// Server serves the recorded collateral.
type Server struct {
	mu     sync.Mutex
	counts map[Route]int
	faults map[Route]*fault
}

var _ tdx.Getter = (*Server)(nil)

// New returns a well-behaved server.
func New() *Server {
	return &Server{counts: map[Route]int{}, faults: map[Route]*fault{}}
}

// Inject makes the next times requests of route fail with f (every one
// when times is negative). Inject(route, f, 0) clears the fault.
func (s *Server) Inject(route Route, f Fault, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if times == 0 {
		delete(s.faults, route)
		return
	}
	s.faults[route] = &fault{f: f, times: times}
}

// Count returns the number of requests of route served (or failed).
func (s *Server) Count(route Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[route]
}

// Total returns the number of requests of all routes.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

type response struct {
	route  Route
	status int
	header http.Header
	body   []byte
}

func headerOf(name string, m map[string][]string) http.Header {
	h := http.Header{}
	for _, v := range m {
		for _, s := range v {
			h.Add(name, s)
		}
	}
	return h
}

// answer routes a request and applies any fault.
func (s *Server) answer(u string) response {
	pu, err := url.Parse(u)
	if err != nil {
		return response{status: http.StatusBadRequest}
	}
	q := pu.Query()
	var r response
	switch p := pu.Path; {
	case strings.HasSuffix(p, "/tdx/certification/v4/tcb"):
		r.route = RouteTCBInfo
		if !strings.EqualFold(q.Get("fmspc"), FMSPC) {
			r.status = http.StatusNotFound
			break
		}
		r.status, r.body = http.StatusOK, testdata.TcbInfoBody
		r.header = headerOf("TCB-Info-Issuer-Chain", tdxtesting.TcbInfoHeader)
	case strings.HasSuffix(p, "/tdx/certification/v4/qe/identity"):
		r.route = RouteQEIdentity
		r.status, r.body = http.StatusOK, testdata.QeIdentityBody
		r.header = headerOf("SGX-Enclave-Identity-Issuer-Chain", tdxtesting.QeIdentityHeader)
	case strings.HasSuffix(p, "/sgx/certification/v4/pckcrl"):
		r.route = RoutePCKCRL
		if q.Get("ca") != "platform" {
			r.status = http.StatusNotFound
			break
		}
		r.status, r.body = http.StatusOK, testdata.PckCrlBody
		r.header = headerOf("SGX-PCK-CRL-Issuer-Chain", tdxtesting.PckCrlHeader)
	case strings.HasSuffix(p, "/IntelSGXRootCA.der"), strings.HasSuffix(p, "/sgx/certification/v4/rootcacrl"):
		r.route = RouteRootCRL
		r.status, r.body = http.StatusOK, testdata.RootCrlBody
	default:
		return response{status: http.StatusNotFound}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[r.route]++
	f := s.faults[r.route]
	if f == nil || r.status != http.StatusOK {
		return r
	}
	if f.times > 0 {
		if f.times--; f.times == 0 {
			delete(s.faults, r.route)
		}
	}
	switch f.f {
	case FaultTooManyRequests:
		return response{route: r.route, status: http.StatusTooManyRequests}
	case FaultUnavailable:
		return response{route: r.route, status: http.StatusServiceUnavailable}
	case FaultNotFound:
		return response{route: r.route, status: http.StatusNotFound}
	case FaultCorruptBody:
		b := append([]byte(nil), r.body...)
		b[len(b)/2] ^= 0x01
		r.body = b
	case FaultNoIssuerChain:
		r.header = http.Header{}
	}
	return r
}

// Get implements tdx.Getter.
func (s *Server) Get(ctx context.Context, u string) (http.Header, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	r := s.answer(u)
	if r.status != http.StatusOK {
		return nil, nil, &tdx.StatusError{URL: u, StatusCode: r.status}
	}
	return r.header.Clone(), append([]byte(nil), r.body...), nil
}

// ServeHTTP serves the collateral over HTTP (as PCS, or a PCCS at any
// base URL).
func (s *Server) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	r := s.answer(req.URL.String())
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	w.WriteHeader(r.status)
	w.Write(r.body)
}

// WriteCollateralFile writes the recorded collateral as the JSON of
// Intel's PCS client tool (indented, so that readers must verify the
// signed documents in their compact form), for a file:// collateral
// service.
func WriteCollateralFile(path string) error {
	one := func(m map[string][]string) string {
		for _, v := range m {
			return v[0]
		}
		return ""
	}
	type tcbInfoEntry struct {
		FMSPC      string          `json:"fmspc"`
		TDXTCBInfo json.RawMessage `json:"tdx_tcbinfo"`
	}
	doc := map[string]any{
		"collaterals": map[string]any{
			"version":      "3.1",
			"tcbinfos":     []tcbInfoEntry{{FMSPC: FMSPC, TDXTCBInfo: testdata.TcbInfoBody}},
			"pckcacrl":     map[string]string{"processorCrl": "", "platformCrl": hex.EncodeToString(testdata.PckCrlBody)},
			"tdqeidentity": json.RawMessage(testdata.QeIdentityBody),
			"certificates": map[string]any{
				"TCB-Info-Issuer-Chain":             one(tdxtesting.TcbInfoHeader),
				"SGX-Enclave-Identity-Issuer-Chain": one(tdxtesting.QeIdentityHeader),
				"SGX-PCK-Certificate-Issuer-Chain": map[string]string{
					"PROCESSOR": "",
					"PLATFORM":  one(tdxtesting.PckCrlHeader),
				},
			},
			"rootcacrl":     hex.EncodeToString(testdata.RootCrlBody),
			"rootcacrl_cdp": RootCRLURL,
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
