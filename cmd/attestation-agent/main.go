// Command attestation-agent is the guest attestation agent of confidential
// containers, a drop-in for upstream guest-components' ttrpc attestation-agent:
// kata-agent starts it as
//
//	/usr/local/bin/attestation-agent --attestation_sock unix:///run/confidential-containers/attestation-agent/attestation-agent.sock \
//	    -c /run/confidential-containers/initdata/aa.toml [--initdata-toml /run/confidential-containers/initdata/initdata.toml]
//
// and confidential-data-hub and api-server-rest call its ttRPC service.
//
//	kata-agent / CDH / ASR ──ttrpc──▶ attestation-agent ──RCAR (HTTP)──▶ KBS
//	                                     │  evidence: TDX | SNP | Azure vTPM | TPM (| sample)
//	                                     └─ runtime events ─▶ RTMR/PCR + AAEL log
//
// Flags (upstream's): -a/--attestation_sock, -c/--config-file (TOML or
// JSON), -t/--initdata-toml, -i/--initdata-digest (base64; the TOML wins).
// Without -c the KBS address comes from AA_KBC_PARAMS or the kernel
// parameter agent.aa_kbc_params ("cc_kbc::<url>").
//
// At start-up the init-data digest is bound to the TEE (TDX MRCONFIGID, SNP
// HOSTDATA, vTPM PCR 8); a mismatch stops the agent, so the pod fails.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/guest/attester/detect"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/protocol/initdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, os.Args[1:], env{}, os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "attestation-agent:", err)
		}
		stop()
		os.Exit(1)
	}
}

// environment is what run reads from the process: variables and the
// kernel command line.
type environment interface {
	LookupEnv(string) (string, bool)
	CmdlinePath() string
	DetectRoot() string
}

type env struct{}

func (env) LookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
func (env) CmdlinePath() string               { return aa.DefaultCmdlinePath }
func (env) DetectRoot() string                { return "" }

type flags struct {
	sock, config, initTOML, initDigest string
}

func parseFlags(args []string, out io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("attestation-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	for _, n := range []string{"a", "attestation_sock", "attestation-sock"} {
		fs.StringVar(&f.sock, n, aa.DefaultSocket, "ttRPC socket address (unix:///path)")
	}
	for _, n := range []string{"c", "config-file", "config_file"} {
		fs.StringVar(&f.config, n, "", "configuration file (TOML, or JSON with a .json extension)")
	}
	for _, n := range []string{"t", "initdata-toml", "initdata_toml"} {
		fs.StringVar(&f.initTOML, n, "", "init-data TOML file to bind and send to the KBS")
	}
	for _, n := range []string{"i", "initdata-digest", "initdata_digest"} {
		fs.StringVar(&f.initDigest, n, "", "init-data digest (base64) to bind, when no TOML is given")
	}
	return f, fs.Parse(args)
}

// levelOf reads the log level as every command does (internal/logging);
// the agent falls back to info on an unknown name, as before.
func levelOf(s string) slog.Level {
	l, err := logging.ParseLevel(s)
	if err != nil {
		return slog.LevelInfo
	}
	return l
}

