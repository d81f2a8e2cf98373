package aa

import (
	"context"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/internal/ttrpcconn"
	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
)

// Client calls an attestation-agent over ttRPC, at DefaultSocket unless
// told otherwise: the confidential-data-hub gets its KBS tokens and records
// its image pulls through it, api-server-rest serves its /aa endpoints with
// it. It connects on first use and reconnects once when the agent
// restarted. A Client is safe for concurrent use.
type Client struct{ conn *ttrpcconn.Conn }

// NewClient returns a client of the attestation-agent at addr
// ("unix:///path", checked as SocketPath does); it connects on first use.
func NewClient(addr string) (*Client, error) {
	p, err := SocketPath(addr)
	if err != nil {
		return nil, err
	}
	return &Client{conn: ttrpcconn.New(addr, p)}, nil
}

// Close closes the connection.
func (a *Client) Close() error { return a.conn.Close() }

func (a *Client) svc(cl *ttrpc.Client) aaproto.AttestationAgentServiceService {
	return aaproto.NewAttestationAgentServiceClient(cl)
}

// GetToken returns the token of tokenType (TokenKBS: the JSON {token,
// tee_keypair}; TokenCoCoAS: the Attestation Service's answer).
func (a *Client) GetToken(ctx context.Context, tokenType string) ([]byte, error) {
	var out *aaproto.GetTokenResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).GetToken(ctx, &aaproto.GetTokenRequest{TokenType: tokenType})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetToken(), nil
}

// GetEvidence returns the TEE evidence over runtimeData.
func (a *Client) GetEvidence(ctx context.Context, runtimeData []byte) ([]byte, error) {
	var out *aaproto.GetEvidenceResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).GetEvidence(ctx, &aaproto.GetEvidenceRequest{RuntimeData: runtimeData})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetEvidence(), nil
}

// GetAdditionalEvidence returns the additional devices' evidence.
func (a *Client) GetAdditionalEvidence(ctx context.Context, runtimeData []byte) ([]byte, error) {
	var out *aaproto.GetEvidenceResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).GetAdditionalEvidence(ctx, &aaproto.GetAdditionalEvidenceRequest{RuntimeData: runtimeData})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetEvidence(), nil
}

// ExtendRuntimeMeasurement records an event in the AA event log.
func (a *Client) ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string) (MeasurementResult, error) {
	var out *aaproto.ExtendRuntimeMeasurementResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: domain, Operation: operation, Content: content})
		return err
	})
	if err != nil {
		return 0, err
	}
	return MeasurementResult(out.GetResult()), nil
}

// GetTeeType returns the primary TEE type.
func (a *Client) GetTeeType(ctx context.Context) (string, error) {
	var out *aaproto.GetTeeTypeResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).GetTeeType(ctx, &aaproto.GetTeeTypeRequest{})
		return err
	})
	if err != nil {
		return "", err
	}
	return out.GetTee(), nil
}

// GetAdditionalTees returns the additional device TEE types.
func (a *Client) GetAdditionalTees(ctx context.Context) ([]string, error) {
	var out *aaproto.GetAdditionalTeesResponse
	err := a.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = a.svc(cl).GetAdditionalTees(ctx, &aaproto.GetAdditionalTeesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetAdditionalTees(), nil
}
