package kbs

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-trustee/go-trustee/admin"
	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asgrpc"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/kbs/ita"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/resourcepolicy"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/backends"
	"github.com/go-trustee/go-trustee/token"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/builtin"
)

// Version is reported in kbs_build_info and logs.
var Version = "0.1.0"

// Options carries what a Server takes from its environment. Zero values
// are production defaults.
type Options struct {
	Logger *slog.Logger
	// AuditLogger receives one record per attestation, release, deny and
	// admin change. Nil: Logger, with the attribute audit=true.
	AuditLogger *slog.Logger
	Now         func() time.Time
	Rand        io.Reader
	// Verifiers overrides the TEE verifiers of the built-in AS.
	Verifiers  *verifier.Registry
	HTTPClient *http.Client
	// Store, when set, is used instead of opening [storage_backend] (tests,
	// embedding). The Server does not close it.
	Store storage.Store
}

// Server is a KBS. Build it with New; serve it with Run or Handler.
type Server struct {
	cfg      *Config
	log      *slog.Logger
	audit    *slog.Logger
	now      func() time.Time
	rand     io.Reader
	store    storage.Store
	closers  []func() error
	sessions *sessions
	as       attestationService
	tokens   tokenVerifier
	admin    *admin.Authorizer
	policy   *resourcepolicy.Engine
	plugins  map[string]plugin
	metrics  *metrics
	tls      *tls.Config // nil: insecure_http
	payload  int64
	reqSeq   atomic.Uint64
}

// attestationService is what the KBS needs of an Attestation Service: the
// built-in *as.Service, or the client of a remote grpc-as (coco_as_grpc).
type attestationService interface {
	Evaluate(ctx context.Context, reqs []as.VerificationRequest, policyIDs []string) (string, error)
	SetPolicy(ctx context.Context, id string, policy []byte) error
	GenerateSupplementalChallenge(ctx context.Context, tee protocol.Tee, params string) (string, error)
	RVPS() rvps.Provider
}

// challengeHasher is an attestation service that selects the hash
// algorithm of the challenge (Intel Trust Authority: sha512 for tdx,
// sha256 for sgx and az-tdx-vtpm, as upstream). The KBS then makes the
// nonce and sends the selection as the challenge's extra-params; "" means
// the KBS's own challenge.
type challengeHasher interface {
	ChallengeHashAlgorithm(tee protocol.Tee, params string) (protocol.HashAlgorithm, error)
}

var (
	_ attestationService = (*as.Service)(nil)
	_ attestationService = (*asgrpc.Client)(nil)
)

// tokenVerifier is what the resource path needs of package token.
type tokenVerifier interface {
	Verify(ctx context.Context, raw string) (map[string]any, error)
	TeePubKey(claims map[string]any) (protocol.TeePubKey, error)
}

// newTokenVerifier trusts, besides the configured trust material, the
// signing keys of the built-in Attestation Service: a token this process
// issued needs no certificate chain to be believed.
func newTokenVerifier(ctx context.Context, cfg token.Config, builtin []crypto.PublicKey, opts token.Options) (tokenVerifier, error) {
	opts.TrustedKeys = builtin
	return token.NewVerifier(ctx, cfg, opts)
}

