package asr

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/guest/proto/aaproto"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var offlineFiles = testvectors.Path("guest-components/image-rs/test_data/offline-fs-kbc/")

// fakeAA is an attestation-agent served over ttRPC that records what it
// was asked.
type fakeAA struct {
	mu          sync.Mutex
	runtimeData [][]byte
	measurement aaproto.RuntimeMeasurementResult
	events      []string
	tees        []string
	fail        bool
}

func (f *fakeAA) err() error {
	if f.fail {
		return status.Error(codes.Internal, "[ERROR:attestation-agent] AA-KBC get token failed")
	}
	return nil
}

func (f *fakeAA) GetEvidence(_ context.Context, r *aaproto.GetEvidenceRequest) (*aaproto.GetEvidenceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runtimeData = append(f.runtimeData, r.GetRuntimeData())
	return &aaproto.GetEvidenceResponse{Evidence: []byte(`{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString(r.GetRuntimeData()) + `"}`)}, f.err()
}

func (f *fakeAA) GetAdditionalEvidence(_ context.Context, r *aaproto.GetAdditionalEvidenceRequest) (*aaproto.GetEvidenceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runtimeData = append(f.runtimeData, r.GetRuntimeData())
	return &aaproto.GetEvidenceResponse{}, f.err()
}

func (f *fakeAA) GetToken(_ context.Context, r *aaproto.GetTokenRequest) (*aaproto.GetTokenResponse, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return &aaproto.GetTokenResponse{Token: []byte(`{"token":"` + r.GetTokenType() + `.token","tee_keypair":"pem"}`)}, nil
}

func (f *fakeAA) ExtendRuntimeMeasurement(_ context.Context, r *aaproto.ExtendRuntimeMeasurementRequest) (*aaproto.ExtendRuntimeMeasurementResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, r.GetDomain()+" "+r.GetOperation()+" "+r.GetContent())
	return &aaproto.ExtendRuntimeMeasurementResponse{Result: f.measurement}, f.err()
}

func (f *fakeAA) BindInitData(context.Context, *aaproto.BindInitDataRequest) (*aaproto.BindInitDataResponse, error) {
	return nil, status.Error(codes.NotFound, "not supported")
}

func (f *fakeAA) GetTeeType(context.Context, *aaproto.GetTeeTypeRequest) (*aaproto.GetTeeTypeResponse, error) {
	return &aaproto.GetTeeTypeResponse{Tee: "sample"}, f.err()
}

func (f *fakeAA) GetAdditionalTees(context.Context, *aaproto.GetAdditionalTeesRequest) (*aaproto.GetAdditionalTeesResponse, error) {
	return &aaproto.GetAdditionalTeesResponse{AdditionalTees: f.tees}, f.err()
}

func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "asr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// backends serves a real hub (offline_fs_kbc over upstream's files) and a
// fake AA on unix sockets and returns ttRPC clients of both.
func backends(t *testing.T) (*cdh.Client, *aa.Client, *fakeAA) {
	t.Helper()
	dir := sockDir(t)
	cfg := &cdh.Config{Socket: "unix://" + dir + "/cdh.sock", AASocket: "unix://" + dir + "/aa.sock",
		LogLevel: "info", KBC: cdh.KBCConfig{Name: cdh.KBCOfflineFS}}
	hub, err := cdh.New(context.Background(), cfg, cdh.Options{OfflineFiles: []string{
		offlineFiles + "aa-offline_fs_kbc-keys.json", offlineFiles + "aa-offline_fs_kbc-resources.json"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := cdh.Listen(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := cdh.NewServer()
	cdh.NewService(hub, 5*time.Second, nil).Register(srv)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })

	fa := &fakeAA{}
	al, err := cdh.Listen(cfg.AASocket)
	if err != nil {
		t.Fatal(err)
	}
	asrv, _ := cdh.NewServer()
	aaproto.RegisterAttestationAgentServiceService(asrv, fa)
	go asrv.Serve(context.Background(), al)
	t.Cleanup(func() { asrv.Close() })

	c, err := cdh.NewClient(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	a, err := aa.NewClient(cfg.AASocket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	return c, a, fa
}

func serveASR(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, ts *httptest.Server, method, path, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestEndpoints(t *testing.T) {
	c, a, fa := backends(t)
	key, _ := base64.StdEncoding.DecodeString("REXwTCcCFObQdE9ZfL0a/iZtucCwBIo36/L0aL5l7UA=")
	all := serveASR(t, Options{Features: FeatureAll, CDH: c, AA: a, Version: "Guest Components Version: v-test"})
	resource := serveASR(t, Options{Features: FeatureResource, CDH: c})
	attestation := serveASR(t, Options{Features: FeatureAttestation, AA: a})
	tests := []struct {
		name       string
		ts         *httptest.Server
		method     string
		path       string
		body       string
		wantStatus int
		wantType   string
		wantBody   string // "" with wantPrefix unset: not checked
		prefix     bool
	}{
		{"info all", all, "GET", "/info", "", 200, "application/json", `{"version":"Guest Components Version: v-test","tee":"sample","feature":"all"}`, false},
		{"info resource", resource, "GET", "/info", "", 200, "application/json", `{"version":"` + DefaultVersion + `","feature":"resource"}`, false},
		{"info POST", all, "POST", "/info", "", 405, "", "Method Not Allowed", false},
		{"resource", all, "GET", "/cdh/resource/default/key/key_id1", "", 200, "application/octet-stream", string(key), false},
		{"resource any method", resource, "POST", "/cdh/resource/default/key/key_id1", "", 200, "application/octet-stream", string(key), false},
		{"resource missing", all, "GET", "/cdh/resource/default/key/nope", "", 500, "", "[CDH] [ERROR]: get resource kbs:///default/key/nope failed: resource not found", false},
		{"resource escape refused by the hub", all, "GET", "/cdh/resource/default/../x", "", 500, "", "[CDH] [ERROR]: get resource kbs:///default/../x failed: invalid request", false},
		{"resource too short", all, "GET", "/cdh/resource", "", 404, "", "URL NOT FOUND", false},
		{"cdh unknown api", all, "GET", "/cdh/unknown/foo/bar", "", 404, "", "URL NOT FOUND", false},
		{"cdh disabled", attestation, "GET", "/cdh/resource/default/key/key_id1", "", 404, "", "Resource Feature Not Enabled", false},
		{"aa disabled", resource, "GET", "/aa/token?token_type=kbs", "", 404, "", "Attestation Feature Not Enabled", false},
		{"aa disabled aael", resource, "POST", "/aa/aael", "", 404, "", "Attestation Feature Not Enabled", false},
		{"token", attestation, "GET", "/aa/token?token_type=kbs", "", 200, "application/octet-stream", `{"token":"kbs.token","tee_keypair":"pem"}`, false},
		{"token last value wins", all, "GET", "/aa/token?token_type=kbs&token_type=coco_as", "", 200, "application/octet-stream", `{"token":"coco_as.token","tee_keypair":"pem"}`, false},
		{"token without type", all, "GET", "/aa/token", "", 400, "", "BAD REQUEST", false},
		{"token POST", all, "POST", "/aa/token?token_type=kbs", "", 404, "", "URL NOT FOUND", false},
		{"evidence raw", all, "GET", "/aa/evidence?runtime_data=hello+world%21", "", 200, "application/octet-stream", `{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString([]byte("hello world!")) + `"}`, false},
		{"evidence base64", all, "GET", "/aa/evidence?runtime_data=cmVwb3J0&encoding=base64", "", 200, "application/octet-stream", `{"svn":"1","report_data":"` + base64.StdEncoding.EncodeToString([]byte("report")) + `"}`, false},
		{"evidence bad base64", all, "GET", "/aa/evidence?runtime_data=!!!&encoding=base64", "", 400, "", "BAD REQUEST", false},
		{"evidence padded base64", all, "GET", "/aa/evidence?runtime_data=cmVwb3J0aA%3D%3D&encoding=base64", "", 400, "", "BAD REQUEST", false},
		{"evidence hex encoding", all, "GET", "/aa/evidence?runtime_data=data&encoding=hex", "", 400, "", "BAD REQUEST", false},
		{"evidence missing", all, "GET", "/aa/evidence", "", 400, "", "BAD REQUEST", false},
		{"additional evidence", all, "GET", "/aa/additional-evidence?runtime_data=aGVsbG8&encoding=base64", "", 200, "application/octet-stream", "", false},
		{"additional evidence missing", all, "GET", "/aa/additional-evidence", "", 400, "", "BAD REQUEST", false},
		{"aael", all, "POST", "/aa/aael", `{"domain":"github.com/confidential-containers","operation":"PullImage","content":"x"}`, 200, "application/json", `{"success":"true"}`, false},
		{"aael bad JSON", all, "POST", "/aa/aael", `{`, 500, "", "Illegal AAEL eventry format: ", true},
		{"aael missing field", all, "POST", "/aa/aael", `{"domain":"d","operation":"o"}`, 500, "", "Illegal AAEL eventry format: ", true},
		{"aael too large", all, "POST", "/aa/aael", `{"domain":"` + strings.Repeat("d", maxAAELBody) + `"}`, 500, "", "Illegal AAEL eventry format: ", true},
		{"aael GET", all, "GET", "/aa/aael", "", 404, "", "URL NOT FOUND", false},
		{"aa unknown", all, "GET", "/aa/unknown-route", "", 404, "", "URL NOT FOUND", false},
		{"aa nested", all, "GET", "/aa/token/x?token_type=kbs", "", 404, "", "URL NOT FOUND", false},
		{"root", all, "GET", "/", "", 404, "", "URL NOT FOUND", false},
		{"unknown", all, "GET", "/unknown", "", 404, "", "URL NOT FOUND", false},
		{"unknown root", all, "GET", "/foo/bar", "", 404, "", "URL NOT FOUND", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ct, body := do(t, tt.ts, tt.method, tt.path, tt.body)
			if st != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", st, tt.wantStatus, body)
			}
			if tt.wantType != "" && ct != tt.wantType {
				t.Fatalf("Content-Type %q, want %q", ct, tt.wantType)
			}
			if tt.prefix && !strings.HasPrefix(body, tt.wantBody) {
				t.Fatalf("body %q, want prefix %q", body, tt.wantBody)
			}
			if !tt.prefix && tt.wantBody != "" && body != tt.wantBody {
				t.Fatalf("body %q, want %q", body, tt.wantBody)
			}
		})
	}
	if got := fa.events; len(got) != 1 || got[0] != "github.com/confidential-containers PullImage x" {
		t.Fatalf("AA events %q", got)
	}
}

func TestAAELResults(t *testing.T) {
	_, a, fa := backends(t)
	ts := serveASR(t, Options{Features: FeatureAttestation, AA: a})
	for res, want := range map[aaproto.RuntimeMeasurementResult]string{
		aaproto.RuntimeMeasurementResult_OK:            `{"success":"true"}`,
		aaproto.RuntimeMeasurementResult_NOT_SUPPORTED: `{"success":"false","message": "The platform does not support runtime measurement"}`,
		aaproto.RuntimeMeasurementResult_NOT_ENABLED:   `{"success":"false","message": "Attestation Agent does not enable eventlog recording"}`,
		7: `{"success":"false","message": "Unknown runtime measurement result"}`,
	} {
		fa.mu.Lock()
		fa.measurement = res
		fa.mu.Unlock()
		st, _, body := do(t, ts, "POST", "/aa/aael", `{"domain":"d","operation":"o","content":"c"}`)
		if st != 200 || body != want {
			t.Fatalf("result %v: %d %q, want %q", res, st, body, want)
		}
	}
}

func TestInfoAdditionalTeesAndBackendErrors(t *testing.T) {
	_, a, fa := backends(t)
	fa.tees = []string{"sampledevice"}
	ts := serveASR(t, Options{Features: FeatureAttestation, AA: a, Version: "v"})
	if _, _, body := do(t, ts, "GET", "/info", ""); body != `{"version":"v","tee":"sample","additional_tees":["sampledevice"],"feature":"attestation"}` {
		t.Fatalf("info %s", body)
	}
	fa.mu.Lock()
	fa.fail = true
	fa.mu.Unlock()
	for _, p := range []string{"/info", "/aa/token?token_type=kbs", "/aa/evidence?runtime_data=x"} {
		st, _, body := do(t, ts, "GET", p, "")
		if st != 500 || body != "[ERROR:attestation-agent] AA-KBC get token failed" {
			t.Fatalf("%s: %d %q", p, st, body)
		}
	}
}

func TestBackendDown(t *testing.T) {
	dir := sockDir(t)
	c, err := cdh.NewClient("unix://" + filepath.Join(dir, "cdh.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ts := serveASR(t, Options{Features: FeatureResource, CDH: c})
	st, _, body := do(t, ts, "GET", "/cdh/resource/default/key/1", "")
	if st != 500 || !strings.Contains(body, "cdh.sock") {
		t.Fatalf("%d %q", st, body)
	}
}

func TestForbiddenPeer(t *testing.T) {
	s, err := New(Options{Features: FeatureResource, CDH: &cdh.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, remote := range []string{"10.0.0.1:12345", "[2001:db8::1]:1", "garbage"} {
		req := httptest.NewRequest("GET", "/info", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden || rec.Body.String() != "Forbidden" {
			t.Fatalf("%s: %d %q", remote, rec.Code, rec.Body.String())
		}
	}
	req := httptest.NewRequest("GET", "/info", nil)
	req.RemoteAddr = "[::1]:5"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("::1: %d", rec.Code)
	}
}

func TestNewAndBind(t *testing.T) {
	c := &cdh.Client{}
	a := &aa.Client{}
	for _, o := range []Options{
		{Features: "everything", CDH: c, AA: a},
		{Features: FeatureResource},
		{Features: FeatureAttestation, CDH: c},
		{Features: FeatureAll, CDH: c},
	} {
		if _, err := New(o); err == nil {
			t.Fatalf("New(%+v) accepted", o)
		}
	}
	for addr, ok := range map[string]bool{
		"127.0.0.1:8006": true, "[::1]:8006": true, "127.0.0.2:1": true,
		"0.0.0.0:8006": false, "10.0.0.1:8006": false, "localhost:8006": false, ":8006": false, "127.0.0.1": false,
	} {
		if err := CheckBind(addr); (err == nil) != ok {
			t.Fatalf("CheckBind(%q): %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestSplitNthSlash(t *testing.T) {
	// upstream's test_split_nth_slash
	p := "/cdh/resource/default/"
	tests := []struct {
		n    int
		a, b string
		ok   bool
	}{
		{0, "", "", false},
		{1, "", "/cdh/resource/default/", true},
		{2, "/cdh", "/resource/default/", true},
		{3, "/cdh/resource", "/default/", true},
		{4, "/cdh/resource/default", "/", true},
		{5, "", "", false},
	}
	for _, tt := range tests {
		a, b, ok := splitNthSlash(p, tt.n)
		if a != tt.a || b != tt.b || ok != tt.ok {
			t.Fatalf("splitNthSlash(%d) = %q %q %v", tt.n, a, b, ok)
		}
	}
}
