package ita

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol"
	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

var testKey = protocol.TeePubKey{Kty: protocol.KtyEC, Crv: "P-256", Alg: "ECDH-ES+A256KW", X: "eHh4", Y: "eXl5"}

const testNonce = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// primaryRD is the structured runtime data as kbs/attest.go builds it.
func primaryRD(t testing.TB, nonce string, key protocol.TeePubKey, ae string) *as.RuntimeData {
	t.Helper()
	b, err := json.Marshal(protocol.PrimaryRuntimeData{AdditionalEvidence: ae, Nonce: nonce, TeePubKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return &as.RuntimeData{Structured: b}
}

func deviceRD(t testing.TB, nonce string, key protocol.TeePubKey) *as.RuntimeData {
	t.Helper()
	b, err := json.Marshal(protocol.DeviceRuntimeData{Nonce: nonce, TeePubKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return &as.RuntimeData{Structured: b}
}

func readVector(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(testvectors.Path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tdxEvidence(t testing.TB, quote, eventLog []byte) []byte {
	t.Helper()
	b, err := (&tdxev.Evidence{Quote: quote, EventLog: eventLog}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64s(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// The runtime data JSON upstream's serde_json::Value::to_string() gives
// for the KBS's primary runtime data: sorted members (the tee-pubkey's
// too), compact, serde escaping.
const wantPrimaryRD = `{"additional-evidence":"","nonce":"` + testNonce + `","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eHh4","y":"eXl5"}}`

// TestEncodeTDX: a real TDX quote (upstream's tdx_quote_4.dat) in our tdx
// evidence JSON gives upstream's body byte for byte: the quote string
// verbatim, runtime_data the standard base64 of the runtime data JSON,
// cc_eventlog sent as event_log, members in serde's order.
func TestEncodeTDX(t *testing.T) {
	quote := readVector(t, "trustee/verifier/tdx_quote_4.dat")
	el := []byte("event log bytes")
	ev := tdxEvidence(t, quote, el)
	body, suffix, err := Encode([]as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: ev, RuntimeData: primaryRD(t, testNonce, testKey, "")}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"policy_ids":[],"policy_must_match":false,"tdx":{"quote":"` + b64s(quote) + `","runtime_data":"` + b64s([]byte(wantPrimaryRD)) +
		`","event_log":"` + b64s(el) + `"}}`
	if suffix != "" || string(body) != want {
		t.Fatalf("suffix %q body\n%s\nwant\n%s", suffix, body, want)
	}
	// No event log (null), a user_data passed through, policy ids.
	ev = []byte(`{"cc_eventlog":null,"quote":"` + b64s(quote) + `","user_data":"dXNlcg==","runtime_data":"ignored","event_log":"ignored"}`)
	body, _, err = Encode([]as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: ev, RuntimeData: primaryRD(t, testNonce, testKey, "")}},
		[]string{"a", "b"}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"policy_ids":["a","b"],"policy_must_match":true,"tdx":{"quote":"` + b64s(quote) + `","runtime_data":"` + b64s([]byte(wantPrimaryRD)) +
		`","user_data":"dXNlcg=="}}`
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
}

// TestEncodeRuntimeDataEscaping: additional evidence with characters Go
// escapes and serde does not (<, >, &, U+2028) and control characters
// travels in serde's escaping, i.e. the bytes the guest hashed (JCS).
func TestEncodeRuntimeDataEscaping(t *testing.T) {
	ae := "{\"nvidia\":\"<&>\u2028\x01\n\t\\\"é\"}"
	r, _, err := BuildRequest([]as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: []byte(`{"quote":"AA=="}`), RuntimeData: primaryRD(t, testNonce, testKey, ae)}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := base64.StdEncoding.DecodeString(r.TDX.RuntimeData)
	want := `{"additional-evidence":"{\"nvidia\":\"<&>` + "\u2028" + `\u0001\n\t\\\"é\"}","nonce":"` + testNonce + `","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eHh4","y":"eXl5"}}`
	if string(rd) != want {
		t.Fatalf("runtime data\n%s\nwant\n%s", rd, want)
	}
	// The digest a guest binds (JCS) is the digest of what is sent.
	h, err := protocol.ReportData(protocol.SHA512, testNonce, testKey, ae)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha512.Sum512(rd); !bytes.Equal(h, sum[:]) {
		t.Fatal("runtime_data is not the document the guest's report data hashes")
	}
}

func TestWriteStringIsSerde(t *testing.T) {
	for in, want := range map[string]string{
		"plain":             `"plain"`,
		"q\"b\\s/":          `"q\"b\\s/"`,
		"\b\f\n\r\t":        `"\b\f\n\r\t"`,
		"\x00\x1f\x7f":      `"\u0000\u001f` + "\x7f" + `"`,
		"<>&\u2028\u2029é😀": `"<>&` + "\u2028\u2029é😀" + `"`,
	} {
		var b bytes.Buffer
		writeString(&b, in)
		if b.String() != want {
			t.Errorf("writeString(%q) = %s, want %s", in, b.String(), want)
		}
		var back string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || back != in {
			t.Errorf("round trip of %q: %q %v", in, back, err)
		}
	}
}

// TestEncodeAzure: upstream's az-tdx-vtpm vector (v1, "version": 1) and
// its v0 form (byte arrays), and the string version "1" upstream's serde
// enum matches, all give the /azure request: quote = td_quote,
// runtime_data = the HCL report's variable data, user_data = the runtime
// data JSON, no event_log.
func TestEncodeAzure(t *testing.T) {
	v1 := readVector(t, "trustee/verifier/az-tdx-vtpm/evidence-v1.json")
	v0 := readVector(t, "trustee/verifier/az-tdx-vtpm/evidence-v0.json")
	str1 := bytes.Replace(v1, []byte(`"version": 1`), []byte(`"version": "1"`), 1)
	v2 := bytes.Replace(v1, []byte(`"version": 1`), []byte(`"version": 2`), 1)
	if bytes.Equal(str1, v1) || bytes.Equal(v2, v1) {
		t.Fatal("vector layout changed")
	}
	tdq := readVector(t, "trustee/verifier/az-tdx-vtpm/td-quote.bin")
	rep, err := tpmquote.ParseHCLReport(readVector(t, "trustee/verifier/az-tdx-vtpm/hcl-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"policy_ids":[],"policy_must_match":false,"tdx":{"quote":"` + b64s(tdq) + `","runtime_data":"` + b64s(rep.VarData) +
		`","user_data":"` + b64s([]byte(wantPrimaryRD)) + `"}}`
	for name, ev := range map[string][]byte{"v1": v1, "v0": v0, `version "1"`: str1, "v2": v2} {
		body, suffix, err := Encode([]as.VerificationRequest{{Tee: protocol.TeeAzTdxVtpm, Evidence: ev, RuntimeData: primaryRD(t, testNonce, testKey, "")}}, nil, false, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if suffix != "/azure" || string(body) != want {
			t.Fatalf("%s: suffix %q body\n%.300s\nwant\n%.300s", name, suffix, body, want)
		}
	}
	v3 := bytes.Replace(v1, []byte(`"version": 1`), []byte(`"version": 3`), 1)
	_, _, err = Encode([]as.VerificationRequest{{Tee: protocol.TeeAzTdxVtpm, Evidence: v3, RuntimeData: primaryRD(t, testNonce, testKey, "")}}, nil, false, nil)
	if !errors.Is(err, ErrInvalidEvidence) || !strings.HasPrefix(err.Error(), "Failed to deserialize TEE: AzTdxVtpm Evidence: data did not match any variant of untagged enum AzItaTeeEvidence") {
		t.Fatalf("version 3: %v", err)
	}
}

// TestEncodeSGX: upstream's SGX quote vector in upstream's sgx evidence
// ({"quote"}) goes in "sgx".
func TestEncodeSGX(t *testing.T) {
	quote := readVector(t, "trustee/verifier/occlum_quote.dat")
	ev, _ := json.Marshal(map[string]string{"quote": b64s(quote)})
	body, suffix, err := Encode([]as.VerificationRequest{{Tee: protocol.TeeSgx, Evidence: ev, RuntimeData: primaryRD(t, testNonce, testKey, "")}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"policy_ids":[],"policy_must_match":false,"sgx":{"quote":"` + b64s(quote) + `","runtime_data":"` + b64s([]byte(wantPrimaryRD)) + `"}}`
	if suffix != "" || string(body) != want {
		t.Fatalf("body %s", body)
	}
}

func nvidiaEvidence(archs ...string) []byte {
	var list []map[string]string
	for i, a := range archs {
		list = append(list, map[string]string{"evidence": b64s([]byte("evidence " + a)), "certificate": b64s([]byte("cert " + a)), "arch": a, "gpu_nonce": "ignored", "i": string(rune('0' + i))})
	}
	if list == nil {
		list = []map[string]string{}
	}
	b, _ := json.Marshal(map[string]any{"device_evidence_list": list})
	return b
}

// TestEncodeNvidia: device evidence becomes "nvgpu" with upstream's
// gpu_nonce (hex of SHA-512(device runtime data JSON)[:32]), only HOPPER
// and BLACKWELL devices, the first one's arch; evidence with no such
// device is dropped.
func TestEncodeNvidia(t *testing.T) {
	quote := readVector(t, "trustee/verifier/tdx_quote_4.dat")
	tdxReq := as.VerificationRequest{Tee: protocol.TeeTdx, Evidence: tdxEvidence(t, quote, nil), RuntimeData: primaryRD(t, testNonce, testKey, "x")}
	dev := deviceRD(t, testNonce, testKey)
	rdJSON := `{"nonce":"` + testNonce + `","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eHh4","y":"eXl5"}}`
	sum := sha512.Sum512([]byte(rdJSON))
	nonce := hex.EncodeToString(sum[:32])
	r, _, err := BuildRequest([]as.VerificationRequest{tdxReq, {Tee: protocol.TeeNvidia, Evidence: nvidiaEvidence("LS10", "BLACKWELL", "HOPPER"), RuntimeData: dev}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := string(r.Marshal())
	wantGPU := `,"nvgpu":{"gpu_nonce":"` + nonce + `","arch":"BLACKWELL","evidence_list":[{"evidence":"` + b64s([]byte("evidence BLACKWELL")) +
		`","certificate":"` + b64s([]byte("cert BLACKWELL")) + `"},{"evidence":"` + b64s([]byte("evidence HOPPER")) + `","certificate":"` + b64s([]byte("cert HOPPER")) + `"}]}}`
	if !strings.HasSuffix(body, wantGPU) || r.TDX == nil {
		t.Fatalf("body %s\nwant suffix %s", body, wantGPU)
	}
	for _, archs := range [][]string{{}, {"LS10"}} {
		r, _, err := BuildRequest([]as.VerificationRequest{tdxReq, {Tee: protocol.TeeNvidia, Evidence: nvidiaEvidence(archs...), RuntimeData: dev}}, nil, false, nil)
		if err != nil || r.NvGPU != nil {
			t.Fatalf("%v: %v %+v", archs, err, r.NvGPU)
		}
	}
	_, _, err = BuildRequest([]as.VerificationRequest{tdxReq, {Tee: protocol.TeeNvidia, Evidence: []byte(`{"device_evidence_list":[{"evidence":"e","arch":"HOPPER"}]}`), RuntimeData: dev}}, nil, false, nil)
	if err == nil || err.Error() != "Failed to deserialize TEE: Nvidia Evidence: device_evidence_list[0]: missing field `certificate`" {
		t.Fatalf("missing certificate: %v", err)
	}
}

// TestEncodeRefusals: upstream's texts for unsupported TEEs and
// undecodable evidence; nothing is sent.
func TestEncodeRefusals(t *testing.T) {
	rd := primaryRD(t, testNonce, testKey, "")
	for _, tc := range []struct {
		tee  protocol.Tee
		ev   string
		rd   *as.RuntimeData
		want string
		is   error
	}{
		{protocol.TeeSnp, `{}`, rd, "Intel Trust Authority: TEE Snp is not supported.", ErrUnsupportedTee},
		{protocol.TeeAzSnpVtpm, `{}`, rd, "Intel Trust Authority: TEE AzSnpVtpm is not supported.", ErrUnsupportedTee},
		{protocol.TeeSample, `{}`, rd, "Intel Trust Authority: TEE Sample is not supported.", ErrUnsupportedTee},
		{protocol.TeeSe, `{}`, rd, "Intel Trust Authority: TEE Se is not supported.", ErrUnsupportedTee},
		{protocol.TeeCca, `{}`, rd, "Intel Trust Authority: TEE Cca is not supported.", ErrUnsupportedTee},
		{protocol.TeeNvidiaDPU, `{}`, rd, "Intel Trust Authority: TEE NvidiaDpu is not supported.", ErrUnsupportedTee},
		{protocol.TeeTdx, `{"cc_eventlog":null}`, rd, "Failed to deserialize TEE: Tdx Evidence: missing field `quote`", ErrInvalidEvidence},
		{protocol.TeeTdx, `{"quote":null}`, rd, "Failed to deserialize TEE: Tdx Evidence: invalid type for field `quote`: expected a string", ErrInvalidEvidence},
		{protocol.TeeSgx, `{"quote":"AA==","user_data":1}`, rd, "Failed to deserialize TEE: Sgx Evidence: invalid type for field `user_data`: expected a string or null", ErrInvalidEvidence},
		{protocol.TeeTdx, `["quote"]`, rd, "Failed to deserialize TEE: Tdx Evidence: invalid type: expected a JSON object", ErrInvalidEvidence},
		{protocol.TeeTdx, `{"quote":"AA=="}`, &as.RuntimeData{Raw: []byte("x")}, "TEE Tdx: raw runtime data is not supported (ITA is sent the structured runtime data JSON)", ErrInvalidEvidence},
		{protocol.TeeTdx, `{"quote":"AA=="}`, nil, "TEE Tdx: runtime data is required", ErrInvalidEvidence},
	} {
		_, _, err := Encode([]as.VerificationRequest{{Tee: tc.tee, Evidence: []byte(tc.ev), RuntimeData: tc.rd}}, nil, false, nil)
		if err == nil || err.Error() != tc.want || !errors.Is(err, tc.is) {
			t.Errorf("%s %s: %v, want %q", tc.tee, tc.ev, err, tc.want)
		}
	}
	// An unsupported device refuses the whole request, as upstream.
	_, _, err := Encode([]as.VerificationRequest{{Tee: protocol.TeeTdx, Evidence: []byte(`{"quote":"AA=="}`), RuntimeData: rd},
		{Tee: protocol.TeeSampleDevice, Evidence: []byte(`{}`), RuntimeData: rd}}, nil, false, nil)
	if err == nil || err.Error() != "Intel Trust Authority: TEE SampleDevice is not supported." {
		t.Fatalf("sample device: %v", err)
	}
	if _, _, err := Encode(nil, nil, false, nil); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("no evidence: %v", err)
	}
}