// New builds a Server from a loaded configuration. It loads the TLS
// certificate and key first, then opens the stores,
// starts the built-in Attestation Service, loads the token trust material
// and the admin identity providers; a misconfigured Server never exists.
func New(ctx context.Context, cfg *Config, opts Options) (_ *Server, err error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil configuration", ErrInvalidConfig)
	}
	// s is not the named result: every failure returns nil, and the
	// deferred cleanup must still see the half-built server.
	s := newServer(cfg, opts)
	// Material that can be wrong in the file comes first, before anything
	// is opened: a misconfigured server never exists.
	if s.tls, err = serverTLS(cfg.HTTPServer); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err = s.openStores(ctx, opts); err != nil {
		return nil, err
	}
	trusted, err := s.startAttestationService(ctx, opts)
	if err != nil {
		return nil, err
	}
	if s.tokens, err = newTokenVerifier(ctx, cfg.AttestationToken, trusted, token.Options{HTTPClient: opts.HTTPClient, Now: s.now, Logger: s.log.With("component", "token")}); err != nil {
		return nil, fmt.Errorf("loading attestation token trust: %w", err)
	}
	if s.admin, err = admin.New(ctx, cfg.Admin, admin.Options{HTTPClient: opts.HTTPClient, Now: s.now, Logger: s.log.With("component", "admin")}); err != nil {
		return nil, fmt.Errorf("configuring admin API: %w", err)
	}
	if err = s.loadResourcePolicy(ctx); err != nil {
		return nil, err
	}
	if s.plugins, err = newPlugins(ctx, cfg.Plugins, s.store, s.log); err != nil {
		return nil, err
	}
	for _, p := range s.plugins {
		if c, ok := p.(closer); ok {
			s.closers = append(s.closers, c.close)
		}
		if c, ok := p.(collector); ok {
			for _, m := range c.collectors() {
				if err := s.metrics.reg.Register(m); err != nil {
					return nil, fmt.Errorf("registering plugin metrics: %w", err)
				}
			}
		}
	}
	s.log.Info("KBS configured", "version", Version, "admin", s.admin.Mode(), "attestation_service", cfg.AttestationService.Type,
		"storage", cfg.StorageBackend.StorageType, "session_timeout_min", cfg.AttestationService.Timeout, "tls", s.tls != nil)
	return s, nil
}

// newServer fills in the injected dependencies and their defaults.
func newServer(cfg *Config, opts Options) *Server {
	s := &Server{cfg: cfg, log: opts.Logger, audit: opts.AuditLogger, now: opts.Now, rand: opts.Rand}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.audit == nil {
		s.audit = s.log.With("audit", true)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	s.payload = int64(cfg.HTTPServer.PayloadRequestSize) << 20
	s.metrics = newMetrics(Version)
	return s
}

// serverTLS loads the certificate, key and profile of [http_server]; nil
// for insecure_http.
func serverTLS(c HTTPServerConfig) (*tls.Config, error) {
	if c.InsecureHTTP {
		return nil, nil
	}
	return TLSConfig(c)
}

// openStores opens the storage backend (unless opts.Store injects one) and,
// when session_storage_type names another backend type, the session store.
func (s *Server) openStores(ctx context.Context, opts Options) error {
	cfg := s.cfg
	s.store = opts.Store
	if s.store == nil {
		var err error
		if s.store, err = backends.Open(ctx, cfg.StorageBackend); err != nil {
			return fmt.Errorf("opening storage backend: %w", err)
		}
		s.closers = append(s.closers, s.store.Close)
	}
	sessStore, err := s.storeOfType(ctx, opts, cfg.SessionStorageType, "session_storage_type", "session storage")
	if err != nil {
		return err
	}
	s.sessions = &sessions{kv: sessStore, now: s.now, rand: s.rand, timeout: time.Duration(cfg.AttestationService.Timeout) * time.Minute, log: s.log}
	return nil
}

// storeOfType returns the main store, or a store of another backend type
// when typ names one (opened with the same [storage_backend] settings and
// closed with the server). An injected opts.Store serves every purpose.
func (s *Server) storeOfType(ctx context.Context, opts Options, typ, key, what string) (storage.Store, error) {
	if typ == "" || opts.Store != nil {
		return s.store, nil
	}
	same, err := sameType(typ, s.cfg.StorageBackend.StorageType)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, key, err)
	}
	if same {
		return s.store, nil
	}
	st, err := backends.OpenType(ctx, typ, s.cfg.StorageBackend)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", what, err)
	}
	s.closers = append(s.closers, st.Close)
	return st, nil
}

