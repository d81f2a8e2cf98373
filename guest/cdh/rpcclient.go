package cdh

import (
	"context"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/internal/ttrpcconn"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/api"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/keyprovider"
)

// Client calls a confidential-data-hub over ttRPC. It connects on first
// use and reconnects once when the hub restarted.
type Client struct{ conn *ttrpcconn.Conn }

// NewClient returns a client of the hub at addr ("unix:///path", checked
// as SocketPath does).
func NewClient(addr string) (*Client, error) {
	p, err := SocketPath(addr)
	if err != nil {
		return nil, err
	}
	return &Client{conn: ttrpcconn.New(addr, p)}, nil
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

// Measurer records runtime measurements; *aa.Client is one. The image pull
// service appends a PullImage event through it after each pull.
type Measurer interface {
	ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string) (aa.MeasurementResult, error)
}
