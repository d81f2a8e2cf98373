// Package grpcdial opens the gRPC connections between the split Trustee
// services — kbs to grpc-as (coco_as_grpc), grpc-as to rvps (GrpcRemote) —
// and configures the gRPC servers on the other end.
//
// # Invariants
//
//   - An address is written as upstream's tonic channels take it:
//     "http://host:port" (plaintext HTTP/2), "https://host:port" (TLS with
//     the system roots or Options.TLS) or a bare "host:port", which means
//     http:// as upstream's RVPS client assumes. Any other scheme, a path, a
//     query or user information is refused, so that a typo never silently
//     reaches another service.
//   - Connections are lazy: Dial never blocks and succeeds while the peer is
//     down. A call on a connection that is not ready waits for it up to
//     Options.ReadyWait (DefaultReadyWait), bounded by the call's own
//     deadline, and then fails with codes.Unavailable: a peer that is
//     starting or restarting (the containers of one pod start in no set
//     order; a rolling update replaces the AS) costs a guest a short wait,
//     not a failed attestation, while a peer that stays down still fails
//     every call within ReadyWait.
//   - The connection comes back within Backoff.MaxDelay of the peer's return
//     (never after gRPC's default two-minute backoff).
//   - Every message in either direction is bounded by MaxMessageBytes.
//   - Idle connections are probed with keep-alive pings, so a peer that died
//     silently is noticed before the next request waits on it.
package grpcdial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageBytes bounds one gRPC message: an attestation request carries
// up to limits.MaxASVerificationRequests pieces of evidence, each bounded
// by limits.MaxEvidenceBytes before it is verified, but the request as a
// whole is cut here, well before that product.
const MaxMessageBytes = 16 << 20

// Reconnection timing: fast enough that a restarted peer is used again
// within seconds.
const (
	backoffBase       = 100 * time.Millisecond
	backoffMax        = 3 * time.Second
	minConnectTimeout = 5 * time.Second
	keepaliveTime     = 30 * time.Second
	keepaliveTimeout  = 10 * time.Second
)

// DefaultReadyWait is how long a call waits for a connection that is not
// ready: a few reconnection attempts at backoffMax.
const DefaultReadyWait = 10 * time.Second

// ErrAddress is returned for an address that is not http://host:port,
// https://host:port or host:port.
var ErrAddress = errors.New("grpcdial: invalid address")

// Target is a parsed service address.
type Target struct {
	// HostPort is the host and port to connect to.
	HostPort string
	// TLS reports an https:// address.
	TLS bool
}

// ParseAddress parses addr as upstream's clients do.
func ParseAddress(addr string) (Target, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return Target{}, fmt.Errorf("%w: empty", ErrAddress)
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrAddress, addr, err)
	}
	var t Target
	switch u.Scheme {
	case "http":
	case "https":
		t.TLS = true
	default:
		return Target{}, fmt.Errorf("%w: %q: scheme %q (want http or https)", ErrAddress, addr, u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("%w: %q: only scheme://host:port is allowed", ErrAddress, addr)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return Target{}, fmt.Errorf("%w: %q: want host:port", ErrAddress, addr)
	}
	t.HostPort = net.JoinHostPort(host, port)
	return t, nil
}

// Options tune Dial.
type Options struct {
	// TLS configures https:// addresses; nil means the system roots and
	// TLS 1.2 or later. It is ignored for http:// addresses.
	TLS *tls.Config
	// ReadyWait bounds how long a call waits for a connection that is not
	// ready; 0 means DefaultReadyWait, a negative value fails fast.
	ReadyWait time.Duration
}

// Dial returns a lazily connecting client connection to addr.
func Dial(addr string, o Options) (*grpc.ClientConn, error) {
	t, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if t.TLS {
		cfg := o.TLS
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient("dns:///"+t.HostPort,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: backoffBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: backoffMax},
			MinConnectTimeout: minConnectTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithUserAgent("go-trustee"),
		grpc.WithChainUnaryInterceptor(awaitReady(o.ReadyWait)),
	)
}

// awaitReady makes a unary call wait up to wait (DefaultReadyWait when 0)
// for its connection to be ready before it is sent; the call itself stays
// fail-fast, so a connection that is still not ready then fails it with
// codes.Unavailable.
func awaitReady(wait time.Duration) grpc.UnaryClientInterceptor {
	if wait == 0 {
		wait = DefaultReadyWait
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if wait > 0 {
			waitReady(ctx, cc, wait)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// waitReady returns once cc is ready, shut down, or wait (or ctx) is over.
func waitReady(ctx context.Context, cc *grpc.ClientConn, wait time.Duration) {
	st := cc.GetState()
	if st == connectivity.Ready {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cc.Connect()
	for st = cc.GetState(); st != connectivity.Ready && st != connectivity.Shutdown; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			return
		}
	}
}

// ServerOptions are the options of every gRPC server of the split
// services: bounded messages and a keep-alive policy that admits the
// clients' pings.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1024),
	}
}

// Pool is upstream's connection pool of pool_size connections to one
// address, kept lazily: a further connection is opened only while every
// open one carries streamsPerConn calls, so a quiet KBS holds one TCP
// connection and a busy one spreads over up to Size.
type Pool struct {
	addr   string
	opts   Options
	size   int
	mu     sync.Mutex
	conns  []*pooled
	closed bool
}

type pooled struct {
	cc       *grpc.ClientConn
	inflight atomic.Int64
}

// streamsPerConn is the number of concurrent calls after which another
// pooled connection is opened.
const streamsPerConn = 64

// NewPool checks addr and returns a pool of up to size connections (at
// least one).
func NewPool(addr string, size int, o Options) (*Pool, error) {
	if _, err := ParseAddress(addr); err != nil {
		return nil, err
	}
	if size < 1 {
		size = 1
	}
	p := &Pool{addr: addr, opts: o, size: size}
	if _, err := p.grow(); err != nil {
		return nil, err
	}
	return p, nil
}

// grow opens one more connection; p.mu must not be held.
func (p *Pool) grow() (*pooled, error) {
	cc, err := Dial(p.addr, p.opts)
	if err != nil {
		return nil, err
	}
	c := &pooled{cc: cc}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) >= p.size || p.closed {
		cc.Close()
		return nil, nil
	}
	p.conns = append(p.conns, c)
	return c, nil
}

// Get returns a connection for one call and the function that releases
// it when the call is done.
func (p *Pool) Get() (grpc.ClientConnInterface, func()) {
	c := p.pick()
	c.inflight.Add(1)
	return c.cc, func() { c.inflight.Add(-1) }
}

func (p *Pool) pick() *pooled {
	p.mu.Lock()
	best := p.conns[0]
	for _, c := range p.conns {
		if c.inflight.Load() < streamsPerConn {
			p.mu.Unlock()
			return c
		}
		if c.inflight.Load() < best.inflight.Load() {
			best = c
		}
	}
	full := len(p.conns) >= p.size || p.closed
	p.mu.Unlock()
	if !full {
		if c, err := p.grow(); err == nil && c != nil {
			return c
		}
	}
	return best
}

// Len returns the number of open connections.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close closes every connection; calls made afterwards fail with
// codes.Canceled.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.cc.Close())
	}
	return errors.Join(errs...)
}
