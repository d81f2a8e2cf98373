package aa

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
	"github.com/go-trustee/go-trustee/protocol"
)

// testClock is a settable test clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// serve starts the ttRPC service of an agent on a unix socket in a temp
// dir and returns a client of the generated code.
func serve(t *testing.T, opts Options) aaproto.AttestationAgentServiceService {
	t.Helper()
	if opts.Attester == nil {
		opts.Attester = &sample.Attester{}
	}
	agent, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(NewService(agent, Deadlines{}))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "aa")
	if err != nil {
		t.Fatal(err)
	}
	sock := "unix://" + filepath.Join(dir, "sub", "aa.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	conn, err := net.Dial("unix", filepath.Join(dir, "sub", "aa.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close(); srv.Close(); os.RemoveAll(dir) })
	return aaproto.NewAttestationAgentServiceClient(c)
}

func kbsConfig(url string) Config {
	c := DefaultConfig()
	c.TokenConfigs.KBS = &KBSConfig{URL: url}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	s, ok := status.FromError(err)
	if !ok || s.Code() != code || s.Message() != msg {
		t.Fatalf("err = %v, want %s %q", err, code, msg)
	}
}

func TestInfoAndEvidence(t *testing.T) {
	ctx := ctxT(t)
	c := serve(t, Options{Config: DefaultConfig(), Devices: []attester.Attester{&sample.Device{}}})
	tee, err := c.GetTeeType(ctx, &aaproto.GetTeeTypeRequest{})
	if err != nil || tee.Tee != "sample" {
		t.Fatalf("GetTeeType = %v, %v", tee, err)
	}
	add, err := c.GetAdditionalTees(ctx, &aaproto.GetAdditionalTeesRequest{})
	if err != nil || len(add.AdditionalTees) != 1 || add.AdditionalTees[0] != "sampledevice" {
		t.Fatalf("GetAdditionalTees = %v, %v", add, err)
	}
	rd := bytes.Repeat([]byte{7}, 48)
	ev, err := c.GetEvidence(ctx, &aaproto.GetEvidenceRequest{RuntimeData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString(rd) + `"}`; string(ev.Evidence) != want {
		t.Fatalf("evidence %s", ev.Evidence)
	}
	aev, err := c.GetAdditionalEvidence(ctx, &aaproto.GetAdditionalEvidenceRequest{RuntimeData: rd})
	if err != nil || !strings.HasPrefix(string(aev.Evidence), `{"sampledevice":{"svn":"2"`) {
		t.Fatalf("additional evidence %s, %v", aev.GetEvidence(), err)
	}
	_, err = c.GetEvidence(ctx, &aaproto.GetEvidenceRequest{RuntimeData: make([]byte, 65)})
	wantCode(t, err, codes.InvalidArgument, "[ERROR:attestation-agent] AA-KBC get evidence failed")
	_, err = c.BindInitData(ctx, &aaproto.BindInitDataRequest{Digest: []byte{1}})
	wantCode(t, err, codes.NotFound, "/attestation_agent.AttestationAgentService/BindInitData is not supported")
	res, err := c.ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "c"})
	if err != nil || res.Result != aaproto.RuntimeMeasurementResult_NOT_ENABLED {
		t.Fatalf("extend = %v, %v", res, err)
	}
}

func TestNoDevicesEmptyAdditionalEvidence(t *testing.T) {
	c := serve(t, Options{Config: DefaultConfig()})
	aev, err := c.GetAdditionalEvidence(ctxT(t), &aaproto.GetAdditionalEvidenceRequest{RuntimeData: []byte{1}})
	if err != nil || len(aev.Evidence) != 0 {
		t.Fatalf("%q %v", aev.GetEvidence(), err)
	}
}

