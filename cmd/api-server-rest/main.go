// Command api-server-rest serves the confidential-data-hub and the
// attestation-agent to the workload over HTTP on the pod's loopback, a
// drop-in for upstream guest-components' api-server-rest:
//
//	api-server-rest [--bind 127.0.0.1:8006] [--features resource|attestation|all]
//	                [--cdh_addr unix:///run/confidential-containers/cdh.sock]
//	                [--aa_addr unix:///run/confidential-containers/attestation-agent/attestation-agent.sock]
//
//	workload ──HTTP 127.0.0.1:8006──> api-server-rest ──ttRPC──> confidential-data-hub
//	                                                  └─ttRPC──> attestation-agent (--features attestation|all)
//
// Short flags -b, -f, -c, -a are accepted as upstream's. A non-loopback
// --bind is refused.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/asr"
	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "api-server-rest:", err)
		os.Exit(1)
	}
}

type flags struct {
	bind, features, cdhAddr, aaAddr, logLevel string
	timeout                                   time.Duration
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("api-server-rest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"bind", "b"} {
		fs.StringVar(&f.bind, n, asr.DefaultBind, "bind address (loopback IP:port)")
	}
	for _, n := range []string{"features", "f"} {
		fs.StringVar(&f.features, n, asr.DefaultFeatures, "features: resource, attestation or all")
	}
	for _, n := range []string{"cdh_addr", "c"} {
		fs.StringVar(&f.cdhAddr, n, cdh.DefaultSocket, "confidential-data-hub ttRPC address")
	}
	for _, n := range []string{"aa_addr", "a"} {
		fs.StringVar(&f.aaAddr, n, aa.DefaultSocket, "attestation-agent ttRPC address")
	}
	fs.DurationVar(&f.timeout, "timeout", asr.DefaultTimeout, "deadline of each backend call")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() != 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

// version is /info's version: the module version or VCS revision.
func version() string {
	v := asr.DefaultVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return v + " " + bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				return v + " " + s.Value[:7]
			}
		}
	}
	return v
}

// run serves until ctx ends or a signal arrives; ready, when set, receives
// the listen address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- net.Addr) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := logging.Parse(stderr, f.logLevel, logging.FormatText)
	if err != nil {
		return err
	}
	if err := asr.CheckBind(f.bind); err != nil {
		return err
	}
	opts := asr.Options{Features: f.features, Version: version(), Timeout: f.timeout, Logger: log}
	if f.features == asr.FeatureResource || f.features == asr.FeatureAll {
		c, err := cdh.NewClient(f.cdhAddr)
		if err != nil {
			return fmt.Errorf("--cdh_addr: %w", err)
		}
		defer c.Close()
		opts.CDH = c
	}
	if f.features == asr.FeatureAttestation || f.features == asr.FeatureAll {
		a, err := aa.NewClient(f.aaAddr)
		if err != nil {
			return fmt.Errorf("--aa_addr: %w", err)
		}
		defer a.Close()
		opts.AA = a
	}
	h, err := asr.New(opts)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	l, err := net.Listen("tcp", f.bind)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: limits.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("API Server listening", "address", "http://"+l.Addr().String(), "features", f.features)
	if ready != nil {
		ready <- l.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