// startAttestationService starts the built-in AS, or connects to a remote
// one, and returns the token signing keys the token verifier trusts besides
// its configuration: the built-in AS's own keys. A remote AS's tokens are
// trusted only through [attestation_token] (its certificate chain or JWKS),
// as upstream; that holds for Intel Trust Authority (intel_ta, package
// kbs/ita) too.
func (s *Server) startAttestationService(ctx context.Context, opts Options) ([]crypto.PublicKey, error) {
	cfg := s.cfg.AttestationService
	switch cfg.Type {
	case ASTypeBuiltin:
	case ASTypeGRPC:
		c, err := asgrpc.Dial(cfg.ASAddr, cfg.PoolSize, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: [attestation_service] as_addr: %v", ErrInvalidConfig, err)
		}
		s.closers = append(s.closers, c.Close)
		s.as = c
		addr := cfg.ASAddr
		if addr == "" {
			addr = asgrpc.DefaultAddress
		}
		s.log.Info("using a remote attestation service", "as_addr", addr, "pool_size", cfg.PoolSize)
		return nil, nil
	case ASTypeIntelTA:
		// Intel Trust Authority appraises the evidence and signs the token
		// (package kbs/ita). As upstream, its tokens are believed on
		// resource requests through [attestation_token] only (its
		// trusted_jwk_sets should name ITA's JWK set), not through
		// certs_file: no key is returned here.
		c, err := ita.New(ctx, ita.Config{BaseURL: cfg.BaseURL, APIKey: cfg.APIKey, CertsFile: cfg.CertsFile,
			PolicyIDs: cfg.PolicyIDs, AllowUnmatchedPolicy: cfg.AllowUnmatchedPolicy},
			ita.Options{HTTPClient: opts.HTTPClient, Now: s.now, Rand: s.rand, Logger: s.log.With("component", "ita"), Version: Version})
		if err != nil {
			if errors.Is(err, ita.ErrInvalidConfig) {
				return nil, fmt.Errorf("%w: [attestation_service] intel_ta: %v", ErrInvalidConfig, err)
			}
			return nil, fmt.Errorf("starting attestation service intel_ta: %w", err)
		}
		s.closers = append(s.closers, c.Close)
		s.as = c
		trusted := false
		for _, src := range s.cfg.AttestationToken.TrustedJWKSets {
			trusted = trusted || src == cfg.CertsFile
		}
		if !trusted {
			s.log.Warn("[attestation_token] trusted_jwk_sets does not list certs_file: unless other trust material covers ITA's signing keys, resource requests with ITA tokens are refused",
				"certs_file", cfg.CertsFile)
		}
		s.log.Info("using Intel Trust Authority as the attestation service", "base_url", c.BaseURL(), "certs_file", cfg.CertsFile,
			"policy_ids", len(cfg.PolicyIDs), "allow_unmatched_policy", cfg.AllowUnmatchedPolicy)
		return nil, nil
	default:
		return nil, nil
	}
	asStore, err := s.storeOfType(ctx, opts, cfg.StorageType, "attestation_service storage_type", "attestation service storage")
	if err != nil {
		return nil, err
	}
	rvpsStore := asStore
	if !cfg.RVPS.Remote() && cfg.RVPS.StorageType != "" {
		if rvpsStore, err = s.storeOfType(ctx, opts, cfg.RVPS.StorageType, "rvps_config storage_type", "reference value storage"); err != nil {
			return nil, err
		}
	}
	verifiers := opts.Verifiers
	if verifiers == nil {
		verifiers, err = builtin.New(cfg.VerifierConfig, builtin.Options{
			HTTPClient: opts.HTTPClient, Now: s.now, Logger: s.log.With("component", "verifier")})
		if err != nil {
			return nil, fmt.Errorf("%w: verifier_config: %v", ErrInvalidConfig, err)
		}
	}
	svc, err := as.New(ctx, cfg.Config, as.Options{Store: asStore, RVPSStore: rvpsStore, Verifiers: verifiers, Now: s.now, Rand: s.rand, Logger: s.log.With("component", "as")})
	if err != nil {
		return nil, fmt.Errorf("starting attestation service: %w", err)
	}
	s.closers = append(s.closers, svc.Close)
	s.as = svc
	trusted, err := jwksKeys(svc.JWKS())
	if err != nil {
		return nil, fmt.Errorf("reading attestation service key: %w", err)
	}
	return trusted, nil
}

