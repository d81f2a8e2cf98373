// Package itatest is a fake Intel Trust Authority for tests of the KBS's
// intel_ta attestation service (package kbs/ita): an httptest TLS server
// implementing the endpoints the KBS uses,
//
//	POST /appraisal/v2/attest         tdx, sgx, nvgpu evidence
//	POST /appraisal/v2/attest/azure   Azure TDX (td_quote, HCL var_data)
//	GET  /certs                       the JWK set tokens are signed with
//	GET  /.well-known/openid-configuration  {"jwks_uri": ".../certs"}
//	GET  /                            an HTML page, as the ITA portal root
//
// so that certs_file may be the server's URL (as upstream's configurations
// name https://portal.trustauthority.intel.com) or its /certs.
//
// It is a fake of the service, not of the hardware: it does not verify
// quote signatures or collateral (no real quote binds a test's nonce). What
// it checks is the request, strictly: method and path; x-api-key, exactly
// one, equal to the configured key; Content-Type and Accept
// "application/json"; the User-Agent prefix "Confidential-containers-trustee
// kbs/"; a compact JSON body whose members are exactly upstream's, in
// upstream's order, none unknown; policy_ids UUIDs, policy_must_match true
// only with policy ids; standard base64 everywhere ITA decodes it; a TDX
// quote that parses; and runtime_data exactly what the KBS must send: the
// RFC 8785 form of {"additional-evidence","nonce","tee-pubkey"} (for Azure
// that is user_data, and runtime_data is the HCL variable data, whose
// SHA-256 the TD quote's REPORT_DATA must start with); the nvgpu gpu_nonce
// derived from the same nonce and key. With Options.CheckReportData the
// quote's REPORT_DATA must also be H(runtime_data) (SHA-512 for TDX,
// SHA-256 for SGX), the binding ITA checks: a test attester patching the
// REPORT_DATA of a recorded quote satisfies it.
//
// Accepted requests get a token in ITA's shape: header {"alg":"PS384",
// "jku":".../certs","kid":..,"typ":"JWT"}; claims "tdx" (the quote's
// measurements as tdx_* hex, attester_runtime_data = the runtime data JSON,
// for Azure attester_user_data as well), "sgx", "nvgpu",
// policy_ids_matched/unmatched, ver, iss, jti, iat, nbf, exp. A refused
// request gets an error status with {"error": ".."}.
//
// SetFailure makes it misbehave: any status and error body, a raw body, an
// oversized answer, a slow answer, a redirect, a token signed by an unknown
// key, with a header JWK, or expired. It records every attest request. It
// is safe for concurrent use.
package itatest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/token/jwt"
	"github.com/go-trustee/go-trustee/verifier/tdx"
)

// DefaultAPIKey is the key the server accepts when Options.APIKey is "".
const DefaultAPIKey = "itatest-api-key-0123456789"

// UserAgentPrefix is what the User-Agent of an attest call must start with.
const UserAgentPrefix = "Confidential-containers-trustee kbs/"

// Options configure a Server.
type Options struct {
	// APIKey is the accepted x-api-key; "" is DefaultAPIKey.
	APIKey string
	// UnmatchedPolicies are policy ids the server reports as not matched
	// (all others match).
	UnmatchedPolicies []string
	// CheckReportData requires the quote's REPORT_DATA to be
	// H(runtime_data): SHA-512 for tdx, SHA-256 for sgx.
	CheckReportData bool
	// SignRS256 signs with the RS256 key of the JWK set instead of the
	// PS384 one.
	SignRS256 bool
	// Now is the clock of issued tokens; nil is time.Now.
	Now func() time.Time
	// TokenTTL is the lifetime of issued tokens; 0 is 10 minutes.
	TokenTTL time.Duration
}

// Failure is a way to misbehave; the zero value behaves.
type Failure struct {
	// Status answers every attest call with this status and {"error":
	// Error} (or Body when set), before the request is checked.
	Status int
	Error  string
	Body   []byte
	// Oversized answers 200 with a {"token"} body far above any token.
	Oversized bool
	// Delay holds the answer (until the client gives up).
	Delay time.Duration
	// RedirectTo answers 307 to this URL.
	RedirectTo string
	// UnknownKey signs the token with a key that is not in the JWK set.
	UnknownKey bool
	// HeaderJWK puts the (unknown) signing key in the token header as
	// "jwk", without a kid.
	HeaderJWK bool
	// Expired issues a token that expired an hour ago.
	Expired bool
}

