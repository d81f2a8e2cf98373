// Command coco-keyprovider is the host-side ocicrypt key provider of
// Confidential Containers, a drop-in for guest-components'
// coco_keyprovider:
//
//	coco-keyprovider --socket 127.0.0.1:50000 [--kbs http://kbs:8080 (--admin-token-file F | --auth-private-key K)]
//
// An image tool (skopeo, or any Go ocicrypt user) configured with
// OCICRYPT_KEYPROVIDER_CONFIG={"key-providers":{"attestation-agent":{"grpc":"127.0.0.1:50000"}}}
// and --encryption-key provider:attestation-agent:keyid=kbs:///r/t/g::keypath=/k::algorithm=A256GCM
// calls WrapKey for every layer:
//
//	skopeo ──gRPC keyprovider.KeyProviderService/WrapKey──> coco-keyprovider ──POST /kbs/v0/resource/r/t/g (admin)──> KBS
//
// coco-keyprovider reads (keypath=) or draws the 32-byte KEK, wraps the
// layer key options with it (algorithm= A256GCM or A256CTR), and, when
// --kbs and an admin credential are given, registers the KEK at the kid
// path. UnWrapKey is not served: unwrapping happens in the guest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	keyproviderpb "github.com/containers/ocicrypt/utils/keyprovider"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/imagecrypt"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "coco-keyprovider:", err)
		os.Exit(1)
	}
}

type flags struct {
	socket         string
	kbs            string
	adminTokenFile string
	authPrivateKey string
	debug          bool
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("coco-keyprovider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.socket, "socket", "", "address (IP:port) to listen on, e.g. 127.0.0.1:50000 (required)")
	fs.StringVar(&f.socket, "s", "", "shorthand for --socket")
	fs.StringVar(&f.kbs, "kbs", "", "KBS URL; with an admin credential, KEKs are registered there")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the KBS admin bearer token")
	fs.StringVar(&f.authPrivateKey, "auth-private-key", "", "legacy: Ed25519 private key (PKCS#8 PEM) to sign a 2 h admin JWT per registration")
	fs.StringVar(&f.authPrivateKey, "a", "", "shorthand for --auth-private-key")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() != 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.socket == "" {
		return f, errors.New("--socket is required")
	}
	if _, _, err := net.SplitHostPort(f.socket); err != nil {
		return f, fmt.Errorf("--socket: %w", err)
	}
	if f.adminTokenFile != "" && f.authPrivateKey != "" {
		return f, errors.New("--admin-token-file and --auth-private-key are mutually exclusive")
	}
	return f, nil
}

// tokenSource returns the admin token function for the flags, or nil when
// KEKs are not registered.
func tokenSource(f flags, now func() time.Time) (func() (string, error), error) {
	switch {
	case f.adminTokenFile != "":
		b, err := readBounded(f.adminTokenFile, limits.MaxTokenBytes)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		return func() (string, error) { return tok, nil }, nil
	case f.authPrivateKey != "":
		pemBytes, err := readBounded(f.authPrivateKey, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("--auth-private-key: %w", err)
		}
		if _, err := imagecrypt.LegacyAdminToken(pemBytes, now()); err != nil {
			return nil, fmt.Errorf("--auth-private-key: %w", err)
		}
		return func() (string, error) { return imagecrypt.LegacyAdminToken(pemBytes, now()) }, nil
	}
	return nil, nil
}

func readBounded(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", name, max)
	}
	return b, nil
}

// server adapts imagecrypt.KeyProvider to the gRPC service.
type server struct {
	keyproviderpb.UnimplementedKeyProviderServiceServer
	kp  *imagecrypt.KeyProvider
	log *slog.Logger
}

func (s *server) WrapKey(ctx context.Context, in *keyproviderpb.KeyProviderKeyWrapProtocolInput) (*keyproviderpb.KeyProviderKeyWrapProtocolOutput, error) {
	out, err := s.kp.Wrap(ctx, in.GetKeyProviderKeyWrapProtocolInput())
	if err != nil {
		s.log.Warn("WrapKey failed", "err", err)
		code := codes.Internal
		if errors.Is(err, imagecrypt.ErrInvalidKeyProviderRequest) || errors.Is(err, imagecrypt.ErrInvalidKEK) {
			code = codes.InvalidArgument
		}
		return nil, status.Errorf(code, "WrapKey: %v", err)
	}
	return &keyproviderpb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: out}, nil
}

func (s *server) UnWrapKey(context.Context, *keyproviderpb.KeyProviderKeyWrapProtocolInput) (*keyproviderpb.KeyProviderKeyWrapProtocolOutput, error) {
	return nil, status.Error(codes.Unimplemented, "UnWrapKey is served inside the guest by the confidential-data-hub, not by the host key provider")
}

// run serves until ctx is done or a signal arrives; ready, when set,
// receives the listening address.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log, err := logging.New(stderr, level, logging.FormatText)
	if err != nil {
		return err
	}

	kp := &imagecrypt.KeyProvider{Logger: log}
	tok, err := tokenSource(f, time.Now)
	if err != nil {
		return err
	}
	if f.kbs != "" {
		kbs, err := client.New(client.Options{URL: f.kbs, Logger: log})
		if err != nil {
			return fmt.Errorf("--kbs: %w", err)
		}
		if tok == nil {
			log.Warn("no admin credential: KEKs are registered anonymously (only a KBS with authorization_mode InsecureAllowAll accepts that)")
		}
		kp.Registrar = &imagecrypt.KBSRegistrar{KBS: kbs, Token: tok}
		log.Info("KEKs will be registered in the KBS", "kbs", f.kbs)
	} else if tok != nil {
		return errors.New("an admin credential needs --kbs")
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", f.socket)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", f.socket, err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(imagecrypt.MaxKeyProviderInput + 1024))
	keyproviderpb.RegisterKeyProviderServiceServer(gs, &server{kp: kp, log: log})
	log.Info("listening", "addr", lis.Addr().String())
	if ready != nil {
		ready(lis.Addr().String())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(lis) })
	g.Go(func() error {
		<-gctx.Done()
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			gs.Stop()
		}
		return nil
	})
	err = g.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}
