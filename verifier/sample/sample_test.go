package sample

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/verifier"
)

func evidence(svn string, rd []byte) []byte {
	b, _ := json.Marshal(map[string]string{"svn": svn, "report_data": base64.StdEncoding.EncodeToString(rd)})
	return b
}

func TestSampleClaims(t *testing.T) {
	rd := sha512.Sum384([]byte("nonce"))
	ev := evidence("1", rd[:])
	rdB64 := base64.StdEncoding.EncodeToString(rd[:])
	digest := []byte{1, 2, 3}
	tests := []struct {
		name string
		v    verifier.Verifier
		exp  verifier.Expected
		want []verifier.Result
	}{
		{
			name: "sample",
			v:    New(),
			exp:  verifier.Expected{ReportData: rd[:]},
			want: []verifier.Result{{Class: verifier.ClassCPU, Claims: verifier.Claims{
				"svn": "1", "report_data": rdB64, "launch_digest": "abcde",
				"platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false,
			}}},
		},
		{
			name: "sample with init-data",
			v:    New(),
			exp:  verifier.Expected{ReportData: rd[:], InitDataDigest: digest},
			want: []verifier.Result{{Class: verifier.ClassCPU, Claims: verifier.Claims{
				"svn": "1", "report_data": rdB64, "launch_digest": "abcde",
				"platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false,
				"init_data": "AQID",
			}}},
		},
		{
			name: "sample without expectations",
			v:    New(),
			want: []verifier.Result{{Class: verifier.ClassCPU, Claims: verifier.Claims{
				"svn": "1", "report_data": rdB64, "launch_digest": "abcde",
				"platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false,
			}}},
		},
		{
			name: "sampledevice",
			v:    NewDevice(),
			exp:  verifier.Expected{ReportData: rd[:], InitDataDigest: digest},
			want: []verifier.Result{{Class: verifier.ClassGPU, Claims: verifier.Claims{"svn": "1", "report_data": rdB64}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.Evaluate(context.Background(), ev, tc.exp)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestSampleErrors(t *testing.T) {
	rd := []byte("0123456789abcdef0123456789abcdef0123456789abcdef")
	tests := []struct {
		name     string
		evidence string
		exp      []byte
		want     error
	}{
		{"report data mismatch", string(evidence("1", []byte("other"))), rd, verifier.ErrReportDataMismatch},
		{"report data padded is not equal", string(evidence("1", append(rd, 0))), rd, verifier.ErrReportDataMismatch},
		{"missing report data", `{"svn":"1"}`, rd, verifier.ErrReportDataMismatch},
		{"bad base64", `{"svn":"1","report_data":"***"}`, rd, verifier.ErrMalformedEvidence},
		{"url-safe base64", `{"svn":"1","report_data":"-_-_"}`, rd, verifier.ErrMalformedEvidence},
		{"base64 with newline", `{"svn":"1","report_data":"AQID\nBAUG"}`, []byte{1, 2, 3, 4, 5, 6}, verifier.ErrMalformedEvidence},
		{"missing svn", `{"report_data":""}`, nil, verifier.ErrMalformedEvidence},
		{"numeric svn", `{"svn":1}`, nil, verifier.ErrMalformedEvidence},
		{"null svn", `{"svn":null}`, nil, verifier.ErrMalformedEvidence},
		{"svn is case-sensitive", `{"SVN":"1"}`, nil, verifier.ErrMalformedEvidence},
		{"not an object", `["svn"]`, nil, verifier.ErrMalformedEvidence},
		{"not json", `{`, nil, verifier.ErrMalformedEvidence},
		{"too large", `{"svn":"1","x":"` + strings.Repeat("a", limits.MaxEvidenceBytes) + `"}`, nil, verifier.ErrMalformedEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []verifier.Verifier{New(), NewDevice()} {
				_, err := v.Evaluate(context.Background(), []byte(tc.evidence), verifier.Expected{ReportData: tc.exp})
				if !errors.Is(err, tc.want) {
					t.Fatalf("Evaluate = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestMismatchMessageNamesCheck(t *testing.T) {
	_, err := New().Evaluate(context.Background(), evidence("1", []byte("a")), verifier.Expected{ReportData: []byte("b")})
	if err == nil || !strings.Contains(err.Error(), "REPORT_DATA") {
		t.Fatalf("error %v does not name the failed check", err)
	}
}

func FuzzParseEvidence(f *testing.F) {
	f.Add([]byte(`{"svn":"1","report_data":"AQID"}`))
	f.Add([]byte(`{"svn":"2"}`))
	f.Add([]byte(`{"svn":1}`))
	f.Fuzz(func(t *testing.T, ev []byte) {
		for _, v := range []verifier.Verifier{New(), NewDevice()} {
			res, err := v.Evaluate(context.Background(), ev, verifier.Expected{ReportData: []byte{1, 2, 3}})
			if err != nil {
				if !errors.Is(err, verifier.ErrMalformedEvidence) && !errors.Is(err, verifier.ErrReportDataMismatch) {
					t.Fatalf("unexpected error class: %v", err)
				}
				continue
			}
			if len(res) != 1 {
				t.Fatalf("got %d results", len(res))
			}
			// Accepted evidence is bound to the expected report data.
			got, err := base64.StdEncoding.DecodeString(res[0].Claims["report_data"].(string))
			if err != nil || string(got) != "\x01\x02\x03" {
				t.Fatalf("accepted evidence with report data %q", got)
			}
		}
	})
}
