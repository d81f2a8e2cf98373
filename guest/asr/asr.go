// Package asr is api-server-rest: the HTTP API a workload container uses
// to reach the confidential-data-hub and the attestation-agent of its
// confidential VM (GET http://127.0.0.1:8006/cdh/resource/<repo>/<type>/<tag>
// and friends). Paths, methods, status codes, content types and bodies are
// those of upstream guest-components' api-server-rest.
//
// # Invariants
//
//   - Only loopback peers are served; any other peer gets 403 Forbidden,
//     and cmd/api-server-rest refuses to bind a non-loopback address.
//   - Every backend call runs under a deadline (Options.Timeout).
//   - Request bodies (the AAEL event) are read through a size limit.
//   - A backend error answers 500 with the backend's status message, which
//     the confidential-data-hub keeps terse; nothing else is added.
//
// # Concurrency
//
// A Server is safe for concurrent use when its backends are.
package asr

import (
	"context"
	"encoding/base64"
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

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/internal/ttrpcconn"
)

// Defaults, as upstream's api-server-rest has them. The backends'
// addresses are those of their owners: cdh.DefaultSocket and
// aa.DefaultSocket.
const (
	DefaultBind     = "127.0.0.1:8006"
	DefaultFeatures = FeatureResource
	// DefaultTimeout bounds each backend call (upstream's TTRPC_TIMEOUT).
	DefaultTimeout = 50 * time.Second
	// DefaultVersion is reported by /info when Options.Version is empty.
	DefaultVersion = "Guest Components Version: go-trustee"
)

// Features.
const (
	FeatureResource    = "resource"
	FeatureAttestation = "attestation"
	FeatureAll         = "all"
)

// maxAAELBody bounds the body of POST /aa/aael.
const maxAAELBody = limits.MaxAAELRequestBytes

// ResourceGetter is the confidential-data-hub's GetResource.
type ResourceGetter interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// AttestationAgent is what the /aa and /info endpoints ask the
// attestation-agent; aa.Client implements it over ttRPC.
type AttestationAgent interface {
	GetToken(ctx context.Context, tokenType string) ([]byte, error)
	GetEvidence(ctx context.Context, runtimeData []byte) ([]byte, error)
	GetAdditionalEvidence(ctx context.Context, runtimeData []byte) ([]byte, error)
	ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string) (aa.MeasurementResult, error)
	GetTeeType(ctx context.Context) (string, error)
	GetAdditionalTees(ctx context.Context) ([]string, error)
}

// Options configure a Server.
type Options struct {
	// Features is resource, attestation or all.
	Features string
	// CDH serves /cdh/resource; required with resource or all.
	CDH ResourceGetter
	// AA serves /aa/* and the TEE fields of /info; required with
	// attestation or all.
	AA AttestationAgent
	// Version is /info's version; "" is DefaultVersion.
	Version string
	// Timeout bounds each backend call; 0 is DefaultTimeout.
	Timeout time.Duration
	// Logger receives request records; nil discards them.
	Logger *slog.Logger
}

// Server is the api-server-rest HTTP handler.
type Server struct {
	opts Options
}

// New validates opts: the features value, and a backend for each feature
// (upstream connects the clients the features name, and only those).
func New(opts Options) (*Server, error) {
	var needAA, needCDH bool
	switch opts.Features {
	case FeatureResource:
		needCDH = true
	case FeatureAttestation:
		needAA = true
	case FeatureAll:
		needAA, needCDH = true, true
	default:
		return nil, fmt.Errorf("unknown features %q; supported features are: resource, attestation, all", opts.Features)
	}
	if needCDH && opts.CDH == nil {
		return nil, fmt.Errorf("features %q need a confidential-data-hub client", opts.Features)
	}
	if needAA && opts.AA == nil {
		return nil, fmt.Errorf("features %q need an attestation-agent client", opts.Features)
	}
	if !needCDH {
		opts.CDH = nil
	}
	if !needAA {
		opts.AA = nil
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts}, nil
}

