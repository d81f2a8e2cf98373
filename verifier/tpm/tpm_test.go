package tpm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

var vectors = testvectors.Path("trustee/verifier")

func newVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := New(Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// quoteJSON is the evidence's tpm_quote as the TPM attester encodes it.
type quoteJSON struct {
	Message   string   `json:"message"`
	Signature string   `json:"signature"`
	PCRs      []string `json:"pcrs"`
}

type evidenceJSON struct {
	AKPublic string    `json:"ak_public"`
	Quote    quoteJSON `json:"tpm_quote"`
}

// makeEvidence encodes a quote (TPMS_ATTEST, TPMT_SIGNATURE, PCR values)
// and an AK as the TPM attester does.
func makeEvidence(t testing.TB, ak crypto.PublicKey, msg, tsig []byte, pcrs [][]byte) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(ak)
	if err != nil {
		t.Fatal(err)
	}
	ev := evidenceJSON{AKPublic: base64.StdEncoding.EncodeToString(der), Quote: quoteJSON{
		Message: base64.StdEncoding.EncodeToString(msg), Signature: base64.StdEncoding.EncodeToString(tsig)}}
	for _, p := range pcrs {
		ev.Quote.PCRs = append(ev.Quote.PCRs, hex.EncodeToString(p))
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	softKeyOnce sync.Once
	softKey     *rsa.PrivateKey
)

// softAK is an RSA key held in software. The verifier cannot tell it from
// a TPM's AK: that is why AK trust belongs to the policy.
func softAK() *rsa.PrivateKey {
	softKeyOnce.Do(func() {
		var err error
		if softKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return softKey
}

func rsassa(sig []byte) []byte {
	return tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})})
}

// softQuote builds a TPM2_Quote over all 24 SHA-256 PCRs, signed by the
// software AK, with magic as the TPM's.
func softQuote(t testing.TB, magic tpm2.TPMGenerated, nonce []byte, pcrs [][]byte) []byte {
	t.Helper()
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(p)
	}
	bm := make([]byte, 3)
	for i := range pcrs {
		bm[i/8] |= 1 << (i % 8)
	}
	msg := tpm2.Marshal(tpm2.TPMSAttest{
		Magic:           magic,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0x0b}},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: bm}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		}),
	})
	d := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, softAK(), crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return makeEvidence(t, &softAK().PublicKey, msg, rsassa(sig), pcrs)
}

func testPCRs(initData []byte) [][]byte {
	pcrs := make([][]byte, 24)
	for i := range pcrs {
		h := sha256.Sum256([]byte{byte(i)})
		pcrs[i] = h[:]
	}
	if initData != nil {
		v, _ := tpmquote.InitDataPCRValue(initData)
		pcrs[8] = v[:]
	}
	return pcrs
}

// TestUpstreamEvidence checks tpm_evidence.json, upstream's fixture, made
// by an older attester that used 64-byte report data.
func TestUpstreamEvidence(t *testing.T) {
	raw, err := os.ReadFile(vectors + "/tpm_evidence.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParseEvidence(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Quote.PCRs) != 24 || len(ev.Quote.Signature) != 256 || ev.AKPublic == "" {
		t.Fatalf("parsed %d PCRs, %d-byte signature", len(ev.Quote.PCRs), len(ev.Quote.Signature))
	}
	// The signature, magic and PCR digest verify: the fixture is a real
	// quote by its AK.
	res, err := newVerifier(t).Evaluate(context.Background(), raw, verifier.Expected{})
	if err != nil {
		t.Fatal(err)
	}
	c := res[0].Claims
	if res[0].Class != verifier.ClassCPU || len(c) != 27 {
		t.Fatalf("class %s, %d claims", res[0].Class, len(c))
	}
	if s := c["report_data"].(string); len(s) != 128 {
		t.Errorf("report_data %q: want 64 bytes of hex", s)
	}
	if c["init_data"] != strings.Repeat("0", 64) || c["pcr08"] != c["init_data"] || c["pcr17"] != strings.Repeat("f", 64) {
		t.Errorf("claims %v", c)
	}
	if c["ak_public"] != ev.AKPublic {
		t.Errorf("ak_public %v", c["ak_public"])
	}
	// Its 64-byte nonce cannot match report data the current attester
	// would send (32 bytes).
	nonce, _ := hex.DecodeString(c["report_data"].(string))
	for _, rd := range [][]byte{nonce, nonce[:32], []byte("x")} {
		if _, err := newVerifier(t).Evaluate(context.Background(), raw, verifier.Expected{ReportData: rd}); !errors.Is(err, verifier.ErrReportDataMismatch) {
			t.Errorf("report data %x: %v", rd, err)
		}
	}
	// PCR 8 is zero: no init-data digest is bound.
	if _, err := newVerifier(t).Evaluate(context.Background(), raw, verifier.Expected{InitDataDigest: make([]byte, 32)}); !errors.Is(err, verifier.ErrInitDataMismatch) {
		t.Errorf("init-data: %v", err)
	}
}

