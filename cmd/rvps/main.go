// Command rvps is the standalone Reference Value Provider Service with
// upstream Trustee's gRPC API (reference.ReferenceValueProviderService), a
// drop-in for its rvps binary:
//
//	rvps [-c /etc/rvps.json] [-a 127.0.0.1:50003]
//
// The configuration is upstream's RVPS file: {"storage": <storage_backend
// section>, "extractors": {...}} in JSON (or TOML when the name ends in
// .toml). As upstream, a missing file means the defaults (values in
// memory) with a warning; unlike upstream, a file that exists but cannot
// be read or parsed is an error, not a silent fall-back to memory. Keys of
// older layouts that upstream ignores (e.g. storage.type, storage.file_path)
// are ignored with a warning that says where the values really go.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsgrpc"
	"github.com/go-trustee/go-trustee/rvps/rvpsproto"
	"github.com/go-trustee/go-trustee/storage/backends"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "rvps:", err)
		os.Exit(1)
	}
}

// Upstream's defaults.
const (
	defaultConfigPath = "/etc/rvps.json"
	defaultAddress    = "127.0.0.1:50003"
)

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

type flags struct{ config, address, logLevel string }

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fset := flag.NewFlagSet("rvps", flag.ContinueOnError)
	fset.SetOutput(stderr)
	for _, n := range []string{"config", "c"} {
		fset.StringVar(&f.config, n, defaultConfigPath, "path of the RVPS configuration file")
	}
	for _, n := range []string{"address", "a"} {
		fset.StringVar(&f.address, n, defaultAddress, "address (IP:port) the RVPS listens on")
	}
	fset.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fset.Parse(args); err != nil {
		return flags{}, err
	}
	if fset.NArg() != 0 {
		return flags{}, fmt.Errorf("unexpected arguments %v", fset.Args())
	}
	return f, nil
}

// Config is the RVPS configuration file.
type Config struct {
	Storage    backends.Config `json:"storage" toml:"storage"`
	Extractors map[string]any  `json:"extractors" toml:"extractors"`
}

// knownStorageKeys are the members of the storage section upstream reads.
var knownStorageKeys = []string{"storage_type", "backends"}

// loadConfig reads path. It returns the defaults and a warning when the
// file does not exist, and the keys of the storage section it ignores.
func loadConfig(path string) (Config, []string, error) {
	cfg := Config{Storage: backends.DefaultConfig()}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, []string{fmt.Sprintf("config file %s does not exist: using the default configuration (reference values in memory, lost on restart)", path)}, nil
	}
	if err != nil {
		return cfg, nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return cfg, nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if len(raw) > limits.MaxConfigBytes {
		return cfg, nil, fmt.Errorf("config %s exceeds %d bytes", path, limits.MaxConfigBytes)
	}
	var storageKeys map[string]any
	if strings.HasSuffix(path, ".toml") {
		var doc struct {
			Storage map[string]any `toml:"storage"`
		}
		if _, err := toml.Decode(string(raw), &cfg); err != nil {
			return cfg, nil, fmt.Errorf("parsing config %s: %w", path, err)
		}
		toml.Decode(string(raw), &doc)
		storageKeys = doc.Storage
	} else {
		var doc struct {
			Storage map[string]any `json:"storage"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return cfg, nil, fmt.Errorf("parsing config %s: %w", path, err)
		}
		json.Unmarshal(raw, &doc)
		storageKeys = doc.Storage
	}
	var warnings []string
	for k := range storageKeys {
		if !slices.Contains(knownStorageKeys, k) {
			warnings = append(warnings, fmt.Sprintf("config key storage.%s is not read (upstream ignores it too)", k))
		}
	}
	slices.Sort(warnings)
	if len(warnings) > 0 {
		t, _ := backends.NormalizeType(cfg.Storage.StorageType)
		warnings = append(warnings, fmt.Sprintf("reference values are stored with storage_type %s; set storage.storage_type and storage.backends to keep them elsewhere", t))
	}
	return cfg, warnings, nil
}

// run parses the command line and serves until ctx is done or a signal
// arrives. When ready is non-nil it receives the listening address.
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

	cfg, warnings, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	store, err := backends.Open(ctx, cfg.Storage)
	if err != nil {
		return fmt.Errorf("opening storage: %w", err)
	}
	defer store.Close()
	svc, err := rvps.New(store, rvps.Options{Config: rvps.Config{Extractors: cfg.Extractors}})
	if err != nil {
		return err
	}
	t, _ := backends.NormalizeType(cfg.Storage.StorageType)
	log.Info("CoCo RVPS", "storage_type", t)
	return serve(ctx, f.address, svc, log, ready)
}

func serve(ctx context.Context, address string, svc rvps.Provider, log *slog.Logger, ready chan<- net.Addr) error {
	g := grpc.NewServer(grpcdial.ServerOptions()...)
	rvpsgrpc.NewServer(svc, log).Register(g)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(rvpsproto.ReferenceValueProviderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)

	ln, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("parse socket addr failed: %w", err)
	}
	log.Info("serving", "address", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr()
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.Serve(ln) })
	eg.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownTimeout):
			g.Stop()
		}
		return nil
	})
	return eg.Wait()
}
