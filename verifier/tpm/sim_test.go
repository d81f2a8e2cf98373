//go:build cgo

// Tests with real TPM quotes from the go-tpm-tools TPM simulator (the
// Microsoft reference TPM, linked with cgo against OpenSSL's libcrypto:
// building it needs libssl-dev). CGO_ENABLED=0 builds skip this file.

package tpm

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

// simTPM is a powered-on simulator. Only one exists per process at a time.
type simTPM struct {
	t   testing.TB
	sim *simulator.Simulator
}

func newSim(t testing.TB) *simTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("starting the TPM simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return &simTPM{t: t, sim: sim}
}

// extend extends a SHA-256 PCR with digest, as the attester binds
// init-data (PCR 8) or measures the workload.
func (s *simTPM) extend(pcr int, digest []byte) {
	s.t.Helper()
	if err := legacy.PCRExtend(s.sim, tpmutil.Handle(pcr), legacy.AlgSHA256, digest, ""); err != nil {
		s.t.Fatalf("PCR%d extend: %v", pcr, err)
	}
}

// ak creates an attestation key (a restricted signing key under the
// endorsement hierarchy): RSA 2048 with RSASSA-SHA256, or ECC P-256.
func (s *simTPM) ak(ecc bool) *client.Key {
	s.t.Helper()
	create := client.AttestationKeyRSA
	if ecc {
		create = client.AttestationKeyECC
	}
	k, err := create(s.sim)
	if err != nil {
		s.t.Fatalf("creating AK: %v", err)
	}
	s.t.Cleanup(k.Close)
	return k
}

// otherAK creates an RSA AK from the same template in the endorsement
// hierarchy: a different key on the same TPM.
func (s *simTPM) otherAK() *client.Key {
	s.t.Helper()
	k, err := client.NewKey(s.sim, legacy.HandleEndorsement, client.AKTemplateRSA())
	if err != nil {
		s.t.Fatalf("creating AK: %v", err)
	}
	s.t.Cleanup(k.Close)
	return k
}

// quote quotes all 24 SHA-256 PCRs with nonce and returns the evidence the
// TPM attester sends.
func (s *simTPM) quote(ak *client.Key, nonce []byte) []byte {
	s.t.Helper()
	q, err := ak.Quote(client.FullPcrSel(legacy.AlgSHA256), nonce)
	if err != nil {
		s.t.Fatalf("quote: %v", err)
	}
	pcrs := make([][]byte, 24)
	for i := range pcrs {
		pcrs[i] = q.GetPcrs().GetPcrs()[uint32(i)]
	}
	return makeEvidence(s.t, ak.PublicKey(), q.GetQuote(), q.GetRawSig(), pcrs)
}

// simEvidence is a simulator quote bound to reportData (padded to 32 bytes
// as the attester does) and initData, with a workload measured in PCR 11.
func simEvidence(t testing.TB, s *simTPM, ak *client.Key, reportData, initData []byte) []byte {
	t.Helper()
	if initData != nil {
		s.extend(tpmquote.InitDataPCR, initData)
	}
	workload := sha256.Sum256([]byte("workload"))
	s.extend(11, workload[:])
	nonce := make([]byte, ReportDataSize)
	copy(nonce, reportData)
	return s.quote(ak, nonce)
}

func TestSimulatorQuote(t *testing.T) {
	s := newSim(t)
	ak := s.ak(false)
	initData := sha256.Sum256([]byte("[data]\n"))
	reportData := sha256.Sum256([]byte("nonce and TEE key")) // 32 bytes
	ev := simEvidence(t, s, ak, reportData[:], initData[:])

	res, err := newVerifier(t).Evaluate(context.Background(), ev, verifier.Expected{ReportData: reportData[:], InitDataDigest: initData[:]})
	if err != nil {
		t.Fatal(err)
	}
	c := res[0].Claims
	pcr8, _ := tpmquote.InitDataPCRValue(initData[:])
	workload := sha256.Sum256([]byte("workload"))
	pcr11 := sha256.Sum256(append(make([]byte, 32), workload[:]...))
	if c["init_data"] != hex.EncodeToString(pcr8[:]) || c["pcr08"] != c["init_data"] {
		t.Errorf("init_data %v, want %x", c["init_data"], pcr8)
	}
	if c["pcr11"] != hex.EncodeToString(pcr11[:]) {
		t.Errorf("pcr11 %v, want %x", c["pcr11"], pcr11)
	}
	if c["report_data"] != hex.EncodeToString(reportData[:]) {
		t.Errorf("report_data %v", c["report_data"])
	}
	var e evidenceJSON
	_ = json.Unmarshal(ev, &e)
	if c["ak_public"] != e.AKPublic || len(c) != 27 {
		t.Errorf("%d claims, ak_public %v", len(c), c["ak_public"])
	}
}