func TestSoftwareQuote(t *testing.T) {
	initData := sha256.Sum256([]byte("init-data"))
	rd := []byte("0123456789abcdef0123456789abcdef0123456789abcdef") // 48 bytes: truncated to 32
	ev := softQuote(t, tpm2.TPMGeneratedValue, rd[:32], testPCRs(initData[:]))
	res, err := newVerifier(t).Evaluate(context.Background(), ev, verifier.Expected{ReportData: rd, InitDataDigest: initData[:]})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tpmquote.InitDataPCRValue(initData[:])
	if res[0].Claims["init_data"] != hex.EncodeToString(want[:]) || res[0].Claims["report_data"] != hex.EncodeToString(rd[:32]) {
		t.Errorf("claims %v", res[0].Claims)
	}
	short := []byte("nonce")
	padded := append([]byte("nonce"), make([]byte, 27)...)
	if _, err := newVerifier(t).Evaluate(context.Background(), softQuote(t, tpm2.TPMGeneratedValue, padded, testPCRs(nil)), verifier.Expected{ReportData: short}); err != nil {
		t.Errorf("short report data, zero-padded by the attester: %v", err)
	}
}

func TestErrors(t *testing.T) {
	initData := sha256.Sum256([]byte("init-data"))
	pcrs := testPCRs(initData[:])
	nonce := make([]byte, 32)
	good := softQuote(t, tpm2.TPMGeneratedValue, nonce, pcrs)
	edit := func(f func(*evidenceJSON)) []byte {
		var e evidenceJSON
		if err := json.Unmarshal(good, &e); err != nil {
			t.Fatal(err)
		}
		f(&e)
		b, _ := json.Marshal(e)
		return b
	}
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherDER, _ := x509.MarshalPKIXPublicKey(&otherKey.PublicKey)
	exp := verifier.Expected{ReportData: nonce, InitDataDigest: initData[:]}
	tests := []struct {
		name     string
		evidence []byte
		exp      verifier.Expected
		want     error
		check    string
	}{
		{"good", good, exp, nil, ""},
		{"no expectations", good, verifier.Expected{}, nil, ""},
		{"nonce mismatch", good, verifier.Expected{ReportData: []byte("other")}, verifier.ErrReportDataMismatch, "report data"},
		{"init-data mismatch", good, verifier.Expected{InitDataDigest: make([]byte, 32)}, verifier.ErrInitDataMismatch, "init-data"},
		{"init-data digest not SHA-256", good, verifier.Expected{InitDataDigest: make([]byte, 48)}, verifier.ErrInitDataMismatch, "init-data"},
		{"PCR value changed", edit(func(e *evidenceJSON) { e.Quote.PCRs[11] = strings.Repeat("ab", 32) }), exp, tpmquote.ErrPCRDigest, "PCRs"},
		{"PCR missing", edit(func(e *evidenceJSON) { e.Quote.PCRs = e.Quote.PCRs[:23] }), exp, tpmquote.ErrPCRDigest, "PCRs"},
		{"PCR short", edit(func(e *evidenceJSON) { e.Quote.PCRs[0] = "00" }), exp, verifier.ErrMalformedEvidence, "PCR 0"},
		{"PCR not hex", edit(func(e *evidenceJSON) { e.Quote.PCRs[0] = strings.Repeat("zz", 32) }), exp, verifier.ErrMalformedEvidence, "PCR 0"},
		{"too many PCRs", edit(func(e *evidenceJSON) { e.Quote.PCRs = append(e.Quote.PCRs, e.Quote.PCRs[0]) }), exp, verifier.ErrMalformedEvidence, "PCR"},
		{"wrong AK", edit(func(e *evidenceJSON) { e.AKPublic = base64.StdEncoding.EncodeToString(otherDER) }), exp, tpmquote.ErrSignature, "signature"},
		{"AK not DER", edit(func(e *evidenceJSON) { e.AKPublic = "AAAA" }), exp, ErrInvalidAK, "AK"},
		{"AK not base64", edit(func(e *evidenceJSON) { e.AKPublic = "*" }), exp, ErrInvalidAK, "AK"},
		{"AK url-safe base64", edit(func(e *evidenceJSON) {
			e.AKPublic = strings.NewReplacer("+", "-", "/", "_").Replace(e.AKPublic)
		}), exp, ErrInvalidAK, "AK"},
		{"message not a quote (bad magic)", softQuote(t, 0x12345678, nonce, pcrs), exp, tpmquote.ErrMalformedQuote, "TPMS_ATTEST magic"},
		{"signature not base64", edit(func(e *evidenceJSON) { e.Quote.Signature = "%%" }), exp, verifier.ErrMalformedEvidence, "signature"},
		{"signature truncated", edit(func(e *evidenceJSON) {
			b, _ := base64.StdEncoding.DecodeString(e.Quote.Signature)
			e.Quote.Signature = base64.StdEncoding.EncodeToString(b[:len(b)-1])
		}), exp, tpmquote.ErrMalformedQuote, "TPMT_SIGNATURE"},
		{"message truncated", edit(func(e *evidenceJSON) {
			b, _ := base64.StdEncoding.DecodeString(e.Quote.Message)
			e.Quote.Message = base64.StdEncoding.EncodeToString(b[:len(b)-1])
		}), exp, tpmquote.ErrSignature, "signature"},
		{"missing ak_public", []byte(`{"tpm_quote":{"message":"","signature":"","pcrs":[]}}`), exp, verifier.ErrMalformedEvidence, "ak_public"},
		{"missing tpm_quote", []byte(`{"ak_public":""}`), exp, verifier.ErrMalformedEvidence, "tpm_quote"},
		{"null pcrs", []byte(`{"ak_public":"","tpm_quote":{"message":"","signature":"","pcrs":null}}`), exp, verifier.ErrMalformedEvidence, "pcrs"},
		{"null PCR", []byte(`{"ak_public":"","tpm_quote":{"message":"","signature":"","pcrs":[null]}}`), exp, verifier.ErrMalformedEvidence, "pcrs"},
		{"numeric message", []byte(`{"ak_public":"","tpm_quote":{"message":1,"signature":"","pcrs":[]}}`), exp, verifier.ErrMalformedEvidence, "message"},
		{"not an object", []byte(`[]`), exp, verifier.ErrMalformedEvidence, "object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t).Evaluate(context.Background(), tc.evidence, tc.exp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.check) {
				t.Errorf("error %q does not name the check %q", err, tc.check)
			}
		})
	}
}

