// Command confidential-data-hub is the guest's data hub, a drop-in for
// upstream guest-components' ttRPC confidential-data-hub:
//
//	confidential-data-hub [-c /run/confidential-containers/initdata/cdh.toml]
//
// kata-agent starts it inside the confidential VM and calls it on
// unix:///run/confidential-containers/cdh.sock (the config's socket):
//
//	kata-agent ──ttRPC──> confidential-data-hub ──ttRPC GetToken("kbs")──> attestation-agent
//	                          │ GetResource / UnsealSecret / UnWrapKey
//	                          └──HTTPS, Bearer token──> KBS /kbs/v0/resource/...
//
// Without -c the KBC comes from AA_KBC_PARAMS, else the kernel parameter
// agent.aa_kbc_params, else offline_fs_kbc. The kernel parameter
// cdh.kbs_resources adds [[credentials]]. Flags beyond upstream's -c tune
// what upstream hard-codes (see -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/logging"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "confidential-data-hub:", err)
		os.Exit(1)
	}
}

type flags struct {
	config        string
	cmdline       string
	rpcTimeout    time.Duration
	cacheTTL      time.Duration
	replyShape    string
	noTokenCache  bool
	kbsRetries    int
	kbsBackoff    time.Duration
	kbsReqTimeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("confidential-data-hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "c", "", "configuration file (TOML, or JSON when it ends in .json)")
	fs.StringVar(&f.cmdline, "kernel-cmdline", "/proc/cmdline", "file of the kernel command line (agent.aa_kbc_params, cdh.kbs_resources)")
	fs.DurationVar(&f.rpcTimeout, "rpc-timeout", cdh.DefaultRPCTimeout, "deadline of each ttRPC call")
	fs.DurationVar(&f.cacheTTL, "resource-cache-ttl", 0, "keep KBS resources in memory this long (0: no resource cache)")
	fs.StringVar(&f.replyShape, "keyprovider-reply", "rust", "UnWrapKey optsdata shape: rust (integer array, ocicrypt-rs) or go (base64, containers/ocicrypt)")
	fs.BoolVar(&f.noTokenCache, "no-token-cache", false, "attest for every KBS read, as upstream does (slow; for comparison)")
	fs.IntVar(&f.kbsRetries, "kbs-retries", 3, "tries of a KBS read that cannot reach the KBS")
	fs.DurationVar(&f.kbsBackoff, "kbs-backoff", 500*time.Millisecond, "wait after the first failed KBS try, doubled after each")
	fs.DurationVar(&f.kbsReqTimeout, "kbs-request-timeout", 20*time.Second, "deadline of each KBS HTTP request")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() != 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.kbsRetries < 1 || f.rpcTimeout <= 0 || f.kbsBackoff < 0 || f.kbsReqTimeout <= 0 || f.cacheTTL < 0 {
		return f, errors.New("-kbs-retries must be at least 1 and the durations positive")
	}
	return f, nil
}

// loadConfig reads -c or builds the default configuration, then applies
// the kernel command line and environment overrides upstream applies.
func loadConfig(f flags) (*cdh.Config, string, error) {
	cmdline := ""
	if b, err := os.ReadFile(f.cmdline); err == nil {
		cmdline = string(b)
	}
	var cfg *cdh.Config
	var from string
	var err error
	if f.config != "" {
		cfg, err = cdh.LoadConfig(f.config)
		from = "config file " + f.config
	} else {
		cfg, err = cdh.DefaultConfig(os.Getenv, cmdline)
		from = "default configuration (AA_KBC_PARAMS, agent.aa_kbc_params)"
	}
	if err != nil {
		return nil, "", err
	}
	cfg.Credentials = append(cfg.Credentials, cdh.CredentialsFromCmdline(cmdline)...)
	if v := os.Getenv("CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS"); v != "" {
		if cfg.Image == nil {
			cfg.Image = map[string]any{}
		}
		cfg.Image["authenticated_registry_credentials_uri"] = v
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	return cfg, from, nil
}

// run starts the hub; ready, when set, receives the listener address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- net.Addr) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	shape, err := cdh.ParseReplyShape(f.replyShape)
	if err != nil {
		return err
	}
	cfg, from, err := loadConfig(f)
	if err != nil {
		return err
	}
	log, err := logging.Parse(stderr, cfg.LogLevel, logging.FormatText) // validated by loadConfig
	if err != nil {
		return err
	}
	log.Info("confidential-data-hub starting", "config", from, "kbc", cfg.KBC.Name, "kbs", cfg.KBC.URL, "socket", cfg.Socket)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	opts := cdh.Options{
		Logger: log, ResourceCacheTTL: f.cacheTTL, ReplyShape: shape,
		CC: cdh.CCOptions{DisableTokenCache: f.noTokenCache, MaxAttempts: f.kbsRetries,
			Backoff: f.kbsBackoff, RequestTimeout: f.kbsReqTimeout},
	}
	var measurer cdh.Measurer
	if cfg.KBC.Name == cdh.KBCCC {
		aac, err := aa.NewClient(cfg.AASocket)
		if err != nil {
			return fmt.Errorf("attestation-agent client: %w", err)
		}
		defer aac.Close()
		opts.Tokens = cdh.TokenFunc(aac.GetToken)
		measurer = aac
	}
	initCtx, cancel := context.WithTimeout(ctx, f.rpcTimeout)
	hub, err := cdh.New(initCtx, cfg, opts)
	cancel()
	if err != nil {
		return fmt.Errorf("creating the hub: %w", err)
	}
	l, err := cdh.Listen(cfg.Socket)
	if err != nil {
		return fmt.Errorf("binding %s: %w", cfg.Socket, err)
	}
	srv, err := cdh.NewServer()
	if err != nil {
		l.Close()
		return err
	}
	cdh.NewService(hub, f.rpcTimeout, log).Register(srv)
	closeImages, err := registerImageService(srv, hub, measurer, log)
	if err != nil {
		l.Close()
		return err
	}
	defer closeImages()
	log.Info("confidential-data-hub listening", "socket", cfg.Socket)
	if ready != nil {
		ready <- l.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, l) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("serving: %w", err)
		}
		return nil
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
