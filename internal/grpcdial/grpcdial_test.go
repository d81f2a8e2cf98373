package grpcdial

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]Target{
		"http://127.0.0.1:50004": {HostPort: "127.0.0.1:50004"},
		"https://as.example:443": {HostPort: "as.example:443", TLS: true},
		"127.0.0.1:50003":        {HostPort: "127.0.0.1:50003"},
		" http://[::1]:1/ ":      {HostPort: "[::1]:1"},
	} {
		got, err := ParseAddress(in)
		if err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "unix:///run/as.sock", "http://h:1/path", "http://u@h:1", "http://h:1?q", "http://h", "grpc://h:1"} {
		if _, err := ParseAddress(in); !errors.Is(err, ErrAddress) {
			t.Errorf("ParseAddress(%q) = %v, want ErrAddress", in, err)
		}
	}
}

// freeAddr returns a loopback address nobody listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func serveHealth(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s again: %v", addr, err)
	}
	s := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
}

func check(ctx context.Context, cc *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// A call made while the peer is still starting waits for it instead of
// failing: the peer comes up after the call was sent.
func TestCallWaitsForStartingPeer(t *testing.T) {
	addr := freeAddr(t)
	cc, err := Dial("http://"+addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	done := make(chan error, 1)
	go func() { done <- check(context.Background(), cc) }()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the call returned before the peer was up: %v", err)
	default:
	}
	serveHealth(t, addr)
	if err := <-done; err != nil {
		t.Fatalf("call across the peer's start: %v", err)
	}
}

// A peer that stays down fails the call with Unavailable once ReadyWait
// (or, sooner, the call's deadline) is over; a negative ReadyWait fails
// at once.
func TestCallFailsWhenPeerStaysDown(t *testing.T) {
	addr := freeAddr(t)
	for _, tc := range []struct {
		name string
		wait time.Duration
		ctx  time.Duration
		want codes.Code
	}{
		{"ready wait over", 300 * time.Millisecond, time.Minute, codes.Unavailable},
		{"fail fast", -1, time.Minute, codes.Unavailable},
		{"call deadline first", time.Minute, 300 * time.Millisecond, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := Dial(addr, Options{ReadyWait: tc.wait})
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			err = check(ctx, cc)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("call to a down peer = %v (%v), want %v", got, err, tc.want)
			}
			if ctx.Err() != nil && tc.want != codes.DeadlineExceeded {
				t.Fatalf("the call used up its own deadline instead of ReadyWait")
			}
		})
	}
}
