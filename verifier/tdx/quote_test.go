package tdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/go-trustee/go-trustee/verifier"
)

// TestParseQuoteV4MatchesGoTDXGuest compares the v4 parse with
// go-tdx-guest's, field by field, on both real v4 quotes.
func TestParseQuoteV4MatchesGoTDXGuest(t *testing.T) {
	for name, raw := range map[string][]byte{"tdx_quote_4.dat": readVector(t, "tdx_quote_4.dat"), "go-tdx-guest sample": testdata.RawQuote} {
		t.Run(name, func(t *testing.T) {
			q, err := ParseQuote(raw)
			if err != nil {
				t.Fatal(err)
			}
			p, err := abi.QuoteToProto(raw)
			if err != nil {
				t.Fatal(err)
			}
			compareWithProto(t, q, p.(*pb.QuoteV4))
		})
	}
}

func compareWithProto(t *testing.T, q *Quote, p *pb.QuoteV4) {
	t.Helper()
	b := p.GetTdQuoteBody()
	qe := p.GetSignedData().GetCertificationData().GetQeReportCertificationData()
	checks := []struct {
		name      string
		got, want []byte
	}{
		{"vendor id", q.Header.VendorID[:], p.GetHeader().GetQeVendorId()},
		{"user data", q.Header.UserData[:], p.GetHeader().GetUserData()},
		{"tee tcb svn", q.Body.TEETCBSVN[:], b.GetTeeTcbSvn()},
		{"mr seam", q.Body.MRSEAM[:], b.GetMrSeam()},
		{"mrsigner seam", q.Body.MRSignerSEAM[:], b.GetMrSignerSeam()},
		{"seam attributes", q.Body.SEAMAttributes[:], b.GetSeamAttributes()},
		{"td attributes", q.Body.TDAttributes[:], b.GetTdAttributes()},
		{"xfam", q.Body.XFAM[:], b.GetXfam()},
		{"mr td", q.Body.MRTD[:], b.GetMrTd()},
		{"mr config id", q.Body.MRConfigID[:], b.GetMrConfigId()},
		{"mr owner", q.Body.MROwner[:], b.GetMrOwner()},
		{"mr owner config", q.Body.MROwnerConfig[:], b.GetMrOwnerConfig()},
		{"rtmr0", q.Body.RTMR[0][:], b.GetRtmrs()[0]},
		{"rtmr3", q.Body.RTMR[3][:], b.GetRtmrs()[3]},
		{"report data", q.Body.ReportData[:], b.GetReportData()},
		{"signature", q.Signature[:], p.GetSignedData().GetSignature()},
		{"attestation key", q.AttestKey[:], p.GetSignedData().GetEcdsaAttestationKey()},
		{"QE report signature", q.QEReportSignature[:], qe.GetQeReportSignature()},
		{"QE auth data", q.QEAuthData, qe.GetQeAuthData().GetData()},
		{"PCK chain", q.PCKChain, qe.GetPckCertificateChainData().GetPckCertChain()},
		{"QE report data", q.qeReportData(), qe.GetQeReport().GetReportData()},
		{"QE mrsigner", q.qeMRSigner(), qe.GetQeReport().GetMrSigner()},
	}
	for _, c := range checks {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: got %x, want %x", c.name, c.got, c.want)
		}
	}
	if uint32(q.qeISVSVN()) != qe.GetQeReport().GetIsvSvn() || uint32(q.qeISVProdID()) != qe.GetQeReport().GetIsvProdId() {
		t.Errorf("QE ISVSVN/ISVPRODID differ")
	}
	if q.qeMiscSelect() != qe.GetQeReport().GetMiscSelect() {
		t.Errorf("QE MISCSELECT differs")
	}
}