// loadResourcePolicy starts the resource policy engine on the store.
func (s *Server) loadResourcePolicy(ctx context.Context) (err error) {
	s.policy, err = resourcepolicy.New(ctx, s.store, resourcepolicy.Options{
		Logger: s.log.With("component", "policy"), Now: s.now,
		// Re-read the stored policy on every evaluation (the compiled query
		// is reused while its bytes are unchanged), so that a policy change
		// through any replica takes effect on all of them at once: a
		// revocation must not wait for a cache to expire.
		ReloadInterval: time.Nanosecond,
	})
	if err != nil {
		return fmt.Errorf("loading resource policy: %w", err)
	}
	return nil
}

func sameType(a, b string) (bool, error) {
	na, err := backends.NormalizeType(a)
	if err != nil {
		return false, err
	}
	nb, err := backends.NormalizeType(b)
	if err != nil {
		return false, err
	}
	return na == nb, nil
}

// jwksKeys returns the public keys of a JWKS document.
func jwksKeys(b []byte) ([]crypto.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	var out []crypto.PublicKey
	for _, k := range set.Keys {
		out = append(out, k.Key)
	}
	return out, nil
}

// Close releases the stores the Server opened.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Handler returns the KBS HTTP handler: /kbs/v0/..., /metrics, /healthz.
func (s *Server) Handler() http.Handler {
	metricsHandler := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := s.requestID()
		w.Header().Set("X-Request-Id", rid)
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		log := s.log.With("request_id", rid)
		ctx := context.WithValue(r.Context(), ctxKeyRequestID{}, rid)
		r = r.WithContext(ctx)
		path := r.URL.EscapedPath()
		switch {
		case path == "/metrics":
			if r.Method != http.MethodGet {
				http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			metricsHandler.ServeHTTP(rw, r)
			return
		case path == "/healthz":
			rw.WriteHeader(http.StatusOK)
			return
		case strings.HasPrefix(path, "/kbs/v0/"):
			s.metrics.activeConnections.Inc()
			s.metrics.httpRequestSize.WithLabelValues(endpointLabel(path), r.Method).Observe(float64(max(r.ContentLength, 0)))
			err := s.serveKBS(rw, r, log, strings.TrimPrefix(path, "/kbs/v0/"))
			if err != nil {
				writeError(rw, err)
				lvl := slog.LevelInfo
				var e *Error
				if !errors.As(err, &e) || e.Kind == KindInternal {
					lvl = slog.LevelError
				}
				log.Log(ctx, lvl, "request failed", "method", r.Method, "path", path, "status", rw.status, "error", err.Error())
			}
			ep := endpointLabel(path)
			s.metrics.activeConnections.Dec()
			s.metrics.httpRequests.WithLabelValues(ep, r.Method, fmt.Sprint(rw.status)).Inc()
			s.metrics.httpDuration.WithLabelValues(ep, r.Method).Observe(time.Since(start).Seconds())
			s.metrics.httpResponseSize.WithLabelValues(ep, r.Method).Observe(float64(rw.bytes))
			log.Debug("request", "method", r.Method, "path", path, "status", rw.status, "duration", time.Since(start))
		default:
			writeError(rw, newError(KindInvalidRequestPath, nil, "Invalid request path %s", logging.Clip(path, 256)))
		}
	})
}

type ctxKeyRequestID struct{}

func (s *Server) requestID() string {
	var b [8]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return fmt.Sprintf("seq-%d", s.reqSeq.Add(1))
	}
	return hex.EncodeToString(b[:])
}

