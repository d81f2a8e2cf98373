// Command grpc-as is the standalone Attestation Service with upstream
// Trustee's gRPC API, a drop-in for its grpc-as binary (the "as" service of
// upstream's docker-compose deployment and trustee-operator's
// microservices profile):
//
//	grpc-as [--socket 127.0.0.1:3000] [-c config.json]
//	        [--https-pubkey-cert cert.pem --https-prikey key.pem]
//
// One port serves, as upstream's: attestation.AttestationService (what
// the KBS calls in coco_as_grpc mode), reference.ReferenceValueProviderService
// (the AS's RVPS: built in, or a remote rvps with rvps_config GrpcRemote),
// grpc.health.v1, and over plain HTTP/1.1 GET /.well-known/jwks.json with
// the token signer's keys (and GET /healthz). The configuration is
// upstream's AS JSON, as for restful-as.
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
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asfile"
	"github.com/go-trustee/go-trustee/as/asgrpc"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/verifier/builtin"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "grpc-as:", err)
		os.Exit(1)
	}
}

// defaultSocket is upstream's CLI default (deployments pass :50004).
const defaultSocket = "127.0.0.1:3000"

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

type flags struct {
	configFile, socket, certFile, keyFile, logLevel string
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("grpc-as", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"config-file", "c"} {
		fs.StringVar(&f.configFile, n, "", "path of the AS configuration file (JSON)")
	}
	for _, n := range []string{"socket", "s"} {
		fs.StringVar(&f.socket, n, defaultSocket, "socket address (IP:port) to listen on")
	}
	for _, n := range []string{"https-pubkey-cert", "t"} {
		fs.StringVar(&f.certFile, n, "", "PEM certificate chain for HTTPS (with --https-prikey)")
	}
	for _, n := range []string{"https-prikey", "k"} {
		fs.StringVar(&f.keyFile, n, "", "PEM private key for HTTPS (with --https-pubkey-cert)")
	}
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() != 0 {
		return flags{}, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return flags{}, errors.New("HTTPS public key cert and private key must be provided to enable HTTPS")
	}
	return f, nil
}

// run parses the command line, opens the stores and serves until ctx is
// done or a signal arrives. When ready is non-nil it receives the
// listening address.
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
		return fmt.Errorf("failed to read Attestation Service config file: %w", err)
	}
	if f.configFile == "" {
		log.Info("no config file given, using the defaults")
	}
	stores, err := asfile.Open(ctx, cfg, sb)
	if err != nil {
		return err
	}
	defer stores.Close()
	verifiers, err := builtin.New(cfg.VerifierConfig, builtin.Options{Logger: log.With("component", "verifier")})
	if err != nil {
		return fmt.Errorf("verifier_config: %w", err)
	}
	svc, err := as.New(ctx, cfg, as.Options{Store: stores.Main, RVPSStore: stores.RVPS, Verifiers: verifiers, Logger: log})
	if err != nil {
		return fmt.Errorf("failed to create AS service: %w", err)
	}
	defer svc.Close()
	log.Info("attestation service storage backend", "type", sb.StorageType, "rvps", rvpsKind(cfg))
	return serve(ctx, f, svc, log, ready)
}

func rvpsKind(cfg as.Config) string {
	if cfg.RVPS.Remote() {
		return "GrpcRemote " + cfg.RVPS.Address
	}
	return "BuiltIn"
}

// serve runs the combined gRPC + HTTP/1.1 server on f.socket.
func serve(ctx context.Context, f flags, svc *as.Service, log *slog.Logger, ready chan<- net.Addr) error {
	h, g := asgrpc.Handler(svc, log)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       10 * time.Minute,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1024},
		Protocols:         protocols,
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
		protocols.SetHTTP2(true)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
		log.Info("Starting gRPC Attestation Service over HTTPS", "address", ln.Addr().String())
	} else {
		// gRPC clients speak HTTP/2 with prior knowledge on plain TCP.
		protocols.SetUnencryptedHTTP2(true)
		log.Info("Starting gRPC Attestation Service over HTTP", "address", ln.Addr().String())
	}
	log.Info("JWKS endpoint available", "url", "http://"+ln.Addr().String()+"/.well-known/jwks.json")
	log.Info("serving", "address", ln.Addr().String(), "tls", f.certFile != "")
	if ready != nil {
		ready <- ln.Addr()
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	eg.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		g.Stop()
		return err
	})
	return eg.Wait()
}
