package asgrpc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asproto"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage/memory"
)

// serveAS runs the grpc-as handler of a fresh in-memory AS on ln (or a new
// loopback listener) and returns its address.
func serveAS(t *testing.T, ln net.Listener) (string, *as.Service) {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New()})
	if err != nil {
		t.Fatal(err)
	}
	h, g := Handler(svc, nil)
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); g.Stop(); svc.Close() })
	return ln.Addr().String(), svc
}

// sampleRequest is sample evidence bound to KBS-style structured runtime
// data, as the KBS sends it.
func sampleRequest(t *testing.T, nonce string) as.VerificationRequest {
	t.Helper()
	var key protocol.TeePubKey
	if err := json.Unmarshal([]byte(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}`), &key); err != nil {
		t.Fatal(err)
	}
	rd := protocol.PrimaryRuntimeData{Nonce: nonce, TeePubKey: key}
	raw, _ := json.Marshal(rd)
	digest, err := protocol.ReportData(protocol.SHA384, nonce, key, "")
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(digest)})
	return as.VerificationRequest{Tee: protocol.TeeSample, Evidence: ev, RuntimeData: &as.RuntimeData{Structured: raw}, HashAlgorithm: protocol.SHA384}
}

func claims(t *testing.T, tok string, jwks []byte) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks %s: %v", jwks, err)
	}
	sig, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := sig.Verify(set.Keys[0].Key)
	if err != nil {
		t.Fatalf("token not signed by the JWKS grpc-as serves: %v", err)
	}
	var c map[string]any
	json.Unmarshal(payload, &c)
	return c
}

// The KBS's client against grpc-as: evaluation, policy, reference values
// through the AS's RVPS, the JWKS and health on the same port.
func TestClientAgainstServer(t *testing.T) {
	ctx := context.Background()
	addr, _ := serveAS(t, nil)
	c, err := Dial("http://"+addr, 4, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// JWKS over HTTP/1.1 on the gRPC port, as upstream's axum route.
	resp, err := http.Get("http://" + addr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("jwks: %s %s", resp.Status, resp.Proto)
	}

	tok, err := c.Evaluate(ctx, []as.VerificationRequest{sampleRequest(t, "bm9uY2U=")}, []string{"default"})
	if err != nil {
		t.Fatal(err)
	}
	cl := claims(t, tok, jwks)
	sub, _ := cl["submods"].(map[string]any)
	cpu, _ := sub["cpu0"].(map[string]any)
	if cpu == nil || cpu["ear.status"] == nil {
		t.Fatalf("claims %v", cl)
	}

	// A policy that refuses everything, set through the client, changes the
	// verdict of the next evaluation.
	deny := `package policy
import rego.v1
default hardware := 97
default executables := 33
default configuration := 36
trust_claims := {"executables": executables, "hardware": hardware, "configuration": configuration}
`
	if err := c.SetPolicy(ctx, "default_cpu", []byte(deny)); err != nil {
		t.Fatal(err)
	}
	tok, err = c.Evaluate(ctx, []as.VerificationRequest{sampleRequest(t, "bm9uY2U=")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpu = claims(t, tok, jwks)["submods"].(map[string]any)["cpu0"].(map[string]any)
	if cpu["ear.status"] != "contraindicated" {
		t.Errorf("after the deny policy: ear.status %v", cpu["ear.status"])
	}
	if err := c.SetPolicy(ctx, "default_cpu", []byte("package policy\nnot rego")); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "Set Attestation Policy Failed") {
		t.Errorf("SetPolicy of a broken policy: %v", err)
	}

	// Reference values through the AS's RVPS service.
	payload := base64.StdEncoding.EncodeToString([]byte(`{"svn": [1, 2]}`))
	if err := c.RVPS().Register(ctx, []byte(`{"version":"0.1.0","type":"sample","payload":"`+payload+`"}`)); err != nil {
		t.Fatal(err)
	}
	v, found, err := c.RVPS().Query(ctx, "svn")
	if err != nil || !found || string(v) != "[1,2]" {
		t.Errorf("Query = %s, %v, %v", v, found, err)
	}
	if _, found, err := c.RVPS().Query(ctx, "absent"); err != nil || found {
		t.Errorf("Query(absent) = %v, %v", found, err)
	}
	if err := c.RVPS().Register(ctx, []byte(`{"version":"9"}`)); err == nil || !strings.Contains(err.Error(), "Register reference value") {
		t.Errorf("bad message: %v", err)
	}

	// Challenges: only se asks the AS; the sample TEE gets none.
	if ch, err := c.GenerateSupplementalChallenge(ctx, protocol.TeeSample, "{}"); err != nil || ch != "" {
		t.Errorf("sample challenge = %q, %v", ch, err)
	}
	if _, err := c.GenerateSupplementalChallenge(ctx, protocol.TeeSe, "{}"); !errors.Is(err, ErrRefused) {
		t.Errorf("se challenge without an se verifier: %v", err)
	}

	// grpc.health.v1, as upstream's tonic-health.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "attestation.AttestationService"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", hr, err)
	}
}

// Bad requests are refused with upstream's texts, before any verifier.
func TestServerRefusesBadRequests(t *testing.T) {
	ctx := context.Background()
	addr, _ := serveAS(t, nil)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rpc := asproto.NewAttestationServiceClient(cc)
	good, err := EncodeRequest(sampleRequest(t, "bm9uY2U="))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(r *asproto.IndividualAttestationRequest)) *asproto.IndividualAttestationRequest {
		r := proto.Clone(good).(*asproto.IndividualAttestationRequest)
		f(r)
		return r
	}
	tests := []struct {
		name string
		req  *asproto.IndividualAttestationRequest
		want string
	}{
		{"unknown tee", mutate(func(r *asproto.IndividualAttestationRequest) { r.Tee = "nonsense" }), "Unsupported TEE type: nonsense"},
		{"padded evidence", mutate(func(r *asproto.IndividualAttestationRequest) { r.Evidence += "==" }), "Illegal input Evidence"},
		{"evidence not JSON", mutate(func(r *asproto.IndividualAttestationRequest) {
			r.Evidence = base64.RawURLEncoding.EncodeToString([]byte("{"))
		}), "failed to parse tee evidence"},
		{"structured rd not JSON", mutate(func(r *asproto.IndividualAttestationRequest) {
			r.RuntimeData = &asproto.IndividualAttestationRequest_StructuredRuntimeData{StructuredRuntimeData: "{"}
		}), "parse structured runtime data"},
		{"hash", mutate(func(r *asproto.IndividualAttestationRequest) { r.RuntimeDataHashAlgorithm = "md5" }), "parse runtime data HashAlgorithm failed"},
		{"oversized evidence", mutate(func(r *asproto.IndividualAttestationRequest) {
			r.Evidence = strings.Repeat("A", 3<<20)
		}), "evidence exceeds"},
		{"report data mismatch", mutate(func(r *asproto.IndividualAttestationRequest) {
			r.RuntimeData = &asproto.IndividualAttestationRequest_StructuredRuntimeData{StructuredRuntimeData: `{"nonce":"other"}`}
		}), "Attestation evaluation failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rpc.AttestationEvaluate(ctx, &asproto.AttestationRequest{VerificationRequests: []*asproto.IndividualAttestationRequest{tc.req}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := rpc.AttestationEvaluate(ctx, &asproto.AttestationRequest{}); err == nil {
		t.Error("no verification requests accepted")
	}
	if _, err := rpc.GetAttestationChallenge(ctx, &asproto.ChallengeRequest{Inner: map[string]string{"tee": "se"}}); err == nil || !strings.Contains(err.Error(), "Error parse inner_tee tee_params") {
		t.Errorf("challenge without tee_params: %v", err)
	}
	if _, err := rpc.SetAttestationPolicy(ctx, &asproto.SetPolicyRequest{PolicyId: "x", Policy: "!!"}); err == nil || !strings.Contains(err.Error(), "Set Attestation Policy Failed") {
		t.Errorf("policy not base64url: %v", err)
	}
}

// While grpc-as stays down every call fails with ErrUnavailable (after the
// connection wait, cut here by the 5 s call deadline); once it
// is back on the same address, calls succeed again within seconds.
func TestClientWhileServerDownAndBack(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := Dial(addr, 2, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial while the AS is down: %v", err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Evaluate(ctx, []as.VerificationRequest{sampleRequest(t, "bm9uY2U=")}, nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Evaluate while down = %v, want ErrUnavailable", err)
	}
	t.Logf("failed after %v", time.Since(start))
	if _, _, err := c.RVPS().Query(ctx, "x"); !errors.Is(err, rvps.ErrUnavailable) {
		t.Errorf("Query while down = %v, want rvps.ErrUnavailable", err)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	serveAS(t, ln)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err = c.Evaluate(ctx, []as.VerificationRequest{sampleRequest(t, "bm9uY2U=")}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 15 s after the AS came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// blockingAS holds every evaluation until released.
type blockingAS struct {
	asproto.UnimplementedAttestationServiceServer
	release chan struct{}
	started sync.WaitGroup
}

func (b *blockingAS) AttestationEvaluate(ctx context.Context, _ *asproto.AttestationRequest) (*asproto.AttestationResponse, error) {
	b.started.Done()
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &asproto.AttestationResponse{AttestationToken: "t"}, nil
}

// The pool opens further connections only under concurrency, up to its
// size; a slow AS gets the deadline, not a hang.
func TestPoolGrowsUnderLoadAndDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blockingAS{release: make(chan struct{})}
	g := grpc.NewServer()
	asproto.RegisterAttestationServiceServer(g, b)
	go g.Serve(ln)
	defer g.Stop()

	c, err := Dial(ln.Addr().String(), 3, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const calls = 150 // more than two connections' worth of streams
	b.started.Add(calls)
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Evaluate(context.Background(), []as.VerificationRequest{{Tee: protocol.TeeSample, Evidence: []byte("{}")}}, nil)
			errs <- err
		}()
	}
	b.started.Wait()
	if n := c.Connections(); n != 3 {
		t.Errorf("%d concurrent calls opened %d connections, want 3 (the pool size)", calls, n)
	}
	close(b.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// A call that outlives the deadline fails with ErrUnavailable.
	slow := &blockingAS{release: make(chan struct{})}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	g2 := grpc.NewServer()
	asproto.RegisterAttestationServiceServer(g2, slow)
	go g2.Serve(ln2)
	defer g2.Stop()
	c2, _ := Dial(ln2.Addr().String(), 1, 300*time.Millisecond)
	defer c2.Close()
	slow.started.Add(1)
	if _, err := c2.Evaluate(context.Background(), []as.VerificationRequest{{Tee: protocol.TeeSample, Evidence: []byte("{}")}}, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("slow AS: %v, want ErrUnavailable", err)
	}
	// A quiet client holds one connection.
	if n := c2.Connections(); n != 1 {
		t.Errorf("one call opened %d connections", n)
	}
}

// EncodeRequest and DecodeRequest are inverse on every form of runtime
// and init data.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	base := sampleRequest(t, "bm9uY2U=")
	forms := []as.VerificationRequest{
		base,
		{Tee: protocol.TeeSnp, Evidence: []byte(`{"a":1}`), RuntimeData: &as.RuntimeData{Raw: []byte{1, 2, 3}}, InitData: &as.InitData{Digest: []byte{9, 9}}, HashAlgorithm: protocol.SHA512},
		{Tee: protocol.TeeTdx, Evidence: []byte(`{}`), InitData: &as.InitData{TOML: "version = \"0.1.0\"\n"}, HashAlgorithm: protocol.SHA256},
		{Tee: protocol.TeeSampleDevice, Evidence: []byte(`[]`), RuntimeData: &as.RuntimeData{Raw: []byte{}}, HashAlgorithm: protocol.SHA384},
	}
	for i, vr := range forms {
		w, err := EncodeRequest(vr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(w)
		var back asproto.IndividualAttestationRequest
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRequest(&back)
		if err != nil {
			t.Fatalf("form %d: %v", i, err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(vr)
		if string(gj) != string(wj) {
			t.Errorf("form %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
}

// FuzzDecodeRequest feeds arbitrary wire bytes to the request decoder:
// it never panics, and whatever it accepts is within the bounds.
func FuzzDecodeRequest(f *testing.F) {
	good, _ := EncodeRequest(as.VerificationRequest{Tee: protocol.TeeSample, Evidence: []byte(`{"svn":"1"}`), RuntimeData: &as.RuntimeData{Structured: json.RawMessage(`{"nonce":"n"}`)}})
	b, _ := proto.Marshal(good)
	f.Add(b)
	raw, _ := EncodeRequest(as.VerificationRequest{Tee: protocol.TeeSnp, Evidence: []byte(`{}`), RuntimeData: &as.RuntimeData{Raw: []byte{1}}, InitData: &as.InitData{TOML: "x"}})
	b, _ = proto.Marshal(raw)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r asproto.IndividualAttestationRequest
		if proto.Unmarshal(data, &r) != nil {
			return
		}
		vr, err := DecodeRequest(&r)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error without ErrInvalidRequest: %v", err)
			}
			return
		}
		if !json.Valid(vr.Evidence) || len(vr.Evidence) > 2<<20 || !vr.Tee.Known() {
			t.Fatalf("accepted %+v", vr)
		}
		if vr.RuntimeData != nil && vr.RuntimeData.Structured != nil && !json.Valid(vr.RuntimeData.Structured) {
			t.Fatal("accepted structured runtime data that is not JSON")
		}
	})
}
