package aa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
)

// AgentName prefixes the error texts, as upstream.
const AgentName = "attestation-agent"

// DefaultSocket is upstream's ttRPC address.
const DefaultSocket = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"

// Deadlines of the RPCs (applied on top of the caller's).
type Deadlines struct {
	// Evidence bounds GetEvidence, GetAdditionalEvidence (default 60 s:
	// an Azure vTPM report alone takes 3 s, a TD quote from IMDS more).
	Evidence time.Duration
	// Token bounds GetToken (default 150 s: the retries of an
	// unreachable KBS fit, a hung one does not).
	Token time.Duration
	// Measurement bounds ExtendRuntimeMeasurement (default 30 s).
	Measurement time.Duration
	// Info bounds GetTeeType and GetAdditionalTees (default 5 s).
	Info time.Duration
}

func (d *Deadlines) fill() {
	if d.Evidence <= 0 {
		d.Evidence = 60 * time.Second
	}
	if d.Token <= 0 {
		d.Token = 150 * time.Second
	}
	if d.Measurement <= 0 {
		d.Measurement = 30 * time.Second
	}
	if d.Info <= 0 {
		d.Info = 5 * time.Second
	}
}

// Service is the ttRPC AttestationAgentService over an Agent.
type Service struct {
	agent *Agent
	dl    Deadlines
	log   *slog.Logger
}

var _ aaproto.AttestationAgentServiceService = (*Service)(nil)

// NewService returns the ttRPC service of agent.
func NewService(agent *Agent, dl Deadlines) *Service {
	dl.fill()
	return &Service{agent: agent, dl: dl, log: agent.log}
}

// Code maps an Agent error to its ttRPC code, in one place:
//
//	ErrUnavailable, context.DeadlineExceeded → Unavailable / DeadlineExceeded
//	ErrRejected                               → PermissionDenied
//	ErrNotConfigured                          → FailedPrecondition
//	ErrUnsupportedTokenType, ErrInvalidRequest → InvalidArgument
//	context.Canceled                          → Canceled
//	anything else                             → Internal
func Code(err error) codes.Code {
	switch {
	case errors.Is(err, ErrRejected):
		return codes.PermissionDenied
	case errors.Is(err, ErrNotConfigured):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnsupportedTokenType), errors.Is(err, ErrInvalidRequest):
		return codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// fail logs err in full and returns upstream's terse text with err's code.
func (s *Service) fail(method, what string, err error) error {
	s.log.Error("AA (ttrpc): "+method+" failed", "err", err)
	return status.Error(Code(err), fmt.Sprintf("[ERROR:%s] %s", AgentName, what))
}

// GetEvidence implements the RPC.
func (s *Service) GetEvidence(ctx context.Context, r *aaproto.GetEvidenceRequest) (*aaproto.GetEvidenceResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dl.Evidence)
	defer cancel()
	ev, err := s.agent.Evidence(ctx, r.GetRuntimeData())
	if err != nil {
		return nil, s.fail("get evidence", "AA-KBC get evidence failed", err)
	}
	return &aaproto.GetEvidenceResponse{Evidence: ev}, nil
}

// GetAdditionalEvidence implements the RPC.
func (s *Service) GetAdditionalEvidence(ctx context.Context, r *aaproto.GetAdditionalEvidenceRequest) (*aaproto.GetEvidenceResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dl.Evidence)
	defer cancel()
	ev, err := s.agent.AdditionalEvidence(ctx, r.GetRuntimeData())
	if err != nil {
		return nil, s.fail("get additional evidence", "AA-KBC get evidence failed", err)
	}
	return &aaproto.GetEvidenceResponse{Evidence: ev}, nil
}

// GetToken implements the RPC.
func (s *Service) GetToken(ctx context.Context, r *aaproto.GetTokenRequest) (*aaproto.GetTokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dl.Token)
	defer cancel()
	t, err := s.agent.Token(ctx, r.GetTokenType())
	if err != nil {
		return nil, s.fail("get token", "AA-KBC get token failed", err)
	}
	return &aaproto.GetTokenResponse{Token: t}, nil
}

// ExtendRuntimeMeasurement implements the RPC.
func (s *Service) ExtendRuntimeMeasurement(ctx context.Context, r *aaproto.ExtendRuntimeMeasurementRequest) (*aaproto.ExtendRuntimeMeasurementResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dl.Measurement)
	defer cancel()
	res, err := s.agent.ExtendRuntimeMeasurement(ctx, r.GetDomain(), r.GetOperation(), r.GetContent(), r.RegisterIndex)
	if err != nil {
		return nil, s.fail("extend runtime measurement", "AA extend runtime measurement failed", err)
	}
	return &aaproto.ExtendRuntimeMeasurementResponse{Result: aaproto.RuntimeMeasurementResult(res)}, nil
}

// BindInitData is not served, as upstream's ttRPC server: init-data is
// bound at start-up from the command line only.
func (s *Service) BindInitData(context.Context, *aaproto.BindInitDataRequest) (*aaproto.BindInitDataResponse, error) {
	return nil, status.Error(codes.NotFound, "/attestation_agent.AttestationAgentService/BindInitData is not supported")
}

// GetTeeType implements the RPC.
func (s *Service) GetTeeType(ctx context.Context, _ *aaproto.GetTeeTypeRequest) (*aaproto.GetTeeTypeResponse, error) {
	return &aaproto.GetTeeTypeResponse{Tee: string(s.agent.TeeType())}, nil
}

// GetAdditionalTees implements the RPC.
func (s *Service) GetAdditionalTees(ctx context.Context, _ *aaproto.GetAdditionalTeesRequest) (*aaproto.GetAdditionalTeesResponse, error) {
	tees := s.agent.AdditionalTees()
	out := make([]string, len(tees))
	for i, t := range tees {
		out[i] = string(t)
	}
	return &aaproto.GetAdditionalTeesResponse{AdditionalTees: out}, nil
}

// SocketPath returns the file path of a "unix://<path>" address.
func SocketPath(addr string) (string, error) {
	p, ok := strings.CutPrefix(addr, "unix://")
	if !ok || p == "" || !filepath.IsAbs(p) {
		return "", fmt.Errorf("aa: socket address %q is not unix:///<absolute path>", addr)
	}
	return p, nil
}

// Listen creates the socket's directory, removes a stale socket file and
// listens on the unix socket of addr ("unix:///path").
func Listen(addr string) (net.Listener, error) {
	p, err := SocketPath(addr)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("aa: creating socket directory: %w", err)
	}
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("aa: %s exists and is not a socket", p)
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("aa: removing stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("aa: listening on %s: %w", p, err)
	}
	return l, nil
}

// NewServer returns a ttRPC server serving svc.
func NewServer(svc *Service) (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer()
	if err != nil {
		return nil, err
	}
	aaproto.RegisterAttestationAgentServiceService(srv, svc)
	return srv, nil
}
