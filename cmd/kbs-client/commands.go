package main

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "kbs-client",
		Short:         "A command line client tool for KBS APIs.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl := slog.LevelWarn
			if a.verbose {
				lvl = slog.LevelDebug
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\n\n%s", err, cmd.UsageString())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "http://127.0.0.1:8080", "The KBS server root URL.")
	pf.StringVar(&a.certFile, "cert-file", "", "The KBS HTTPS server custom root certificate file path (PEM format)")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log requests (never tokens, keys or resources) to stderr")
	root.AddCommand(newAttestCmd(a), newGetResourceCmd(a), newConfigCmd(a))
	return root
}

// readFile reads a user-named file of at most limit bytes.
func readFile(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("failed to read %s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// clientOptions returns the options common to every command.
func (a *app) clientOptions() (client.Options, error) {
	opts := client.Options{URL: a.url, Logger: a.log}
	if a.certFile != "" {
		pemBytes, err := readFile(a.certFile, limits.MaxConfigBytes)
		if err != nil {
			return opts, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemBytes) {
			return opts, fmt.Errorf("--cert-file %s: no PEM certificate found", a.certFile)
		}
		opts.RootCAs = pool
	}
	return opts, nil
}

// attester returns the evidence source. Only the sample TEE exists in this
// build: warn loudly, as upstream does when it falls back to it.
func (a *app) attester() attester.Attester {
	a.log.Warn("no TEE detected: using the sample attester, whose evidence proves nothing; a KBS with a sound policy refuses it")
	return sample.New(sample.DeviceEnabled())
}

// attestFlags are the attestation inputs of attest and get-resource.
type attestFlags struct {
	teeKeyFile, initDataFile string
}

func (f *attestFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.teeKeyFile, "tee-key-file", "", "Custom TEE private key file path (PEM: PKCS#1 RSA, or PKCS#8 RSA, EC P-256 or P-521). If not set, a new TEE key pair is generated")
	cmd.Flags().StringVar(&f.initDataFile, "init-data", "", "file holding the init-data (TOML) measured at boot; the INIT_DATA argument gives it inline instead")
}

// apply fills the key pair and init-data options.
func (f *attestFlags) apply(opts *client.Options, args []string) error {
	if f.teeKeyFile != "" {
		b, err := readFile(f.teeKeyFile, limits.MaxConfigBytes)
		if err != nil {
			return err
		}
		if opts.KeyPair, err = protocol.KeyPairFromPEM(b); err != nil {
			return fmt.Errorf("--tee-key-file %s: %w", f.teeKeyFile, err)
		}
	}
	switch {
	case len(args) == 1 && f.initDataFile != "":
		return errors.New("give the init-data either inline (INIT_DATA) or with --init-data FILE, not both")
	case len(args) == 1:
		opts.InitDataTOML = args[0]
	case f.initDataFile != "":
		b, err := readFile(f.initDataFile, limits.MaxConfigBytes)
		if err != nil {
			return err
		}
		opts.InitDataTOML = string(b)
	}
	return nil
}

func newAttestCmd(a *app) *cobra.Command {
	var f attestFlags
	cmd := &cobra.Command{
		Use:   "attest [INIT_DATA]",
		Short: "Attestation and get attestation results token",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := a.clientOptions()
			if err != nil {
				return err
			}
			if err := f.apply(&opts, args); err != nil {
				return err
			}
			opts.Attester = a.attester()
			c, err := client.New(opts)
			if err != nil {
				return err
			}
			token, err := c.Attest(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, token)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newGetResourceCmd(a *app) *cobra.Command {
	var (
		f         attestFlags
		path      string
		tokenFile string
	)
	cmd := &cobra.Command{
		Use:   "get-resource --path REPO/TYPE/TAG [INIT_DATA]",
		Short: "Get confidential resource",
		Long:  "Get confidential resource; prints it base64-encoded (standard alphabet, padded).",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := a.clientOptions()
			if err != nil {
				return err
			}
			if err := f.apply(&opts, args); err != nil {
				return err
			}
			if tokenFile != "" {
				if opts.KeyPair == nil {
					return errors.New("if `--attestation-token` is set, `--tee-key-file` argument should also be set, and the public part of TEE Key should be consistent with tee-pubkey in the token")
				}
				b, err := readFile(tokenFile, limits.MaxTokenBytes)
				if err != nil {
					return err
				}
				opts.Token = strings.TrimSpace(string(b))
			} else {
				opts.Attester = a.attester()
			}
			c, err := client.New(opts)
			if err != nil {
				return err
			}
			res, err := c.GetResource(cmd.Context(), "kbs:///"+strings.TrimPrefix(path, "/"))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, base64.StdEncoding.EncodeToString(res))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&path, "path", "", "KBS Resource path, e.g my_repo/resource_type/123abc")
	cmd.Flags().StringVar(&tokenFile, "attestation-token", "", "Attestation Token file path; needs --tee-key-file with the key the token certifies")
	cmd.MarkFlagRequired("path")
	return cmd
}
