package aztdxvtpm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/go-trustee/go-trustee/guest/attester/azsnpvtpm"
	"github.com/go-trustee/go-trustee/guest/attester/tpm"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

var simMu sync.Mutex

// azureSimulator is a TPM simulator set up as an Azure vTPM: an RSA AK at
// the Azure handle and the HCL report in its NV index.
func azureSimulator(t *testing.T, hcl []byte) tpm.Opener {
	t.Helper()
	simMu.Lock()
	sim, err := simulator.Get()
	if err != nil {
		simMu.Unlock()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); simMu.Unlock() })
	tp := transport.FromReadWriter(sim)
	tmpl := tpm2.RSASRKTemplate
	tmpl.ObjectAttributes.Decrypt = false
	tmpl.ObjectAttributes.SignEncrypt = true
	tmpl.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
		KeyBits: 2048,
	})
	prim, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(tp)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &tpm2.NamedHandle{Handle: prim.ObjectHandle, Name: prim.Name},
		PersistentHandle: tpm.AzureAKHandle}).Execute(tp); err != nil {
		t.Fatalf("EvictControl: %v", err)
	}
	tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(tp)
	open := func() (transport.TPMCloser, error) { return nopCloser{tp}, nil }
	if hcl != nil {
		// The HCL report index is larger than one NV write: define it and
		// write it in chunks.
		def := tpm2.NVDefineSpace{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{NVIndex: tpm.AzureHCLReportIndex, NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NT: tpm2.TPMNTOrdinary}, DataSize: uint16(len(hcl))})}
		if _, err := def.Execute(tp); err != nil {
			t.Fatalf("NVDefineSpace: %v", err)
		}
		pub, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(tpm.AzureHCLReportIndex)}.Execute(tp)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(hcl); off += 512 {
			end := min(off+512, len(hcl))
			if _, err := (tpm2.NVWrite{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				NVIndex: tpm2.NamedHandle{Handle: tpm.AzureHCLReportIndex, Name: pub.NVName},
				Data:    tpm2.TPM2BMaxNVBuffer{Buffer: hcl[off:end]}, Offset: uint16(off)}).Execute(tp); err != nil {
				t.Fatalf("NVWrite: %v", err)
			}
		}
	}
	return open
}

// HCLReport builds a synthetic HCL report of type typ around hw.
func HCLReport(typ uint32, hw []byte, varData []byte) []byte {
	b := make([]byte, 32+1184+20)
	copy(b[32:], hw)
	binary.LittleEndian.PutUint32(b[32+1184:], uint32(20+len(varData)))
	binary.LittleEndian.PutUint32(b[32+1184+4:], 1)
	binary.LittleEndian.PutUint32(b[32+1184+8:], typ)
	binary.LittleEndian.PutUint32(b[32+1184+12:], 1) // SHA-256
	binary.LittleEndian.PutUint32(b[32+1184+16:], uint32(len(varData)))
	return append(b, varData...)
}

func TestEvidence(t *testing.T) {
	td := make([]byte, tpm.TDReportSize)
	rand.Read(td)
	hcl := HCLReport(tpm.HCLReportTDX, td, []byte(`{"keys":[]}`))
	quote := []byte("a TD quote from the quoting enclave")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Report string }
		if r.Method != http.MethodPost || r.URL.Path != "/acc/tdquote" || r.Header.Get("Metadata") != "true" ||
			json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		got, err := base64.RawURLEncoding.DecodeString(req.Report)
		if err != nil || !bytes.Equal(got, td) {
			http.Error(w, "wrong TD report", 400)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"quote": base64.RawURLEncoding.EncodeToString(quote)})
	}))
	defer srv.Close()
	open := azureSimulator(t, hcl)
	ctx := context.Background()
	opts := Options{Open: open, HTTPClient: srv.Client(), IMDSURL: srv.URL, Sleep: func(context.Context, time.Duration) error { return nil }}
	if !Detect(ctx, opts) {
		t.Fatal("TDX HCL report not detected")
	}
	if azsnpvtpm.Detect(ctx, opts) {
		t.Fatal("TDX HCL report detected as SNP")
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	rd := []byte("challenge")
	ev, err := a.Evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tpmquote.ParseObject(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Base64URL("td_quote"); err != nil || !bytes.Equal(got, quote) {
		t.Errorf("td_quote: %q %v", got, err)
	}
	if got, err := f.Base64URL("hcl_report"); err != nil || !bytes.Equal(got, hcl) {
		t.Errorf("hcl_report: %v", err)
	}
	qf, _ := f.Object("tpm_quote")
	q, err := tpmquote.HexQuote(qf)
	if err != nil {
		t.Fatal(err)
	}
	att, err := tpmquote.ParseAttest(q.Message)
	if err != nil || att.CheckNonce(rd) != nil || att.CheckPCRs(q.PCRs) != nil {
		t.Fatalf("quote: %v", err)
	}
	// Runtime measurement on the vTPM (upstream cannot read it back here).
	d := make([]byte, 32)
	d[0] = 1
	if err := a.ExtendRuntimeMeasurement(ctx, d, 23); err != nil {
		t.Fatal(err)
	}
	if v, err := a.RuntimeMeasurement(ctx, 23); err != nil || bytes.Equal(v, make([]byte, 32)) {
		t.Fatalf("PCR23 not extended: %x %v", v, err)
	}
}