// tokenOf decodes a GetToken("kbs") answer and checks that the key pair
// is the one the token certifies.
func tokenOf(t *testing.T, b []byte) (token string, kp *protocol.KeyPair) {
	t.Helper()
	var m kbsTokenJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || !strings.HasPrefix(string(b), `{"token":"`) {
		t.Fatalf("token JSON %q: %v", b, err)
	}
	kp, err := protocol.KeyPairFromPEM([]byte(m.TeeKeypair))
	if err != nil || !strings.HasPrefix(m.TeeKeypair, "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("tee_keypair: %v", err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(m.Token, ".")[1])
	var claims struct {
		Key protocol.TeePubKey `json:"tee-pubkey"`
	}
	json.Unmarshal(payload, &claims)
	if !claims.Key.Equal(kp.PublicKey()) {
		t.Fatal("the token certifies another key")
	}
	return m.Token, kp
}

func TestGetTokenCached(t *testing.T) {
	ctx := ctxT(t)
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	kbs := fakekbs.New(fakekbs.Options{Now: clk.Now, TokenLifetime: 10 * time.Minute})
	srv := httptest.NewServer(kbs)
	defer srv.Close()
	c := serve(t, Options{Config: kbsConfig(srv.URL), Now: clk.Now, HTTPClient: srv.Client()})

	// Concurrent callers share one handshake.
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "kbs"})
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i], _ = tokenOf(t, r.Token)
		}(i)
	}
	wg.Wait()
	if n := kbs.Count(http.MethodPost, "/kbs/v0/attest"); n != 1 {
		t.Fatalf("%d attestations for 8 concurrent callers, want 1", n)
	}
	for _, tok := range tokens[1:] {
		if tok != tokens[0] {
			t.Fatal("callers got different tokens")
		}
	}
	// Reused until shortly before exp.
	clk.Add(8 * time.Minute)
	r, err := c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "kbs"})
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := tokenOf(t, r.Token); tok != tokens[0] || kbs.Count(http.MethodPost, "/kbs/v0/attest") != 1 {
		t.Fatal("token not reused within its lifetime")
	}
	// Within the 60 s margin: a new handshake, a new key.
	clk.Add(time.Minute + 30*time.Second)
	r, err = c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "kbs"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := tokenOf(t, r.Token)
	if tok == tokens[0] || kbs.Count(http.MethodPost, "/kbs/v0/attest") != 2 {
		t.Fatal("token not renewed before its exp")
	}
}

func TestGetTokenCacheDisabled(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{})
	srv := httptest.NewServer(kbs)
	defer srv.Close()
	cfg := kbsConfig(srv.URL)
	off := false
	cfg.TokenConfigs.KBS.TokenCache = &off
	c := serve(t, Options{Config: cfg, HTTPClient: srv.Client()})
	for i := 0; i < 2; i++ {
		if _, err := c.GetToken(ctxT(t), &aaproto.GetTokenRequest{TokenType: "kbs"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := kbs.Count(http.MethodPost, "/kbs/v0/attest"); n != 2 {
		t.Fatalf("%d attestations with the cache off, want 2 (upstream behaviour)", n)
	}
}

func TestGetTokenFailures(t *testing.T) {
	refuse := func(kind, detail string) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/kbs/v0/attest" {
				return false
			}
			fakekbs.WriteError(w, http.StatusUnauthorized, kind, detail)
			return true
		}
	}
	var fails atomic.Int32
	flaky := func(w http.ResponseWriter, r *http.Request) bool {
		if fails.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	for _, tc := range []struct {
		name      string
		hook      func(w http.ResponseWriter, r *http.Request) bool
		url       string
		code      codes.Code
		attempts  int
		agentErr  error
		inMessage string
	}{
		{name: "attestation failed", hook: refuse("AttestationError", "Attestation error: evidence refused"), code: codes.PermissionDenied, attempts: 1, agentErr: ErrRejected, inMessage: "evidence refused"},
		{name: "policy deny", hook: refuse("PolicyDeny", "Access denied by policy: tcb too old"), code: codes.PermissionDenied, attempts: 1, agentErr: ErrRejected, inMessage: "tcb too old"},
		{name: "KBS down", url: downURL, code: codes.Unavailable, attempts: 5, agentErr: ErrUnavailable, inMessage: downURL},
		{name: "KBS flaky then fine", hook: flaky, code: codes.OK, attempts: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kbs := fakekbs.New(fakekbs.Options{Hook: tc.hook})
			srv := httptest.NewServer(kbs)
			defer srv.Close()
			url := srv.URL
			if tc.url != "" {
				url = tc.url
			}
			var sleeps atomic.Int32
			opts := Options{Config: kbsConfig(url), HTTPClient: srv.Client(), Sleep: func(context.Context, time.Duration) error { sleeps.Add(1); return nil }}
			c := serve(t, opts)
			_, err := c.GetToken(ctxT(t), &aaproto.GetTokenRequest{TokenType: "kbs"})
			if tc.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantCode(t, err, tc.code, "[ERROR:attestation-agent] AA-KBC get token failed")
			}
			if got := int(sleeps.Load()) + 1; got != tc.attempts {
				t.Errorf("%d attempts, want %d", got, tc.attempts)
			}
			if tc.agentErr == nil {
				return
			}
			// The agent's own error (what the guest log shows) is precise.
			agent, _ := New(Options{Attester: &sample.Attester{}, Config: kbsConfig(url), HTTPClient: srv.Client(), Sleep: opts.Sleep})
			_, aerr := agent.Token(ctxT(t), "kbs")
			if !errors.Is(aerr, tc.agentErr) || !strings.Contains(aerr.Error(), tc.inMessage) {
				t.Fatalf("agent error %v, want %v containing %q", aerr, tc.agentErr, tc.inMessage)
			}
		})
	}
}

