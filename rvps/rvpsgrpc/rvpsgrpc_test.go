package rvpsgrpc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsproto"
	"github.com/go-trustee/go-trustee/storage/memory"
)

func listen(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpcdial.ServerOptions()...)
	register(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func message(t *testing.T, values map[string]any) []byte {
	t.Helper()
	p, _ := json.Marshal(values)
	m, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(p)})
	return m
}

// The client and server against the built-in service: what is registered
// remotely is what a remote query returns, byte for byte as a local one.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	svc, err := rvps.New(memory.New(), rvps.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := listen(t, func(g *grpc.Server) { NewServer(svc, nil).Register(g) })
	for _, a := range []string{addr, "http://" + addr} {
		c, err := Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Register(ctx, message(t, map[string]any{"svn": []int{1}, "launch_digest": "abc"})); err != nil {
			t.Fatal(err)
		}
		v, found, err := c.Query(ctx, "launch_digest")
		local, _, _ := svc.Query(ctx, "launch_digest")
		if err != nil || !found || string(v) != string(local) || string(v) != `"abc"` {
			t.Errorf("Query = %s, %v, %v (local %s)", v, found, err, local)
		}
		if _, found, err := c.Query(ctx, "none"); found || err != nil {
			t.Errorf("Query(none) = %v, %v", found, err)
		}
		err = c.Register(ctx, []byte(`{"version":"0.2.0","type":"sample","payload":""}`))
		if err == nil || !strings.Contains(err.Error(), "Register reference value: ") || !strings.Contains(err.Error(), "version unmatched") {
			t.Errorf("bad version: %v", err)
		}
		c.Close()
	}
	if _, err := Dial("ftp://" + addr); !errors.Is(err, grpcdial.ErrAddress) {
		t.Errorf("ftp address: %v", err)
	}
}

// liar answers queries with whatever it is told to.
type liar struct {
	rvpsproto.UnimplementedReferenceValueProviderServiceServer
	answer *string
	delay  time.Duration
}

func (l liar) QueryReferenceValue(ctx context.Context, _ *rvpsproto.ReferenceValueQueryRequest) (*rvpsproto.ReferenceValueQueryResponse, error) {
	select {
	case <-time.After(l.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &rvpsproto.ReferenceValueQueryResponse{ReferenceValueResults: l.answer}, nil
}

// A remote RVPS that answers garbage or too late yields an error, never a
// value.
func TestMalformedAndSlowReplies(t *testing.T) {
	ctx := context.Background()
	for _, ans := range []string{"", "{", "1 2", `"unterminated`} {
		a := ans
		addr := listen(t, func(g *grpc.Server) { rvpsproto.RegisterReferenceValueProviderServiceServer(g, liar{answer: &a}) })
		c, _ := Dial(addr)
		if v, found, err := c.Query(ctx, "x"); !errors.Is(err, ErrBadReply) || found || v != nil {
			t.Errorf("answer %q: %s, %v, %v", ans, v, found, err)
		}
		c.Close()
	}
	addr := listen(t, func(g *grpc.Server) {
		rvpsproto.RegisterReferenceValueProviderServiceServer(g, liar{delay: time.Minute})
	})
	c, _ := Dial(addr)
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, _, err := c.Query(cctx, "x"); !errors.Is(err, rvps.ErrUnavailable) {
		t.Errorf("slow RVPS: %v, want ErrUnavailable", err)
	}
}

// FuzzDecodeQueryResult: any accepted answer is one compact JSON value.
func FuzzDecodeQueryResult(f *testing.F) {
	for _, s := range []string{`"abc"`, `[1, 2]`, `{"a": {"b": null}}`, ``, `{`, `1 2`} {
		f.Add(s, true)
	}
	f.Add("", false)
	f.Fuzz(func(t *testing.T, s string, present bool) {
		var in *string
		if present {
			in = &s
		}
		v, found, err := DecodeQueryResult(in)
		if !present {
			if found || err != nil {
				t.Fatal("absent answer not reported as not found")
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrBadReply) || found {
				t.Fatalf("err %v found %v", err, found)
			}
			return
		}
		if !found || !json.Valid(v) || len(v) > len(s) {
			t.Fatalf("accepted %q as %q", s, v)
		}
	})
}