func TestFewerThanNinePCRs(t *testing.T) {
	ev := softQuote(t, tpm2.TPMGeneratedValue, make([]byte, 32), testPCRs(nil)[:8])
	if _, err := newVerifier(t).Evaluate(context.Background(), ev, verifier.Expected{}); !errors.Is(err, verifier.ErrMalformedEvidence) || !strings.Contains(err.Error(), "PCR8") {
		t.Fatalf("Evaluate = %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		m    map[string]any
		want Config
		ok   bool
	}{
		{"absent", map[string]any{}, Config{DefaultTrustedAKKeysDir, DefaultMaxTrustedAKKeys}, true},
		{"null", map[string]any{"tpm_verifier": nil}, Config{DefaultTrustedAKKeysDir, DefaultMaxTrustedAKKeys}, true},
		{"toml", map[string]any{"tpm_verifier": map[string]any{"trusted_ak_keys_dir": "/k", "max_trusted_ak_keys": int64(50)}}, Config{"/k", 50}, true},
		{"json", map[string]any{"tpm_verifier": map[string]any{"max_trusted_ak_keys": float64(7)}}, Config{DefaultTrustedAKKeysDir, 7}, true},
		{"unknown keys ignored", map[string]any{"tpm_verifier": map[string]any{"x": 1}}, Config{DefaultTrustedAKKeysDir, DefaultMaxTrustedAKKeys}, true},
		{"not a table", map[string]any{"tpm_verifier": "x"}, Config{}, false},
		{"dir not a string", map[string]any{"tpm_verifier": map[string]any{"trusted_ak_keys_dir": 1}}, Config{}, false},
		{"negative max", map[string]any{"tpm_verifier": map[string]any{"max_trusted_ak_keys": int64(-1)}}, Config{}, false},
		{"fractional max", map[string]any{"tpm_verifier": map[string]any{"max_trusted_ak_keys": 1.5}}, Config{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.m)
			if tc.ok != (err == nil) || got != tc.want {
				t.Fatalf("ParseConfig = %+v, %v", got, err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
			if err == nil {
				if _, err := New(got, Options{}); err != nil {
					t.Errorf("New: %v", err)
				}
			}
		})
	}
	if _, err := New(Config{MaxTrustedAKKeys: -1}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a negative max: %v", err)
	}
}

func FuzzParseEvidence(f *testing.F) {
	raw, err := os.ReadFile(vectors + "/tpm_evidence.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(softQuote(f, tpm2.TPMGeneratedValue, make([]byte, 32), testPCRs(nil)))
	f.Add([]byte(`{"ak_public":"","tpm_quote":{"message":"","signature":"","pcrs":[]}}`))
	v := newVerifier(f)
	f.Fuzz(func(t *testing.T, ev []byte) {
		nonce := make([]byte, 32)
		res, err := v.Evaluate(context.Background(), ev, verifier.Expected{ReportData: nonce})
		if err != nil {
			for _, class := range []error{verifier.ErrMalformedEvidence, verifier.ErrReportDataMismatch, tpmquote.ErrSignature, tpmquote.ErrPCRDigest, tpmquote.ErrUnsupportedKey} {
				if errors.Is(err, class) {
					return
				}
			}
			t.Fatalf("unexpected error class: %v", err)
		}
		// Accepted evidence is bound to the expected report data.
		if res[0].Claims["report_data"] != hex.EncodeToString(nonce) {
			t.Fatalf("accepted report data %v", res[0].Claims["report_data"])
		}
	})
}
