// Command kbs-external-plugin-sample is a small external KBS plugin: a
// kbs.plugin.v1.KbsPlugin gRPC server (upstream's plugin.proto) with the
// behaviour and environment variables of upstream's
// external_plugin_test_server, so that upstream's external-plugin KBS
// configurations run against it unchanged:
//
//	PLUGIN_LISTEN_ADDR   listen address (default 127.0.0.1:50051)
//	PLUGIN_TLS_CERT      PEM certificate chain; with PLUGIN_TLS_KEY, serve TLS
//	PLUGIN_TLS_KEY       PEM private key
//	PLUGIN_STORE_DATA    "true": POST stores the body, GET returns it
//	PLUGIN_ENCRYPT_GET   "true": GET answers are sealed to the TEE key
//
// POST is admin-gated, GET attestation-gated. See package
// kbs/extplugin/sampleplugin; a KBS reaches it with
//
//	[[plugins]]
//	name = "external"
//	backends = [{ name = "sample", endpoint = "http://127.0.0.1:50051", timeout_ms = 5000 }]
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/kbs/extplugin/pluginproto"
	"github.com/go-trustee/go-trustee/kbs/extplugin/sampleplugin"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "kbs-external-plugin-sample:", err)
		os.Exit(1)
	}
}

const defaultListenAddr = "127.0.0.1:50051"

// run serves until ctx is done or a signal arrives; ready, when non-nil,
// receives the listening address.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer, ready chan<- net.Addr) error {
	log, err := logging.Parse(stderr, "info", logging.FormatJSON)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := getenv("PLUGIN_LISTEN_ADDR")
	if addr == "" {
		addr = defaultListenAddr
	}
	opts := grpcdial.ServerOptions()
	cert, key := getenv("PLUGIN_TLS_CERT"), getenv("PLUGIN_TLS_KEY")
	if (cert == "") != (key == "") {
		return errors.New("PLUGIN_TLS_CERT and PLUGIN_TLS_KEY go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate and key: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})))
	}
	g := grpc.NewServer(opts...)
	pluginproto.RegisterKbsPluginServer(g, sampleplugin.New(sampleplugin.Options{
		StoreData: getenv("PLUGIN_STORE_DATA") == "true", EncryptGet: getenv("PLUGIN_ENCRYPT_GET") == "true"}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("serving", "address", ln.Addr().String(), "tls", cert != "")
	if ready != nil {
		ready <- ln.Addr()
	}
	go func() {
		<-ctx.Done()
		slog.New(log.Handler()).Info("shutting down")
		g.GracefulStop()
	}()
	return g.Serve(ln)
}
