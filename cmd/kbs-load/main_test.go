package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/client/fakekbs"
)

func runLoad(t *testing.T, args ...string) (*report, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, args, &out, &errb)
	if !strings.Contains(strings.Join(args, " "), "--json") {
		return nil, out.String(), err
	}
	var rep report
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
			t.Fatalf("report is not JSON: %v\n%s", jerr, out.String())
		}
	}
	return &rep, out.String(), err
}

func TestLoadFlows(t *testing.T) {
	for _, alg := range []string{"ec256", "ec521", "rsa2048"} {
		t.Run(alg, func(t *testing.T) {
			kbs := fakekbs.New(fakekbs.Options{})
			kbs.SetResource("default/key/1", []byte("secret"))
			srv := httptest.NewServer(kbs)
			defer srv.Close()
			rep, _, err := runLoad(t, "--url", srv.URL, "--path", "default/key/1", "-c", "3", "-n", "12", "--key-alg", alg, "--json")
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if rep.Flows != 12 || rep.OK != 12 || rep.Errors != 0 || len(rep.ErrorSamples) != 0 {
				t.Fatalf("report %+v", rep)
			}
			if rep.LatencyMS.P50 <= 0 || rep.LatencyMS.P50 > rep.LatencyMS.P99 || rep.LatencyMS.P99 > rep.LatencyMS.Max {
				t.Errorf("latencies not ordered: %+v", rep.LatencyMS)
			}
			// Every flow: its own handshake, then a Bearer read without
			// the session cookie.
			if n := kbs.Count("POST", "/kbs/v0/auth"); n != 12 {
				t.Errorf("%d handshakes, want 12", n)
			}
			sessions := map[string]bool{}
			for _, r := range kbs.Requests() {
				if r.Method == "GET" && (r.Bearer == "" || r.Cookie != "") {
					t.Errorf("read with bearer %v, cookie %q", r.Bearer != "", r.Cookie)
				}
				if r.Path == "/kbs/v0/attest" {
					sessions[r.Cookie] = true
				}
			}
			if len(sessions) != 12 {
				t.Errorf("%d distinct sessions, want 12", len(sessions))
			}
		})
	}
}

func TestLoadErrorsReported(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{Deny: func(string, []string) bool { return true }})
	kbs.SetResource("default/key/1", []byte("secret"))
	srv := httptest.NewServer(kbs)
	defer srv.Close()
	rep, _, err := runLoad(t, "--url", srv.URL, "-c", "2", "-n", "5", "--json")
	if err == nil {
		t.Fatal("run succeeded with failing flows")
	}
	if rep.Errors != 5 || rep.OK != 0 || len(rep.ErrorSamples) != 1 || rep.ErrorSamples[0].Count != 5 ||
		!strings.Contains(rep.ErrorSamples[0].Error, "Access denied by policy") {
		t.Fatalf("report %+v", rep)
	}
	if n := kbs.Count("GET", "/kbs/v0/resource"); n != 5 {
		t.Errorf("%d reads, want 5 (no retries in a load run)", n)
	}
	_, text, _ := runLoad(t, "--url", srv.URL, "-n", "1")
	if !strings.Contains(text, "1 errors") || !strings.Contains(text, "Access denied by policy") {
		t.Errorf("text report:\n%s", text)
	}
}

func TestLoadDurationStops(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{})
	kbs.SetResource("default/key/1", []byte("secret"))
	srv := httptest.NewServer(kbs)
	defer srv.Close()
	rep, _, err := runLoad(t, "--url", srv.URL, "-c", "2", "-d", "300ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Flows != rep.OK {
		t.Fatalf("report %+v", rep)
	}
	if got := kbs.Count("POST", "/kbs/v0/auth"); got != rep.Flows {
		t.Errorf("%d handshakes for %d flows", got, rep.Flows)
	}
}

func TestLoadValidation(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "http://10.0.0.1:8080", "-n", "1"},
		{"--url", "http://kbs.example", "-n", "1"},
		{"-c", "0", "-n", "1"},
		{"-n", "-1"},
		{"-n", "20000000"},
		{"-d", "48h"},
		{"-d", "soon"},
		{"--key-alg", "dsa", "-n", "1"},
		{"--path", "a/b", "-n", "1"},
		{"--timeout", "0s", "-n", "1"},
	} {
		if _, _, err := runLoad(t, args...); err == nil {
			t.Errorf("kbs-load %v accepted", args)
		}
	}
	for _, h := range []string{"127.0.0.1", "127.1.2.3", "::1", "localhost"} {
		if !isLoopback(h) {
			t.Errorf("isLoopback(%s) = false", h)
		}
	}
	if isLoopback("192.168.1.1") {
		t.Error("private address taken for loopback")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.95, 95}, {0.99, 99}, {1, 100}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%.0f = %d, want %d", tt.p*100, got, tt.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("empty percentile")
	}
}