// endpointLabel keeps metric cardinality bounded: the first path segment of
// a known endpoint, else "other".
func endpointLabel(path string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/kbs/v0/"), "/")
	switch seg {
	case "auth", "attest", "resource", "resource-policy", "attestation-policy", "reference-value", "sample":
		return seg
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// segmentRE is upstream's resource path segment rule.
var segmentRE = regexp.MustCompile(`^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*$`)

// splitPath splits the escaped path after /kbs/v0/ into decoded segments.
// A segment that decodes to something outside upstream's charset (an
// encoded "/", "..", "%2e%2e", an empty segment) is an InvalidRequestPath.
func splitPath(escaped string) ([]string, error) {
	if escaped == "" {
		return nil, newError(KindInvalidRequestPath, nil, "Invalid request path /kbs/v0/")
	}
	parts := strings.Split(escaped, "/")
	out := make([]string, 0, len(parts))
	for i, p := range parts {
		d, err := url.PathUnescape(p)
		if err != nil || !segmentRE.MatchString(d) {
			// The trailing empty segment of "/kbs/v0/resource-policy/" is
			// tolerated; nothing else is.
			if p == "" && i == len(parts)-1 && i > 0 {
				continue
			}
			return nil, newError(KindInvalidRequestPath, nil, "Invalid request path /kbs/v0/%s", escaped)
		}
		out = append(out, d)
	}
	return out, nil
}

// readBody reads the request body up to the configured payload limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.payload {
		return nil, newError(KindPayloadTooLarge, nil, "payload reached size limit (%d bytes)", s.payload)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.payload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newError(KindPayloadTooLarge, nil, "payload reached size limit (%d bytes)", s.payload)
		}
		return nil, newError(KindSerdeError, err, "reading request body")
	}
	return b, nil
}

func (s *Server) serveKBS(w http.ResponseWriter, r *http.Request, log *slog.Logger, escaped string) error {
	segs, err := splitPath(escaped)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	plugin, rest := segs[0], segs[1:]
	switch {
	case plugin == "auth" && r.Method == http.MethodPost && len(rest) == 0:
		return s.handleAuth(w, r, body)
	case plugin == "attest" && r.Method == http.MethodPost && len(rest) == 0:
		return s.handleAttest(w, r, log, body)
	case plugin == "attestation-policy" && r.Method == http.MethodPost && len(rest) == 0:
		return s.handleSetAttestationPolicy(w, r, log, body)
	case plugin == "resource-policy" && r.Method == http.MethodPost && len(rest) == 0:
		return s.handleSetResourcePolicy(w, r, log, body)
	case plugin == "resource-policy" && r.Method == http.MethodGet && len(rest) == 0:
		return s.handleGetResourcePolicy(w, r)
	case plugin == "reference-value" && r.Method == http.MethodPost && len(rest) == 0:
		return s.handleSetReferenceValue(w, r, log, body)
	case plugin == "reference-value" && r.Method == http.MethodGet && len(rest) > 0:
		return s.handleGetReferenceValue(w, r, strings.Join(rest, "/"))
	}
	p, ok := s.plugins[plugin]
	if !ok {
		return newError(KindPluginNotFound, nil, "Plugin %s not found", plugin)
	}
	req := &pluginRequest{method: r.Method, path: rest, query: r.URL.Query(), body: body}
	if err := p.validatePath(req); err != nil {
		return err
	}
	if pp, ok := p.(preparer); ok {
		if err := pp.prepare(r.Context(), req); err != nil {
			return err
		}
	}
	if p.adminOnly(req) {
		principal, err := s.authorizeAdmin(r)
		if err != nil {
			return err
		}
		out, err := p.handle(r.Context(), req)
		if err != nil {
			return err
		}
		s.auditAdmin(r, principal, plugin+" "+r.Method, "/"+strings.Join(rest, "/"))
		if p.countWrites() {
			s.countResourceWrite(r.Method, strings.Join(rest, "/"))
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusOK)
		w.Write(out)
		return nil
	}
	return s.serveAttested(w, r, log, plugin, p, req)
}