// Request is one recorded attest call.
type Request struct {
	Path   string
	Header http.Header
	Body   []byte
	// Refusal is why the request was refused ("" when accepted or when a
	// Failure answered first).
	Refusal string
	// Token is the token issued ("" when none).
	Token string
	// RuntimeData is the decoded runtime data JSON of the accepted request
	// (for Azure, the decoded user_data).
	RuntimeData []byte
}

// Server is the fake. Build it with New; Close it.
type Server struct {
	ts    *httptest.Server
	opts  Options
	keys  *keyMaterial
	mu    sync.Mutex
	fail  Failure
	reqs  []Request
	jwksN int
}

type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
	alg  string
	cert []byte
}

type keyMaterial struct {
	ps384, rs256, unknown signingKey
}

// Key generation is slow under the race detector: one set per process.
var sharedKeys = sync.OnceValue(func() *keyMaterial {
	return &keyMaterial{ps384: newKey("PS384"), rs256: newKey("RS256"), unknown: newKey("PS384")}
})

func newKey(alg string) signingKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("itatest: " + err.Error())
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Intel Trust Authority fake token signing"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic("itatest: " + err.Error())
	}
	sum := sha512.Sum384(der)
	return signingKey{priv: k, kid: hex.EncodeToString(sum[:]), alg: alg, cert: der}
}

// New starts a Server.
func New(opts Options) *Server {
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 10 * time.Minute
	}
	s := &Server{opts: opts, keys: sharedKeys()}
	s.ts = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the server's root: base_url, and a certs_file (OpenID discovery).
func (s *Server) URL() string { return s.ts.URL }

// CertsURL is the JWK set's URL.
func (s *Server) CertsURL() string { return s.ts.URL + "/certs" }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// APIKey returns the accepted API key.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close stops the server.
func (s *Server) Close() { s.ts.Close() }

// SetFailure sets how attest calls misbehave (the zero Failure: not).
func (s *Server) SetFailure(f Failure) { s.mu.Lock(); s.fail = f; s.mu.Unlock() }

// Requests returns the recorded attest calls.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// JWKSFetches returns how many times /certs was read.
func (s *Server) JWKSFetches() int { s.mu.Lock(); defer s.mu.Unlock(); return s.jwksN }

// JWKS returns the JWK set document.
func (s *Server) JWKS() []byte {
	var keys []map[string]any
	for _, k := range []signingKey{s.keys.ps384, s.keys.rs256} {
		m, err := jwt.PublicJWK(&k.priv.PublicKey, k.alg)
		if err != nil {
			panic("itatest: " + err.Error())
		}
		m["kid"] = k.kid
		m["x5c"] = []string{base64.StdEncoding.EncodeToString(k.cert)}
		keys = append(keys, m)
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><html><body>Intel Trust Authority (itatest)</body></html>")
	case "/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]string{"issuer": s.ts.URL, "jwks_uri": s.CertsURL()})
	case "/certs":
		s.mu.Lock()
		s.jwksN++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.JWKS())
	case "/appraisal/v2/attest", "/appraisal/v2/attest/azure":
		s.attest(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	}
}

