package azsnpvtpm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/go-trustee/go-trustee/guest/attester/tpm"
	"github.com/go-trustee/go-trustee/internal/testvectors"
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

func fakeIMDS(t *testing.T, vcekDER []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" || r.URL.Path != "/metadata/THIM/amd/certification" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{"vcekCert":` + quoteJSON(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vcekDER}))) + `,"certificateChain":""}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func quoteJSON(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '"':
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestEvidence(t *testing.T) {
	report, err := os.ReadFile(testvectors.Path("trustee/verifier/snp/test-report.bin"))
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := os.ReadFile(testvectors.Path("trustee/verifier/snp/test-vcek.der"))
	if err != nil {
		t.Fatal(err)
	}
	hcl := HCLReport(tpm.HCLReportSNP, report, []byte(`{"keys":[]}`))
	open := azureSimulator(t, hcl)
	ctx := context.Background()
	opts := Options{Open: open, HTTPClient: http.DefaultClient, IMDSURL: fakeIMDS(t, vcek).URL, Sleep: func(context.Context, time.Duration) error { return nil }}
	if !Detect(ctx, opts) {
		t.Fatal("SNP HCL report not detected")
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	rd := make([]byte, 48)
	rand.Read(rd)
	ev, err := a.Evidence(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tpmquote.ParseObject(ev)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Uint32("version"); err != nil || v != 2 {
		t.Errorf("version %d %v", v, err)
	}
	gotHCL, err := f.Base64URL("hcl_report")
	if err != nil || !bytes.Equal(gotHCL, hcl) {
		t.Errorf("hcl_report round trip: %v", err)
	}
	gotVCEK, err := f.Base64URL("vcek")
	if err != nil || !bytes.Equal(gotVCEK, vcek) {
		t.Errorf("vcek round trip: %v", err)
	}
	if _, err := x509.ParseCertificate(gotVCEK); err != nil {
		t.Errorf("vcek: %v", err)
	}
	qf, err := f.Object("tpm_quote")
	if err != nil {
		t.Fatal(err)
	}
	q, err := tpmquote.HexQuote(qf)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm.NewTPM(open).RSAPublicKey(ctx, tpm.AzureAKHandle)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpmquote.VerifySignature(ak, q.Message, q.Signature); err != nil {
		t.Fatalf("quote signature: %v", err)
	}
	att, err := tpmquote.ParseAttest(q.Message)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.CheckNonce(rd); err != nil {
		t.Error(err)
	}
	if err := att.CheckPCRs(q.PCRs); err != nil {
		t.Error(err)
	}
	// The report data reached the user-data NV index.
	ud, err := tpm.NewTPM(open).NVRead(ctx, tpm.AzureUserDataIndex)
	if err != nil || !bytes.Equal(ud, rd) {
		t.Errorf("user data %x, %v", ud, err)
	}
	if _, err := a.Evidence(ctx, make([]byte, 65)); err == nil {
		t.Error("65-byte report data accepted")
	}
}

func TestDetectNegative(t *testing.T) {
	ctx := context.Background()
	if Detect(ctx, Options{Root: t.TempDir(), Getenv: func(string) string { return "" }}) {
		t.Error("detected without a TPM")
	}
	open := azureSimulator(t, HCLReport(tpm.HCLReportTDX, make([]byte, 1024), nil))
	if Detect(ctx, Options{Open: open}) {
		t.Error("a TDX HCL report detected as SNP")
	}
}

func TestIMDSFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }))
	defer srv.Close()
	open := azureSimulator(t, HCLReport(tpm.HCLReportSNP, make([]byte, 1184), nil))
	a, _ := New(Options{Open: open, HTTPClient: srv.Client(), IMDSURL: srv.URL, Settle: -1})
	if _, err := a.Evidence(context.Background(), []byte("rd")); err == nil {
		t.Fatal("IMDS 503 gave evidence")
	}
}
