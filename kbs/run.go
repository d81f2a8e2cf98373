package kbs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          nil,
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, l := range ls {
		l := l
		if tlsCfg != nil {
			l = tls.NewListener(l, tlsCfg)
		}
		s.log.Info("serving", "address", l.Addr().String(), "tls", tlsCfg != nil)
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

// TLSConfig builds the server TLS configuration from [http_server]:
// certificate and key, and the named profile (old, intermediate — the
// default —, modern, custom with tls_min_version, tls_max_version,
// tls_ciphers and tls_groups).
func TLSConfig(c HTTPServerConfig) (*tls.Config, error) {
	if c.PrivateKey == "" || c.Certificate == "" {
		return nil, fmt.Errorf("%w: HTTPS needs http_server.private_key and http_server.certificate (or insecure_http = true)", ErrInvalidConfig)
	}
	cert, err := tls.LoadX509KeyPair(c.Certificate, c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: loading HTTPS key pair: %v", ErrInvalidConfig, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	switch p := strings.ToLower(c.TLSProfile); p {
	case "", "intermediate":
		cfg.MinVersion = tls.VersionTLS12
		cfg.CipherSuites = intermediateSuites
	case "modern":
		cfg.MinVersion = tls.VersionTLS13
	case "old":
		// Mozilla "old": legacy clients down to TLS 1.0.
		cfg.MinVersion = tls.VersionTLS10
	case "custom":
		cfg.MinVersion = tls.VersionTLS12
		if c.TLSMinVersion != "" {
			if cfg.MinVersion, err = tlsVersion(c.TLSMinVersion); err != nil {
				return nil, err
			}
		}
		if c.TLSMaxVersion != "" {
			if cfg.MaxVersion, err = tlsVersion(c.TLSMaxVersion); err != nil {
				return nil, err
			}
		}
		if c.TLSCiphers != "" {
			suites, err := cipherSuites(c.TLSCiphers)
			if err != nil {
				return nil, err
			}
			cfg.CipherSuites = suites
		}
		if c.TLSGroups != "" {
			groups, err := curveIDs(c.TLSGroups)
			if err != nil {
				return nil, err
			}
			cfg.CurvePreferences = groups
		}
	default:
		return nil, fmt.Errorf("%w: unknown tls_profile %q", ErrInvalidConfig, c.TLSProfile)
	}
	return cfg, nil
}

// intermediateSuites is Mozilla's intermediate TLS 1.2 list (TLS 1.3
// suites are always enabled by Go).
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func tlsVersion(s string) (uint16, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "tlsv") {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%w: TLS version %q (want 1.2 or 1.3)", ErrInvalidConfig, s)
}

// cipherSuites maps a colon-separated list of IANA or OpenSSL names. TLS
// 1.3 suites are accepted and need no setting: Go enables all three and
// chooses among them itself.
func cipherSuites(list string) ([]uint16, error) {
	byName := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		byName[cs.Name] = cs.ID
	}
	openssl := map[string]string{
		"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
		"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	}
	var out []uint16
	for _, n := range strings.Split(list, ":") {
		n = strings.TrimSpace(n)
		switch n {
		case "", "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256":
			continue
		}
		if alias, ok := openssl[n]; ok {
			n = alias
		}
		id, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("%w: unknown or insecure cipher suite %q", ErrInvalidConfig, n)
		}
		out = append(out, id)
	}
	return out, nil
}

func curveIDs(list string) ([]tls.CurveID, error) {
	m := map[string]tls.CurveID{
		"x25519mlkem768": tls.X25519MLKEM768, "x25519": tls.X25519,
		"secp256r1": tls.CurveP256, "p-256": tls.CurveP256, "prime256v1": tls.CurveP256,
		"secp384r1": tls.CurveP384, "p-384": tls.CurveP384,
		"secp521r1": tls.CurveP521, "p-521": tls.CurveP521,
	}
	var out []tls.CurveID
	for _, n := range strings.Split(list, ":") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		id, ok := m[n]
		if !ok {
			return nil, fmt.Errorf("%w: unknown TLS group %q", ErrInvalidConfig, n)
		}
		out = append(out, id)
	}
	return out, nil
}
