// Package ita is the KBS's client of Intel Trust Authority (ITA), upstream
// Trustee's attestation service type "intel_ta"
// (kbs/src/attestation/intel_trust_authority): the KBS sends the guest's
// evidence to ITA's appraisal API and hands the token ITA signs back to the
// guest as its attestation token.
//
// # Wire
//
//	POST {base_url}/appraisal/v2/attest          (tdx, sgx, nvidia)
//	POST {base_url}/appraisal/v2/attest/azure    (az-tdx-vtpm)
//	x-api-key: <api_key>
//	Content-Type: application/json
//	Accept: application/json
//	User-Agent: Confidential-containers-trustee kbs/<version>
//
//	{"policy_ids":[..],"policy_must_match":bool,
//	 "tdx"|"sgx":{"quote":"..","runtime_data":"..","user_data":"..","event_log":".."},
//	 "nvgpu":{"gpu_nonce":"<hex>","arch":"..","evidence_list":[{"evidence":"..","certificate":".."}]}}
//
// answered 200 {"token":"<JWT>"} or an error status with {"error":".."}.
// The body is upstream's byte for byte: serde's member order, serde's
// string escaping, standard padded base64; runtime_data is the RFC 8785
// form of the KBS's structured runtime data, which is what serde's sorted
// to_string() gives and what the guest hashed into its report data. See
// BuildRequest for each member. Error texts are upstream's (anyhow's
// "context: cause" chains), with our detail where upstream has none.
//
// # Invariants
//
//   - Every call to ITA carries a deadline (Options.Timeout, 60 s by
//     default, and the caller's context) and every response body is read
//     to a bound (MaxResponseBytes); a longer body is an error, never
//     truncated into a token.
//   - The API key is sent in the x-api-key header to base_url only:
//     redirects are not followed (a 3xx is an error), so the key never
//     reaches another host. It is never logged and never part of an error
//     text: anything echoed back by the server is scrubbed of it, and
//     Config's String and GoString hide it.
//   - A token is returned only after it verified against the JWK set of
//     certs_file, selected by the header "kid", with the JWK's "alg" (ITA
//     signs PS384; RS256 keys of the set work too), with a required,
//     unexpired "exp". The token is returned verbatim.
//   - Only tdx, sgx, az-tdx-vtpm and nvidia evidence is sent; any other
//     TEE is refused with upstream's text before anything is sent.
//   - A Client is immutable after New and safe for concurrent use.
//
// # Deviations from upstream
//
//   - Upstream verifies ITA's token with insecure_header_jwk on (a key in
//     the token header is believed); here only the kid path of certs_file
//     is trusted, so a header "jwk" is refused.
//   - Upstream follows redirects (reqwest's default), carrying x-api-key to
//     the redirect target; here a redirect is an error.
//   - base_url must be an https URL (http only to a loopback host), and
//     api_key and certs_file must be set: upstream starts with any string
//     and fails at the first attestation. A trailing "/" of base_url is
//     dropped.
//   - az-tdx-vtpm evidence whose "version" is the number 1 or 2 (what
//     guests emit) is accepted, besides upstream's byte-array form and the
//     string "1" its serde enum matches; the request sent is the same.
//   - upstream selects the hash algorithm of the challenge (SHA-512 for
//     tdx, SHA-256 for sgx and az-tdx-vtpm). The KBS can express only the
//     SHA-512 selection (see GenerateSupplementalChallenge), so sgx and
//     az-tdx-vtpm challenges carry the KBS default (SHA-384).
package ita

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/token"
)

// Upstream's paths and User-Agent prefix.
const (
	AttestPath      = "/appraisal/v2/attest"
	AzureAttestPath = AttestPath + "/azure"
	userAgentPrefix = "Confidential-containers-trustee kbs/"
)

// DefaultTimeout bounds one call to ITA (upstream sets none).
const DefaultTimeout = 60 * time.Second

// MaxResponseBytes bounds a response body: a token of limits.MaxTokenBytes
// and room for the JSON around it.
const MaxResponseBytes = limits.MaxTokenBytes + 4096

var (
	// ErrInvalidConfig is wrapped by New for an unusable configuration or
	// an unloadable certs_file.
	ErrInvalidConfig = errors.New("ita: invalid configuration")
	// ErrUnsupportedTee is wrapped when evidence of a TEE ITA does not
	// appraise is given, or a challenge is asked for one.
	ErrUnsupportedTee = errors.New("ita: unsupported TEE")
	// ErrInvalidEvidence is wrapped when evidence cannot be read into an
	// ITA request.
	ErrInvalidEvidence = errors.New("ita: invalid evidence")
	// ErrUnavailable is wrapped when ITA cannot be reached or does not
	// answer within the deadline.
	ErrUnavailable = errors.New("ita: service unavailable")
	// ErrRefused is wrapped when ITA answers with a status other than 200.
	ErrRefused = errors.New("ita: attestation refused")
	// ErrInvalidResponse is wrapped when a 200 answer is not {"token"}, or
	// a body exceeds MaxResponseBytes.
	ErrInvalidResponse = errors.New("ita: invalid response")
	// ErrInvalidToken is wrapped when ITA's token does not verify.
	ErrInvalidToken = errors.New("ita: invalid token")
	// ErrNotSupported is wrapped by the calls ITA has no counterpart for
	// (attestation policies, reference values).
	ErrNotSupported = errors.New("ita: not supported")
)

