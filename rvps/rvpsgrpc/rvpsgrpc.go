// Package rvpsgrpc carries the RVPS over upstream Trustee's gRPC API
// (reference.ReferenceValueProviderService, reference.proto): Server
// exposes any rvps.Provider — the rvps binary's built-in service, or
// grpc-as's own RVPS, which the KBS reaches through grpc-as — and Client is
// an rvps.Provider backed by a remote service (rvps_config type
// "GrpcRemote", and the KBS's reference-value endpoints in coco_as_grpc
// mode).
//
// # Invariants
//
//   - The wire is upstream's: register sends the message JSON as a string,
//     query answers the value as a JSON string, absent when not found;
//     errors are codes.Aborted with upstream's message prefixes ("Register
//     reference value: ", "Query reference value: ").
//   - Every call from Client has a deadline (RegisterTimeout, QueryTimeout)
//     under the caller's context; a peer that is down or slow yields an
//     error wrapping rvps.ErrUnavailable, never a hang.
//   - A query answer is bounded (rvps.MaxMessageBytes) and must be valid
//     JSON; it is returned compacted, as the built-in service returns it.
//     Anything else is an error, not a value a policy could be fooled by.
package rvpsgrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsproto"
)

// Deadlines of the client's calls.
const (
	RegisterTimeout = 30 * time.Second
	QueryTimeout    = 10 * time.Second
)

// ErrBadReply is wrapped by the errors of a query answer that is not a
// bounded JSON value.
var ErrBadReply = errors.New("rvpsgrpc: malformed reply from the RVPS")

// Server serves an rvps.Provider as reference.ReferenceValueProviderService.
type Server struct {
	rvpsproto.UnimplementedReferenceValueProviderServiceServer
	p   rvps.Provider
	log *slog.Logger
}

// NewServer returns the gRPC service of p; log may be nil.
func NewServer(p rvps.Provider, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{p: p, log: log}
}

// Register registers the service on s.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	rvpsproto.RegisterReferenceValueProviderServiceServer(g, s)
}

// QueryReferenceValue implements the gRPC method.
func (s *Server) QueryReferenceValue(ctx context.Context, req *rvpsproto.ReferenceValueQueryRequest) (*rvpsproto.ReferenceValueQueryResponse, error) {
	v, found, err := s.p.Query(ctx, req.GetReferenceValueId())
	if err != nil {
		s.log.Warn("query reference value failed", "error", err)
		return nil, status.Errorf(codes.Aborted, "Query reference value: %v", err)
	}
	resp := &rvpsproto.ReferenceValueQueryResponse{}
	if found {
		str := string(v)
		resp.ReferenceValueResults = &str
	}
	return resp, nil
}

// RegisterReferenceValue implements the gRPC method.
func (s *Server) RegisterReferenceValue(ctx context.Context, req *rvpsproto.ReferenceValueRegisterRequest) (*rvpsproto.ReferenceValueRegisterResponse, error) {
	if err := s.p.Register(ctx, []byte(req.GetMessage())); err != nil {
		s.log.Warn("register reference value failed", "error", err)
		return nil, status.Errorf(codes.Aborted, "Register reference value: %v", err)
	}
	s.log.Info("reference value registered")
	return &rvpsproto.ReferenceValueRegisterResponse{}, nil
}

// Client is an rvps.Provider on a remote RVPS.
type Client struct {
	rpc   rvpsproto.ReferenceValueProviderServiceClient
	close func() error
}

var _ rvps.Provider = (*Client)(nil)

// New returns a Client on an existing connection, which the caller closes.
func New(cc grpc.ClientConnInterface) *Client {
	return &Client{rpc: rvpsproto.NewReferenceValueProviderServiceClient(cc), close: func() error { return nil }}
}

// Dial returns a Client of the RVPS at addr (host:port, http:// or
// https://); it connects lazily, so it succeeds while the RVPS is down.
func Dial(addr string) (*Client, error) {
	cc, err := grpcdial.Dial(addr, grpcdial.Options{})
	if err != nil {
		return nil, err
	}
	c := New(cc)
	c.close = cc.Close
	return c, nil
}

// Close closes a connection opened by Dial.
func (c *Client) Close() error { return c.close() }

// Register sends a reference-value message to the RVPS.
func (c *Client) Register(ctx context.Context, message []byte) error {
	if len(message) > rvps.MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes exceeds the limit of %d", rvps.ErrInvalidMessage, len(message), rvps.MaxMessageBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, RegisterTimeout)
	defer cancel()
	_, err := c.rpc.RegisterReferenceValue(ctx, &rvpsproto.ReferenceValueRegisterRequest{Message: string(message)})
	return callError("register reference value", err)
}

// Query asks the RVPS for the value of id.
func (c *Client) Query(ctx context.Context, id string) (json.RawMessage, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	resp, err := c.rpc.QueryReferenceValue(ctx, &rvpsproto.ReferenceValueQueryRequest{ReferenceValueId: id})
	if err != nil {
		return nil, false, callError("query reference value", err)
	}
	return DecodeQueryResult(resp.ReferenceValueResults)
}

// DecodeQueryResult checks a query answer: nil is "not found"; anything
// else must be one JSON value within rvps.MaxMessageBytes.
func DecodeQueryResult(results *string) (json.RawMessage, bool, error) {
	if results == nil {
		return nil, false, nil
	}
	if len(*results) > rvps.MaxMessageBytes {
		return nil, false, fmt.Errorf("%w: value of %d bytes exceeds %d", ErrBadReply, len(*results), rvps.MaxMessageBytes)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(*results)); err != nil {
		return nil, false, fmt.Errorf("%w: value is not JSON: %v", ErrBadReply, err)
	}
	return buf.Bytes(), true, nil
}

// callError maps a gRPC error: transport failures and deadlines wrap
// rvps.ErrUnavailable; the RVPS's own refusals keep its message.
func callError(what string, err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %s: %s", rvps.ErrUnavailable, what, st.Message())
	}
	return fmt.Errorf("rvps: %s: remote RVPS refused: %s", what, st.Message())
}