func (s *Server) attest(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	s.mu.Lock()
	fail := s.fail
	idx := len(s.reqs)
	s.reqs = append(s.reqs, Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	s.mu.Unlock()
	record := func(f func(*Request)) {
		s.mu.Lock()
		f(&s.reqs[idx])
		s.mu.Unlock()
	}
	if fail.Delay > 0 {
		select {
		case <-time.After(fail.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case fail.RedirectTo != "":
		http.Redirect(w, r, fail.RedirectTo, http.StatusTemporaryRedirect)
		return
	case fail.Status != 0:
		if fail.Body != nil {
			w.WriteHeader(fail.Status)
			w.Write(fail.Body)
			return
		}
		writeJSON(w, fail.Status, map[string]string{"error": fail.Error})
		return
	}
	claims, rd, code, err := s.check(r, body)
	if err != nil {
		record(func(q *Request) { q.Refusal = err.Error() })
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	if fail.Oversized {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"token":"`+strings.Repeat("A", limits.MaxTokenBytes+8192)+`"}`)
		return
	}
	tok, err := s.sign(claims, fail)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	record(func(q *Request) { q.Token = tok; q.RuntimeData = rd })
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (s *Server) sign(claims map[string]any, fail Failure) (string, error) {
	now := s.opts.Now()
	iat, exp := now, now.Add(s.opts.TokenTTL)
	if fail.Expired {
		iat, exp = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
	claims["iat"], claims["nbf"], claims["exp"] = iat.Unix(), iat.Unix(), exp.Unix()
	claims["jti"] = uuid.NewString()
	claims["iss"] = "Intel Trust Authority"
	claims["ver"] = "2.0.0"
	k := s.keys.ps384
	if s.opts.SignRS256 {
		k = s.keys.rs256
	}
	if fail.UnknownKey || fail.HeaderJWK {
		k = s.keys.unknown
	}
	hdr := map[string]any{"alg": k.alg, "jku": s.CertsURL(), "kid": k.kid, "typ": "JWT"}
	if fail.HeaderJWK {
		j, err := jwt.PublicJWK(&k.priv.PublicKey, k.alg)
		if err != nil {
			return "", err
		}
		delete(hdr, "kid")
		hdr["jwk"] = j
	}
	return jwt.Sign(hdr, claims, crypto.Signer(k.priv), nil)
}

// refusal is a 4xx answer.
type refusal struct {
	code int
	msg  string
}

func (e *refusal) Error() string { return e.msg }

func refuse(code int, format string, args ...any) error {
	return &refusal{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) check(r *http.Request, body []byte) (map[string]any, []byte, int, error) {
	claims, rd, err := s.checkRequest(r, body)
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) {
			return nil, nil, rf.code, err
		}
		return nil, nil, http.StatusBadRequest, err
	}
	return claims, rd, 0, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *Server) checkRequest(r *http.Request, body []byte) (map[string]any, []byte, error) {
	if r.Method != http.MethodPost {
		return nil, nil, refuse(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	if keys := r.Header.Values("X-Api-Key"); len(keys) != 1 || keys[0] != s.opts.APIKey {
		return nil, nil, refuse(http.StatusUnauthorized, "Unauthorized: invalid or missing x-api-key")
	}
	for _, h := range []string{"Content-Type", "Accept"} {
		if v := r.Header.Values(h); len(v) != 1 || v[0] != "application/json" {
			return nil, nil, refuse(http.StatusUnsupportedMediaType, "%s must be application/json, got %q", h, v)
		}
	}
	if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, UserAgentPrefix) || len(ua) == len(UserAgentPrefix) {
		return nil, nil, fmt.Errorf("User-Agent %q does not start with %q and a version", ua, UserAgentPrefix)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil || !bytes.Equal(compact.Bytes(), body) {
		return nil, nil, errors.New("body is not compact JSON (serde_json::to_string output)")
	}
	azure := strings.HasSuffix(r.URL.Path, "/azure")
	top, err := members(body, []string{"policy_ids", "policy_must_match", "tdx", "sgx", "nvgpu"}, "policy_ids", "policy_must_match")
	if err != nil {
		return nil, nil, fmt.Errorf("request: %v", err)
	}
	var ids []string
	if err := json.Unmarshal(top["policy_ids"], &ids); err != nil || ids == nil {
		return nil, nil, errors.New("policy_ids must be an array of strings")
	}
	var mustMatch bool
	if err := json.Unmarshal(top["policy_must_match"], &mustMatch); err != nil || isNull(top["policy_must_match"]) {
		return nil, nil, errors.New("policy_must_match must be a boolean")
	}
	for _, id := range ids {
		if !uuidRE.MatchString(id) {
			return nil, nil, fmt.Errorf("policy id %q is not a UUID", id)
		}
	}
	if mustMatch && len(ids) == 0 {
		return nil, nil, errors.New("policy_must_match is true but no policy_ids are given")
	}
	var matched, unmatched []any
	var unmatchedIDs []string
	for _, id := range ids {
		e := map[string]any{"id": id, "version": "v1"}
		if slices.Contains(s.opts.UnmatchedPolicies, id) {
			unmatched = append(unmatched, e)
			unmatchedIDs = append(unmatchedIDs, id)
		} else {
			matched = append(matched, e)
		}
	}
	if mustMatch && len(unmatchedIDs) > 0 {
		return nil, nil, refuse(http.StatusBadRequest, "policy_must_match: policies not matched: %s", strings.Join(unmatchedIDs, ", "))
	}
	claims := map[string]any{"verifier_instance_ids": []string{"00000000-0000-4000-8000-000000000001"}}
	if matched != nil {
		claims["policy_ids_matched"] = matched
	}
	if unmatched != nil {
		claims["policy_ids_unmatched"] = unmatched
	}
	_, hasTDX := top["tdx"]
	_, hasSGX := top["sgx"]
	_, hasGPU := top["nvgpu"]
	switch {
	case azure && (!hasTDX || hasSGX || hasGPU):
		return nil, nil, errors.New("/azure takes tdx evidence only")
	case !hasTDX && !hasSGX && !hasGPU:
		return nil, nil, errors.New("no evidence (tdx, sgx or nvgpu)")
	}
	var kbsRD []byte // the runtime data JSON the KBS built
	if hasTDX {
		c, rd, err := s.checkDCAP("tdx", top["tdx"], azure)
		if err != nil {
			return nil, nil, err
		}
		claims["tdx"], kbsRD = c, rd
	}
	if hasSGX {
		c, rd, err := s.checkDCAP("sgx", top["sgx"], false)
		if err != nil {
			return nil, nil, err
		}
		claims["sgx"], kbsRD = c, rd
	}
	if hasGPU {
		c, err := checkGPU(top["nvgpu"], kbsRD)
		if err != nil {
			return nil, nil, err
		}
		claims["nvgpu"] = c
	}
	return claims, kbsRD, nil
}

// members decodes a JSON object whose member names are a subsequence of
// order (no unknown, repeated or misplaced member), with required present
// and not null.
func members(raw []byte, order []string, required ...string) (map[string]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	pos := 0
	for d.More() {
		kt, err := d.Token()
		if err != nil {
			return nil, err
		}
		k := kt.(string)
		i := slices.Index(order[pos:], k)
		if i < 0 {
			if slices.Contains(order, k) {
				return nil, fmt.Errorf("member %q repeated or out of upstream's order %v", k, order)
			}
			return nil, fmt.Errorf("unknown member %q", k)
		}
		pos += i + 1
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	for _, k := range required {
		if v, ok := out[k]; !ok || isNull(v) {
			return nil, fmt.Errorf("missing member %q", k)
		}
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(raw, []byte("null")) }

func str(m map[string]json.RawMessage, k string) (string, bool, error) {
	raw, ok := m[k]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || isNull(raw) {
		return "", true, fmt.Errorf("member %q must be a string", k)
	}
	return s, true, nil
}

func b64(m map[string]json.RawMessage, k string) ([]byte, bool, error) {
	s, ok, err := str(m, k)
	if err != nil || !ok {
		return nil, ok, err
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, true, fmt.Errorf("member %q is not non-empty standard base64", k)
	}
	return b, true, nil
}

// checkKBSRuntimeData checks that rd is exactly what the KBS must send:
// the JCS form of {"additional-evidence": string, "nonce": base64 of 32
// bytes, "tee-pubkey": typed key}. It returns rd decoded.
func checkKBSRuntimeData(what string, rd []byte) (map[string]any, error) {
	c, err := protocol.Canonicalize(rd)
	if err != nil || !bytes.Equal(c, rd) {
		return nil, fmt.Errorf("%s is not the RFC 8785 form of a JSON document: %q", what, rd)
	}
	var m struct {
		AdditionalEvidence *string             `json:"additional-evidence"`
		Nonce              *string             `json:"nonce"`
		TeePubKey          *protocol.TeePubKey `json:"tee-pubkey"`
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(rd, &all); err != nil || len(all) != 3 {
		return nil, fmt.Errorf("%s must hold exactly additional-evidence, nonce and tee-pubkey: %q", what, rd)
	}
	if err := json.Unmarshal(rd, &m); err != nil || m.AdditionalEvidence == nil || m.Nonce == nil || m.TeePubKey == nil {
		return nil, fmt.Errorf("%s must hold additional-evidence, nonce and tee-pubkey: %v", what, err)
	}
	if n, err := base64.StdEncoding.Strict().DecodeString(*m.Nonce); err != nil || len(n) != 32 {
		return nil, fmt.Errorf("%s: nonce %q is not base64 of 32 bytes", what, *m.Nonce)
	}
	var obj map[string]any
	json.Unmarshal(rd, &obj)
	return obj, nil
}

func (s *Server) checkDCAP(name string, raw json.RawMessage, azure bool) (map[string]any, []byte, error) {
	m, err := members(raw, []string{"quote", "runtime_data", "user_data", "event_log"}, "quote", "runtime_data")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	}
	quote, _, err := b64(m, "quote")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	}
	rd, _, err := b64(m, "runtime_data")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	}
	ud, hasUD, err := b64(m, "user_data")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	}
	if _, hasEL, err := b64(m, "event_log"); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	} else if azure && hasEL {
		return nil, nil, errors.New("tdx: /azure takes no event_log")
	}
	var claims map[string]any
	var reportData []byte
	switch name {
	case "tdx":
		q, err := tdx.ParseQuote(quote)
		if err != nil {
			return nil, nil, fmt.Errorf("tdx: quote: %v", err)
		}
		claims, reportData = tdxClaims(q), q.Body.ReportData[:]
	case "sgx":
		if len(quote) < 432 || binary.LittleEndian.Uint16(quote) != 3 {
			return nil, nil, errors.New("sgx: quote is not an SGX quote v3")
		}
		body := quote[48:432]
		claims = map[string]any{"attester_type": "SGX", "attester_tcb_status": "UpToDate",
			"sgx_mrenclave": hex.EncodeToString(body[64:96]), "sgx_mrsigner": hex.EncodeToString(body[128:160]),
			"sgx_isvprodid": binary.LittleEndian.Uint16(body[256:]), "sgx_isvsvn": binary.LittleEndian.Uint16(body[258:]),
			"sgx_report_data": hex.EncodeToString(body[320:384]), "sgx_is_debuggable": body[96]&2 != 0}
		reportData = body[320:384]
	}
	if azure {
		// runtime_data is the HCL variable data, which the TD binds.
		var vd map[string]any
		if err := json.Unmarshal(rd, &vd); err != nil || vd["keys"] == nil {
			return nil, nil, errors.New("tdx: /azure runtime_data is not HCL variable data (a JSON object with keys)")
		}
		if h := sha256.Sum256(rd); !bytes.Equal(reportData[:32], h[:]) {
			return nil, nil, errors.New("tdx: /azure REPORT_DATA does not start with SHA-256(runtime_data)")
		}
		if !hasUD {
			return nil, nil, errors.New("tdx: /azure needs user_data")
		}
		u, err := checkKBSRuntimeData("tdx.user_data", ud)
		if err != nil {
			return nil, nil, err
		}
		claims["attester_runtime_data"], claims["attester_user_data"] = vd, u
		return claims, ud, nil
	}
	obj, err := checkKBSRuntimeData(name+".runtime_data", rd)
	if err != nil {
		return nil, nil, err
	}
	if s.opts.CheckReportData {
		var want []byte
		if name == "tdx" {
			h := sha512.Sum512(rd)
			want = h[:]
		} else {
			h := sha256.Sum256(rd)
			want = h[:]
		}
		if !bytes.Equal(reportData[:len(want)], want) {
			return nil, nil, fmt.Errorf("%s: REPORT_DATA %x is not the digest of runtime_data", name, reportData)
		}
	}
	claims["attester_runtime_data"] = obj
	return claims, rd, nil
}

func tdxClaims(q *tdx.Quote) map[string]any {
	b := q.Body
	h := hex.EncodeToString
	debug := b.TDAttributes[0]&1 != 0
	dbg := "disabled"
	if debug {
		dbg = "enabled"
	}
	return map[string]any{
		"attester_type": "TDX", "attester_tcb_status": "UpToDate", "attester_tcb_date": "2024-03-13T00:00:00Z",
		"attester_advisory_ids": []string{}, "dbgstat": dbg, "tdx_is_debuggable": debug,
		"tdx_tee_tcb_svn": h(b.TEETCBSVN[:]), "tdx_mrseam": h(b.MRSEAM[:]), "tdx_mrsignerseam": h(b.MRSignerSEAM[:]),
		"tdx_seam_attributes": h(b.SEAMAttributes[:]), "tdx_td_attributes": h(b.TDAttributes[:]), "tdx_xfam": h(b.XFAM[:]),
		"tdx_mrtd": h(b.MRTD[:]), "tdx_mrconfigid": h(b.MRConfigID[:]), "tdx_mrowner": h(b.MROwner[:]),
		"tdx_mrownerconfig": h(b.MROwnerConfig[:]), "tdx_rtmr0": h(b.RTMR[0][:]), "tdx_rtmr1": h(b.RTMR[1][:]),
		"tdx_rtmr2": h(b.RTMR[2][:]), "tdx_rtmr3": h(b.RTMR[3][:]), "tdx_report_data": h(b.ReportData[:]),
	}
}

var hexNonceRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkGPU checks nvgpu; with the primary runtime data known, gpu_nonce
// must be hex(SHA-512(JCS({"nonce","tee-pubkey"}))[:32]).
func checkGPU(raw json.RawMessage, primaryRD []byte) (map[string]any, error) {
	m, err := members(raw, []string{"gpu_nonce", "arch", "evidence_list"}, "gpu_nonce", "arch", "evidence_list")
	if err != nil {
		return nil, fmt.Errorf("nvgpu: %v", err)
	}
	nonce, _, err := str(m, "gpu_nonce")
	if err != nil || !hexNonceRE.MatchString(nonce) {
		return nil, fmt.Errorf("nvgpu: gpu_nonce %q is not 64 lower-case hex digits", nonce)
	}
	arch, _, err := str(m, "arch")
	if err != nil || (arch != "HOPPER" && arch != "BLACKWELL") {
		return nil, fmt.Errorf("nvgpu: arch %q is not HOPPER or BLACKWELL", arch)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(m["evidence_list"], &list); err != nil || len(list) == 0 {
		return nil, errors.New("nvgpu: evidence_list must be a non-empty array")
	}
	for i, it := range list {
		im, err := members(it, []string{"evidence", "certificate"}, "evidence", "certificate")
		if err != nil {
			return nil, fmt.Errorf("nvgpu: evidence_list[%d]: %v", i, err)
		}
		for _, k := range []string{"evidence", "certificate"} {
			if _, _, err := b64(im, k); err != nil {
				return nil, fmt.Errorf("nvgpu: evidence_list[%d]: %v", i, err)
			}
		}
	}
	if primaryRD != nil {
		var p struct {
			Nonce     string             `json:"nonce"`
			TeePubKey protocol.TeePubKey `json:"tee-pubkey"`
		}
		if err := json.Unmarshal(primaryRD, &p); err != nil {
			return nil, fmt.Errorf("nvgpu: primary runtime data: %v", err)
		}
		drd, err := json.Marshal(protocol.DeviceRuntimeData{Nonce: p.Nonce, TeePubKey: p.TeePubKey})
		if err != nil {
			return nil, err
		}
		c, err := protocol.Canonicalize(drd)
		if err != nil {
			return nil, err
		}
		h := sha512.Sum512(c)
		if want := hex.EncodeToString(h[:32]); nonce != want {
			return nil, fmt.Errorf("nvgpu: gpu_nonce %s, want %s (from the device runtime data)", nonce, want)
		}
	}
	return map[string]any{"attester_type": "NVGPU", "attester_tcb_status": "UpToDate", "gpu_nonce": nonce,
		"x-nvidia-gpu-arch-check": true, "x-nvidia-gpu-arch": arch, "devices": len(list)}, nil
}
