// Package ttrpcconn is the client end of the guest components' ttRPC
// sockets: a lazily dialled connection to a unix socket that reconnects
// once when the peer restarted, shared by the clients of the
// attestation-agent (guest/aa) and of the confidential-data-hub
// (guest/cdh).
//
// # Invariants
//
//   - A Conn dials at most once per call and no sooner than its first call.
//   - A call that finds the connection closed under it dials again and is
//     retried once, as upstream's api-server-rest does; any other failure
//     is returned as is.
//
// A Conn is safe for concurrent use.
package ttrpcconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
)

// DialTimeout bounds the connection of a Conn to its socket.
const DialTimeout = 5 * time.Second

// Conn is a lazily dialled ttRPC connection to one unix socket.
type Conn struct {
	addr string
	path string

	mu sync.Mutex // guards c
	c  *ttrpc.Client
}

// New returns a Conn to the unix socket file path, which callers name addr
// ("unix:///path", in errors); it connects on first use. The owners of the
// sockets resolve addr to path with their own SocketPath rules.
func New(addr, path string) *Conn {
	return &Conn{addr: addr, path: path}
}

// Addr returns the address the Conn dials.
func (c *Conn) Addr() string { return c.addr }

func (c *Conn) client(ctx context.Context) (*ttrpc.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	d := net.Dialer{Timeout: DialTimeout}
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

// Close closes the connection; a later call dials again.
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
