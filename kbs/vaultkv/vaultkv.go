package vaultkv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Defaults and bounds of the configuration.
const (
	// DefaultMountPath is upstream's default mount_path.
	DefaultMountPath = "secret"
	// DefaultTimeout is the deadline of one Vault request.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout bounds timeout_secs.
	MaxTimeout = 5 * time.Minute
	// maxCAFileBytes bounds one ca_certs file.
	maxCAFileBytes = 1 << 20
	// replySlack is what a reply may carry besides the value (request id,
	// lease, KV v2 metadata, warnings).
	replySlack = 1 << 20
)

// The error classes; every error of a Backend wraps exactly one.
var (
	// ErrNotFound: no secret at the path (or its latest KV v2 version is
	// deleted or destroyed).
	ErrNotFound = errors.New("vaultkv: secret not found")
	// ErrSealed: Vault answered 503 and says it is sealed.
	ErrSealed = errors.New("vaultkv: Vault is sealed")
	// ErrPermissionDenied: Vault answered 403 (bad or expired token, or a
	// policy that does not grant the path).
	ErrPermissionDenied = errors.New("vaultkv: permission denied")
	// ErrUnreachable: no answer (connection, DNS, TLS or the deadline).
	ErrUnreachable = errors.New("vaultkv: Vault unreachable")
	// ErrTooLarge: a value or a reply over the bounds.
	ErrTooLarge = errors.New("vaultkv: too large")
	// ErrMalformed: a reply or a stored secret the backend cannot read.
	ErrMalformed = errors.New("vaultkv: malformed secret")
	// ErrVault: any other error answer of Vault.
	ErrVault = errors.New("vaultkv: Vault error")
	// ErrInvalidKey: a key that is not <repository>/<type>/<tag>.
	ErrInvalidKey = errors.New("vaultkv: invalid resource path")
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("vaultkv: invalid configuration")
)

