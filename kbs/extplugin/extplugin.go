// Package extplugin is the KBS side of upstream Trustee's external plugins:
// `[[plugins]] name = "external"` with a list of gRPC backends, each a
// separate process implementing kbs.plugin.v1.KbsPlugin (plugin.proto), and
// requests to /kbs/v0/external/<backend>/<path...> forwarded to the backend
// named by the first path segment.
//
// # Invariants
//
//   - Configuration as upstream: each backend has a unique name and an
//     endpoint that is http:// (plaintext, logged as development only) or
//     https:// (which needs ca_cert_path; the plugin's certificate must chain
//     to it, TLS 1.2 or later). A CA file that cannot be read or holds no
//     certificate is refused at start.
//   - Every call has a deadline: timeout_ms, or DefaultTimeout when unset
//     (upstream waits forever; a hung plugin must not hold a KBS request).
//   - A reply is bounded by grpcdial.MaxMessageBytes, and a Handle body by
//     limits.MaxResourceBytes; a status_code other than 0 or 2xx is a plugin
//     error, as upstream. Plugin errors never carry the request body.
//   - The KBS asks ValidateAuth before authenticating the caller, and, on
//     the attested path, NeedsEncryption before Handle (upstream asks it
//     after; the answer depends only on the request). An error of either
//     call fails the request: no default ever turns authentication or
//     encryption off.
//   - Connections are lazy (grpcdial): the KBS starts while a plugin is
//     down, and serves every other request meanwhile.
//   - Per backend: kbs_plugin_requests_total, kbs_plugin_errors_total and
//     kbs_plugin_request_duration_seconds with label plugin_name, upstream's
//     metric names.
package extplugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/kbs/extplugin/pluginproto"
)

// DefaultTimeout bounds a call to a backend without timeout_ms.
const DefaultTimeout = 30 * time.Second

// maxCABytes bounds a ca_cert_path file.
const maxCABytes = 1 << 20

var (
	// ErrConfig is wrapped by configuration errors.
	ErrConfig = errors.New("extplugin: invalid configuration")
	// ErrPlugin is wrapped by every failure of a plugin call: unknown
	// backend, transport error, deadline, non-2xx status, oversized body.
	ErrPlugin = errors.New("extplugin: plugin error")
)

// Backend is one entry of `backends = [...]`.
type Backend struct {
	Name       string `toml:"name" json:"name"`
	Endpoint   string `toml:"endpoint" json:"endpoint"`
	CACertPath string `toml:"ca_cert_path" json:"ca_cert_path"`
	// TLSMode is upstream's explicit form ("tls" or "insecure"); when
	// empty it is implied by the endpoint's scheme.
	TLSMode   string `toml:"tls_mode" json:"tls_mode"`
	TimeoutMs int64  `toml:"timeout_ms" json:"timeout_ms"`
}

// Check validates the backends without reading files or connecting.
func Check(backends []Backend) error {
	if len(backends) == 0 {
		return fmt.Errorf("%w: External plugin configured with no backends", ErrConfig)
	}
	seen := map[string]bool{}
	for _, b := range backends {
		if b.Name == "" || strings.ContainsAny(b.Name, "/?#") {
			return fmt.Errorf("%w: external plugin backend name %q must be one non-empty path segment", ErrConfig, b.Name)
		}
		if seen[b.Name] {
			return fmt.Errorf("%w: Duplicate backend name '%s' in external plugin config", ErrConfig, b.Name)
		}
		seen[b.Name] = true
		tlsOn, err := b.tls()
		if err != nil {
			return err
		}
		if tlsOn && b.CACertPath == "" {
			return fmt.Errorf("%w: backend '%s': `https://` endpoint requires `ca_cert_path` (PEM file for server certificate verification)", ErrConfig, b.Name)
		}
		if b.TimeoutMs < 0 {
			return fmt.Errorf("%w: backend '%s': timeout_ms %d is negative", ErrConfig, b.Name, b.TimeoutMs)
		}
	}
	return nil
}