// Config is the intel_ta part of [attestation_service].
type Config struct {
	// BaseURL is ITA's API root, e.g. https://api.trustauthority.intel.com.
	BaseURL string
	// APIKey is the attestation API key, sent as x-api-key.
	APIKey string
	// CertsFile is the JWK set ITA signs with: an https:// URL (OpenID
	// discovery as a fallback), a file:// URL or a path.
	CertsFile string
	// PolicyIDs are ITA policy ids appraised with the evidence.
	PolicyIDs []string
	// AllowUnmatchedPolicy lets ITA issue a token when a policy does not
	// match; otherwise policy_must_match is sent true (with policy ids).
	AllowUnmatchedPolicy bool
}

// String hides the API key.
func (c Config) String() string {
	return fmt.Sprintf("{BaseURL:%s APIKey:[redacted] CertsFile:%s PolicyIDs:%v AllowUnmatchedPolicy:%t}",
		c.BaseURL, c.CertsFile, c.PolicyIDs, c.AllowUnmatchedPolicy)
}

// GoString hides the API key.
func (c Config) GoString() string { return "ita.Config" + c.String() }

// Options are the non-configuration inputs of New. Zero values are
// production defaults.
type Options struct {
	// HTTPClient is the transport for ITA and for certs_file. nil: a clone
	// of http.DefaultTransport. Its redirect policy is replaced (ITA calls
	// never follow redirects); its Timeout is kept.
	HTTPClient *http.Client
	// Timeout bounds each ITA call; 0 is DefaultTimeout.
	Timeout time.Duration
	// Now is the clock of token verification; nil is time.Now.
	Now func() time.Time
	// Rand makes challenge nonces; nil is crypto/rand.
	Rand io.Reader
	// Logger receives operational records (never keys or tokens); nil
	// discards.
	Logger *slog.Logger
	// Version is the KBS version in the User-Agent; "" is "0.0.0".
	Version string
}

// Client is the KBS's side of ITA. It implements the KBS's attestation
// service interface.
type Client struct {
	base      string
	apiKey    string
	policyIDs []string
	mustMatch bool
	hc        *http.Client
	timeout   time.Duration
	verifier  *token.Verifier
	rand      io.Reader
	log       *slog.Logger
	userAgent string
}

