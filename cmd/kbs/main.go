// Command kbs is the Key Broker Service, a drop-in for upstream Trustee's
// kbs binary: `kbs --config-file <toml>` (or KBS_CONFIG_FILE) with
// upstream's configuration file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/kbs"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kbs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("kbs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configFile, logLevel, logFormat, auditLog string
	fs.StringVar(&configFile, "config-file", os.Getenv("KBS_CONFIG_FILE"), "path of the KBS configuration file (TOML or JSON); env KBS_CONFIG_FILE")
	fs.StringVar(&configFile, "c", os.Getenv("KBS_CONFIG_FILE"), "shorthand for --config-file")
	fs.StringVar(&logLevel, "log-level", envOr("KBS_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	fs.StringVar(&logFormat, "log-format", envOr("KBS_LOG_FORMAT", "json"), "log format: json or text")
	fs.StringVar(&auditLog, "audit-log", os.Getenv("KBS_AUDIT_LOG"), "append audit records (JSON lines) to this file instead of the main log")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if configFile == "" {
		return errors.New("no configuration: pass --config-file <path> or set KBS_CONFIG_FILE")
	}
	log, err := logging.Parse(stderr, logLevel, logging.Format(logFormat))
	if err != nil {
		return fmt.Errorf("--log-level/--log-format: %w", err)
	}
	var audit *slog.Logger
	if auditLog != "" {
		f, err := os.OpenFile(auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("opening audit log: %w", err)
		}
		defer f.Close()
		audit = slog.New(slog.NewJSONHandler(f, nil))
	}

	cfg, ignored, err := kbs.LoadConfig(configFile)
	if err != nil {
		return err
	}
	for _, k := range ignored {
		log.Warn("ignoring unknown configuration key", "key", k)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := kbs.New(ctx, cfg, kbs.Options{Logger: log, AuditLogger: audit})
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.Run(ctx)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