// run is the agent's life: configuration, detection, init-data binding,
// event log recovery, then the ttRPC service until ctx ends. ready, when
// not nil, receives the socket path once the agent serves.
func run(ctx context.Context, args []string, e environment, stderr io.Writer, ready chan<- string) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	getenv := func(k string) string { v, _ := e.LookupEnv(k); return v }
	var cfg aa.Config
	var warn string
	if f.config != "" {
		if cfg, err = aa.LoadConfig(f.config); err != nil {
			return err
		}
	} else {
		cfg = aa.DefaultConfig()
		cfg.TokenConfigs.KBS, warn = aa.KBCParams(getenv, e.CmdlinePath())
	}
	level := cfg.Log.Level
	if v := getenv("RUST_LOG"); v != "" && !strings.ContainsAny(v, "=,") {
		level = v
	}
	log, err := logging.New(stderr, levelOf(level), logging.FormatText)
	if err != nil {
		return err
	}
	if warn != "" {
		log.Warn(warn)
	}
	if f.config != "" {
		log.Info("using config file", "path", f.config)
	} else if cfg.TokenConfigs.KBS != nil {
		log.Info("no config file; KBS address from AA_KBC_PARAMS or the kernel command line", "kbs", cfg.TokenConfigs.KBS.URL)
	} else {
		log.Info("no config file and no KBS address: GetToken(kbs) will fail")
	}

	aaelPath := aael.DefaultPath
	if p := getenv(aael.EnvPath); p != "" {
		aaelPath = p
	}
	found, err := detect.Detect(ctx, detect.Options{Root: e.DetectRoot(), LookupEnv: e.LookupEnv, AAELPath: aaelPath, Logger: log})
	if err != nil {
		return fmt.Errorf("detecting the TEE: %w", err)
	}
	log.Info("TEE detected", "tee", found.Primary.Tee(), "devices", len(found.Devices))

	initTOML, digest, err := initData(f)
	if err != nil {
		return err
	}
	if digest != nil {
		if err := bindInitData(ctx, found.Primary, digest, log); err != nil {
			return err
		}
	}

	var el *aael.Log
	if cfg.EventlogConfig.EnableEventlog {
		if el, err = openEventLog(ctx, found.Primary, cfg, aaelPath, log); err != nil {
			return err
		}
		if el != nil {
			defer el.Close()
		}
	}

	agent, err := aa.New(aa.Options{Config: cfg, Attester: found.Primary, Devices: found.Devices, InitDataTOML: initTOML, EventLog: el, Logger: log})
	if err != nil {
		return err
	}
	srv, err := aa.NewServer(aa.NewService(agent, aa.Deadlines{}))
	if err != nil {
		return err
	}
	l, err := aa.Listen(f.sock)
	if err != nil {
		return err
	}
	sockPath, _ := aa.SocketPath(f.sock)
	defer os.Remove(sockPath)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, l) }()
	log.Info("attestation agent serving", "socket", f.sock)
	if ready != nil {
		ready <- sockPath
	}
	select {
	case err := <-errc:
		return fmt.Errorf("ttRPC server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// initData reads the init-data TOML (which wins) or decodes the digest.
func initData(f flags) (toml string, digest []byte, err error) {
	switch {
	case f.initTOML != "":
		fh, err := os.Open(f.initTOML)
		if err != nil {
			return "", nil, fmt.Errorf("reading init-data: %w", err)
		}
		defer fh.Close()
		b, err := io.ReadAll(io.LimitReader(fh, limits.MaxInitDataBytes+1))
		if err != nil {
			return "", nil, fmt.Errorf("reading init-data: %w", err)
		}
		doc, err := initdata.Parse(b)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", f.initTOML, err)
		}
		return string(b), doc.Digest, nil
	case f.initDigest != "":
		d, err := base64.StdEncoding.DecodeString(f.initDigest)
		if err != nil || len(d) == 0 || len(d) > 64 {
			return "", nil, fmt.Errorf("--initdata-digest is not the base64 of a digest of 1..64 bytes")
		}
		return "", d, nil
	}
	return "", nil, nil
}

type binder interface {
	BindInitData(ctx context.Context, digest []byte) error
}

func bindInitData(ctx context.Context, a any, digest []byte, log *slog.Logger) error {
	b, ok := a.(binder)
	if !ok {
		log.Info("the platform does not support init-data binding; skipped")
		return nil
	}
	if err := b.BindInitData(ctx, digest); err != nil {
		return fmt.Errorf("the init-data supplied on the command line is inconsistent with the platform's: %w", err)
	}
	log.Info("init-data bound to the TEE")
	return nil
}

type measurer interface {
	SupportsRuntimeMeasurement() bool
}

// openEventLog opens the AAEL when the attester can measure; nil means it
// cannot (ExtendRuntimeMeasurement then answers NOT_SUPPORTED).
func openEventLog(ctx context.Context, a any, cfg aa.Config, path string, log *slog.Logger) (*aael.Log, error) {
	reg, ok := a.(aael.Register)
	if m, mok := a.(measurer); !ok || mok && !m.SupportsRuntimeMeasurement() {
		log.Warn("eventlog enabled, but the platform cannot extend runtime measurements")
		return nil, nil
	}
	el, err := aael.Open(ctx, aael.Options{Path: path, WALPath: filepath.Join(filepath.Dir(path), ".wal_event_entry"), Register: reg, InitPCR: cfg.EventlogConfig.InitPCR, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("opening the event log: %w", err)
	}
	return el, nil
}
