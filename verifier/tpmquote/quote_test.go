package tpmquote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier"
)

var testdata = testvectors.Path("trustee/verifier")

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// azureQuote is an upstream vector: a vTPM quote over nonce "challenge"
// and the HCL report that carries its AK.
type azureQuote struct {
	name  string
	dir   string
	quote Quote
	hcl   []byte
	// reportDataOffset locates report_data in the hardware report.
	reportDataOffset int
}

func hexQuoteFile(t testing.TB, rel string) Quote {
	f, err := ParseObject(readFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	q, err := HexQuote(f)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// bincodeQuote decodes quote.bin, the az-cvm-vtpm Quote as bincode wrote
// it: each of signature, message, pcrs as a u64 little-endian length and
// the elements (PCRs of 32 bytes).
func bincodeQuote(t testing.TB, b []byte) Quote {
	t.Helper()
	next := func(n int) []byte {
		if len(b) < n {
			t.Fatal("quote.bin truncated")
		}
		out := b[:n]
		b = b[n:]
		return out
	}
	length := func() int { return int(binary.LittleEndian.Uint64(next(8))) }
	var q Quote
	q.Signature = next(length())
	q.Message = next(length())
	for range length() {
		q.PCRs = append(q.PCRs, next(32))
	}
	if len(b) != 0 {
		t.Fatalf("quote.bin: %d trailing bytes", len(b))
	}
	return q
}

func azureQuotes(t testing.TB) []azureQuote {
	return []azureQuote{
		{name: "snp tpm-quote-v1.json", dir: "az-snp-vtpm", quote: hexQuoteFile(t, "az-snp-vtpm/tpm-quote-v1.json"), hcl: readFile(t, "az-snp-vtpm/hcl-report.bin"), reportDataOffset: 0x50},
		{name: "tdx tpm-quote-v1.json", dir: "az-tdx-vtpm", quote: hexQuoteFile(t, "az-tdx-vtpm/tpm-quote-v1.json"), hcl: readFile(t, "az-tdx-vtpm/hcl-report.bin"), reportDataOffset: 128},
	}
}

func TestAzureVectors(t *testing.T) {
	for _, v := range azureQuotes(t) {
		t.Run(v.name, func(t *testing.T) {
			r, err := ParseHCLReport(v.hcl)
			if err != nil {
				t.Fatal(err)
			}
			ak, err := r.AKPub()
			if err != nil {
				t.Fatal(err)
			}
			if ak.N.BitLen() != 2048 || ak.E != 65537 {
				t.Errorf("AK: %d-bit modulus, exponent %d", ak.N.BitLen(), ak.E)
			}
			if err := VerifySignature(ak, v.quote.Message, v.quote.Signature); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			a, err := ParseAttest(v.quote.Message)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.CheckNonce([]byte("challenge")); err != nil {
				t.Error(err)
			}
			if err := a.CheckNonce([]byte("egnellahc")); !errors.Is(err, verifier.ErrReportDataMismatch) {
				t.Errorf("reversed nonce: %v", err)
			}
			if err := a.CheckNonce([]byte("challenge\x00")); !errors.Is(err, verifier.ErrReportDataMismatch) {
				t.Errorf("padded nonce: %v", err)
			}
			if len(v.quote.PCRs) != 24 {
				t.Fatalf("%d PCRs", len(v.quote.PCRs))
			}
			if err := a.CheckPCRs(v.quote.PCRs); err != nil {
				t.Error(err)
			}
			if err := r.CheckVarDataBinding(r.HWReport[v.reportDataOffset:]); err != nil {
				t.Error(err)
			}
			ud, err := r.UserData()
			if err != nil || len(ud) != 64 {
				t.Errorf("user-data %x, %v", ud, err)
			}
		})
	}
}

// TestAzureComponentVectors checks quote.bin (the bincode Quote) against
// the AK of the SNP HCL report, and tpm-quote.msg/.sig, a quote made by
// the AK of an older HCL report that upstream no longer ships: it parses,
// but the current AK must reject it.
func TestAzureComponentVectors(t *testing.T) {
	r, err := ParseHCLReport(readFile(t, "az-snp-vtpm/hcl-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := r.AKPub()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("quote.bin", func(t *testing.T) {
		q := bincodeQuote(t, readFile(t, "az-snp-vtpm/quote.bin"))
		if err := VerifySignature(ak, q.Message, q.Signature); err != nil {
			t.Fatal(err)
		}
		a, err := ParseAttest(q.Message)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.CheckNonce([]byte("challenge")); err != nil {
			t.Error(err)
		}
		if err := a.CheckPCRs(q.PCRs); err != nil {
			t.Error(err)
		}
	})
	t.Run("tpm-quote.msg/.sig (other AK)", func(t *testing.T) {
		msg, sig := readFile(t, "az-snp-vtpm/tpm-quote.msg"), readFile(t, "az-snp-vtpm/tpm-quote.sig")
		a, err := ParseAttest(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.CheckNonce([]byte("challenge")); err != nil {
			t.Error(err)
		}
		// It quotes PCRs 0-7 and 14 of the SHA-256 bank.
		if len(a.Selections) != 1 || len(a.Selections[0].PCRs) != 9 || a.Selections[0].PCRs[8] != 14 {
			t.Errorf("selection %+v", a.Selections)
		}
		if err := a.CheckPCRs(pcrValues(9)); !errors.Is(err, ErrPCRDigest) {
			t.Errorf("CheckPCRs over a selection with a gap: %v", err)
		}
		if err := VerifySignature(ak, msg, sig); !errors.Is(err, ErrSignature) {
			t.Errorf("VerifySignature with the wrong AK: %v", err)
		}
	})
}

// TestEveryByteFlipFails flips each bit position's byte of the upstream
// quote message and signature; every variant must be rejected.
func TestEveryByteFlipFails(t *testing.T) {
	for _, v := range azureQuotes(t) {
		t.Run(v.name, func(t *testing.T) {
			r, err := ParseHCLReport(v.hcl)
			if err != nil {
				t.Fatal(err)
			}
			ak, err := r.AKPub()
			if err != nil {
				t.Fatal(err)
			}
			for i := range v.quote.Message {
				msg := append([]byte(nil), v.quote.Message...)
				msg[i] ^= 0x01
				if err := VerifySignature(ak, msg, v.quote.Signature); !errors.Is(err, ErrSignature) {
					t.Fatalf("message byte %d flipped: %v", i, err)
				}
			}
			for i := range v.quote.Signature {
				sig := append([]byte(nil), v.quote.Signature...)
				sig[i] ^= 0x80
				if err := VerifySignature(ak, v.quote.Message, sig); !errors.Is(err, ErrSignature) {
					t.Fatalf("signature byte %d flipped: %v", i, err)
				}
			}
			for _, n := range []int{0, 1, len(v.quote.Signature) - 1} {
				if err := VerifySignature(ak, v.quote.Message, v.quote.Signature[:n]); !errors.Is(err, ErrSignature) {
					t.Fatalf("signature truncated to %d: %v", n, err)
				}
			}
		})
	}
}

func TestWrongAK(t *testing.T) {
	snp, tdx := azureQuotes(t)[0], azureQuotes(t)[1]
	r, err := ParseHCLReport(tdx.hcl)
	if err != nil {
		t.Fatal(err)
	}
	tdxAK, err := r.AKPub()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(tdxAK, snp.quote.Message, snp.quote.Signature); !errors.Is(err, ErrSignature) {
		t.Fatalf("SNP quote with the TDX AK: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := VerifySignature(&ec.PublicKey, snp.quote.Message, snp.quote.Signature); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("EC key: %v", err)
	}
}

// TestHCLTampering mirrors upstream's component tests.
func TestHCLTampering(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		offset int
		mutate func(byte) byte
		rdOff  int
		check  string
		want   error
	}{
		{"snp report_data changed", "az-snp-vtpm/hcl-report.bin", 0x06e0, func(b byte) byte { return b + 1 }, 0x50, "binding", ErrVarDataBinding},
		{"snp var data changed", "az-snp-vtpm/hcl-report.bin", 0x04d4 + 100, func(b byte) byte { return b ^ 1 }, 0x50, "binding", ErrVarDataBinding},
		{"snp AKpub corrupted", "az-snp-vtpm/hcl-report.bin", 0x0540, func(byte) byte { return 0 }, 0x50, "akpub", ErrMalformedHCLReport},
		{"tdx var data changed", "az-tdx-vtpm/hcl-report.bin", 0x0880, func(b byte) byte { return b + 1 }, 128, "binding", ErrVarDataBinding},
		{"snp hash type", "az-snp-vtpm/hcl-report.bin", 0x4cc, func(byte) byte { return 2 }, 0x50, "binding", ErrMalformedHCLReport},
		{"snp type unknown", "az-snp-vtpm/hcl-report.bin", 0x4c8, func(byte) byte { return 3 }, 0x50, "parse", ErrMalformedHCLReport},
		{"var data size beyond end", "az-snp-vtpm/hcl-report.bin", 0x4d1, func(byte) byte { return 0xff }, 0x50, "parse", ErrMalformedHCLReport},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := readFile(t, tc.file)
			b[tc.offset] = tc.mutate(b[tc.offset])
			r, err := ParseHCLReport(b)
			if tc.check == "parse" {
				if !errors.Is(err, tc.want) {
					t.Fatalf("ParseHCLReport = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tc.check {
			case "binding":
				err = r.CheckVarDataBinding(r.HWReport[tc.rdOff:])
			case "akpub":
				_, err = r.AKPub()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseHCLReportTruncated(t *testing.T) {
	b := readFile(t, "az-snp-vtpm/hcl-report.bin")
	for _, n := range []int{0, 31, hclFixedSize - 1, hclFixedSize, hclFixedSize + 1109} {
		if _, err := ParseHCLReport(b[:n]); !errors.Is(err, ErrMalformedHCLReport) || !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := ParseHCLReport(b[:hclFixedSize+1110]); err != nil {
		t.Errorf("exactly the variable data: %v", err)
	}
}

func TestUserData(t *testing.T) {
	tests := []struct {
		name    string
		varData string
		rd      []byte
		want    error
	}{
		{"prefix", `{"user-data":"00112233"}`, []byte{0, 0x11}, nil},
		{"exact", `{"user-data":"0011"}`, []byte{0, 0x11}, nil},
		{"empty report data", `{"user-data":""}`, []byte{}, nil},
		{"mismatch", `{"user-data":"00112233"}`, []byte{0x12, 0x3a, 0xbc}, verifier.ErrReportDataMismatch},
		{"shorter than report data", `{"user-data":"00"}`, []byte{0, 0}, verifier.ErrReportDataMismatch},
		{"missing", `{"keys":[]}`, []byte{0}, ErrMalformedHCLReport},
		{"not hex", `{"user-data":"0g"}`, []byte{0}, ErrMalformedHCLReport},
		{"case-sensitive name", `{"User-Data":"00"}`, []byte{0}, ErrMalformedHCLReport},
		{"not JSON", `{`, []byte{0}, ErrMalformedHCLReport},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &HCLReport{VarData: []byte(tc.varData)}
			if err := r.CheckUserData(tc.rd); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAKPubErrors(t *testing.T) {
	tests := []struct {
		name    string
		varData string
		want    error
	}{
		{"no keys", `{}`, ErrMalformedHCLReport},
		{"keys not an array", `{"keys":{}}`, ErrMalformedHCLReport},
		{"no AK", `{"keys":[{"kid":"HCLEkPub","kty":"RSA","n":"AQAB","e":"AQAB"}]}`, ErrMalformedHCLReport},
		{"EC AK", `{"keys":[{"kid":"HCLAkPub","kty":"EC","crv":"P-256"}]}`, ErrUnsupportedKey},
		{"bad modulus", `{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"*","e":"AQAB"}]}`, ErrMalformedHCLReport},
		{"huge exponent", `{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQABAQAB"}]}`, ErrMalformedHCLReport},
		{"key not an object", `{"keys":[1]}`, ErrMalformedHCLReport},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &HCLReport{VarData: []byte(tc.varData)}
			if _, err := r.AKPub(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// Synthetic quotes signed by a software RSA key, for the cases no real TPM
// produces.

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

func key(t testing.TB) *rsa.PrivateKey {
	testKeyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey
}

func pcrValues(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		h := sha256.Sum256([]byte{byte(i)})
		out[i] = h[:]
	}
	return out
}

func digestOf(pcrs [][]byte) []byte {
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(p)
	}
	return h.Sum(nil)
}

func attest(nonce []byte, sels []tpm2.TPMSPCRSelection, digest []byte) tpm2.TPMSAttest {
	return tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0x0b, 1, 2, 3}},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: 1, ResetCount: 2, RestartCount: 3, Safe: true},
		FirmwareVersion: 42,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: sels},
			PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
		}),
	}
}

func sha256Bank(pcrs ...int) tpm2.TPMSPCRSelection {
	bm := make([]byte, 3)
	for _, p := range pcrs {
		bm[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMSPCRSelection{Hash: tpm2.TPMAlgSHA256, PCRSelect: bm}
}

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestSyntheticQuote(t *testing.T) {
	pcrs := pcrValues(24)
	good := attest([]byte("nonce"), []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...)}, digestOf(pcrs))
	msg := tpm2.Marshal(good)
	digest := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key(t), crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(&key(t).PublicKey, msg, sig); err != nil {
		t.Fatal(err)
	}
	a, err := ParseAttest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.ExtraData) != "nonce" || a.FirmwareVersion != 42 || a.Clock != 1 || !a.Safe || len(a.Selections) != 1 || len(a.Selections[0].PCRs) != 24 {
		t.Fatalf("parsed %+v", a)
	}
	if err := a.CheckPCRs(pcrs); err != nil {
		t.Fatal(err)
	}
	// A TPMT_SIGNATURE round trip.
	tsig := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})})
	raw, err := ParseSignature(tsig)
	if err != nil || string(raw) != string(sig) {
		t.Fatalf("ParseSignature = %x, %v", raw, err)
	}
}

