// Command rvps-tool talks to an RVPS (or to grpc-as, which serves the same
// API for its own RVPS) over upstream's gRPC API, a drop-in for upstream's
// rvps-tool:
//
//	rvps-tool register --path message.json [--addr http://127.0.0.1:50003]
//	rvps-tool query --reference-value-id svn [--addr http://127.0.0.1:50003]
//
// register sends the file (a reference-value message, {"version":"0.1.0",
// "type":"sample","payload":"..."}) as is; query prints the value as JSON
// on stdout, or says that there is none (exit status 0, as upstream).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsgrpc"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rvps-tool:", err)
		os.Exit(1)
	}
}

// defaultAddr is upstream's default RVPS address.
const defaultAddr = "http://127.0.0.1:50003"

// callTimeout bounds the whole command.
const callTimeout = 60 * time.Second

const usage = `usage:
  rvps-tool register --path FILE [--addr ADDR]
  rvps-tool query --reference-value-id ID [--addr ADDR]`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("rvps-tool "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var addr, path, id string
	for _, n := range []string{"addr", "a"} {
		fs.StringVar(&addr, n, defaultAddr, "address of the RVPS")
	}
	switch cmd {
	case "register":
		for _, n := range []string{"path", "p"} {
			fs.StringVar(&path, n, "", "path of the reference-value message (JSON)")
		}
	case "query":
		for _, n := range []string{"reference-value-id", "r"} {
			fs.StringVar(&id, n, "", "id of the reference value")
		}
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	c, err := rvpsgrpc.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	switch cmd {
	case "register":
		if path == "" {
			return errors.New("register needs --path")
		}
		msg, err := readBounded(path)
		if err != nil {
			return fmt.Errorf("read provenance: %w", err)
		}
		if err := c.Register(ctx, msg); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Register provenance succeeded.")
	case "query":
		if id == "" {
			return errors.New("query needs --reference-value-id")
		}
		v, found, err := c.Query(ctx, id)
		if err != nil {
			return err
		}
		if !found {
			fmt.Fprintln(stdout, "No reference values found for the given id")
			return nil
		}
		fmt.Fprintf(stdout, "%s\n", v)
	}
	return nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, rvps.MaxMessageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > rvps.MaxMessageBytes {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, rvps.MaxMessageBytes)
	}
	return b, nil
}
