package cdh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/api"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/keyprovider"
)

// DefaultRPCTimeout bounds every RPC; it is upstream's client timeout.
const DefaultRPCTimeout = 50 * time.Second

// Service adapts a Hub to the ttRPC services of upstream's proto:
// api.GetResourceService, api.SealedSecretService and
// keyprovider.KeyProviderService. SecureMountService and ImagePullService
// are not registered: callers get ttRPC's "not implemented" status.
type Service struct {
	hub     *Hub
	timeout time.Duration
	log     *slog.Logger
}

// NewService wraps hub; timeout bounds each call (0 is DefaultRPCTimeout).
func NewService(hub *Hub, timeout time.Duration, log *slog.Logger) *Service {
	if timeout <= 0 {
		timeout = DefaultRPCTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{hub: hub, timeout: timeout, log: log}
}

// Register adds the services to srv.
func (s *Service) Register(srv *ttrpc.Server) {
	api.RegisterGetResourceServiceService(srv, resourceService{s})
	api.RegisterSealedSecretServiceService(srv, secretService{s})
	keyprovider.RegisterKeyProviderServiceService(srv, keyProviderService{s})
}

// call runs fn under the service deadline and maps its error.
func (s *Service) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	if err != nil {
		s.log.Error("CDH request failed", "op", op, "err", err, "elapsed", time.Since(start))
		return rpcError(op, err)
	}
	s.log.Debug("CDH request served", "op", op, "elapsed", time.Since(start))
	return nil
}

type resourceService struct{ s *Service }

func (r resourceService) GetResource(ctx context.Context, req *api.GetResourceRequest) (*api.GetResourceResponse, error) {
	var out []byte
	err := r.s.call(ctx, "get resource "+req.GetResourcePath(), func(ctx context.Context) (err error) {
		out, err = r.s.hub.GetResource(ctx, req.GetResourcePath())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &api.GetResourceResponse{Resource: out}, nil
}

type secretService struct{ s *Service }

func (r secretService) UnsealSecret(ctx context.Context, req *api.UnsealSecretInput) (*api.UnsealSecretOutput, error) {
	var out []byte
	err := r.s.call(ctx, "unseal secret", func(ctx context.Context) (err error) {
		out, err = r.s.hub.UnsealSecret(ctx, req.GetSecret())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &api.UnsealSecretOutput{Plaintext: out}, nil
}

type keyProviderService struct{ s *Service }

func (r keyProviderService) UnWrapKey(ctx context.Context, req *keyprovider.KeyProviderKeyWrapProtocolInput) (*keyprovider.KeyProviderKeyWrapProtocolOutput, error) {
	var out []byte
	err := r.s.call(ctx, "unwrap key", func(ctx context.Context) (err error) {
		out, err = r.s.hub.KeyProviderUnwrap(ctx, req.GetKeyProviderKeyWrapProtocolInput())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &keyprovider.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: out}, nil
}

func (r keyProviderService) WrapKey(context.Context, *keyprovider.KeyProviderKeyWrapProtocolInput) (*keyprovider.KeyProviderKeyWrapProtocolOutput, error) {
	return nil, status.Error(codes.Unimplemented, rpcErrorPrefix+"WrapKey is not supported in the guest")
}

// Listen opens the unix socket of addr ("unix:///path"): it creates the
// parent directory and removes a stale socket, but refuses to remove
// anything that is not a socket. The socket is made 0600.
func Listen(addr string) (net.Listener, error) {
	p, err := SocketPath(addr)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("creating the socket directory: %w", err)
	}
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", p)
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(p, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// NewServer returns a ttRPC server that accepts only peers of our own
// user (kata-agent and api-server-rest run as root, like the hub).
func NewServer() (*ttrpc.Server, error) {
	return ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
}
