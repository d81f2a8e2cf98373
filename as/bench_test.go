package as

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
)

func FuzzInitData(f *testing.F) {
	if doc, err := os.ReadFile("testdata/initdata-agent-policy.toml"); err == nil {
		f.Add(string(doc))
	}
	f.Add("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"cdh.toml\" = \"[kbc]\\nname = 1\"\n")
	f.Add("version = \"0.1.0\"\nalgorithm = \"sha512\"\n[data]\n\"policy.rego\" = \"policy_data := {\\\"a\\\": [1]}\"\n")
	f.Add("version = \"0.1.0\"\nalgorithm = \"sha384\"\ndata = {}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		digest, claims, err := InitDataClaims(doc)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("wrong error class: %v", err)
			}
			return
		}
		if n := len(digest); n != 32 && n != 48 && n != 64 {
			t.Fatalf("digest of %d bytes", n)
		}
		// Whatever is accepted must be usable as policy input.
		b, err := encodeJSON(claims)
		if err != nil {
			t.Fatalf("claims do not encode: %v", err)
		}
		if jsonlimit.Depth(b) > limits.MaxJSONDepth+2 {
			t.Fatalf("claims nested %d deep", jsonlimit.Depth(b))
		}
		if _, err := ast.ValueFromReader(bytes.NewReader(b)); err != nil {
			t.Fatalf("claims are not a policy input: %v", err)
		}
	})
}

func FuzzExtractPolicyData(f *testing.F) {
	f.Add("package x\npolicy_data := {\"containers\": []}\n")
	f.Add("policy_data := {\"a\": \"}\"} ")
	f.Add("policy_data := {" + string(bytes.Repeat([]byte("["), 100)))
	f.Fuzz(func(t *testing.T, rego string) {
		v, ok := extractPolicyData(rego)
		if !ok {
			return
		}
		if _, isObj := v.(map[string]any); !isObj {
			t.Fatalf("extracted a non-object %T", v)
		}
	})
}

// benchService is a service whose default CPU policy affirms the sample TEE.
func benchService(b *testing.B) *Service {
	s := newTestService(b, Config{}, nil)
	for name, v := range map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1} {
		registerRV(b, s, name, v)
	}
	return s
}

// BenchmarkEvaluateSample is one full attestation: sample verification,
// claims transformation, the default CPU policy with reference value
// lookups, EAR assembly and ES256 signing.
func BenchmarkEvaluateSample(b *testing.B) {
	s := benchService(b)
	reqs := []VerificationRequest{sampleRequest(b)}
	ctx := context.Background()
	token, err := s.Evaluate(ctx, reqs, nil)
	if err != nil {
		b.Fatal(err)
	}
	if st := verifyToken(b, token).submod(b, "cpu0")["ear.status"]; st != "affirming" {
		b.Fatalf("status %v", st)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Evaluate(ctx, reqs, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolicyEval is one evaluation of the prepared default CPU policy.
func BenchmarkPolicyEval(b *testing.B) {
	s := benchService(b)
	ctx := context.Background()
	cp, err := s.engine.load(ctx, "default_cpu")
	if err != nil {
		b.Fatal(err)
	}
	rd, _, _ := ExpectedReportData(&RuntimeData{Structured: sampleRequest(b).RuntimeData.Structured}, "")
	ev, _ := json.Marshal(map[string]any{
		"sample":      map[string]any{"svn": "1", "launch_digest": "abcde", "platform_version": map[string]any{"major": 1, "minor": 4}, "debug": false},
		"report_data": rd,
	})
	input, err := ast.ValueFromReader(bytes.NewReader(ev))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := s.engine.evaluate(ctx, cp, input)
		if err != nil {
			b.Fatal(err)
		}
		if res.trust.status() != "affirming" {
			b.Fatal(res.trust.status())
		}
	}
}

// BenchmarkSignToken assembles and signs a typical one-submodule EAR.
func BenchmarkSignToken(b *testing.B) {
	sig, err := newSigner(nil, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	rd, _ := kbsRuntimeData(b, "")
	ev := []byte(`{"report_data":"AAAA","runtime_data_claims":` + string(rd) + `,"sample":{"debug":false,"launch_digest":"abcde","platform_version":{"major":1,"minor":4},"svn":"1"}}`)
	a := &appraisal{policyID: "default", evidence: ev, extensions: []extension{{name: "ear.trustee.identifiers", key: -18, value: map[string]any{"validated": map[string]any{}}}}}
	a.trust.setAll(0)
	a.trust.set(4, 2)
	c := &earClaims{profile: DefaultProfileName, developer: DefaultDeveloperName, build: DefaultBuildName, issuer: DefaultIssuerName,
		iat: testNow.Unix(), exp: testNow.Unix() + 300, submods: map[string]*appraisal{"cpu0": a}, names: []string{"cpu0"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := sig.issue(c); err != nil {
			b.Fatal(err)
		}
	}
}