func write(w http.ResponseWriter, status int, contentType string, body []byte) {
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	w.Write(body)
}

func text(w http.ResponseWriter, status int, body string) { write(w, status, "", []byte(body)) }

func (s *Server) backendError(w http.ResponseWriter, what string, err error) {
	s.opts.Logger.Error("backend call failed", "call", what, "err", err)
	text(w, http.StatusInternalServerError, ttrpcconn.StatusMessage(err))
}

// isLoopback reports whether the peer address is a loopback IP.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitNthSlash splits s before its n-th "/" (upstream's split_nth_slash):
// ("/cdh/resource/a", 2) gives ("/cdh", "/resource/a").
func splitNthSlash(s string, n int) (string, string, bool) {
	idx := -1
	for i := 0; i < n; i++ {
		j := strings.IndexByte(s[idx+1:], '/')
		if j < 0 {
			return "", "", false
		}
		idx += j + 1
	}
	if n <= 0 {
		return "", "", false
	}
	return s[:idx], s[idx:], true
}

// query decodes the query as upstream does: form-urlencoded, the last of
// repeated keys wins.
func query(raw string) map[string]string {
	out := map[string]string{}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, v = formUnescape(k), formUnescape(v)
		out[k] = v
	}
	return out
}

// formUnescape decodes "+" and %XX, keeping malformed escapes literally.
func formUnescape(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if u, err := url.PathUnescape(s[i : i+3]); err == nil {
				b.WriteString(u)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeRuntimeData applies the optional encoding: none is the raw UTF-8
// value, "base64" is base64url without padding.
func decodeRuntimeData(v string, encoding *string) ([]byte, error) {
	if encoding == nil {
		return []byte(v), nil
	}
	if *encoding != "base64" {
		return nil, fmt.Errorf("unsupported runtime_data encoding %q", *encoding)
	}
	return base64.RawURLEncoding.Strict().DecodeString(v)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		text(w, http.StatusForbidden, "Forbidden")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.Timeout)
	defer cancel()
	path := r.URL.Path
	params := query(r.URL.RawQuery)
	if path == "/info" {
		if r.Method != http.MethodGet {
			text(w, http.StatusMethodNotAllowed, "Method Not Allowed")
			return
		}
		s.info(ctx, w)
		return
	}
	root, rest, ok := splitNthSlash(path, 2)
	if !ok {
		text(w, http.StatusNotFound, "URL NOT FOUND")
		return
	}
	switch root {
	case "/aa":
		if s.opts.AA == nil {
			text(w, http.StatusNotFound, "Attestation Feature Not Enabled")
			return
		}
		s.aa(ctx, w, r, rest, params)
	case "/cdh":
		if s.opts.CDH == nil {
			text(w, http.StatusNotFound, "Resource Feature Not Enabled")
			return
		}
		api, resource, ok := splitNthSlash(rest, 2)
		if !ok || api != "/resource" {
			text(w, http.StatusNotFound, "URL NOT FOUND")
			return
		}
		s.opts.Logger.Info("Get resource", "path", resource)
		b, err := s.opts.CDH.GetResource(ctx, "kbs://"+resource)
		if err != nil {
			s.backendError(w, "get resource", err)
			return
		}
		write(w, http.StatusOK, "application/octet-stream", b)
	default:
		text(w, http.StatusNotFound, "URL NOT FOUND")
	}
}

func (s *Server) info(ctx context.Context, w http.ResponseWriter) {
	type versionInfo struct {
		Version        string   `json:"version"`
		Tee            *string  `json:"tee,omitempty"`
		AdditionalTees []string `json:"additional_tees,omitempty"`
		Feature        string   `json:"feature"`
	}
	v := versionInfo{Version: s.opts.Version, Feature: s.opts.Features}
	if s.opts.AA != nil {
		tee, err := s.opts.AA.GetTeeType(ctx)
		if err != nil {
			s.backendError(w, "get tee type", err)
			return
		}
		tees, err := s.opts.AA.GetAdditionalTees(ctx)
		if err != nil {
			s.backendError(w, "get additional tees", err)
			return
		}
		v.Tee, v.AdditionalTees = &tee, tees
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.backendError(w, "info", err)
		return
	}
	write(w, http.StatusOK, "application/json", b)
}

// aaelEvent is the body of POST /aa/aael.
type aaelEvent struct {
	Domain    *string `json:"domain"`
	Operation *string `json:"operation"`
	Content   *string `json:"content"`
}

// Bodies of POST /aa/aael, byte for byte as upstream writes them.
const (
	aaelOK           = `{"success":"true"}`
	aaelNotSupported = `{"success":"false","message": "The platform does not support runtime measurement"}`
	aaelNotEnabled   = `{"success":"false","message": "Attestation Agent does not enable eventlog recording"}`
	aaelUnknown      = `{"success":"false","message": "Unknown runtime measurement result"}`
)

func (s *Server) aa(ctx context.Context, w http.ResponseWriter, r *http.Request, rest string, params map[string]string) {
	agent := s.opts.AA
	runtimeData := func() ([]byte, bool) {
		v, ok := params["runtime_data"]
		if !ok {
			return nil, false
		}
		var enc *string
		if e, ok := params["encoding"]; ok {
			enc = &e
		}
		b, err := decodeRuntimeData(v, enc)
		return b, err == nil
	}
	switch {
	case rest == "/token" && r.Method == http.MethodGet:
		tt, ok := params["token_type"]
		if !ok {
			text(w, http.StatusBadRequest, "BAD REQUEST")
			return
		}
		s.opts.Logger.Info("Get token", "type", tt)
		b, err := agent.GetToken(ctx, tt)
		if err != nil {
			s.backendError(w, "get token", err)
			return
		}
		write(w, http.StatusOK, "application/octet-stream", b)
	case (rest == "/evidence" || rest == "/additional-evidence") && r.Method == http.MethodGet:
		rd, ok := runtimeData()
		if !ok {
			text(w, http.StatusBadRequest, "BAD REQUEST")
			return
		}
		var b []byte
		var err error
		if rest == "/evidence" {
			b, err = agent.GetEvidence(ctx, rd)
		} else {
			b, err = agent.GetAdditionalEvidence(ctx, rd)
		}
		if err != nil {
			s.backendError(w, "get evidence", err)
			return
		}
		write(w, http.StatusOK, "application/octet-stream", b)
	case rest == "/aael" && r.Method == http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAAELBody+1))
		if err == nil && len(body) > maxAAELBody {
			err = fmt.Errorf("body exceeds %d bytes", maxAAELBody)
		}
		var ev aaelEvent
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		if err == nil && (ev.Domain == nil || ev.Operation == nil || ev.Content == nil) {
			err = errors.New("missing domain, operation or content")
		}
		if err != nil {
			s.opts.Logger.Error("Failed to parse AAEL entry request", "err", err)
			text(w, http.StatusInternalServerError, "Illegal AAEL eventry format: "+err.Error())
			return
		}
		res, err := agent.ExtendRuntimeMeasurement(ctx, *ev.Domain, *ev.Operation, *ev.Content)
		if err != nil {
			s.backendError(w, "extend AAEL entry", err)
			return
		}
		msg := aaelUnknown
		switch res {
		case aa.MeasurementOK:
			msg = aaelOK
		case aa.MeasurementNotSupported:
			msg = aaelNotSupported
		case aa.MeasurementNotEnabled:
			msg = aaelNotEnabled
		}
		write(w, http.StatusOK, "application/json", []byte(msg))
	default:
		text(w, http.StatusNotFound, "URL NOT FOUND")
	}
}

// CheckBind refuses a bind address that is not a loopback IP and port.
func CheckBind(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bind address %q: %v", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("bind address %q is not a loopback IP: api-server-rest serves the pod's loopback only", addr)
	}
	return nil
}
