package kbs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Listen opens the configured sockets.
func (s *Server) Listen() ([]net.Listener, error) {
	var ls []net.Listener
	for _, addr := range s.cfg.HTTPServer.Sockets {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// Serve serves the KBS on the listeners (HTTPS unless insecure_http) until
// ctx ends, then shuts down gracefully. It also runs the session sweeper.
func (s *Server) Serve(ctx context.Context, ls []net.Listener) error {
	tlsCfg := s.tls // loaded by New
	if n := s.cfg.HTTPServer.WorkerCount; n != 0 {
		s.log.Warn("http_server.worker_count has no effect here: each connection is served on its own goroutine, over GOMAXPROCS threads", "worker_count", n)
	}
	if h := s.cfg.HTTPServer; h.InsecureHTTP && (h.Certificate != "" || h.PrivateKey != "" || h.TLSProfile != "" || h.TLSMinVersion != "" || h.TLSMaxVersion != "" || h.TLSCiphers != "" || h.TLSGroups != "") {
		s.log.Warn("insecure_http = true: serving plain HTTP; the certificate, key and tls_* settings of [http_server] are not used")
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		TLSConfig:         tlsCfg,
		// net/http's own errors (accept failures such as "too many open
		// files", TLS handshake errors) as records of the KBS's logger,
		// JSON like every other line, not plain text on stderr.
		ErrorLog: slog.NewLogLogger(s.log.With("component", "http-server").Handler(), slog.LevelWarn),
	}
	maxConns := s.cfg.HTTPServer.MaxConnections
	if maxConns <= 0 {
		maxConns = defaultMaxConnections()
	}
	limiter := newConnLimiter(maxConns, s.metrics.connectionsRefused, s.log)
	g, ctx := errgroup.WithContext(ctx)
	for _, l := range ls {
		l := limiter.wrap(l)
		if tlsCfg != nil {
			l = tls.NewListener(l, tlsCfg)
		}
		s.log.Info("serving", "address", l.Addr().String(), "tls", tlsCfg != nil, "max_connections", maxConns)
		g.Go(func() error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { s.sessions.runSweeper(ctx); return nil })
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// Run listens on the configured sockets and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ls, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, ls)
}

// TLSConfig builds the server TLS configuration from [http_server]: the
// certificate chain and key, then the settings of TLSSettings.
func TLSConfig(c HTTPServerConfig) (*tls.Config, error) {
	if c.PrivateKey == "" || c.Certificate == "" {
		return nil, fmt.Errorf("%w: HTTPS needs http_server.private_key and http_server.certificate (or insecure_http = true)", ErrInvalidConfig)
	}
	cfg, err := TLSSettings(c)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.Certificate, c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: loading HTTPS key pair: %v", ErrInvalidConfig, err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// TLSSettings resolves tls_profile, tls_min_version, tls_max_version,
// tls_ciphers and tls_groups the way upstream's kbs/src/http.rs builds its
// OpenSSL acceptor (commit 78962cd), into a tls.Config without
// certificates:
//
//   - The base is OpenSSL's mozilla_intermediate_v5: TLS 1.2 to 1.3, the
//     ECDHE AEAD suites for TLS 1.2 (its DHE suites have no Go
//     implementation), all TLS 1.3 suites.
//   - The profile then sets the floor: "old" TLS 1.2 (upstream's old is
//     intermediate with min TLS 1.2, not Mozilla's TLS 1.0 profile),
//     "modern" TLS 1.3; "intermediate" (the default) and "custom" change
//     nothing.
//   - tls_min_version and tls_max_version ("1.2" or "1.3") override the
//     profile's versions, whatever the profile.
//   - tls_ciphers, whatever the profile, replaces the TLS 1.2 list unless
//     tls_min_version is "1.3" or the profile is "modern" (upstream's test;
//     a list without a TLS 1.2 suite is refused, as OpenSSL does), and the
//     TLS 1.3 list unless tls_max_version is "1.2". Go's TLS stack always
//     offers its three TLS 1.3 suites, so a list that names only some of
//     them while TLS 1.3 is on is refused rather than silently widened.
//   - tls_groups, whatever the profile, replaces the key exchange groups;
//     the default is upstream's with a post-quantum capable OpenSSL:
//     X25519MLKEM768, X25519, secp256r1, secp384r1.
//
// Names are OpenSSL's or IANA's; an unknown name, or one this build cannot
// or will not offer (DHE, RSA key exchange, CBC-SHA256, 3DES, RC4, X448,
// finite-field groups), is refused with the name. Go picks among enabled
// suites and groups in its own order, so the order of a list is not kept.
func TLSSettings(c HTTPServerConfig) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     slices.Clone(intermediateSuites),
		CurvePreferences: slices.Clone(defaultGroups),
	}
	profile := strings.ToLower(c.TLSProfile)
	switch profile {
	case "", "intermediate", "custom":
	case "old":
		cfg.MinVersion = tls.VersionTLS12
	case "modern":
		cfg.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("%w: http_server.tls_profile %q: want old, intermediate, modern or custom", ErrInvalidConfig, c.TLSProfile)
	}
	var err error
	if c.TLSMinVersion != "" {
		if cfg.MinVersion, err = tlsVersion("tls_min_version", c.TLSMinVersion); err != nil {
			return nil, err
		}
	}
	if c.TLSMaxVersion != "" {
		if cfg.MaxVersion, err = tlsVersion("tls_max_version", c.TLSMaxVersion); err != nil {
			return nil, err
		}
	}
	if cfg.MinVersion > cfg.MaxVersion {
		return nil, fmt.Errorf("%w: http_server: no TLS version left: the minimum (%s, from %s) is above tls_max_version %q",
			ErrInvalidConfig, tls.VersionName(cfg.MinVersion), minSource(c), c.TLSMaxVersion)
	}
	if c.TLSCiphers != "" {
		tls12 := !(c.TLSMinVersion == "1.3" || profile == "modern")
		tls13 := c.TLSMaxVersion != "1.2"
		if err := applyCiphers(cfg, c.TLSCiphers, tls12, tls13); err != nil {
			return nil, err
		}
	}
	if c.TLSGroups != "" {
		if cfg.CurvePreferences, err = curveIDs(c.TLSGroups); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func minSource(c HTTPServerConfig) string {
	if c.TLSMinVersion != "" {
		return "tls_min_version"
	}
	return fmt.Sprintf("tls_profile %q", c.TLSProfile)
}

// intermediateSuites is the TLS 1.2 list of OpenSSL's
// mozilla_intermediate_v5 that Go implements (its DHE-RSA suites aside).
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// defaultGroups is upstream's group list when tls_groups is not set and
// OpenSSL has ML-KEM: X25519MLKEM768:X25519:secp256r1:secp384r1.
var defaultGroups = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

func tlsVersion(key, s string) (uint16, error) {
	switch s {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%w: http_server.%s %q: want \"1.2\" or \"1.3\"", ErrInvalidConfig, key, s)
}

// tls13Suites are the TLS 1.3 suites; Go enables all of them, always.
var tls13Suites = []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

// openSSLSuites maps OpenSSL's names of the TLS 1.2 suites Go offers to
// their IANA names, which Go uses.
var openSSLSuites = map[string]string{
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
}

// openSSLInsecure maps OpenSSL's names of suites Go implements but
// classes insecure (no forward secrecy, CBC-SHA256, 3DES, RC4).
var openSSLInsecure = map[string]string{
	"AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA", "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
	"AES128-SHA256": "TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
	"AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384", "DES-CBC3-SHA": "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
	"ECDHE-RSA-DES-CBC3-SHA": "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "RC4-SHA": "TLS_RSA_WITH_RC4_128_SHA",
	"ECDHE-ECDSA-RC4-SHA": "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA": "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
	"ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
	"ECDHE-RSA-AES128-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
}

// maxTLSListEntries bounds tls_ciphers and tls_groups.
const maxTLSListEntries = 64

// applyCiphers applies tls_ciphers to the TLS 1.2 list when tls12 and
// checks it against Go's fixed TLS 1.3 list when tls13.
func applyCiphers(cfg *tls.Config, list string, tls12, tls13 bool) error {
	secure := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		secure[cs.Name] = cs.ID
	}
	insecure := map[string]bool{}
	for _, cs := range tls.InsecureCipherSuites() {
		insecure[cs.Name] = true
	}
	names := strings.Split(list, ":")
	if len(names) > maxTLSListEntries {
		return fmt.Errorf("%w: http_server.tls_ciphers has more than %d entries", ErrInvalidConfig, maxTLSListEntries)
	}
	var suites12 []uint16
	seen13 := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if slices.Contains(tls13Suites, n) {
			seen13[n] = true
			continue
		}
		iana := n
		if v, ok := openSSLSuites[n]; ok {
			iana = v
		}
		if v, ok := openSSLInsecure[n]; ok {
			iana = v
		}
		switch id, ok := secure[iana]; {
		case ok:
			if !slices.Contains(suites12, id) {
				suites12 = append(suites12, id)
			}
		case insecure[iana]:
			return fmt.Errorf("%w: http_server.tls_ciphers: %s is an insecure cipher suite this KBS does not offer; remove it", ErrInvalidConfig, n)
		case strings.HasPrefix(n, "DHE-") || strings.HasPrefix(iana, "TLS_DHE_"):
			return fmt.Errorf("%w: http_server.tls_ciphers: %s needs finite-field DHE, which this KBS (Go crypto/tls) does not implement; use an ECDHE suite", ErrInvalidConfig, n)
		default:
			return fmt.Errorf("%w: http_server.tls_ciphers: unknown cipher suite %q (give OpenSSL or IANA names of ECDHE suites, or TLS 1.3 suites)", ErrInvalidConfig, n)
		}
	}
	if tls12 {
		if len(suites12) == 0 {
			return fmt.Errorf("%w: http_server.tls_ciphers names no TLS 1.2 cipher suite while TLS 1.2 is enabled (upstream's OpenSSL refuses this too): add TLS 1.2 suites or set tls_min_version = \"1.3\"", ErrInvalidConfig)
		}
		cfg.CipherSuites = suites12
	}
	if tls13 && len(seen13) != len(tls13Suites) {
		if len(seen13) == 0 {
			return fmt.Errorf("%w: http_server.tls_ciphers names no TLS 1.3 cipher suite while TLS 1.3 is enabled (upstream's OpenSSL refuses this too): add %s or set tls_max_version = \"1.2\"",
				ErrInvalidConfig, strings.Join(tls13Suites, ":"))
		}
		var missing []string
		for _, n := range tls13Suites {
			if !seen13[n] {
				missing = append(missing, n)
			}
		}
		return fmt.Errorf("%w: http_server.tls_ciphers leaves out TLS 1.3 suite(s) %s, but this KBS (Go crypto/tls) cannot disable TLS 1.3 suites and would still offer them: list all of %s, or set tls_max_version = \"1.2\"",
			ErrInvalidConfig, strings.Join(missing, ":"), strings.Join(tls13Suites, ":"))
	}
	return nil
}

// groupIDs maps OpenSSL's group names (case-insensitive, as OpenSSL
// matches them) to the key exchanges Go offers.
var groupIDs = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768, "secp256r1mlkem768": tls.SecP256r1MLKEM768, "secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
	"x25519":    tls.X25519,
	"secp256r1": tls.CurveP256, "p-256": tls.CurveP256, "prime256v1": tls.CurveP256,
	"secp384r1": tls.CurveP384, "p-384": tls.CurveP384,
	"secp521r1": tls.CurveP521, "p-521": tls.CurveP521,
}

func curveIDs(list string) ([]tls.CurveID, error) {
	names := strings.Split(list, ":")
	if len(names) > maxTLSListEntries {
		return nil, fmt.Errorf("%w: http_server.tls_groups has more than %d entries", ErrInvalidConfig, maxTLSListEntries)
	}
	var out []tls.CurveID
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		id, ok := groupIDs[strings.ToLower(n)]
		if !ok {
			return nil, fmt.Errorf("%w: http_server.tls_groups: %q is not a group this KBS offers (X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, secp256r1, secp384r1, secp521r1)", ErrInvalidConfig, n)
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: http_server.tls_groups names no group", ErrInvalidConfig)
	}
	return out, nil
}