// Error is the error type of a Backend: a message that never holds the
// token or a value, and the class it belongs to.
type Error struct {
	class error
	msg   string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the class (ErrNotFound, ErrSealed, ...).
func (e *Error) Unwrap() error { return e.class }

func newErr(class error, format string, args ...any) *Error {
	return &Error{class: class, msg: fmt.Sprintf(format, args...)}
}

// Config is the Vault part of a [[plugins]] resource entry.
type Config struct {
	// VaultURL is the http(s) address of Vault, optionally with a path
	// prefix (a reverse proxy); no user info, query or fragment.
	VaultURL string
	// Token is the Vault token (X-Vault-Token).
	Token string
	// MountPath is the KV mount (default "secret"); it may be nested
	// ("kbs/resources").
	MountPath string
	// VerifySSL: nil or true verifies the server's certificate; false
	// disables verification (insecure; logged).
	VerifySSL *bool
	// CACerts are PEM files whose certificates are trusted besides the
	// system roots.
	CACerts []string
	// KVVersion is 1 (default, upstream) or 2.
	KVVersion int
	// Namespace is the Vault Enterprise namespace (X-Vault-Namespace);
	// empty: none (the root namespace).
	Namespace string
	// Timeout is the deadline of one request (0: DefaultTimeout).
	Timeout time.Duration
}

// String describes the configuration without the token.
func (c Config) String() string {
	tok := "<empty>"
	if c.Token != "" {
		tok = "<redacted>"
	}
	verify := "default(true)"
	if c.VerifySSL != nil {
		verify = fmt.Sprint(*c.VerifySSL)
	}
	return fmt.Sprintf("vaultkv.Config{VaultURL:%q Token:%s MountPath:%q VerifySSL:%s CACerts:%q KVVersion:%d Namespace:%q Timeout:%s}",
		c.VaultURL, tok, c.MountPath, verify, c.CACerts, c.KVVersion, c.Namespace, c.Timeout)
}

// GoString is String, so that %#v does not print the token either.
func (c Config) GoString() string { return c.String() }

// LogValue keeps the token out of structured logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

var (
	// segmentRE is upstream's ResourceDesc segment.
	segmentRE = regexp.MustCompile(`^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*$`)
	// mountSegmentRE is one segment of mount_path or namespace.
	mountSegmentRE = regexp.MustCompile(`^[a-zA-Z0-9_\-\.]+$`)
)

// settings is a validated Config.
type settings struct {
	url       *url.URL
	token     string
	mount     string
	verify    bool
	caCerts   []string
	version   int
	namespace string
	timeout   time.Duration
}

// Validate checks the configuration without reading files or connecting:
// what the operator can check before a KBS pod exists.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func (c Config) settings() (*settings, error) {
	s := &settings{token: c.Token, caCerts: c.CACerts, version: c.KVVersion, timeout: c.Timeout, verify: true}
	if c.VaultURL == "" {
		return nil, fmt.Errorf("%w: vault_url is required", ErrInvalidConfig)
	}
	u, err := url.Parse(c.VaultURL)
	if err != nil {
		return nil, fmt.Errorf("%w: vault_url is not a URL", ErrInvalidConfig)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w: vault_url must be http:// or https://", ErrInvalidConfig)
	case u.Host == "":
		return nil, fmt.Errorf("%w: vault_url has no host", ErrInvalidConfig)
	case u.User != nil:
		// It would be in every error message.
		return nil, fmt.Errorf("%w: vault_url must not carry user info (put the token in token)", ErrInvalidConfig)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%w: vault_url must not have a query or fragment", ErrInvalidConfig)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	s.url = u
	if c.Token == "" {
		return nil, fmt.Errorf("%w: token is required", ErrInvalidConfig)
	}
	for _, r := range c.Token {
		if r <= ' ' || r >= 0x7f {
			return nil, fmt.Errorf("%w: token has whitespace, control or non-ASCII characters", ErrInvalidConfig)
		}
	}
	s.mount = c.MountPath
	if s.mount == "" {
		s.mount = DefaultMountPath
	}
	s.mount = strings.Trim(s.mount, "/")
	if err := checkSegments(s.mount); err != nil {
		return nil, fmt.Errorf("%w: mount_path %q: %v", ErrInvalidConfig, c.MountPath, err)
	}
	if c.Namespace != "" {
		s.namespace = strings.Trim(c.Namespace, "/")
		if err := checkSegments(s.namespace); err != nil {
			return nil, fmt.Errorf("%w: namespace %q: %v", ErrInvalidConfig, c.Namespace, err)
		}
	}
	if c.VerifySSL != nil {
		s.verify = *c.VerifySSL
	}
	switch s.version {
	case 0:
		s.version = 1
	case 1, 2:
	default:
		return nil, fmt.Errorf("%w: kv_version must be 1 or 2, not %d", ErrInvalidConfig, c.KVVersion)
	}
	switch {
	case s.timeout == 0:
		s.timeout = DefaultTimeout
	case s.timeout < 0 || s.timeout > MaxTimeout:
		return nil, fmt.Errorf("%w: timeout must be positive and at most %s", ErrInvalidConfig, MaxTimeout)
	}
	for _, p := range c.CACerts {
		if p == "" {
			return nil, fmt.Errorf("%w: empty ca_certs entry", ErrInvalidConfig)
		}
	}
	return s, nil
}

func checkSegments(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." || !mountSegmentRE.MatchString(seg) {
			return errors.New(`each segment must match [A-Za-z0-9_.-]+ and not be "." or ".."`)
		}
	}
	return nil
}

// Options carries what a Backend takes from its environment.
type Options struct {
	// Logger receives the start-up record and the insecure-setting warnings.
	// Nil: slog.Default().
	Logger *slog.Logger
}

// Backend reads, writes and deletes resources in a Vault KV mount. It is
// safe for concurrent use.
type Backend struct {
	client   *api.Client
	mount    string
	version  int
	timeout  time.Duration
	addr     string // vault_url, for messages
	maxValue int
	replies  *limitedTransport

	// namespace, when set, is checked once against sys/health (through
	// root, a client without the namespace header): Vault OSS ignores
	// X-Vault-Namespace and would serve the root namespace.
	namespace string
	root      *api.Client
	log       *slog.Logger
	nsMu      sync.Mutex
	nsChecked bool
	nsErr     string // why the namespace cannot be used; "" if it can
}