func (b Backend) tls() (bool, error) {
	var tlsOn bool
	switch {
	case strings.HasPrefix(b.Endpoint, "https://"):
		tlsOn = true
	case strings.HasPrefix(b.Endpoint, "http://"):
	default:
		return false, fmt.Errorf("%w: backend '%s': endpoint must start with `http://` or `https://`", ErrConfig, b.Name)
	}
	if _, err := grpcdial.ParseAddress(b.Endpoint); err != nil {
		return false, fmt.Errorf("%w: backend '%s': %v", ErrConfig, b.Name, err)
	}
	switch strings.ToLower(b.TLSMode) {
	case "":
	case "tls":
		if !tlsOn {
			return false, fmt.Errorf("%w: backend '%s': tls_mode \"tls\" with an http:// endpoint", ErrConfig, b.Name)
		}
	case "insecure":
		if tlsOn {
			return false, fmt.Errorf("%w: backend '%s': tls_mode \"insecure\" with an https:// endpoint", ErrConfig, b.Name)
		}
	default:
		return false, fmt.Errorf("%w: backend '%s': unknown tls_mode %q", ErrConfig, b.Name, b.TLSMode)
	}
	return tlsOn, nil
}

// Request is one forwarded HTTP request; Path excludes the backend name.
type Request struct {
	Method string
	Path   []string
	Query  map[string]string
	Body   []byte
}

type backend struct {
	name    string
	cc      *grpc.ClientConn
	rpc     pluginproto.KbsPluginClient
	timeout time.Duration
}

// Plugin routes requests to its backends.
type Plugin struct {
	backends map[string]*backend
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New checks the backends and opens a lazy connection to each.
func New(backends []Backend, log *slog.Logger) (*Plugin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Check(backends); err != nil {
		return nil, err
	}
	p := &Plugin{
		backends: map[string]*backend{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_plugin_requests_total",
			Help: "Requests forwarded to each external plugin backend."}, []string{"plugin_name"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_plugin_errors_total",
			Help: "Failed calls to each external plugin backend."}, []string{"plugin_name"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kbs_plugin_request_duration_seconds",
			Help:    "Latency of Handle calls to each external plugin backend.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}, []string{"plugin_name"}),
	}
	for _, b := range backends {
		tlsOn, _ := b.tls()
		opts := grpcdial.Options{}
		if tlsOn {
			pem, err := readBounded(b.CACertPath)
			if err != nil {
				p.Close()
				return nil, fmt.Errorf("%w: backend '%s': Read CA certificate: %v", ErrConfig, b.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				p.Close()
				return nil, fmt.Errorf("%w: backend '%s': ca_cert_path %s holds no PEM certificate", ErrConfig, b.Name, b.CACertPath)
			}
			opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		} else {
			log.Warn("External plugin backend configured with insecure mode (plaintext). This is ONLY safe for development. Never use in production.",
				"backend", b.Name, "endpoint", b.Endpoint)
		}
		cc, err := grpcdial.Dial(b.Endpoint, opts)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("%w: backend '%s': %v", ErrConfig, b.Name, err)
		}
		timeout := DefaultTimeout
		if b.TimeoutMs > 0 {
			timeout = time.Duration(b.TimeoutMs) * time.Millisecond
		}
		p.backends[b.Name] = &backend{name: b.Name, cc: cc, rpc: pluginproto.NewKbsPluginClient(cc), timeout: timeout}
		log.Info("external plugin backend configured", "backend", b.Name, "endpoint", b.Endpoint, "tls", tlsOn, "timeout", timeout)
	}
	return p, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCABytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCABytes {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, maxCABytes)
	}
	return b, nil
}

// Collectors are the plugin's metrics, for the KBS's registry.
func (p *Plugin) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.requests, p.errors, p.duration}
}

