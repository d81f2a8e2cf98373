// Command kbs-client is a command-line client of the KBS, a drop-in for
// upstream Trustee's tools/kbs-client: the same subcommands, flags, defaults
// and outputs. It attests (with the SAMPLE attester, which proves nothing:
// use it against test KBSes), fetches resources, and drives the admin API.
//
//	kbs-client [--url URL] [--cert-file PEM] attest [--tee-key-file K] [--init-data FILE] [INIT_DATA]
//	kbs-client ... get-resource --path R [--tee-key-file K --attestation-token T] [--init-data FILE] [INIT_DATA]
//	kbs-client ... config [--admin-token-file F | --auth-private-key K] <subcommand>
//
// Results go to stdout; errors (with the KBS's ErrorInformation detail) and
// warnings go to stderr, and the exit code is 1.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

// run executes one kbs-client command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newRootCmd(&app{stdout: stdout, stderr: stderr, getenv: os.Getenv})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

// app carries what the commands share.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	url, certFile string
	verbose       bool
	log           *slog.Logger
}
