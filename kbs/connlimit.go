package kbs

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The connection cap ([http_server] max_connections, ours). Without it
// enough idle keep-alive connections exhaust the process's file
// descriptors: accept fails, and so does every store file, policy and
// certificate the KBS opens. At the cap a new connection is accepted and
// closed at once (the client fails fast rather than waiting in the
// kernel's backlog), counted in kbs_http_connections_refused_total and
// logged at most every refusalLogEvery.
const refusalLogEvery = 10 * time.Second

// defaultMaxConnections is three quarters of the descriptor limit (the Go
// runtime raises the soft limit to the hard one at start), leaving the
// rest to stores, files and outgoing connections; at least 64.
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1024
	}
	n := rl.Cur / 4 * 3
	switch {
	case n < 64:
		return 64
	case n > 1<<20:
		return 1 << 20
	}
	return int(n)
}

// connLimiter is shared by every listener of one server.
type connLimiter struct {
	sem     chan struct{}
	refused prometheus.Counter
	log     *slog.Logger

	pending  atomic.Int64 // refusals not yet logged
	lastLog  atomic.Int64 // unix nanoseconds
	capacity int
}

func newConnLimiter(max int, refused prometheus.Counter, log *slog.Logger) *connLimiter {
	return &connLimiter{sem: make(chan struct{}, max), refused: refused, log: log, capacity: max}
}

func (c *connLimiter) wrap(l net.Listener) net.Listener { return &limitListener{Listener: l, c: c} }

func (c *connLimiter) refuse() {
	c.refused.Inc()
	n := c.pending.Add(1)
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last >= int64(refusalLogEvery) && c.lastLog.CompareAndSwap(last, now) {
		c.pending.Add(-n)
		c.log.Warn("connection cap reached: new connections are closed at once", "max_connections", c.capacity, "refused", n)
	}
}

type limitListener struct {
	net.Listener
	c *connLimiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.c.sem <- struct{}{}:
			return &limitConn{Conn: conn, sem: l.c.sem}, nil
		default:
			conn.Close()
			l.c.refuse()
		}
	}
}

type limitConn struct {
	net.Conn
	sem  chan struct{}
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.sem })
	return err
}