// New builds a Backend: it validates the configuration and loads the CA
// files. It does not connect: Vault may come up after the KBS.
func New(cfg Config, opts Options) (*Backend, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if !s.verify {
		tlsCfg.InsecureSkipVerify = true
	} else if len(s.caCerts) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, p := range s.caCerts {
			if err := addPEMFile(pool, p); err != nil {
				return nil, fmt.Errorf("%w: ca_certs %s: %v", ErrInvalidConfig, p, err)
			}
		}
		tlsCfg.RootCAs = pool
	}
	maxReply := int64(4*limits.MaxResourceBytes + replySlack)
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: s.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   s.timeout,
		ResponseHeaderTimeout: s.timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	replies := &limitedTransport{base: transport, max: maxReply}
	hc := &http.Client{
		Transport: replies,
		// The token header would go with a redirect, wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	client, err := api.NewClient(&api.Config{
		Address:          s.url.String(),
		HttpClient:       hc,
		MaxRetries:       0,
		DisableRedirects: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: Vault client: %v", ErrInvalidConfig, err)
	}
	// NewClient takes a token, a namespace and headers from VAULT_TOKEN,
	// VAULT_NAMESPACE and VAULT_HEADERS, and requests response wrapping
	// when VAULT_WRAP_TTL is set: the configuration replaces them all.
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	client.SetWrappingLookupFunc(func(string, string) string { return "" })
	if s.namespace != "" {
		client.SetNamespace(s.namespace)
	}
	client.SetToken(s.token)

	addr := s.url.String()
	if s.url.Scheme == "https" && !s.verify {
		log.Warn("INSECURE: TLS certificate verification of the Vault server is disabled (verify_ssl = false): "+
			"whoever is on the network path can impersonate Vault, take its token and serve forged resources; "+
			"set verify_ssl = true and ca_certs", "vault_url", addr)
	}
	if s.url.Scheme == "http" && !loopback(s.url.Hostname()) {
		log.Warn("INSECURE: vault_url is plain http to a host that is not loopback: the Vault token and every resource cross the network unencrypted",
			"vault_url", addr)
	}
	log.Info("Vault resource backend configured", "vault_url", addr, "mount_path", s.mount, "kv_version", s.version,
		"namespace", s.namespace, "verify_ssl", s.verify, "ca_certs", len(s.caCerts), "timeout", s.timeout.String())
	return &Backend{client: client, mount: s.mount, version: s.version, timeout: s.timeout, addr: addr, maxValue: limits.MaxResourceBytes, replies: replies,
		namespace: s.namespace, root: client.WithNamespace(""), log: log}, nil
}

func addPEMFile(pool *x509.CertPool, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFileBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxCAFileBytes {
		return fmt.Errorf("larger than %d bytes", maxCAFileBytes)
	}
	if !pool.AppendCertsFromPEM(b) {
		return errors.New("no PEM certificate in the file")
	}
	return nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secretPath checks a resource key <repository>/<type>/<tag> as upstream's
// ResourceDesc and returns it.
func secretPath(key string) (string, error) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		return "", newErr(ErrInvalidKey, "illegal ResourceDesc format: %q is not <repository>/<type>/<tag>", key)
	}
	for _, p := range parts {
		if !segmentRE.MatchString(p) {
			return "", newErr(ErrInvalidKey, "illegal ResourceDesc format: %q", key)
		}
	}
	return key, nil
}

// dataPath is where the secret is read and written.
func (b *Backend) dataPath(p string) string {
	if b.version == 2 {
		return b.mount + "/data/" + p
	}
	return b.mount + "/" + p
}

// deletePath is what a delete removes: the secret (v1), its metadata and
// every version (v2).
func (b *Backend) deletePath(p string) string {
	if b.version == 2 {
		return b.mount + "/metadata/" + p
	}
	return b.mount + "/" + p
}

// Get returns the resource at key (<repository>/<type>/<tag>); an error
// wrapping ErrNotFound when there is none.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := secretPath(key)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.checkNamespace(rctx, "Vault API error for path '"+p+"'"); err != nil {
		return nil, err
	}
	resp, err := b.client.Logical().ReadRawWithContext(rctx, b.dataPath(p))
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		var warnings []string
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			// Error() has buffered the (bounded) body: a 404 that says
			// nothing is a missing secret, one with errors or warnings is
			// a wrong path (no such mount, KV version mismatch).
			body, _ := io.ReadAll(resp.Body)
			errs, warns := decodeErrorReply(body)
			if len(errs) == 0 && len(warns) == 0 {
				return nil, newErr(ErrNotFound, "Secret not found at path '%s'", p)
			}
			warnings = warns
		}
		return nil, b.apiError(ctx, rctx, "Vault API error for path '"+p+"'", "read", err, warnings)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, b.apiError(ctx, rctx, "Vault API error for path '"+p+"'", "read", err, nil)
	}
	return decodeSecret(b.version, p, body, b.maxValue)
}

