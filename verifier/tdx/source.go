package tdx

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Getter fetches collateral from Intel's PCS or a PCCS. It returns the
// header and body of a 200 response, and a *StatusError for any other
// status. Implementations bound the body size.
type Getter interface {
	Get(ctx context.Context, url string) (http.Header, []byte, error)
}

// StatusError is an unsuccessful HTTP response from a Getter.
type StatusError struct {
	URL        string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

type httpGetter struct{ client *http.Client }

// NewHTTPGetter returns the production Getter: GET with client (one with a
// 30-second timeout when nil), bodies limited to 2 MiB.
func NewHTTPGetter(client *http.Client) Getter {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	return httpGetter{client: client}
}

func (g httpGetter) Get(ctx context.Context, u string) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, nil, &StatusError{URL: u, StatusCode: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCollateralBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxCollateralBytes {
		return nil, nil, fmt.Errorf("GET %s: body exceeds %d bytes", u, maxCollateralBytes)
	}
	return resp.Header, body, nil
}

// caType is the PCK CA that issued a PCK certificate.
func caType(platformCA bool) string {
	if platformCA {
		return "platform"
	}
	return "processor"
}

// source fetches the four pieces of collateral.
type source interface {
	tcbInfo(ctx context.Context, fmspc [6]byte) (key string, f fetchFunc)
	qeIdentity(ctx context.Context) (key string, f fetchFunc)
	pckCRL(ctx context.Context, ca string) (key string, f fetchFunc)
	rootCRL(ctx context.Context, cdp string) (key string, f fetchFunc)
	// durable reports whether fetched responses go to the disk cache.
	durable() bool
}

// Response header names (Go canonical form) of the issuer chains.
const (
	hdrTCBInfoChain    = "Tcb-Info-Issuer-Chain"
	hdrTCBInfoChainOld = "Sgx-Tcb-Info-Issuer-Chain"
	hdrQEIdentityChain = "Sgx-Enclave-Identity-Issuer-Chain"
	hdrPCKCRLChain     = "Sgx-Pck-Crl-Issuer-Chain"
)

// pcsHost is Intel's PCS; other hosts are PCCS instances.
const pcsHost = "api.trustedservices.intel.com"

// httpSource fetches from Intel's PCS or a PCCS. As upstream, only the
// scheme and authority of the configured URL are kept and the v4 paths are
// built from them.
type httpSource struct {
	getter Getter
	base   *url.URL
	isPCS  bool
	update string
}

func newHTTPSource(getter Getter, u *url.URL, update string) *httpSource {
	return &httpSource{
		getter: getter,
		base:   &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"},
		isPCS:  u.Hostname() == pcsHost,
		update: update,
	}
}

func (s *httpSource) durable() bool { return true }

func (s *httpSource) endpoint(path string, q url.Values) string {
	u := s.base.JoinPath(path)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *httpSource) get(u string, chainHeaders ...string) fetchFunc {
	return func(ctx context.Context) ([]byte, []byte, error) {
		h, body, err := s.getter.Get(ctx, u)
		if err != nil {
			return nil, nil, err
		}
		if len(chainHeaders) == 0 {
			return body, nil, nil
		}
		for _, name := range chainHeaders {
			if v := h.Get(name); v != "" {
				return body, []byte(v), nil
			}
		}
		return nil, nil, fmt.Errorf("GET %s: response has no %s header", u, chainHeaders[0])
	}
}

func (s *httpSource) tcbInfo(_ context.Context, fmspc [6]byte) (string, fetchFunc) {
	u := s.endpoint("tdx/certification/v4/tcb", url.Values{"fmspc": {strings.ToUpper(hex.EncodeToString(fmspc[:]))}, "update": {s.update}})
	return u, s.get(u, hdrTCBInfoChain, hdrTCBInfoChainOld)
}

func (s *httpSource) qeIdentity(context.Context) (string, fetchFunc) {
	u := s.endpoint("tdx/certification/v4/qe/identity", url.Values{"update": {s.update}})
	return u, s.get(u, hdrQEIdentityChain)
}

func (s *httpSource) pckCRL(_ context.Context, ca string) (string, fetchFunc) {
	u := s.endpoint("sgx/certification/v4/pckcrl", url.Values{"ca": {ca}, "encoding": {"der"}})
	return u, s.get(u, hdrPCKCRLChain)
}

func (s *httpSource) rootCRL(_ context.Context, cdp string) (string, fetchFunc) {
	if s.isPCS {
		if cdp == "" {
			return "rootcacrl", func(context.Context) ([]byte, []byte, error) {
				return nil, nil, errors.New("no CRL distribution point in the root CA certificate")
			}
		}
		return cdp, s.get(cdp)
	}
	u := s.endpoint("sgx/certification/v4/rootcacrl", nil)
	return u, s.get(u)
}

// fileSource reads the JSON that Intel's PCS client tool writes, as
// upstream's file:// collateral service. The file is re-read when it
// changes.
type fileSource struct {
	path   string
	update string

	mu     sync.Mutex
	mtime  time.Time
	size   int64
	loaded *pcsToolCollaterals
}

// maxCollateralFileBytes bounds the offline collateral file, which holds
// the collateral of every FMSPC of a fleet.
const maxCollateralFileBytes = limits.MaxTDXCollateralFileBytes

// pcsToolCollaterals is the "collaterals" object of the PCS client tool's
// output.
type pcsToolCollaterals struct {
	TCBInfos []struct {
		FMSPC       string          `json:"fmspc"`
		TDXTCBInfo  json.RawMessage `json:"tdx_tcbinfo"`
		TDXTCBEarly json.RawMessage `json:"tdx_tcbinfo_early"`
		SGXTCBInfo  json.RawMessage `json:"sgx_tcbinfo"`
		SGXTCBEarly json.RawMessage `json:"sgx_tcbinfo_early"`
	} `json:"tcbinfos"`
	PCKCACRL struct {
		ProcessorCRL string `json:"processorCrl"`
		PlatformCRL  string `json:"platformCrl"`
	} `json:"pckcacrl"`
	TDQEIdentity      json.RawMessage `json:"tdqeidentity"`
	TDQEIdentityEarly json.RawMessage `json:"tdqeidentity_early"`
	Certificates      struct {
		TCBInfoIssuerChain  string `json:"TCB-Info-Issuer-Chain"`
		EnclaveIdentityISCh string `json:"SGX-Enclave-Identity-Issuer-Chain"`
		PCKIssuerChains     *struct {
			Processor string `json:"PROCESSOR"`
			Platform  string `json:"PLATFORM"`
		} `json:"SGX-PCK-Certificate-Issuer-Chain"`
	} `json:"certificates"`
	RootCACRL    string `json:"rootcacrl"`
	RootCACRLCDP string `json:"rootcacrl_cdp"`
}

func (s *fileSource) durable() bool { return false }

// load returns the file's collaterals and a key that changes with the file.
func (s *fileSource) load() (*pcsToolCollaterals, string, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fmt.Sprintf("file://%s@%d.%d", s.path, fi.ModTime().UnixNano(), fi.Size())
	if s.loaded != nil && fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return s.loaded, key, nil
	}
	if fi.Size() > maxCollateralFileBytes {
		return nil, "", fmt.Errorf("%s: %d bytes exceed the limit of %d", s.path, fi.Size(), maxCollateralFileBytes)
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, "", err
	}
	var doc struct {
		Collaterals *pcsToolCollaterals `json:"collaterals"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Collaterals == nil {
		return nil, "", fmt.Errorf("%s: not a PCS client tool collateral file: %v", s.path, err)
	}
	s.loaded, s.mtime, s.size = doc.Collaterals, fi.ModTime(), fi.Size()
	return s.loaded, key, nil
}

func present(m json.RawMessage) bool { return len(m) > 0 && string(m) != "null" }

// pick returns the early document when updates are early and it exists,
// else the standard one.
func (s *fileSource) pick(early, standard json.RawMessage) json.RawMessage {
	if s.update == "early" && present(early) {
		return early
	}
	return standard
}

// fileFetch loads the file and extracts one piece of collateral. The key is
// computed at fetch time too, but the cache key must be known before: it is
// the path and what, and the file's identity is checked by the caller.
func (s *fileSource) fileFetch(what string, extract func(c *pcsToolCollaterals) ([]byte, []byte, error)) (string, fetchFunc) {
	_, key, err := s.load()
	if err != nil {
		return "file://" + s.path + "#" + what, func(context.Context) ([]byte, []byte, error) {
			return nil, nil, fmt.Errorf("collateral not available from %s: %w", s.path, err)
		}
	}
	return key + "#" + what, func(context.Context) ([]byte, []byte, error) {
		c, _, err := s.load()
		if err != nil {
			return nil, nil, fmt.Errorf("collateral not available from %s: %w", s.path, err)
		}
		return extract(c)
	}
}

func (s *fileSource) tcbInfo(_ context.Context, fmspc [6]byte) (string, fetchFunc) {
	want := hex.EncodeToString(fmspc[:])
	return s.fileFetch("tcb/"+want+"/"+s.update, func(c *pcsToolCollaterals) ([]byte, []byte, error) {
		for _, e := range c.TCBInfos {
			if !strings.EqualFold(e.FMSPC, want) {
				continue
			}
			doc := s.pick(e.TDXTCBEarly, e.TDXTCBInfo)
			if !present(doc) {
				return nil, nil, fmt.Errorf("no TDX TCB info for fmspc %s in %s", want, s.path)
			}
			return doc, []byte(c.Certificates.TCBInfoIssuerChain), nil
		}
		return nil, nil, fmt.Errorf("fmspc %s not found in %s", want, s.path)
	})
}

func (s *fileSource) qeIdentity(context.Context) (string, fetchFunc) {
	return s.fileFetch("qe/"+s.update, func(c *pcsToolCollaterals) ([]byte, []byte, error) {
		doc := s.pick(c.TDQEIdentityEarly, c.TDQEIdentity)
		if !present(doc) {
			return nil, nil, fmt.Errorf("no TD QE identity in %s", s.path)
		}
		return doc, []byte(c.Certificates.EnclaveIdentityISCh), nil
	})
}

func (s *fileSource) pckCRL(_ context.Context, ca string) (string, fetchFunc) {
	return s.fileFetch("pckcrl/"+ca, func(c *pcsToolCollaterals) ([]byte, []byte, error) {
		chains := c.Certificates.PCKIssuerChains
		if chains == nil {
			return nil, nil, fmt.Errorf("no PCK CRL issuer chains in %s", s.path)
		}
		crl, chain := c.PCKCACRL.ProcessorCRL, chains.Processor
		if ca == "platform" {
			crl, chain = c.PCKCACRL.PlatformCRL, chains.Platform
		}
		der, err := hex.DecodeString(crl)
		if err != nil || len(der) == 0 {
			return nil, nil, fmt.Errorf("%s PCK CRL in %s is not hex", ca, s.path)
		}
		return der, []byte(chain), nil
	})
}

func (s *fileSource) rootCRL(_ context.Context, cdp string) (string, fetchFunc) {
	return s.fileFetch("rootcacrl", func(c *pcsToolCollaterals) ([]byte, []byte, error) {
		if c.RootCACRLCDP != "" && cdp != "" && c.RootCACRLCDP != cdp {
			return nil, nil, fmt.Errorf("rootcacrl_cdp mismatch: %s has %s, certificate has %s", s.path, c.RootCACRLCDP, cdp)
		}
		der, err := hex.DecodeString(c.RootCACRL)
		if err != nil || len(der) == 0 {
			return nil, nil, fmt.Errorf("root CA CRL in %s is not hex", s.path)
		}
		return der, nil, nil
	})
}
