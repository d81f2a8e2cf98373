//go:build cgo

package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/verifier"
)

var asNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newAS(t *testing.T) *as.Service {
	t.Helper()
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeTpm, newVerifier(t))
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: func() time.Time { return asNow }})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func registerRV(t *testing.T, svc *as.Service, name string, value any) {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{name: value})
	msg, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload)})
	if err := svc.RVPS().Register(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// cpu0 verifies the EAR token with the key in its header and returns its
// cpu0 submodule.
func cpu0(t *testing.T, token string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(jws.Signatures[0].Protected.JSONWebKey)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Submods map[string]map[string]any `json:"submods"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	sm, ok := claims.Submods["cpu0"]
	if !ok {
		t.Fatalf("no cpu0 in %s", payload)
	}
	return sm
}

// TestAttestationService runs a simulator quote through the Attestation
// Service: the KBS's structured runtime data (SHA-384, truncated to 32
// bytes by the attester) and an init-data TOML (SHA-256, extended into
// PCR 8). With no reference values the default policy gives
// executables 33 (warning); with tpm_pcr11 and trusted_aks registered it
// gives executables 3, hardware 2, configuration 0: affirming.
func TestAttestationService(t *testing.T) {
	s := newSim(t)
	ak := s.ak(false)
	runtime := json.RawMessage(`{"nonce":"bm9uY2U=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}}`)
	rd, _, err := as.ExpectedReportData(&as.RuntimeData{Structured: runtime}, "")
	if err != nil {
		t.Fatal(err)
	}
	initTOML := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = '''\n'''\n"
	initDigest := sha256.Sum256([]byte(initTOML))
	ev := simEvidence(t, s, ak, rd, initDigest[:])
	req := []as.VerificationRequest{{
		Tee:         protocol.TeeTpm,
		Evidence:    ev,
		RuntimeData: &as.RuntimeData{Structured: runtime},
		InitData:    &as.InitData{TOML: initTOML},
	}}
	svc := newAS(t)

	token, err := svc.Evaluate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	sm := cpu0(t, token)
	if sm["ear.status"] != "warning" {
		t.Fatalf("status without reference values: %v (%v)", sm["ear.status"], sm["ear.trustworthiness-vector"])
	}
	ae := sm["ear.veraison.annotated-evidence"].(map[string]any)
	claims := ae["tpm"].(map[string]any)
	if ae["report_data"] != hex.EncodeToString(rd[:32]) || ae["init_data"] != claims["pcr08"] || ae["runtime_data_claims"] == nil || ae["init_data_claims"] == nil {
		t.Fatalf("annotated evidence %v", ae)
	}
	if _, ok := claims["report_data"]; ok {
		t.Error("report_data not lifted out of the tpm claims")
	}

	registerRV(t, svc, "tpm_pcr11", []string{claims["pcr11"].(string)})
	registerRV(t, svc, "trusted_aks", []string{claims["ak_public"].(string)})
	token, err = svc.Evaluate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	sm = cpu0(t, token)
	tv := sm["ear.trustworthiness-vector"].(map[string]any)
	if sm["ear.status"] != "affirming" || tv["executables"] != 3.0 || tv["hardware"] != 2.0 || tv["configuration"] != 0.0 {
		t.Fatalf("with reference values: %v %v", sm["ear.status"], tv)
	}

	// Another AK (not in trusted_aks) with the same PCRs falls back.
	other := s.quote(s.otherAK(), truncated(rd))
	req[0].Evidence = other
	req[0].InitData = nil
	token, err = svc.Evaluate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sm := cpu0(t, token); sm["ear.status"] != "warning" {
		t.Fatalf("untrusted AK: %v", sm["ear.status"])
	}

	// A nonce the evidence is not bound to fails the attestation.
	req[0].RuntimeData = &as.RuntimeData{Raw: []byte("another nonce")}
	if _, err := svc.Evaluate(context.Background(), req, nil); err == nil || !strings.Contains(err.Error(), "report data") {
		t.Fatalf("wrong runtime data: %v", err)
	}
}

func truncated(rd []byte) []byte {
	n := make([]byte, ReportDataSize)
	copy(n, rd)
	return n
}

// TestRESTRejectsTPM: upstream's restful-as accepts a fixed list of TEE
// names without "tpm"; the same evidence is refused over POST /attestation.
func TestRESTRejectsTPM(t *testing.T) {
	s := newSim(t)
	ev := s.quote(s.ak(false), make([]byte, 32))
	body, _ := json.Marshal(map[string]any{
		"verification_requests": []map[string]any{{"tee": "tpm", "evidence": base64.RawURLEncoding.EncodeToString(ev)}},
		"policy_ids":            []string{},
	})
	rec := httptest.NewRecorder()
	newAS(t).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/attestation", bytes.NewReader(body)))
	if rec.Code == http.StatusOK || !strings.Contains(rec.Body.String(), "tpm not supported") {
		t.Fatalf("POST /attestation with tee tpm: %d %s", rec.Code, rec.Body)
	}
}