// Set writes the resource at key, replacing any earlier value (KV v2: a
// new version).
func (b *Backend) Set(ctx context.Context, key string, value []byte) error {
	p, err := secretPath(key)
	if err != nil {
		return err
	}
	if len(value) > b.maxValue {
		return newErr(ErrTooLarge, "Failed to write secret to Vault at path '%s': resource is %d bytes, larger than the limit of %d", p, len(value), b.maxValue)
	}
	body := encodeSecret(b.version, value)
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.checkNamespace(rctx, "Failed to write secret to Vault at path '"+p+"'"); err != nil {
		return err
	}
	resp, err := b.client.Logical().WriteRawWithContext(rctx, b.dataPath(p), body)
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		return b.apiError(ctx, rctx, "Failed to write secret to Vault at path '"+p+"'", "write", err, nil)
	}
	return nil
}

// Delete removes the resource at key (KV v2: its metadata and every
// version). A missing secret is not an error, as upstream.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := secretPath(key)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.checkNamespace(rctx, "Failed to delete secret from Vault at path '"+p+"'"); err != nil {
		return err
	}
	sec, err := b.client.Logical().DeleteWithContext(rctx, b.deletePath(p))
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && len(re.Errors) == 0 && (sec == nil || len(sec.Warnings) == 0) {
			return nil
		}
		var warnings []string
		if sec != nil {
			warnings = sec.Warnings
		}
		return b.apiError(ctx, rctx, "Failed to delete secret from Vault at path '"+p+"'", "delete", err, warnings)
	}
	return nil
}