func TestParseQuoteV5(t *testing.T) {
	raw := readVector(t, "tdx_quote_5.dat")
	q, err := ParseQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q.Version != 5 || q.BodyType != 3 || q.BodySize != 648 || !q.isTDX15() {
		t.Fatalf("version %d type %d size %d", q.Version, q.BodyType, q.BodySize)
	}
	// The signed region covers header, body descriptor and body.
	if len(q.SignedData()) != 48+6+648 || !bytes.Equal(q.SignedData(), raw[:48+6+648]) {
		t.Fatalf("signed data of %d bytes", len(q.SignedData()))
	}
	// The TDX 1.5 fields are the last 64 bytes of the body.
	if !bytes.Equal(q.Body.TEETCBSVN2[:], raw[54+584:54+600]) || !bytes.Equal(q.Body.MRServiceTD[:], raw[54+600:54+648]) {
		t.Fatal("tee_tcb_svn2 / mr_servicetd at the wrong offset")
	}
	if _, err := parsePCKChain(q.PCKChain); err != nil {
		t.Fatal(err)
	}
	// Re-labelled as a TDX 1.0 body (type 2, size 584) with the extra 64
	// bytes removed, the same quote parses with the v4 body.
	v10 := append(append(append([]byte(nil), raw[:48]...), 2, 0, 0x48, 2, 0, 0), raw[54:54+584]...)
	v10 = append(v10, raw[54+648:]...)
	q10, err := ParseQuote(v10)
	if err != nil {
		t.Fatal(err)
	}
	if q10.isTDX15() || q10.Body.ReportData != q.Body.ReportData || q10.Body.TEETCBSVN2 != [16]byte{} {
		t.Fatal("TDX 1.0 body of a v5 quote parsed wrongly")
	}
}

func setU16(b []byte, off int, v uint16) []byte {
	b = append([]byte(nil), b...)
	binary.LittleEndian.PutUint16(b[off:], v)
	return b
}

func TestParseQuoteErrors(t *testing.T) {
	q4 := readVector(t, "tdx_quote_4.dat")
	q5 := readVector(t, "tdx_quote_5.dat")
	sig := 48 + 584 + 4
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, verifier.ErrMalformedEvidence},
		{"short header", q4[:47], verifier.ErrMalformedEvidence},
		{"SGX v3", readVector(t, "occlum_quote.dat"), ErrUnsupportedQuote},
		{"version 6", setU16(q4, 0, 6), ErrUnsupportedQuote},
		{"SGX tee type in v4", setU16(q4, 4, 0), ErrUnsupportedQuote},
		{"attestation key type 3", setU16(q4, 2, 3), ErrUnsupportedQuote},
		{"v5 body type 4", setU16(q5, 48, 4), ErrUnsupportedQuote},
		{"v5 body size mismatch", setU16(q5, 50, 584), verifier.ErrMalformedEvidence},
		{"signature data length beyond quote", append(append([]byte(nil), q4[:sig-4]...), 0xff, 0xff, 0, 0), verifier.ErrMalformedEvidence},
		{"wrong certification data type", setU16(q4, sig+128, 5), verifier.ErrMalformedEvidence},
		{"wrong PCK chain type", setU16(q4, sig+128+6+384+64+2+32, 4), verifier.ErrMalformedEvidence},
		{"auth data beyond", setU16(q4, sig+128+6+384+64, 0xffff), verifier.ErrMalformedEvidence},
		{"too large", make([]byte, maxQuoteBytes+1), verifier.ErrMalformedEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuote(tc.raw)
			if !errors.Is(err, tc.want) || !errors.Is(err, verifier.ErrMalformedEvidence) {
				t.Fatalf("ParseQuote = %v, want %v", err, tc.want)
			}
		})
	}
	// Trailing bytes after the signature data are ignored, as Intel's
	// library does (go-tdx-guest's sample quote has some).
	if _, err := ParseQuote(append(append([]byte(nil), q4...), 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseQuote(f *testing.F) {
	f.Add(readVector(f, "tdx_quote_4.dat"))
	f.Add(readVector(f, "tdx_quote_5.dat"))
	f.Add(testdata.RawQuote)
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := ParseQuote(raw)
		if err != nil {
			if !errors.Is(err, verifier.ErrMalformedEvidence) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if q.Version != 4 && q.Version != 5 {
			t.Fatalf("accepted version %d", q.Version)
		}
		if !bytes.Equal(q.SignedData(), raw[:len(q.SignedData())]) {
			t.Fatal("signed data is not a prefix of the quote")
		}
		_ = parsedClaims(q, nil, &PlatformInfo{})
		// v4 quotes that parse parse the same in go-tdx-guest.
		if q.Version == 4 {
			if p, err := abi.QuoteToProto(raw); err == nil {
				if pq, ok := p.(*pb.QuoteV4); ok {
					compareWithProto(t, q, pq)
				}
			}
		}
	})
}
