package azsnpvtpm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/verifier"
)

func registerRV(t *testing.T, svc *as.Service, name string, value any) {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{name: value})
	msg, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload)})
	if err := svc.RVPS().Register(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// attest posts evidence to POST /attestation with raw runtime data and
// returns the verified token's cpu0 submodule.
func attest(t *testing.T, h http.Handler, evidence, runtimeData []byte) (map[string]any, int) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"verification_requests": []map[string]any{{
			"tee":          "az-snp-vtpm",
			"evidence":     base64.RawURLEncoding.EncodeToString(evidence),
			"runtime_data": map[string]any{"raw": base64.RawURLEncoding.EncodeToString(runtimeData)},
		}},
		"policy_ids": []string{},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/attestation", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return nil, rec.Code
	}
	token, _ := io.ReadAll(rec.Body)
	jws, err := jose.ParseSignedCompact(string(token), []jose.SignatureAlgorithm{jose.ES256})
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
	return claims.Submods["cpu0"], rec.Code
}

// TestAttestationService posts upstream's evidence-v1.json to the
// Attestation Service's REST API. With no reference values the default
// policy finds the hardware unrecognized (97): contraindicated. With the
// reference values its az-snp-vtpm rules read (as strings, as the claims
// are), it gives executables 3, hardware 2, configuration 2: affirming.
func TestAttestationService(t *testing.T) {
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeAzSnpVtpm, newVerifier(t, recorded))
	svc, err := as.New(context.Background(), as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: func() time.Time { return recorded }})
	if err != nil {
		t.Fatal(err)
	}
	h := svc.Handler()
	ev := read(t, "evidence-v1.json")

	sm, code := attest(t, h, ev, challenge)
	if code != http.StatusOK {
		t.Fatalf("POST /attestation: %d", code)
	}
	tv := sm["ear.trustworthiness-vector"].(map[string]any)
	if sm["ear.status"] != "contraindicated" || tv["hardware"] != 97.0 {
		t.Fatalf("without reference values: %v %v", sm["ear.status"], tv)
	}
	ae := sm["ear.veraison.annotated-evidence"].(map[string]any)
	claims := ae["az-snp-vtpm"].(map[string]any)
	if ae["report_data"] != "6368616c6c656e6765" || claims["tpm"].(map[string]any)["pcr00"] != "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced" {
		t.Fatalf("annotated evidence %v", ae)
	}

	for name, claim := range map[string]string{
		"measurement":    "measurement",
		"tcb_bootloader": "reported_tcb_bootloader",
		"tcb_microcode":  "reported_tcb_microcode",
		"tcb_snp":        "reported_tcb_snp",
		"tcb_tee":        "reported_tcb_tee",
		"smt_enabled":    "platform_smt_enabled",
		"tsme_enabled":   "platform_tsme_enabled",
		"abi_major":      "policy_abi_major",
		"abi_minor":      "policy_abi_minor",
		"single_socket":  "policy_single_socket",
		"smt_allowed":    "policy_smt_allowed",
	} {
		registerRV(t, svc, name, []string{claims[claim].(string)})
	}
	registerRV(t, svc, "snp_pcr11", []string{claims["tpm"].(map[string]any)["pcr11"].(string)})

	sm, code = attest(t, h, ev, challenge)
	if code != http.StatusOK {
		t.Fatalf("POST /attestation: %d", code)
	}
	tv = sm["ear.trustworthiness-vector"].(map[string]any)
	if sm["ear.status"] != "affirming" || tv["executables"] != 3.0 || tv["hardware"] != 2.0 || tv["configuration"] != 2.0 {
		t.Fatalf("with reference values: %v %v", sm["ear.status"], tv)
	}

	// Evidence not bound to the runtime data gets no token.
	if _, code := attest(t, h, ev, []byte("other nonce")); code == http.StatusOK {
		t.Fatal("evidence accepted for other runtime data")
	}
}
