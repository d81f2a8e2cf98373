package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

// nopCloser shares one simulator between the per-operation opens.
type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

var simMu sync.Mutex

// newSimulator starts a TPM simulator with an RSA signing key persisted at
// akHandle and returns its Opener.
func newSimulator(t *testing.T, akHandle uint32) Opener {
	t.Helper()
	simMu.Lock()
	sim, err := simulator.Get()
	if err != nil {
		simMu.Unlock()
		t.Fatalf("simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close(); simMu.Unlock() })
	tp := transport.FromReadWriter(sim)
	tmpl := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
			Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
	}
	prim, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(tp)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     &tpm2.NamedHandle{Handle: prim.ObjectHandle, Name: prim.Name},
		PersistentHandle: tpm2.TPMHandle(akHandle),
	}).Execute(tp); err != nil {
		t.Fatalf("EvictControl: %v", err)
	}
	tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(tp)
	return func() (transport.TPMCloser, error) { return nopCloser{tp}, nil }
}

func TestEvidenceVerifies(t *testing.T) {
	ctx := context.Background()
	a, err := New(Options{Open: newSimulator(t, DefaultAKHandle), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	rd := sha256.Sum256([]byte("nonce"))
	rd48 := append(rd[:], bytes.Repeat([]byte{0xAA}, 16)...) // a SHA-384-sized report data is truncated
	ev, err := a.Evidence(ctx, rd48)
	if err != nil {
		t.Fatal(err)
	}
	var e Evidence
	dec := json.NewDecoder(bytes.NewReader(ev))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("evidence shape: %v\n%s", err, ev)
	}
	msg, _ := base64.StdEncoding.DecodeString(e.TPMQuote.Message)
	sigB, _ := base64.StdEncoding.DecodeString(e.TPMQuote.Signature)
	akDER, _ := base64.StdEncoding.DecodeString(e.AKPublic)
	ak, err := x509.ParsePKIXPublicKey(akDER)
	if err != nil {
		t.Fatalf("ak_public: %v", err)
	}
	sig, err := tpmquote.ParseSignature(sigB)
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := tpmquote.VerifySignature(ak, msg, sig); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	att, err := tpmquote.ParseAttest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.CheckNonce(rd48[:32]); err != nil {
		t.Errorf("nonce: %v", err)
	}
	pcrs := make([][]byte, len(e.TPMQuote.PCRs))
	for i, h := range e.TPMQuote.PCRs {
		pcrs[i], _ = hex.DecodeString(h)
	}
	if len(pcrs) != NumPCRs {
		t.Fatalf("%d PCRs", len(pcrs))
	}
	if err := att.CheckPCRs(pcrs); err != nil {
		t.Errorf("PCRs: %v", err)
	}
	// Tampering is caught: the verifier checks what we emit.
	msg[len(msg)-1] ^= 1
	if tpmquote.VerifySignature(ak, msg, sig) == nil {
		t.Error("tampered quote verifies")
	}
}

func TestMeasurementAndInitData(t *testing.T) {
	ctx := context.Background()
	a, err := New(Options{Open: newSimulator(t, DefaultAKHandle), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("initdata"))
	if err := a.BindInitData(ctx, digest[:]); err != nil {
		t.Fatal(err)
	}
	want, _ := tpmquote.InitDataPCRValue(digest[:])
	got, err := a.RuntimeMeasurement(ctx, 8)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("PCR8 = %x (%v), want %x", got, err, want)
	}
	if err := a.BindInitData(ctx, make([]byte, 48)); err == nil {
		t.Error("a 48-byte digest extended PCR8")
	}
	if err := a.ExtendRuntimeMeasurement(ctx, digest[:], 24); err == nil {
		t.Error("PCR 24 accepted")
	}
	ev, err := a.Evidence(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var e Evidence
	json.Unmarshal(ev, &e)
	if e.TPMQuote.PCRs[8] != hex.EncodeToString(want[:]) {
		t.Errorf("quoted PCR8 %s", e.TPMQuote.PCRs[8])
	}
}

func TestDetectAndHandle(t *testing.T) {
	root := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if Detect(Options{Root: root, Getenv: getenv}) {
		t.Fatal("detected a TPM in an empty tree")
	}
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	os.WriteFile(filepath.Join(root, "dev/tpm1"), nil, 0o600)
	if !Detect(Options{Root: root, Getenv: getenv}) {
		t.Fatal("missed /dev/tpm1")
	}
	if dev, _ := FindDevice(root, getenv); dev != filepath.Join(root, "dev/tpm1") {
		t.Errorf("device %q", dev)
	}
	env[EnvDevice] = "/dev/tpmrm7"
	if Detect(Options{Root: root, Getenv: getenv}) {
		t.Error("AA_TPM_DEVICE names a missing device, yet detected")
	}
	delete(env, EnvDevice)
	for _, tc := range []struct {
		v    string
		want uint32
		ok   bool
	}{{"", DefaultAKHandle, true}, {"0x81000003", 0x81000003, true}, {"81010002", 0x81010002, true}, {"zz", 0, false}} {
		env[EnvAKHandle] = tc.v
		h, err := AKHandleFromEnv(getenv)
		if (err == nil) != tc.ok || h != tc.want {
			t.Errorf("AA_TPM_AK_HANDLE=%q: %#x, %v", tc.v, h, err)
		}
	}
	env[EnvAKHandle] = "zz"
	if Detect(Options{Root: root, Getenv: getenv}) {
		t.Error("detected with an invalid AK handle")
	}
}