func TestCheckPCRs(t *testing.T) {
	pcrs := pcrValues(24)
	tests := []struct {
		name string
		sels []tpm2.TPMSPCRSelection
		dig  []byte
		pcrs [][]byte
		want error
	}{
		{"fewer PCRs selected consistently", []tpm2.TPMSPCRSelection{sha256Bank(upTo(9)...)}, digestOf(pcrs[:9]), pcrs[:9], nil},
		{"PCR value changed", []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...)}, digestOf(pcrs), append(append([][]byte{}, pcrs[:23]...), make([]byte, 32)), ErrPCRDigest},
		{"PCRs reordered", []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...)}, digestOf(pcrs), append([][]byte{pcrs[1], pcrs[0]}, pcrs[2:]...), ErrPCRDigest},
		{"PCR missing", []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...)}, digestOf(pcrs), pcrs[:23], ErrPCRDigest},
		{"selection skips PCR 8 (relabelling)", []tpm2.TPMSPCRSelection{sha256Bank(append(upTo(8), 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)...)}, digestOf(pcrs[:23]), pcrs[:23], ErrPCRDigest},
		{"SHA-1 bank", []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA1, PCRSelect: []byte{0xff, 0xff, 0xff}}}, digestOf(pcrs), pcrs, ErrPCRDigest},
		{"two banks", []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...), sha256Bank(upTo(24)...)}, digestOf(pcrs), pcrs, ErrPCRDigest},
		{"no selection", nil, digestOf(pcrs), pcrs, ErrPCRDigest},
		{"short PCR value", []tpm2.TPMSPCRSelection{sha256Bank(0)}, digestOf(pcrs[:1]), [][]byte{pcrs[0][:31]}, ErrMalformedQuote},
		{"no PCRs", []tpm2.TPMSPCRSelection{sha256Bank()}, digestOf(nil), nil, ErrMalformedQuote},
		{"25 PCRs", []tpm2.TPMSPCRSelection{sha256Bank(upTo(24)...)}, digestOf(pcrs), append(pcrs, pcrs[0]), ErrMalformedQuote},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAttest(tpm2.Marshal(attest(nil, tc.sels, tc.dig)))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.CheckPCRs(tc.pcrs); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseAttestErrors(t *testing.T) {
	good := tpm2.Marshal(attest([]byte("n"), []tpm2.TPMSPCRSelection{sha256Bank(0)}, make([]byte, 32)))
	mod := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	certify := attest(nil, nil, nil)
	certify.Type = tpm2.TPMSTAttestCertify
	certify.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{})
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"bad magic", mod(func(b []byte) []byte { b[0] ^= 1; return b })},
		{"not a quote (certify)", tpm2.Marshal(certify)},
		{"unknown type", mod(func(b []byte) []byte { b[4], b[5] = 0x80, 0x99; return b })},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"truncated", good[:len(good)-1]},
		{"non-canonical bool", mod(func(b []byte) []byte {
			// Safe is the byte after clock (8), resetCount (4), restartCount (4).
			i := 4 + 2 + 2 + 5 + 2 + 1 + 16
			b[i] = 2
			return b
		})},
		{"oversized", make([]byte, limits.MaxTPMAttestBytes+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseAttest(tc.msg); !errors.Is(err, ErrMalformedQuote) || !errors.Is(err, verifier.ErrMalformedEvidence) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// Every truncation of a real quote is rejected.
	msg := azureQuotes(t)[0].quote.Message
	for n := range len(msg) {
		if _, err := ParseAttest(msg[:n]); !errors.Is(err, ErrMalformedQuote) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

func TestParseSignatureErrors(t *testing.T) {
	sig := func(alg tpm2.TPMAlgID, hash tpm2.TPMAlgID) []byte {
		switch alg {
		case tpm2.TPMAlgECDSA:
			return tpm2.Marshal(tpm2.TPMTSignature{SigAlg: alg, Signature: tpm2.NewTPMUSignature(alg, &tpm2.TPMSSignatureECC{Hash: hash})})
		}
		return tpm2.Marshal(tpm2.TPMTSignature{SigAlg: alg, Signature: tpm2.NewTPMUSignature(alg, &tpm2.TPMSSignatureRSA{Hash: hash, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: []byte{1, 2}}})})
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"RSAPSS", sig(tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA256), ErrUnsupportedKey},
		{"ECDSA", sig(tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256), ErrUnsupportedKey},
		{"RSASSA SHA-384", sig(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA384), ErrUnsupportedKey},
		{"trailing", append(sig(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256), 0), ErrMalformedQuote},
		{"truncated", sig(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256)[:7], ErrMalformedQuote},
		{"empty", nil, ErrMalformedQuote},
		{"unknown algorithm", []byte{0x12, 0x34, 0, 0x0b, 0, 0}, ErrMalformedQuote},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSignature(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInitData(t *testing.T) {
	// Upstream's vector: sha256(32×0x00 || 8505...) == bdda...
	digest, _ := hex.DecodeString("8505e4e25e50a27c5dc8147af88efbece627fbea55291911eff832d9ee127781")
	want, _ := hex.DecodeString("bddaccb9c52249e97a31baea61b7d91be8221a16e703d92148d04fb8e9c1dfdd")
	got, err := InitDataPCRValue(digest)
	if err != nil || string(got[:]) != string(want) {
		t.Fatalf("InitDataPCRValue = %x, %v", got, err)
	}
	pcrs := pcrValues(24)
	pcrs[InitDataPCR] = want
	tests := []struct {
		name string
		pcrs [][]byte
		exp  []byte
		want error
	}{
		{"bound", pcrs, digest, nil},
		{"not checked", pcrs, nil, nil},
		{"other digest", pcrs, want, verifier.ErrInitDataMismatch},
		{"SHA-384 digest", pcrs, make([]byte, 48), verifier.ErrInitDataMismatch},
		{"PCR8 not quoted", pcrs[:8], digest, verifier.ErrInitDataMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckInitData(tc.pcrs, tc.exp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "PCR") && !strings.Contains(err.Error(), "init-data") {
				t.Errorf("error %q does not name the check", err)
			}
		})
	}
}

func TestPCRClaims(t *testing.T) {
	c := PCRClaims(pcrValues(24))
	if len(c) != 24 || c["pcr00"] != hex.EncodeToString(pcrValues(1)[0]) || c["pcr23"] == nil {
		t.Fatalf("claims %v", c)
	}
}
