package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier/tdx"
	"github.com/go-trustee/go-trustee/verifier/tdx/fakepcs"
)

var verifierData = testvectors.Path("trustee/verifier")

// TestRestfulASRealEvidence drives the restful-as binary with recorded
// hardware evidence: an SNP report (Genoa, VCEK in the evidence's
// cert_chain) and a TDX v4 quote verified offline against recorded Intel
// collateral (upstream's file:// collateral service). Each must give a
// token carrying its TEE's claims; a byte flipped in the signed region
// must give none.
func TestRestfulASRealEvidence(t *testing.T) {
	dir := t.TempDir()
	collateral := filepath.Join(dir, "collateral.json")
	if err := fakepcs.WriteCollateralFile(collateral); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "as.json")
	os.WriteFile(cfg, []byte(`{"storage_backend":{"storage_type":"Memory"},"rvps_config":{"type":"BuiltIn"},
"verifier_config":{"snp_verifier":{"vcek_sources":[]},"dcap_verifier":{"collateral_service":"file://`+collateral+`"}}}`), 0o600)
	_, addr := startProc(t, dir, bin.restfulAS, "--socket", "127.0.0.1:0", "-c", cfg)
	attest := func(tee string, evidence, rd []byte) (int, []byte) {
		body, _ := json.Marshal(map[string]any{
			"verification_requests": []map[string]any{{
				"tee": tee, "evidence": base64.RawURLEncoding.EncodeToString(evidence),
				"runtime_data": map[string]string{"raw": base64.RawURLEncoding.EncodeToString(rd)},
			}},
			"policy_ids": []string{"default"},
		})
		resp, err := http.Post("http://"+addr+"/attestation", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp.Body)
	}
	claimsOf := func(tok []byte) map[string]any {
		parts := strings.Split(string(tok), ".")
		if len(parts) != 3 {
			t.Fatalf("not a JWT: %.200s", tok)
		}
		p, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c struct {
			Submods map[string]map[string]any `json:"submods"`
		}
		json.Unmarshal(p, &c)
		ae, _ := c.Submods["cpu0"]["ear.veraison.annotated-evidence"].(map[string]any)
		return ae
	}

	t.Run("snp", func(t *testing.T) {
		ev := readFile(t, "../verifier/snp/fakekds/testdata/genoa-evidence.json")
		parsed, err := snpev.ParseEvidence(ev)
		if err != nil {
			t.Fatal(err)
		}
		rd := parsed.Report.ReportData[:]
		code, tok := attest("snp", ev, rd)
		if code != 200 {
			t.Fatalf("snp: %d %s", code, tok)
		}
		ae := claimsOf(tok)
		s, _ := ae["snp"].(map[string]any)
		if s == nil || s["measurement"] == nil || s["reported_tcb_snp"] == nil {
			t.Fatalf("snp claims missing: %v", ae)
		}
		// Flip one byte of the signed report (its measurement).
		var doc map[string]any
		json.Unmarshal(ev, &doc)
		m := doc["attestation_report"].(map[string]any)["measurement"].([]any)
		m[0] = float64((int(m[0].(float64)) + 1) % 256)
		bad, _ := json.Marshal(doc)
		if code, b := attest("snp", bad, rd); code == 200 {
			t.Fatalf("tampered snp report accepted: %s", b)
		}
	})

	t.Run("tdx", func(t *testing.T) {
		quote := readFile(t, filepath.Join(verifierData, "tdx_quote_4.dat"))
		q, err := tdx.ParseQuote(quote)
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := json.Marshal(map[string]any{"cc_eventlog": nil, "quote": base64.StdEncoding.EncodeToString(quote)})
		code, tok := attest("tdx", ev, q.Body.ReportData[:])
		if code != 200 {
			t.Fatalf("tdx: %d %s", code, tok)
		}
		ae := claimsOf(tok)
		x, _ := ae["tdx"].(map[string]any)
		if x == nil || x["tcb_status"] == nil || x["quote"] == nil {
			t.Fatalf("tdx claims missing: %v", ae)
		}
		bad := append([]byte{}, quote...)
		bad[200] ^= 1 // inside the TD report body (signed)
		ev, _ = json.Marshal(map[string]any{"cc_eventlog": nil, "quote": base64.StdEncoding.EncodeToString(bad)})
		if code, b := attest("tdx", ev, q.Body.ReportData[:]); code == 200 {
			t.Fatalf("tampered tdx quote accepted: %s", b)
		}
	})
}
