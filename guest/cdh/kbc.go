package cdh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/internal/clock"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// KBC reads resources by kbs:// URI: from the KBS (cc_kbc) or from local
// files (offline_fs_kbc).
type KBC interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// TokenSource supplies KBS attestation tokens (passport mode): the
// attestation-agent's GetToken("kbs") answers the token and the PEM private
// key of the TEE key pair the token certifies.
type TokenSource interface {
	Token(ctx context.Context) (token string, keypairPEM []byte, err error)
}

// TokenFunc adapts an attestation-agent GetToken call (token type "kbs",
// answering {"token":"<JWT>","tee_keypair":"<PEM>"}) to a TokenSource.
type TokenFunc func(ctx context.Context, tokenType string) ([]byte, error)

// Token calls f("kbs") and decodes the answer.
func (f TokenFunc) Token(ctx context.Context) (string, []byte, error) {
	b, err := f(ctx, "kbs")
	if err != nil {
		return "", nil, err
	}
	return ParseKBSToken(b)
}

// ParseKBSToken decodes the attestation-agent's answer to GetToken("kbs").
func ParseKBSToken(b []byte) (token string, keypairPEM []byte, err error) {
	if len(b) > limits.MaxTokenBytes+64<<10 {
		return "", nil, fmt.Errorf("token answer of %d bytes is too large", len(b))
	}
	var v struct {
		Token      string `json:"token"`
		TeeKeypair string `json:"tee_keypair"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", nil, fmt.Errorf("token answer is not {token, tee_keypair} JSON: %v", err)
	}
	if v.Token == "" || v.TeeKeypair == "" {
		return "", nil, errors.New("token answer lacks token or tee_keypair")
	}
	return v.Token, []byte(v.TeeKeypair), nil
}

// CCOptions configure a CCKBC. Zero values take the documented defaults.
type CCOptions struct {
	// URL is the KBS root URL. Required.
	URL string
	// RootCAs are trusted for an https URL (nil: system roots).
	RootCAs *x509.CertPool
	// Tokens supplies attestation tokens. Required.
	Tokens TokenSource
	// HTTPClient sends the requests; nil is a client over a transport of
	// its own, kept for the CCKBC's life so connections are reused.
	HTTPClient *http.Client
	// RefreshBefore is how long before its exp a cached token is replaced;
	// 0 is client.DefaultTokenRefreshMargin.
	RefreshBefore time.Duration
	// DisableTokenCache gets a new token (a full attestation) for every
	// read, as upstream's CDH does. For comparison only.
	DisableTokenCache bool
	// MaxAttempts bounds the tries of a read that fails to reach the KBS;
	// 0 is 3.
	MaxAttempts int
	// Backoff is the wait after the first failed try, doubled after each;
	// 0 is 500 ms.
	Backoff time.Duration
	// RequestTimeout bounds each HTTP request; 0 is 20 s.
	RequestTimeout time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Sleep waits between tries; nil waits on a timer or until ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the guest-side details; nil discards them.
	Logger *slog.Logger
}

// CCKBC reads resources from a KBS with a token from the attestation-agent
// (upstream's cc_kbc in passport mode), reusing one attested client.
//
// A token is cached with its key pair until RefreshBefore its exp (one
// without exp until the KBS refuses it); concurrent reads that need a token
// share one fetch. A 401
// whose ErrorInformation says the token is missing or invalid gets one
// fresh token and one retry; PolicyDeny and other refusals are reported at
// once (upstream re-attests three times blindly). A KBS that cannot be
// reached is retried MaxAttempts times with doubling back-off.
type CCKBC struct {
	opts    CCOptions
	hc      *http.Client
	clients *client.TokenCache[*client.Client] // clients holding a token
	fetches atomic.Int64                       // tokens asked of opts.Tokens
}

// NewCC validates opts and returns a CCKBC. It fetches no token yet.
func NewCC(opts CCOptions) (*CCKBC, error) {
	if opts.Tokens == nil {
		return nil, errors.New("cc_kbc: a TokenSource is required")
	}
	if opts.RefreshBefore == 0 {
		opts.RefreshBefore = client.DefaultTokenRefreshMargin
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 3
	}
	if opts.Backoff == 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 20 * time.Second
	}
	if opts.RefreshBefore < 0 || opts.MaxAttempts < 0 || opts.Backoff < 0 || opts.RequestTimeout < 0 {
		return nil, errors.New("cc_kbc: negative option")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = clock.Sleep
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	k := &CCKBC{opts: opts, hc: opts.HTTPClient}
	if k.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if opts.RootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		}
		k.hc = &http.Client{Transport: tr, Timeout: opts.RequestTimeout}
	} else if opts.RootCAs != nil {
		return nil, errors.New("cc_kbc: RootCAs applies to the default HTTP client only")
	}
	if err := validateKBSURL(opts.URL); err != nil {
		return nil, fmt.Errorf("cc_kbc: %w", err)
	}
	// A token without exp is kept: a read the KBS refuses with 401
	// invalidates it (GetResource).
	cache, err := client.NewTokenCache[*client.Client](client.TokenCacheOptions{
		Now: opts.Now, Margin: opts.RefreshBefore, ReuseWithoutExp: true, Disabled: opts.DisableTokenCache,
	})
	if err != nil {
		return nil, fmt.Errorf("cc_kbc: %w", err)
	}
	k.clients = cache
	return k, nil
}

// Attestations returns how many tokens were fetched from the TokenSource.
func (k *CCKBC) Attestations() int { return int(k.fetches.Load()) }

// session returns an attested client and its generation, fetching a token
// when none is cached or the cached one is about to expire.
func (k *CCKBC) session(ctx context.Context) (*client.Client, uint64, error) {
	return k.clients.Get(ctx, k.newSession)
}

// newSession fetches a token and returns a client sending it.
func (k *CCKBC) newSession(ctx context.Context) (*client.Client, client.TokenTimes, error) {
	k.fetches.Add(1)
	token, pemKey, err := k.opts.Tokens.Token(ctx)
	if err != nil {
		return nil, client.TokenTimes{}, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	kp, err := protocol.KeyPairFromPEM(pemKey)
	if err != nil {
		return nil, client.TokenTimes{}, fmt.Errorf("%w: tee_keypair: %w", ErrAttestation, err)
	}
	times, err := client.ParseTokenTimes(token)
	if err != nil {
		return nil, client.TokenTimes{}, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	c, err := client.New(client.Options{
		URL: k.opts.URL, HTTPClient: k.hc, KeyPair: kp, Token: token, Bearer: true,
		MaxResourceAttempts: 1, RequestTimeout: k.opts.RequestTimeout, Now: k.opts.Now,
		Logger: k.opts.Logger,
	})
	if err != nil {
		return nil, client.TokenTimes{}, fmt.Errorf("%w: %w", ErrAttestation, err)
	}
	k.opts.Logger.Debug("cc_kbc: new KBS token", "expires", times.Exp)
	return c, times, nil
}

// tokenProblem reports a 401 that a fresh token may cure.
func tokenProblem(e *client.Error) bool {
	switch e.Info.Kind() {
	case "TokenNotFound", "TokenVerifierError", "":
		return true
	}
	return false
}

// GetResource reads uri from the KBS.
func (k *CCKBC) GetResource(ctx context.Context, uri string) ([]byte, error) {
	refreshed := false
	var netErr error
	for attempt := 1; ; {
		c, gen, err := k.session(ctx)
		if err != nil {
			return nil, err
		}
		b, err := c.GetResource(ctx, uri)
		if err == nil {
			return b, nil
		}
		var ce *client.Error
		switch {
		case errors.Is(err, client.ErrPolicyDeny):
			errors.As(err, &ce)
			k.opts.Logger.Warn("KBS resource policy denied the resource", "resource", uri, "reason", detail(ce))
			return nil, fmt.Errorf("%w: %s", ErrPolicyDeny, uri)
		case errors.Is(err, client.ErrResourceNotFound):
			return nil, fmt.Errorf("%w: %s: %w", ErrNotFound, uri, err)
		case errors.As(err, &ce) && ce.Status == http.StatusUnauthorized:
			if tokenProblem(ce) && !refreshed {
				k.opts.Logger.Info("KBS refused the token; getting a fresh one", "resource", uri, "reason", detail(ce))
				k.clients.Invalidate(gen)
				refreshed = true
				continue
			}
			if tokenProblem(ce) {
				return nil, fmt.Errorf("%w: %s: %w", ErrUnauthorized, uri, err)
			}
			k.opts.Logger.Warn("KBS refused the resource", "resource", uri, "kind", ce.Info.Kind(), "reason", detail(ce))
			if ce.Info.Kind() == "PluginInternalError" && strings.Contains(strings.ToLower(ce.Info.Detail), "not found") {
				return nil, fmt.Errorf("%w: %s: %w", ErrNotFound, uri, err)
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrKBSRefused, uri, err)
		case errors.As(err, &ce):
			return nil, fmt.Errorf("%w: %s: %w", ErrKBSRefused, uri, err)
		case errors.Is(err, client.ErrInvalidResourceURI):
			return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		case errors.Is(err, client.ErrInvalidResponse), errors.Is(err, client.ErrResponseTooLarge):
			return nil, fmt.Errorf("%w: %s: %w", ErrKBSRefused, uri, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("reading %s from %s: %w", uri, k.opts.URL, ctx.Err())
		}
		// Transport failure: the KBS is down, slow or unreachable.
		netErr = err
		if attempt >= k.opts.MaxAttempts {
			return nil, &unreachableError{url: k.opts.URL, attempts: attempt, err: netErr}
		}
		wait := k.opts.Backoff << (attempt - 1)
		k.opts.Logger.Warn("KBS unreachable; retrying", "url", k.opts.URL, "attempt", attempt, "max", k.opts.MaxAttempts, "wait", wait, "err", err)
		if err := k.opts.Sleep(ctx, wait); err != nil {
			return nil, &unreachableError{url: k.opts.URL, attempts: attempt, err: netErr}
		}
		attempt++
	}
}

func detail(e *client.Error) string {
	if e == nil {
		return ""
	}
	if e.Info.Detail != "" {
		return e.Info.Detail
	}
	return e.Body
}

// Default files of offline_fs_kbc and the variable naming more.
const (
	OfflineKeysFile      = "/etc/aa-offline_fs_kbc-keys.json"
	OfflineResourcesFile = "/etc/aa-offline_fs_kbc-resources.json"
	OfflineExtraFilesEnv = "OFFLINE_FS_KBC_EXTRA_FILE_PATH"
)

// OfflineFS serves resources from JSON files {"<repo>/<type>/<tag>":
// "<base64 content>"} (upstream's offline_fs_kbc). Missing files are
// skipped with a warning; a malformed one is an error.
type OfflineFS struct {
	resources map[string][]byte
}

// OfflineFiles returns the files upstream reads: the two defaults and the
// comma-separated list in OFFLINE_FS_KBC_EXTRA_FILE_PATH.
func OfflineFiles(getenv func(string) string) []string {
	files := []string{OfflineKeysFile, OfflineResourcesFile}
	if extra := getenv(OfflineExtraFilesEnv); extra != "" {
		files = append(files, strings.Split(extra, ",")...)
	}
	return files
}

// NewOfflineFS loads files in order; a later definition of a path wins.
func NewOfflineFS(files []string, log *slog.Logger) (*OfflineFS, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &OfflineFS{resources: map[string][]byte{}}
	for _, f := range files {
		b, err := readBounded(f, limits.MaxResourceBytes)
		if errors.Is(err, os.ErrNotExist) {
			log.Warn("offline_fs_kbc: file not found; skipped", "file", f)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("offline_fs_kbc: %w", err)
		}
		m, err := DecodeOfflineFile(b)
		if err != nil {
			return nil, fmt.Errorf("offline_fs_kbc: %s: %w", f, err)
		}
		for k, v := range m {
			if _, dup := o.resources[k]; dup {
				log.Warn("offline_fs_kbc: resource defined again", "resource", k, "file", f)
			}
			o.resources[k] = v
		}
	}
	return o, nil
}

// DecodeOfflineFile decodes one offline_fs_kbc file.
func DecodeOfflineFile(b []byte) (map[string][]byte, error) {
	var raw map[string]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object of strings: %v", ErrInvalidRequest, err)
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("%w: resource %q is not base64", ErrInvalidRequest, k)
		}
		out[k] = d
	}
	return out, nil
}

// GetResource returns the resource of a kbs:///repo/type/tag URI.
func (o *OfflineFS) GetResource(_ context.Context, uri string) ([]byte, error) {
	u, err := client.ParseResourceURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	b, ok := o.resources[u.ResourcePath()]
	if !ok || u.Plugin != client.DefaultPlugin {
		return nil, fmt.Errorf("%w: offline_fs_kbc has no %s", ErrNotFound, u.ResourcePath())
	}
	return append([]byte(nil), b...), nil
}

func readBounded(file string, max int) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", file, max)
	}
	return b, nil
}
