// Command restful-as is the standalone Attestation Service with upstream
// Trustee's REST API, a drop-in for its restful-as binary:
//
//	restful-as --socket 0.0.0.0:8080 [-c config.json]
//	           [--https-pubkey-cert cert.pem --https-prikey key.pem]
//	           [--allowed_origin https://a.example,https://b.example]
//
// The configuration is upstream's AS JSON ({"storage_backend", "rvps_config",
// "attestation_token_broker", "verifier_config"}); without one, policies and
// reference values live in memory and tokens are signed with an ephemeral
// key. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asfile"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/verifier/builtin"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "restful-as:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

// originList is a repeatable, comma-separated flag.
type originList []string

func (o *originList) String() string { return strings.Join(*o, ",") }

func (o *originList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*o = append(*o, s)
		}
	}
	return nil
}

type flags struct {
	configFile, socket, certFile, keyFile, logLevel string
	origins                                         originList
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("restful-as", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"config-file", "c"} {
		fs.StringVar(&f.configFile, n, "", "path of the AS configuration file (JSON)")
	}
	for _, n := range []string{"socket", "s"} {
		fs.StringVar(&f.socket, n, "", "socket address (IP:port) to listen on, e.g. 127.0.0.1:8080 (required)")
	}
	for _, n := range []string{"https-pubkey-cert", "t"} {
		fs.StringVar(&f.certFile, n, "", "PEM certificate chain for HTTPS (with --https-prikey)")
	}
	for _, n := range []string{"https-prikey", "k"} {
		fs.StringVar(&f.keyFile, n, "", "PEM private key for HTTPS (with --https-pubkey-cert)")
	}
	for _, n := range []string{"allowed_origin", "r"} {
		fs.Var(&f.origins, n, "allowed CORS origin (http:// or https://); repeatable or comma-separated")
	}
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() != 0 {
		return flags{}, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if f.socket == "" {
		return flags{}, errors.New("--socket is required")
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return flags{}, errors.New("--https-pubkey-cert and --https-prikey go together")
	}
	return f, nil
}

// run parses the command line, opens the storage backend and serves the
// AS until ctx is done or a signal arrives. When ready is non-nil it
// receives the listening address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- net.Addr) error {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := logging.Parse(stderr, f.logLevel, logging.FormatJSON)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, sb, err := asfile.Load(f.configFile)
	if err != nil {
		return err
	}
	if f.configFile == "" {
		log.Info("no config file given, using the defaults")
	}
	stores, err := asfile.Open(ctx, cfg, sb)
	if err != nil {
		return err
	}
	defer stores.Close()
	log.Info("attestation service storage backend", "type", sb.StorageType)
	return serve(ctx, f, cfg, stores, log, ready)
}

// serve runs the AS HTTP server on f.socket until ctx is done, then shuts
// it down gracefully.
func serve(ctx context.Context, f flags, cfg as.Config, stores *asfile.Stores, log *slog.Logger, ready chan<- net.Addr) error {
	verifiers, err := builtin.New(cfg.VerifierConfig, builtin.Options{Logger: log.With("component", "verifier")})
	if err != nil {
		return fmt.Errorf("verifier_config: %w", err)
	}
	svc, err := as.New(ctx, cfg, as.Options{Store: stores.Main, RVPSStore: stores.RVPS, Verifiers: verifiers, Logger: log})
	if err != nil {
		return fmt.Errorf("creating service failed: %w", err)
	}
	defer svc.Close()
	srv := &http.Server{
		Handler:           cors(svc.Handler(), f.origins, log),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", f.socket)
	if err != nil {
		return err
	}
	if f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("loading HTTPS certificate and key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		log.Info("serving", "address", ln.Addr().String(), "tls", true)
	} else {
		log.Info("serving", "address", ln.Addr().String(), "tls", false)
	}
	if ready != nil {
		ready <- ln.Addr()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// cors answers CORS requests for the allowed origins, as upstream's
// actix-cors setup: methods POST, GET, OPTIONS; headers Content-Type and
// Authorization; max age one day. A preflight from another origin is
// refused; other requests pass without CORS headers (the browser then
// withholds the response).
func cors(next http.Handler, origins []string, log *slog.Logger) http.Handler {
	var allowed []string
	for _, o := range origins {
		if strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://") {
			log.Info("allowed CORS origin", "origin", o)
			allowed = append(allowed, o)
		} else {
			log.Error("invalid CORS origin format: must start with http:// or https://", "origin", o)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !slices.Contains(allowed, origin) {
			if preflight {
				http.Error(w, "Origin is not allowed to make this request", http.StatusBadRequest)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		if preflight {
			h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "authorization, content-type")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}
