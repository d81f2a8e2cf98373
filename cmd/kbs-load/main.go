// Command kbs-load measures a KBS under the load of many guests. Each flow
// is what a guest's confidential-data-hub does for a secret: a fresh TEE
// key pair, /kbs/v0/auth, /kbs/v0/attest with SAMPLE evidence, then the
// resource read with "Authorization: Bearer <token>" and its decryption.
// -c clients run flows back to back for -d, or until -n flows are done;
// the run always stops by itself.
//
//	kbs-load --url http://127.0.0.1:8080 --path default/key/1 -c 8 -d 30s [--json]
//
// The KBS must accept sample evidence for --path (e.g. the allow_all
// resource policy): point it at a test KBS on this machine. Targets other
// than loopback need --allow-remote. All clients share one HTTP transport
// (keep-alive); each flow has its own session.
//
// Output: flows, successes, errors (with the first distinct error texts),
// successful flows per second, and p50/p95/p99/max latency of successful
// flows, as text or --json. The exit code is 1 when any flow failed.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kbs-load:", err)
		os.Exit(1)
	}
}

// run parses args, runs the load and writes the report to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCmd(stdout)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}