// checkNamespace refuses a namespace the server cannot honour: a Vault
// whose sys/health says "enterprise": false (Vault OSS >= 1.16) ignores
// X-Vault-Namespace. The answer is kept; a failed probe is not (the
// operation then reports the failure itself). A server that does not say
// (older Vault Enterprise, OpenBao) is trusted with the namespace.
func (b *Backend) checkNamespace(ctx context.Context, prefix string) error {
	if b.namespace == "" {
		return nil
	}
	b.nsMu.Lock()
	defer b.nsMu.Unlock()
	if !b.nsChecked {
		resp, err := b.root.Logical().ReadRawWithDataWithContext(ctx, "sys/health", map[string][]string{
			"standbyok": {"true"}, "perfstandbyok": {"true"}, "sealedcode": {"200"}, "uninitcode": {"200"},
		})
		if resp != nil {
			defer resp.Body.Close()
		}
		if err != nil {
			return nil
		}
		var health struct {
			Enterprise *bool `json:"enterprise"`
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || json.Unmarshal(body, &health) != nil {
			return nil
		}
		b.nsChecked = true
		if health.Enterprise != nil && !*health.Enterprise {
			b.nsErr = fmt.Sprintf("namespace %q is configured, but the Vault server at %s is not Vault Enterprise (sys/health: enterprise = false): "+
				"it would ignore X-Vault-Namespace and serve the root namespace; remove namespace or use a server with namespaces", b.namespace, b.addr)
			b.log.Error("Vault namespace refused: "+b.nsErr, "vault_url", b.addr)
		}
	}
	if b.nsErr != "" {
		return newErr(ErrVault, "%s: %s", prefix, b.nsErr)
	}
	return nil
}

// apiError classifies a failed request. parent is the caller's context,
// rctx the one with the request deadline.
func (b *Backend) apiError(parent, rctx context.Context, prefix, op string, err error, warnings []string) error {
	if errors.Is(err, ErrTooLarge) {
		return newErr(ErrTooLarge, "%s: %v", prefix, errorText(err))
	}
	if perr := parent.Err(); perr != nil {
		return newErr(ErrUnreachable, "%s: request abandoned: %v", prefix, perr)
	}
	if errors.Is(err, context.DeadlineExceeded) || rctx.Err() != nil {
		return newErr(ErrUnreachable, "%s: no answer from Vault at %s within %s", prefix, b.addr, b.timeout)
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		msgs := shorten(append(append([]string(nil), re.Errors...), warnings...))
		detail := strings.Join(msgs, "; ")
		if detail == "" {
			detail = "no error message"
		}
		switch re.StatusCode {
		case http.StatusForbidden:
			return newErr(ErrPermissionDenied, "%s: permission denied (HTTP 403): the token is invalid or expired, or its policies do not grant %s on mount %q: %s",
				prefix, op, b.mount, detail)
		case http.StatusServiceUnavailable:
			if strings.Contains(strings.ToLower(detail), "sealed") {
				return newErr(ErrSealed, "%s: Vault is sealed (HTTP 503): it serves nothing until it is unsealed", prefix)
			}
			return newErr(ErrVault, "%s: Vault is unavailable (HTTP 503): %s", prefix, detail)
		case http.StatusRequestEntityTooLarge:
			return newErr(ErrTooLarge, "%s: Vault refused the request as too large (HTTP 413, Vault's max_request_size): %s", prefix, detail)
		case http.StatusNotFound:
			return newErr(ErrVault, "%s: HTTP 404 (check mount_path %q and kv_version %d): %s", prefix, b.mount, b.version, detail)
		case http.StatusInternalServerError:
			if strings.Contains(detail, "exceeds allowed") {
				// Vault's listener JSON limits: a text resource is one
				// string (max_json_string_value_length, 1 MiB by
				// default), a binary one an array of its bytes
				// (max_json_array_element_count, 10000 by default).
				return newErr(ErrTooLarge, "%s: Vault refused the request (HTTP 500, the JSON limits of Vault's listener: max_json_string_value_length "+
					"bounds a text resource, max_json_array_element_count a binary one): %s", prefix, detail)
			}
		}
		return newErr(ErrVault, "%s: HTTP %d: %s", prefix, re.StatusCode, detail)
	}
	msg := errorText(err)
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL is vault_url plus the secret path: no secret in it, but
		// redundant with the prefix.
		msg = errorText(ue.Err)
	}
	hint := ""
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var tve *tls.CertificateVerificationError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &tve) {
		hint = " (add Vault's CA to ca_certs; verify_ssl = false skips the check and is insecure)"
	}
	return newErr(ErrUnreachable, "%s: Vault at %s is unreachable: %s%s", prefix, b.addr, msg, hint)
}

// errorText is err's message on one bounded line.
func errorText(err error) string {
	s := shorten([]string{err.Error()})
	if len(s) == 0 {
		return "unknown error"
	}
	return s[0]
}

// shorten puts Vault's messages on one line each, drops empty ones and
// bounds their number and length.
func shorten(msgs []string) []string {
	const maxMsgs, maxLen = 4, 300
	var out []string
	// Vault's go-multierror text: "2 errors occurred:\n\t* a\n\t* b\n\n".
	var flat []string
	for _, m := range msgs {
		if head, items, ok := strings.Cut(m, " occurred:\n"); ok && (strings.HasSuffix(head, " error") || strings.HasSuffix(head, " errors")) {
			for _, it := range strings.Split(items, "\n") {
				flat = append(flat, strings.TrimPrefix(strings.TrimSpace(it), "* "))
			}
			continue
		}
		flat = append(flat, m)
	}
	for _, m := range flat {
		m = strings.Join(strings.FieldsFunc(m, func(r rune) bool { return r < ' ' || r == 0x7f || r == ' ' }), " ")
		if m == "" {
			continue
		}
		if len(m) > maxLen {
			m = strings.ToValidUTF8(m[:maxLen], "") + "..."
		}
		out = append(out, m)
		if len(out) == maxMsgs {
			break
		}
	}
	return out
}

// limitedTransport bounds every reply body: reading past max fails with
// an error wrapping ErrTooLarge (also inside the Vault client, which
// buffers error bodies whole).
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, tooLargeReply(t.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

func tooLargeReply(max int64) error {
	return &Error{class: ErrTooLarge, msg: fmt.Sprintf("Vault reply larger than %d bytes", max)}
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.left <= 0 {
		// One byte more tells a reply of exactly max from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, tooLargeReply(b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