// Close closes every backend connection.
func (p *Plugin) Close() error {
	var errs []error
	for _, b := range p.backends {
		errs = append(errs, b.cc.Close())
	}
	return errors.Join(errs...)
}

// route splits the backend name off path.
func (p *Plugin) route(path []string) (*backend, []string, error) {
	if len(path) == 0 || path[0] == "" {
		return nil, nil, fmt.Errorf("%w: external plugin name missing from request path", ErrPlugin)
	}
	b, ok := p.backends[path[0]]
	if !ok {
		return nil, nil, fmt.Errorf("%w: external plugin '%s' not registered", ErrPlugin, path[0])
	}
	return b, path[1:], nil
}

// Known reports whether path names a configured backend.
func (p *Plugin) Known(path []string) bool {
	_, _, err := p.route(path)
	return err == nil
}

func (p *Plugin) callError(b *backend, err error) error {
	p.errors.WithLabelValues(b.name).Inc()
	st, _ := status.FromError(err)
	return fmt.Errorf("%w: gRPC error from plugin '%s': %s", ErrPlugin, b.name, st.Code())
}

// ValidateAuth asks the backend whether r needs admin authentication.
func (p *Plugin) ValidateAuth(ctx context.Context, r Request) (bool, error) {
	b, sub, err := p.route(r.Path)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	resp, err := b.rpc.ValidateAuth(ctx, &pluginproto.ValidateAuthRequest{Body: r.Body, Query: r.Query, Path: sub, Method: r.Method})
	if err != nil {
		return false, p.callError(b, err)
	}
	return resp.GetRequiresAdminAuth(), nil
}

// NeedsEncryption asks the backend whether its answer to r must be sealed
// to the TEE key.
func (p *Plugin) NeedsEncryption(ctx context.Context, r Request) (bool, error) {
	b, sub, err := p.route(r.Path)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	resp, err := b.rpc.NeedsEncryption(ctx, &pluginproto.NeedsEncryptionRequest{Body: r.Body, Query: r.Query, Path: sub, Method: r.Method})
	if err != nil {
		return false, p.callError(b, err)
	}
	return resp.GetRequiresPayloadEncryption(), nil
}

// Handle forwards r and returns the backend's body.
func (p *Plugin) Handle(ctx context.Context, r Request) ([]byte, error) {
	b, sub, err := p.route(r.Path)
	if err != nil {
		return nil, err
	}
	p.requests.WithLabelValues(b.name).Inc()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	resp, err := b.rpc.Handle(ctx, &pluginproto.PluginRequest{Body: r.Body, Query: r.Query, Path: sub, Method: r.Method})
	p.duration.WithLabelValues(b.name).Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, p.callError(b, err)
	}
	body, err := CheckResponse(b.name, resp)
	if err != nil {
		p.errors.WithLabelValues(b.name).Inc()
		return nil, err
	}
	return body, nil
}

// maxErrorBody bounds the part of a failing plugin's body quoted in the
// error.
const maxErrorBody = 256

// CheckResponse applies upstream's rule to a Handle reply: status 0 or 2xx
// returns the body, anything else is a plugin error quoting (the start of)
// the body; a body over limits.MaxResourceBytes is refused.
func CheckResponse(name string, resp *pluginproto.PluginResponse) ([]byte, error) {
	body := resp.GetBody()
	if code := resp.GetStatusCode(); code != 0 && (code < 200 || code > 299) {
		quoted := body
		if len(quoted) > maxErrorBody {
			quoted = quoted[:maxErrorBody]
		}
		return nil, fmt.Errorf("%w: plugin '%s' returned HTTP status %d: %s", ErrPlugin, name, code, strings.ToValidUTF8(string(quoted), "\uFFFD"))
	}
	if len(body) > limits.MaxResourceBytes {
		return nil, fmt.Errorf("%w: plugin '%s' returned %d bytes, more than %d", ErrPlugin, name, len(body), limits.MaxResourceBytes)
	}
	if body == nil {
		body = []byte{}
	}
	return body, nil
}