func TestGetTokenKinds(t *testing.T) {
	var got map[string]any
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/attestation" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", 400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		w.Write([]byte("header.claims.sig"))
	}))
	defer as.Close()
	cfg := DefaultConfig()
	cfg.TokenConfigs.CoCoAS = &CoCoASConfig{URL: as.URL}
	c := serve(t, Options{Config: cfg, HTTPClient: as.Client()})
	ctx := ctxT(t)
	r, err := c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "coco_as"})
	if err != nil || string(r.Token) != "header.claims.sig" {
		t.Fatalf("coco_as token %q, %v", r.GetToken(), err)
	}
	reqs := got["verification_requests"].([]any)[0].(map[string]any)
	ev, _ := base64.RawURLEncoding.DecodeString(reqs["evidence"].(string))
	if reqs["tee"] != "sample" || string(ev) != `{"svn":"1","report_data":""}` {
		t.Fatalf("AS request %v", got)
	}
	if ids, ok := got["policy_ids"].([]any); !ok || len(ids) != 0 {
		t.Fatalf("policy_ids %v", got["policy_ids"])
	}
	_, err = c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "kbs"})
	wantCode(t, err, codes.FailedPrecondition, "[ERROR:attestation-agent] AA-KBC get token failed")
	_, err = c.GetToken(ctx, &aaproto.GetTokenRequest{TokenType: "jwt"})
	wantCode(t, err, codes.InvalidArgument, "[ERROR:attestation-agent] AA-KBC get token failed")
}

// measuringSample is the sample attester with SHA-256 registers.
type measuringSample struct {
	sample.Attester
	mu   sync.Mutex
	regs map[uint64][]byte
}

func (m *measuringSample) EventLogHash() crypto.Hash { return crypto.SHA256 }
func (m *measuringSample) MRIndex(p uint64) uint32   { return uint32(p) }
func (m *measuringSample) RuntimeMeasurement(_ context.Context, p uint64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.regs[p]; ok {
		return v, nil
	}
	return make([]byte, 32), nil
}
func (m *measuringSample) ExtendRuntimeMeasurement(_ context.Context, d []byte, p uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := crypto.SHA256.New()
	if v, ok := m.regs[p]; ok {
		h.Write(v)
	} else {
		h.Write(make([]byte, 32))
	}
	h.Write(d)
	m.regs[p] = h.Sum(nil)
	return nil
}

func TestExtendRuntimeMeasurement(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	att := &measuringSample{regs: map[uint64][]byte{}}
	el, err := aael.Open(ctx, aael.Options{Path: filepath.Join(dir, "eventlog"), WALPath: filepath.Join(dir, "wal"), Register: att})
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	cfg := DefaultConfig()
	cfg.EventlogConfig.EnableEventlog = true
	c := serve(t, Options{Config: cfg, Attester: att, EventLog: el})
	res, err := c.ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: "github.com/confidential-containers", Operation: "PullImage", Content: `{"image":"a", "digest":"sha256:b"}`})
	if err != nil || res.Result != aaproto.RuntimeMeasurementResult_OK {
		t.Fatalf("%v %v", res, err)
	}
	if _, ok := att.regs[17]; !ok {
		t.Fatal("PCR 17 not extended")
	}
	pcr := uint64(9)
	if _, err := c.ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "c", RegisterIndex: &pcr}); err != nil {
		t.Fatal(err)
	}
	if _, ok := att.regs[9]; !ok {
		t.Fatal("RegisterIndex ignored")
	}
	_, err = c.ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "a\nb"})
	wantCode(t, err, codes.InvalidArgument, "[ERROR:attestation-agent] AA extend runtime measurement failed")
	// Enabled, but the attester cannot measure.
	c2 := serve(t, Options{Config: cfg})
	res, err = c2.ExtendRuntimeMeasurement(ctx, &aaproto.ExtendRuntimeMeasurementRequest{Domain: "d", Operation: "o", Content: "c"})
	if err != nil || res.Result != aaproto.RuntimeMeasurementResult_NOT_SUPPORTED {
		t.Fatalf("%v %v", res, err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"tcp://127.0.0.1:1", "unix://relative.sock", "/tmp/no-scheme.sock", "unix://"} {
		if _, err := Listen(bad); err == nil {
			t.Errorf("Listen(%q) succeeded", bad)
		}
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen("unix://" + file); err == nil {
		t.Error("Listen replaced a regular file")
	}
	sock := "unix://" + filepath.Join(dir, "aa.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(sock) // the stale socket is removed
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l2.Close()
}

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{ErrRejected, codes.PermissionDenied},
		{ErrUnavailable, codes.Unavailable},
		{ErrNotConfigured, codes.FailedPrecondition},
		{ErrUnsupportedTokenType, codes.InvalidArgument},
		{ErrInvalidRequest, codes.InvalidArgument},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("other"), codes.Internal},
		{errors.Join(errors.New("wrapped"), ErrRejected), codes.PermissionDenied},
	} {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
