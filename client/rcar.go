package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/protocol"
)

// authRequest builds the body of /kbs/v0/auth, byte for byte upstream's:
// {"version":"0.4.0","tee":"<tee>","extra-params":{"supported-hash-algorithms":[...]}}.
func authRequest(tee protocol.Tee) ([]byte, error) {
	extra, err := json.Marshal(map[string][]string{"supported-hash-algorithms": SupportedHashAlgorithms()})
	if err != nil {
		return nil, err
	}
	return marshal(protocol.Request{Version: protocol.Version, Tee: tee, ExtraParams: extra})
}

// marshal encodes v compactly without Go's HTML escaping of <, > and &, as
// serde_json writes it: init-data TOML and Rego hold such characters.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// parseChallenge decodes the body of a successful /kbs/v0/auth. The nonce
// must be a non-empty string; extra-params may be any JSON ("" from Trustee
// for most TEEs, an object selecting the hash algorithm otherwise).
func parseChallenge(b []byte) (protocol.Challenge, protocol.HashAlgorithm, error) {
	var ch protocol.Challenge
	if err := json.Unmarshal(b, &ch); err != nil {
		return ch, "", fmt.Errorf("%w: challenge: %v", ErrInvalidResponse, err)
	}
	if ch.Nonce == "" {
		return ch, "", fmt.Errorf("%w: challenge has no nonce", ErrInvalidResponse)
	}
	h, err := protocol.SelectedHashAlgorithm(ch.ExtraParams)
	if err != nil {
		return ch, "", fmt.Errorf("%w: challenge: %v", ErrInvalidResponse, err)
	}
	return ch, h, nil
}

// parseAttestResponse decodes {"token":"<JWT>"} and the token's validity.
func parseAttestResponse(b []byte) (string, TokenTimes, error) {
	var ar protocol.AttestationResponse
	if err := json.Unmarshal(b, &ar); err != nil {
		return "", TokenTimes{}, fmt.Errorf("%w: attest response: %v", ErrInvalidResponse, err)
	}
	times, err := ParseTokenTimes(ar.Token)
	if err != nil {
		return "", TokenTimes{}, fmt.Errorf("%w: attest response: %w", ErrInvalidResponse, err)
	}
	return ar.Token, times, nil
}

// sessionCookie returns the kbs-session-id value set by r, or "".
func sessionCookie(r *response) string {
	resp := http.Response{Header: r.header}
	for _, ck := range resp.Cookies() {
		if ck.Name == protocol.CookieName && ck.Value != "" {
			return ck.Value
		}
	}
	return ""
}

// evidence computes the composite evidence for a challenge, as upstream:
// devices bind H(JCS({nonce, tee-pubkey})), the primary TEE binds
// protocol.ReportData(H, nonce, tee-pubkey, additional evidence).
func (c *Client) evidence(ctx context.Context, h protocol.HashAlgorithm, rd protocol.RuntimeData) (protocol.CompositeEvidence, error) {
	var ce protocol.CompositeEvidence
	if da, ok := c.att.(attester.DeviceAttester); ok {
		if devs := da.Devices(); len(devs) > 0 {
			devRD, err := protocol.DeviceReportData(h, rd.Nonce, rd.TeePubKey)
			if err != nil {
				return ce, fmt.Errorf("computing device report data: %w", err)
			}
			if ce.AdditionalEvidence, err = attester.AdditionalEvidence(ctx, devs, devRD); err != nil {
				return ce, err
			}
		}
	}
	reportData, err := protocol.ReportData(h, rd.Nonce, rd.TeePubKey, ce.AdditionalEvidence)
	if err != nil {
		return ce, fmt.Errorf("computing report data: %w", err)
	}
	ev, err := c.att.Evidence(ctx, reportData)
	if err != nil {
		return ce, fmt.Errorf("getting %s evidence: %w", c.att.Tee(), err)
	}
	if err := attester.Check(ev); err != nil {
		return ce, fmt.Errorf("%s evidence: %w", c.att.Tee(), err)
	}
	ce.PrimaryEvidence = ev
	return ce, nil
}

