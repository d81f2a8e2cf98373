package aa

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// Token types of GetToken.
const (
	TokenKBS    = "kbs"
	TokenCoCoAS = "coco_as"
)

// tokenTimeout bounds one token fetch, retries included; callers that give
// up earlier leave it running for the others waiting on it.
const tokenTimeout = 2 * time.Minute

// newTokenCache returns the cache of KBS tokens that opts configure:
// token_cache and token_cache_margin_secs of [token_configs.kbs]. A token
// without exp is not reused: the agent would never learn that the KBS
// stopped accepting it.
func newTokenCache(opts Options) (*client.TokenCache[[]byte], error) {
	o := client.TokenCacheOptions{Now: opts.Now, FetchTimeout: tokenTimeout}
	if k := opts.Config.TokenConfigs.KBS; k != nil {
		o.Margin, o.Disabled = k.CacheMargin(), !k.CacheEnabled()
	}
	c, err := client.NewTokenCache[[]byte](o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// Token returns a token of tokenType: for "kbs" the JSON
// {"token":"<JWT>","tee_keypair":"<PEM private key>"}, for "coco_as" the
// Attestation Service's answer.
func (a *Agent) Token(ctx context.Context, tokenType string) ([]byte, error) {
	switch tokenType {
	case TokenKBS:
		if a.opts.Config.TokenConfigs.KBS == nil {
			return nil, fmt.Errorf("%w: kbs token config not configured", ErrNotConfigured)
		}
		b, _, err := a.tokens.Get(ctx, a.fetchKBSToken)
		if err != nil {
			return nil, err
		}
		// The cached slice is shared by every caller; each gets a copy.
		return bytes.Clone(b), nil
	case TokenCoCoAS:
		if a.opts.Config.TokenConfigs.CoCoAS == nil {
			return nil, fmt.Errorf("%w: coco_as token config not configured", ErrNotConfigured)
		}
		return a.coCoASToken(ctx)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedTokenType, tokenType)
}

// kbsTokenJSON is upstream's GetToken("kbs") answer, member order included.
type kbsTokenJSON struct {
	Token      string `json:"token"`
	TeeKeypair string `json:"tee_keypair"`
}

func (a *Agent) httpClient() *http.Client {
	if a.opts.HTTPClient != nil {
		return a.opts.HTTPClient
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: a.roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: a.opts.RequestTimeout}
}

// fetchKBSToken runs the RCAR handshake with a new TEE key pair, retrying
// only while the KBS is unreachable or failing, and returns the token JSON
// and the token's validity window.
func (a *Agent) fetchKBSToken(ctx context.Context) ([]byte, client.TokenTimes, error) {
	k := a.opts.Config.TokenConfigs.KBS
	alg, err := k.KeyAlgorithm()
	if err != nil {
		return nil, client.TokenTimes{}, err
	}
	var att attester.Attester = a.opts.Attester
	if len(a.opts.Devices) > 0 {
		att = attester.WithDevices(a.opts.Attester, a.opts.Devices...)
	}
	c, err := client.New(client.Options{
		URL:              k.URL,
		HTTPClient:       a.httpClient(),
		Attester:         att,
		KeyAlgorithm:     alg,
		InitDataTOML:     a.opts.InitDataTOML,
		Rand:             a.opts.Rand,
		Now:              a.now,
		Logger:           a.log,
		MaxAttestRetries: 1,
		RequestTimeout:   a.opts.RequestTimeout,
	})
	if err != nil {
		return nil, client.TokenTimes{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var last error
	for attempt := 1; attempt <= a.opts.KBSAttempts; attempt++ {
		if attempt > 1 {
			if err := a.opts.Sleep(ctx, a.opts.RetryInterval); err != nil {
				return nil, client.TokenTimes{}, fmt.Errorf("%w: KBS %s: %w (last failure: %w)", ErrUnavailable, k.URL, err, last)
			}
		}
		token, err := c.Attest(ctx)
		if err == nil {
			pemKey, err := c.KeyPair().MarshalPEM()
			if err != nil {
				return nil, client.TokenTimes{}, err
			}
			b, err := marshalNoEscape(kbsTokenJSON{Token: token, TeeKeypair: string(pemKey)})
			if err != nil {
				return nil, client.TokenTimes{}, err
			}
			// Attest has already checked that the token's times parse; one
			// that did not would be served, never reused.
			times, _ := client.ParseTokenTimes(token)
			return b, times, nil
		}
		last = err
		if cerr := ctx.Err(); cerr != nil {
			return nil, client.TokenTimes{}, fmt.Errorf("%w: KBS %s: %w (last failure: %w)", ErrUnavailable, k.URL, cerr, err)
		}
		if !transient(err) {
			return nil, client.TokenTimes{}, fmt.Errorf("%w by KBS %s: %w", ErrRejected, k.URL, err)
		}
		a.log.Warn("KBS attestation failed, retrying", "kbs", k.URL, "attempt", attempt, "of", a.opts.KBSAttempts, "err", err)
	}
	return nil, client.TokenTimes{}, fmt.Errorf("%w: KBS %s failed %d attempts: %w", ErrUnavailable, k.URL, a.opts.KBSAttempts, last)
}

// transient reports whether another handshake may succeed: the KBS could
// not be reached, answered 5xx/408/429, or the evidence could not be had
// (a device may be busy). Any decision of the KBS is final.
func transient(err error) bool {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status >= 500 || ce.Status == http.StatusRequestTimeout || ce.Status == http.StatusTooManyRequests
	}
	for _, p := range []error{client.ErrPolicyDeny, client.ErrVersionMismatch, client.ErrNoAttester,
		client.ErrResponseTooLarge, client.ErrInvalidResponse, client.ErrInvalidToken, attester.ErrInvalidEvidence} {
		if errors.Is(err, p) {
			return false
		}
	}
	return true
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// coCoASToken posts the evidence (bound to empty report data, as upstream)
// to the Attestation Service and returns its answer as the token.
func (a *Agent) coCoASToken(ctx context.Context) ([]byte, error) {
	u := strings.TrimRight(a.opts.Config.TokenConfigs.CoCoAS.URL, "/") + "/attestation"
	ev, err := a.Evidence(ctx, nil)
	if err != nil {
		return nil, err
	}
	body, err := marshalNoEscape(map[string]any{
		"verification_requests": []map[string]string{{
			"tee":      string(a.TeeType()),
			"evidence": base64.RawURLEncoding.EncodeToString(ev),
		}},
		"policy_ids": []string{},
	})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: AS %s: %w", ErrUnavailable, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limits.MaxTokenBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: AS %s: reading answer: %w", ErrUnavailable, u, err)
	}
	if len(b) > limits.MaxTokenBytes {
		return nil, fmt.Errorf("AS %s: answer exceeds %d bytes", u, limits.MaxTokenBytes)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return b, nil
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%w: AS %s: HTTP %d: %s", ErrUnavailable, u, resp.StatusCode, excerpt(b))
	default:
		return nil, fmt.Errorf("%w by AS %s: HTTP %d: %s", ErrRejected, u, resp.StatusCode, excerpt(b))
	}
}

func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > 256 {
		s = s[:256] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, s)
}