// New checks cfg, loads the JWK set of certs_file (a failure is an error,
// as upstream refuses to start) and returns a Client.
func New(ctx context.Context, cfg Config, opts Options) (*Client, error) {
	base, err := checkBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.APIKey == "" {
		return nil, errorf(ErrInvalidConfig, "api_key is empty (ITA needs an attestation API key)")
	}
	if cfg.CertsFile == "" {
		return nil, errorf(ErrInvalidConfig, "certs_file is empty (it names the JWK set ITA signs its tokens with)")
	}
	for i, id := range cfg.PolicyIDs {
		if id == "" {
			return nil, errorf(ErrInvalidConfig, "policy_ids[%d] is empty", i)
		}
	}
	c := &Client{
		base:      base,
		apiKey:    cfg.APIKey,
		policyIDs: append([]string{}, cfg.PolicyIDs...),
		// As upstream: true iff policy ids are given and unmatched
		// policies are not allowed.
		mustMatch: len(cfg.PolicyIDs) > 0 && !cfg.AllowUnmatchedPolicy,
		timeout:   opts.Timeout,
		rand:      opts.Rand,
		log:       opts.Logger,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	v := opts.Version
	if v == "" {
		v = "0.0.0"
	}
	c.userAgent = userAgentPrefix + v
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient
		c.hc = &hc
	} else {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	// The API key must not follow a redirect to another host (Go forwards
	// custom headers on redirect); no redirect is followed at all.
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc.Jar = nil
	c.verifier, err = token.NewVerifier(ctx, token.Config{TrustedJWKSets: []string{cfg.CertsFile}}, token.Options{
		HTTPClient: opts.HTTPClient, Now: opts.Now, Logger: c.log})
	if err != nil {
		return nil, errorf(ErrInvalidConfig, "certs_file %s: %s", cfg.CertsFile, c.scrub(err.Error()))
	}
	return c, nil
}

// checkBaseURL returns base_url without its trailing "/": an absolute
// https URL (or http to a loopback host) with no user info, query or
// fragment.
func checkBaseURL(s string) (string, error) {
	if s == "" {
		return "", errorf(ErrInvalidConfig, "base_url is empty")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return "", errorf(ErrInvalidConfig, "base_url %q is not an absolute URL (e.g. https://api.trustauthority.intel.com)", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return "", errorf(ErrInvalidConfig, "base_url %q: http sends the API key in clear; use https (http is accepted for a loopback host only)", s)
		}
	default:
		return "", errorf(ErrInvalidConfig, "base_url %q: scheme must be https", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errorf(ErrInvalidConfig, "base_url %q must be scheme://host[:port][/prefix], without user info, query or fragment", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// BaseURL returns base_url as used (without a trailing "/").
func (c *Client) BaseURL() string { return c.base }

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// scrub removes the API key from a text that may echo it.
func (c *Client) scrub(s string) string {
	if c.apiKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[redacted]")
}

// Evaluate sends the evidence to ITA and returns ITA's token, verified.
// reqs[0] is the primary evidence, the rest additional (device) evidence,
// as the KBS builds them; policyIDs (the KBS's attestation policy ids) are
// not ITA's and are ignored: the configured policy_ids are sent, as
// upstream. Init-data is not sent (upstream sends none).
func (c *Client) Evaluate(ctx context.Context, reqs []as.VerificationRequest, _ []string) (string, error) {
	body, suffix, err := c.encode(reqs)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + AttestPath + suffix
	c.log.Debug("POST attestation request", "url", u, "bytes", len(body))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", errorf(ErrUnavailable, "Failed to POST attestation HTTP request: %s", c.scrub(err.Error()))
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	// Lower case on the wire, as reqwest sends it.
	req.Header["x-api-key"] = []string{c.apiKey}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", errorf(ErrUnavailable, "Failed to POST attestation HTTP request: no answer within the deadline (%v): %s", c.timeout, c.scrub(err.Error()))
		}
		return "", errorf(ErrUnavailable, "Failed to POST attestation HTTP request: %s", c.scrub(err.Error()))
	}
	defer resp.Body.Close()
	b, readErr := readBounded(resp.Body, MaxResponseBytes)
	if resp.StatusCode != http.StatusOK {
		st := statusText(resp.StatusCode)
		if readErr == nil {
			if msg, err := DecodeErrorResponse(b); err == nil {
				return "", errorf(ErrRefused, "Attestation request failed: response status=%s, message=%s", st, c.scrub(excerpt(msg)))
			}
		}
		return "", errorf(ErrRefused, "Attestation request failed: response status=%s", st)
	}
	if readErr != nil {
		if ctx.Err() != nil {
			return "", errorf(ErrUnavailable, "Failed to deserialize attestation response: no answer within the deadline (%v): %s", c.timeout, c.scrub(readErr.Error()))
		}
		return "", errorf(ErrInvalidResponse, "Failed to deserialize attestation response: %s", c.scrub(readErr.Error()))
	}
	tok, err := DecodeAttestResponse(b)
	if err != nil {
		return "", errorf(ErrInvalidResponse, "Failed to deserialize attestation response: %s", c.scrub(err.Error()))
	}
	if _, err := c.verifier.Verify(ctx, tok); err != nil {
		return "", errorf(ErrInvalidToken, "Failed to verify attestation token: %s", c.scrub(err.Error()))
	}
	return tok, nil
}

// readBounded reads r to its end, failing when it holds more than max
// bytes.
func readBounded(r io.Reader, max int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("response body exceeds %d bytes", max)
	}
	return b, nil
}

// statusText is reqwest's StatusCode Display: "401 Unauthorized".
func statusText(code int) string {
	t := http.StatusText(code)
	if t == "" {
		t = "<unknown status code>"
	}
	return fmt.Sprintf("%d %s", code, t)
}

// excerpt bounds a server-supplied message in an error.
func excerpt(s string) string {
	if len(s) <= limits.MaxErrorExcerptBytes {
		return s
	}
	return strings.ToValidUTF8(s[:limits.MaxErrorExcerptBytes], "") + "…"
}

// SetPolicy is refused: ITA's policies are managed in ITA, as upstream
// (the default of its Attest trait).
func (c *Client) SetPolicy(context.Context, string, []byte) error {
	return errorf(ErrNotSupported, "Set Policy API is unimplemented")
}

// RVPS returns a reference value provider that refuses every call with
// upstream's text: ITA has no reference value service the KBS can reach.
func (c *Client) RVPS() rvps.Provider { return noRVPS{} }

// noRVPS implements rvps.Provider by refusing.
type noRVPS struct{}

const errNoRVPS = "Attestation Service does not support reference value configuration."

func (noRVPS) Register(context.Context, []byte) error {
	return errorf(ErrNotSupported, "%s", errNoRVPS)
}

func (noRVPS) Query(context.Context, string) (json.RawMessage, bool, error) {
	return nil, false, errorf(ErrNotSupported, "%s", errNoRVPS)
}