// handshake runs one RCAR handshake and returns the token and session.
func (c *Client) handshake(ctx context.Context) (token, session string, times TokenTimes, err error) {
	tee := c.att.Tee()
	body, err := authRequest(tee)
	if err != nil {
		return "", "", times, fmt.Errorf("encoding auth request: %w", err)
	}
	resp, err := c.do(ctx, request{op: "auth", method: http.MethodPost, path: "/kbs/v0/auth", body: body, contentType: "application/json"})
	if err != nil {
		return "", "", times, err
	}
	if resp.status != http.StatusOK {
		return "", "", times, statusError("auth", resp)
	}
	session = sessionCookie(resp)
	if session == "" {
		return "", "", times, fmt.Errorf("%w: auth response sets no %s cookie", ErrInvalidResponse, protocol.CookieName)
	}
	ch, h, err := parseChallenge(resp.body)
	if err != nil {
		return "", "", times, err
	}
	rd := protocol.RuntimeData{Nonce: ch.Nonce, TeePubKey: c.kp.PublicKey()}
	ce, err := c.evidence(ctx, h, rd)
	if err != nil {
		return "", "", times, err
	}
	body, err = marshal(protocol.Attestation{InitData: c.initData, RuntimeData: rd, TeeEvidence: ce})
	if err != nil {
		return "", "", times, fmt.Errorf("encoding attestation: %w", err)
	}
	resp, err = c.do(ctx, request{op: "attest", method: http.MethodPost, path: "/kbs/v0/attest", body: body, contentType: "application/json", cookie: session})
	if err != nil {
		return "", "", times, err
	}
	if resp.status != http.StatusOK {
		return "", "", times, statusError("attest", resp)
	}
	if s := sessionCookie(resp); s != "" {
		session = s
	}
	token, times, err = parseAttestResponse(resp.body)
	if err != nil {
		return "", "", times, err
	}
	return token, session, times, nil
}

// attest runs handshakes until one succeeds, MaxAttestRetries are spent, a
// permanent error occurs or ctx is done, and installs the new token.
func (c *Client) attest(ctx context.Context) (string, error) {
	if c.att == nil {
		return "", ErrNoAttester
	}
	var last error
	for attempt := 1; attempt <= c.maxAttest; attempt++ {
		if attempt > 1 {
			if err := c.sleep(ctx, c.retryInterval); err != nil {
				return "", fmt.Errorf("RCAR handshake: %w (last failure: %w)", err, last)
			}
		}
		token, session, times, err := c.handshake(ctx)
		if err == nil {
			c.mu.Lock()
			c.token, c.session, c.times, c.static = token, session, times, false
			c.gen++
			c.mu.Unlock()
			c.log.Debug("RCAR handshake succeeded", "attempt", attempt)
			return token, nil
		}
		last = err
		if cerr := ctx.Err(); cerr != nil {
			return "", fmt.Errorf("RCAR handshake: %w (last failure: %w)", cerr, err)
		}
		if permanent(err) {
			return "", fmt.Errorf("RCAR handshake: %w", err)
		}
		c.log.Warn("RCAR handshake failed", "attempt", attempt, "max", c.maxAttest, "err", err)
	}
	return "", fmt.Errorf("RCAR handshake failed after %d attempts: %w", c.maxAttest, last)
}

// Attest runs a new RCAR handshake (retrying as configured) and returns the
// attestation token, which the client then uses for resource reads.
func (c *Client) Attest(ctx context.Context) (string, error) {
	c.attestMu.Lock()
	defer c.attestMu.Unlock()
	return c.attest(ctx)
}

// creds is a snapshot of what a resource read sends.
type creds struct {
	token, session string
	gen            uint64
}

// current returns the cached credentials when they may be used. The token
// is used up to its exp (margin 0): one that expires on its way earns a
// 401, on which the read re-attests.
func (c *Client) current() (creds, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" || (!c.static && !c.times.UsableAt(c.now(), 0)) {
		return creds{}, false
	}
	return creds{token: c.token, session: c.session, gen: c.gen}, true
}

// credentials returns usable credentials, attesting when there are none or
// the token's exp/nbf say it cannot be used now.
func (c *Client) credentials(ctx context.Context) (creds, error) {
	if cr, ok := c.current(); ok {
		return cr, nil
	}
	c.attestMu.Lock()
	defer c.attestMu.Unlock()
	if cr, ok := c.current(); ok { // another goroutine attested meanwhile
		return cr, nil
	}
	if c.att == nil {
		c.mu.Lock()
		static := c.static
		c.mu.Unlock()
		if static {
			return creds{}, fmt.Errorf("%w: the static token was refused and there is no attester to get another", ErrUnauthorized)
		}
		return creds{}, ErrNoAttester
	}
	if _, err := c.attest(ctx); err != nil {
		return creds{}, err
	}
	// Use the fresh token even if our clock disagrees with its exp/nbf:
	// the KBS that just issued it is the judge, as upstream assumes.
	c.mu.Lock()
	defer c.mu.Unlock()
	return creds{token: c.token, session: c.session, gen: c.gen}, nil
}

// invalidate drops the token of generation gen, so the next read
// re-attests; a token installed since is kept.
func (c *Client) invalidate(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.token, c.session = "", ""
		c.gen++
	}
}

// Token returns a valid attestation token and the key pair it certifies,
// attesting only when none is cached or its exp/nbf say it cannot be used.
// A static Options.Token is returned as is.
func (c *Client) Token(ctx context.Context) (string, *protocol.KeyPair, error) {
	cr, err := c.credentials(ctx)
	if err != nil {
		return "", nil, err
	}
	return cr.token, c.kp, nil
}
