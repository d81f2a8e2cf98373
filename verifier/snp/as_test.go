package snp_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/go-jose/go-jose/v4"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/snp"
	"github.com/go-trustee/go-trustee/verifier/snp/fakekds"
)

var asNow = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// TestAttestationService posts the recorded Genoa evidence (its VCEK from
// the fake KDS) to the Attestation Service's REST API and checks the EAR:
// the snp claims are in the annotated evidence, and registering the
// reference values the default policy reads turns the status from
// contraindicated into affirming.
func TestAttestationService(t *testing.T) {
	ctx := context.Background()
	kds := fakekds.New()
	sv, err := snp.New(snp.Config{}, snp.Options{Getter: kds, Now: func() time.Time { return asNow }})
	if err != nil {
		t.Fatal(err)
	}
	reg := &verifier.Registry{}
	reg.Register(protocol.TeeSnp, sv)
	svc, err := as.New(ctx, as.Config{}, as.Options{Store: memory.New(), Verifiers: reg, Now: func() time.Time { return asNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	ev, err := snpev.ParseEvidence(fakekds.GenoaEvidence())
	if err != nil {
		t.Fatal(err)
	}
	reportData := ev.Report.ReportData[:]
	ev.CertChain = nil // the VCEK comes from the (fake) KDS
	evidence, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	body := func(rd []byte) string {
		return `{"verification_requests":[{"tee":"snp","evidence":"` + base64.RawURLEncoding.EncodeToString(evidence) +
			`","runtime_data":{"raw":"` + base64.RawURLEncoding.EncodeToString(rd) + `"}}],"policy_ids":[]}`
	}

	status, token := post(t, srv, body(reportData))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, token)
	}
	cpu0 := submod(t, svc, token)
	if got := cpu0["ear.status"]; got != "contraindicated" {
		t.Errorf("ear.status %v without reference values, want contraindicated", got)
	}
	ae, _ := cpu0["ear.veraison.annotated-evidence"].(map[string]any)
	if ae["report_data"] != hex.EncodeToString(reportData) {
		t.Errorf("annotated report_data %v", ae["report_data"])
	}
	if ae["init_data"] != strings.Repeat("0", 64) {
		t.Errorf("annotated init_data %v", ae["init_data"])
	}
	claims, _ := ae["snp"].(map[string]any)
	want := map[string]any{
		"measurement":             "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
		"reported_tcb_bootloader": json.Number("10"),
		"reported_tcb_microcode":  json.Number("25"),
		"policy_debug_allowed":    false,
		"platform_smt_enabled":    true,
		"chip_id":                 hex.EncodeToString(ev.Report.ChipID[:]),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("snp.%s = %#v, want %#v", k, claims[k], v)
		}
	}
	if _, ok := claims["report_data"]; ok {
		t.Error("report_data was not lifted out of the snp claims")
	}

	// A wrong nonce fails the attestation.
	if status, msg := post(t, srv, body([]byte("other nonce"))); status != http.StatusInternalServerError || !strings.Contains(msg, "REPORT_DATA") {
		t.Errorf("wrong report data: %d %s", status, msg)
	}

	rvs := map[string]any{
		"snp_launch_measurement": []string{want["measurement"].(string)},
		"snp_bootloader":         []int{10},
		"snp_microcode":          []int{25},
		"snp_snp_svn":            []int{23},
		"snp_tee_svn":            []int{0},
		"snp_smt_enabled":        true,
		"snp_tsme_enabled":       false,
		"snp_guest_abi_major":    0,
		"snp_guest_abi_minor":    0,
		"snp_single_socket":      false,
		"snp_smt_allowed":        true,
	}
	payload, _ := json.Marshal(rvs)
	msg, _ := json.Marshal(map[string]string{"version": rvps.MessageVersion, "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload)})
	if err := svc.RVPS().Register(ctx, msg); err != nil {
		t.Fatal(err)
	}
	status, token = post(t, srv, body(reportData))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, token)
	}
	cpu0 = submod(t, svc, token)
	if got := cpu0["ear.status"]; got != "affirming" {
		t.Errorf("ear.status %v with reference values, want affirming (vector %v)", got, cpu0["ear.trustworthiness-vector"])
	}
	tv, _ := cpu0["ear.trustworthiness-vector"].(map[string]any)
	for k, v := range map[string]string{"executables": "3", "hardware": "2", "configuration": "2"} {
		if tv[k] != json.Number(v) {
			t.Errorf("%s = %v, want %s", k, tv[k], v)
		}
	}
	if n := kds.Requests(); n != 1 {
		t.Errorf("%d KDS requests for three attestations, want 1", n)
	}
}

func post(t *testing.T, srv *httptest.Server, body string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+"/attestation", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// submod verifies the token with the service's JWKS and returns cpu0.
func submod(t *testing.T, svc *as.Service, token string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(svc.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v", err)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(set.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		t.Fatal(err)
	}
	subs, _ := claims["submods"].(map[string]any)
	cpu0, ok := subs["cpu0"].(map[string]any)
	if !ok {
		t.Fatalf("no cpu0 submod in %v", claims)
	}
	return cpu0
}