// TestSimulatorQuoteBinding runs the failure cases on real quotes: every
// byte of the TPMS_ATTEST and of the TPMT_SIGNATURE flipped, another AK,
// another nonce, another init-data digest, a changed PCR.
func TestSimulatorQuoteBinding(t *testing.T) {
	s := newSim(t)
	ak := s.ak(false)
	other := s.otherAK()
	initData := sha256.Sum256([]byte("init"))
	rd := []byte("report data shorter than 32")
	ev := simEvidence(t, s, ak, rd, initData[:])
	exp := verifier.Expected{ReportData: rd, InitDataDigest: initData[:]}
	v := newVerifier(t)
	if _, err := v.Evaluate(context.Background(), ev, exp); err != nil {
		t.Fatal(err)
	}
	var good evidenceJSON
	if err := json.Unmarshal(ev, &good); err != nil {
		t.Fatal(err)
	}
	msg, _ := base64.StdEncoding.DecodeString(good.Quote.Message)
	sig, _ := base64.StdEncoding.DecodeString(good.Quote.Signature)
	reencode := func(m, s []byte) []byte {
		e := good
		e.Quote.Message = base64.StdEncoding.EncodeToString(m)
		e.Quote.Signature = base64.StdEncoding.EncodeToString(s)
		b, _ := json.Marshal(e)
		return b
	}
	for i := range msg {
		m := append([]byte(nil), msg...)
		m[i] ^= 0x01
		if _, err := v.Evaluate(context.Background(), reencode(m, sig), exp); !errors.Is(err, tpmquote.ErrSignature) {
			t.Fatalf("TPMS_ATTEST byte %d flipped: %v", i, err)
		}
	}
	for i := range sig {
		sg := append([]byte(nil), sig...)
		sg[i] ^= 0x01
		_, err := v.Evaluate(context.Background(), reencode(msg, sg), exp)
		if err == nil {
			t.Fatalf("TPMT_SIGNATURE byte %d flipped: accepted", i)
		}
		if i >= 6 && !errors.Is(err, tpmquote.ErrSignature) {
			t.Fatalf("signature byte %d flipped: %v", i, err)
		}
	}
	for n := range len(sig) {
		if _, err := v.Evaluate(context.Background(), reencode(msg, sig[:n]), exp); !errors.Is(err, tpmquote.ErrMalformedQuote) && !errors.Is(err, tpmquote.ErrUnsupportedKey) {
			t.Fatalf("TPMT_SIGNATURE truncated to %d: %v", n, err)
		}
	}

	otherEv := good
	otherEv.AKPublic = func() string {
		var e evidenceJSON
		_ = json.Unmarshal(s.quote(other, make([]byte, 32)), &e)
		return e.AKPublic
	}()
	wrongAK, _ := json.Marshal(otherEv)
	pcrChanged := good
	pcrChanged.Quote.PCRs = append([]string(nil), good.Quote.PCRs...)
	pcrChanged.Quote.PCRs[11] = pcrChanged.Quote.PCRs[10]
	changed, _ := json.Marshal(pcrChanged)
	otherInit := sha256.Sum256([]byte("other init"))
	tests := []struct {
		name string
		ev   []byte
		exp  verifier.Expected
		want error
	}{
		{"another AK", wrongAK, exp, tpmquote.ErrSignature},
		{"other report data", ev, verifier.Expected{ReportData: []byte("report data shorter than 33")}, verifier.ErrReportDataMismatch},
		{"report data not zero-padded", ev, verifier.Expected{ReportData: append(append([]byte(nil), rd...), 1)}, verifier.ErrReportDataMismatch},
		{"other init-data", ev, verifier.Expected{InitDataDigest: otherInit[:]}, verifier.ErrInitDataMismatch},
		{"PCR relabelled", changed, exp, tpmquote.ErrPCRDigest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Evaluate(context.Background(), tc.ev, tc.exp); !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSimulatorECCAK: upstream accepts RSASSA signatures only, so a quote
// by an ECC AK (TPMT_SIGNATURE ECDSA) is rejected, naming the scheme.
func TestSimulatorECCAK(t *testing.T) {
	s := newSim(t)
	ev := s.quote(s.ak(true), make([]byte, 32))
	if _, err := newVerifier(t).Evaluate(context.Background(), ev, verifier.Expected{}); !errors.Is(err, tpmquote.ErrUnsupportedKey) {
		t.Fatalf("Evaluate = %v, want ErrUnsupportedKey", err)
	}
}
