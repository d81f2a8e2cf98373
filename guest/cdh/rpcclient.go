package cdh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/api"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/keyprovider"
)

// Conn is a lazily dialled ttRPC connection to a unix socket
// ("unix:///path"). A call that finds the connection closed dials again and
// is retried once, as upstream's api-server-rest does.
type Conn struct {
	addr string
	path string
	dial time.Duration

	mu sync.Mutex
	c  *ttrpc.Client
}

// Dial returns a Conn for addr; it connects on first use.
func Dial(addr string) (*Conn, error) {
	p, err := SocketPath(addr)
	if err != nil {
		return nil, err
	}
	return &Conn{addr: addr, path: p, dial: 5 * time.Second}, nil
}

// Addr returns the address the Conn dials.
func (c *Conn) Addr() string { return c.addr }

func (c *Conn) client(ctx context.Context) (*ttrpc.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	d := net.Dialer{Timeout: c.dial}
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, fmt.Errorf("ttrpc connect to %s: %w", c.addr, err)
	}
	c.c = ttrpc.NewClient(nc)
	return c.c, nil
}

func (c *Conn) drop(cl *ttrpc.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == cl {
		c.c.Close()
		c.c = nil
	}
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}

// Call runs fn with a client, reconnecting once when the connection was
// closed under it.
func (c *Conn) Call(ctx context.Context, fn func(*ttrpc.Client) error) error {
	for attempt := 0; ; attempt++ {
		cl, err := c.client(ctx)
		if err != nil {
			return err
		}
		err = fn(cl)
		if err == nil {
			return nil
		}
		if attempt == 0 && errors.Is(err, ttrpc.ErrClosed) {
			c.drop(cl)
			continue
		}
		return err
	}
}

// StatusMessage returns the message of a ttRPC status error, or the error
// text of any other error.
func StatusMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// Client calls a confidential-data-hub over ttRPC.
type Client struct{ conn *Conn }

// NewClient returns a client of the hub at addr ("unix:///path").
func NewClient(addr string) (*Client, error) {
	c, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	return &Client{conn: c}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// GetResource calls GetResourceService.GetResource.
func (c *Client) GetResource(ctx context.Context, uri string) ([]byte, error) {
	var out *api.GetResourceResponse
	err := c.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = api.NewGetResourceServiceClient(cl).GetResource(ctx, &api.GetResourceRequest{ResourcePath: uri})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetResource(), nil
}

// UnsealSecret calls SealedSecretService.UnsealSecret.
func (c *Client) UnsealSecret(ctx context.Context, secret []byte) ([]byte, error) {
	var out *api.UnsealSecretOutput
	err := c.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = api.NewSealedSecretServiceClient(cl).UnsealSecret(ctx, &api.UnsealSecretInput{Secret: secret})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetPlaintext(), nil
}

// UnWrapKey calls KeyProviderService.UnWrapKey with a keyprovider JSON
// request and returns the JSON reply.
func (c *Client) UnWrapKey(ctx context.Context, input []byte) ([]byte, error) {
	var out *keyprovider.KeyProviderKeyWrapProtocolOutput
	err := c.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = keyprovider.NewKeyProviderServiceClient(cl).UnWrapKey(ctx, &keyprovider.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: input})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.GetKeyProviderKeyWrapProtocolOutput(), nil
}

// MeasurementResult is the attestation-agent's ExtendRuntimeMeasurement
// answer.
type MeasurementResult int32

// Measurement results, as upstream numbers them.
const (
	MeasurementOK           MeasurementResult = MeasurementResult(aaproto.RuntimeMeasurementResult_OK)
	MeasurementNotSupported MeasurementResult = MeasurementResult(aaproto.RuntimeMeasurementResult_NOT_SUPPORTED)
	MeasurementNotEnabled   MeasurementResult = MeasurementResult(aaproto.RuntimeMeasurementResult_NOT_ENABLED)
)

// AAClient calls an attestation-agent over ttRPC. It is the hub's
// TokenSource (GetToken("kbs")).
type AAClient struct{ conn *Conn }

// NewAAClient returns a client of the attestation-agent at addr.
func NewAAClient(addr string) (*AAClient, error) {
	c, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	return &AAClient{conn: c}, nil
}

// Close closes the connection.
func (a *AAClient) Close() error { return a.conn.Close() }

func (a *AAClient) svc(cl *ttrpc.Client) aaproto.AttestationAgentServiceService {
	return aaproto.NewAttestationAgentServiceClient(cl)
}

// GetToken returns the token of tokenType ("kbs": the JSON {token,
// tee_keypair}).
func (a *AAClient) GetToken(ctx context.Context, tokenType string) ([]byte, error) {
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

// Token implements TokenSource.
func (a *AAClient) Token(ctx context.Context) (string, []byte, error) {
	return TokenFunc(a.GetToken).Token(ctx)
}

// GetEvidence returns the TEE evidence over runtimeData.
func (a *AAClient) GetEvidence(ctx context.Context, runtimeData []byte) ([]byte, error) {
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
func (a *AAClient) GetAdditionalEvidence(ctx context.Context, runtimeData []byte) ([]byte, error) {
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
func (a *AAClient) ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string) (MeasurementResult, error) {
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
func (a *AAClient) GetTeeType(ctx context.Context) (string, error) {
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
func (a *AAClient) GetAdditionalTees(ctx context.Context) ([]string, error) {
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

// Measurer records runtime measurements; *AAClient is one. The image pull
// service appends a PullImage event through it after each pull.
type Measurer interface {
	ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string) (MeasurementResult, error)
}
