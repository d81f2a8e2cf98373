package tdx

import (
	"encoding/binary"
	"fmt"

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/go-trustee/go-trustee/verifier"
)

// Quote layout constants (Intel TDX DCAP Quoting Library API, quote v4 and
// v5).
const (
	headerSize      = 48
	body10Size      = 584 // TD report body, TDX 1.0
	body15Size      = 648 // TD report body, TDX 1.5
	v5BodyDescSize  = 6   // u16 body type, u32 body size
	qeReportSize    = 384 // SGX report body of the quoting enclave
	signatureSize   = 64  // ECDSA P-256 r||s
	attestKeySize   = 64  // ECDSA P-256 X||Y
	minSigDataSize  = signatureSize + attestKeySize + 6
	maxQuoteBytes   = limits.MaxTDXQuoteBytes
	teeTypeTDX      = 0x81
	attKeyTypeP256  = 2
	certTypeQEData  = 6 // QE report certification data
	certTypePCKPEM  = 5 // PCK certificate chain, PEM
	bodyTypeTDX10   = 2
	bodyTypeTDX15   = 3
	quoteVersionV4  = 4
	quoteVersionV5  = 5
	quoteVersionSGX = 3
)

// Header is the 48-byte quote header.
type Header struct {
	Version    [2]byte
	AttKeyType [2]byte
	TEEType    [4]byte
	// Reserved is two reserved u16 (QE SVN and PCE SVN in SGX v3 quotes).
	Reserved [4]byte
	VendorID [16]byte
	UserData [20]byte
}

// Body is the TD report body of a quote. TEETCBSVN2 and MRServiceTD are
// only present in TDX 1.5 bodies (v5 body type 3).
type Body struct {
	TEETCBSVN      [16]byte
	MRSEAM         [48]byte
	MRSignerSEAM   [48]byte
	SEAMAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [48]byte
	MRConfigID     [48]byte
	MROwner        [48]byte
	MROwnerConfig  [48]byte
	RTMR           [4][48]byte
	ReportData     [64]byte
	TEETCBSVN2     [16]byte
	MRServiceTD    [48]byte
}

// Quote is a parsed TDX quote, version 4 or 5. Parsing checks the layout
// only; nothing in it is trusted before the quote is verified.
type Quote struct {
	Header Header
	// Version is 4 or 5.
	Version uint16
	// BodyType is the v5 body type (2: TDX 1.0, 3: TDX 1.5); 0 in v4.
	BodyType uint16
	// BodySize is the v5 body size field (584 or 648); 0 in v4.
	BodySize uint32
	Body     Body

	// Signature is the ECDSA P-256 signature of SignedData by AttestKey.
	Signature [signatureSize]byte
	// AttestKey is the raw P-256 attestation public key, X||Y.
	AttestKey [attestKeySize]byte
	// QEReport is the quoting enclave's SGX report body, signed by the PCK.
	QEReport [qeReportSize]byte
	// QEReportSignature is the PCK's ECDSA P-256 signature of QEReport.
	QEReportSignature [signatureSize]byte
	// QEAuthData is hashed with AttestKey into the QE report data.
	QEAuthData []byte
	// PCKChain is the PEM PCK certificate chain (leaf, intermediate, root).
	PCKChain []byte

	signed []byte
}

// SignedData returns the bytes the attestation key signs: the header and
// the body (with, in v5, the body type and size).
func (q *Quote) SignedData() []byte { return q.signed }

// isTDX15 reports whether the body has the TDX 1.5 fields.
func (q *Quote) isTDX15() bool { return q.Version == quoteVersionV5 && q.BodyType == bodyTypeTDX15 }

func malformedQuote(format string, args ...any) error {
	return fmt.Errorf("%w: TDX quote: %s", verifier.ErrMalformedEvidence, fmt.Sprintf(format, args...))
}

// ParseQuote parses a TDX quote v4 or v5 (TDX 1.0 or 1.5 body) with ECDSA
// P-256 attestation key and PCK certificate chain certification data. SGX
// v3 quotes and other versions fail with ErrUnsupportedQuote. Bytes after
// the signature data are ignored, as Intel's library does.
func ParseQuote(b []byte) (*Quote, error) {
	if len(b) > maxQuoteBytes {
		return nil, malformedQuote("%d bytes exceed the limit of %d", len(b), maxQuoteBytes)
	}
	if len(b) < headerSize {
		return nil, malformedQuote("%d bytes are too short for a header", len(b))
	}
	q := &Quote{}
	h := &q.Header
	copy(h.Version[:], b[0:2])
	copy(h.AttKeyType[:], b[2:4])
	copy(h.TEEType[:], b[4:8])
	copy(h.Reserved[:], b[8:12])
	copy(h.VendorID[:], b[12:28])
	copy(h.UserData[:], b[28:48])
	q.Version = binary.LittleEndian.Uint16(h.Version[:])
	tee := binary.LittleEndian.Uint32(h.TEEType[:])
	if akt := binary.LittleEndian.Uint16(h.AttKeyType[:]); akt != attKeyTypeP256 {
		return nil, fmt.Errorf("%w: %w: attestation key type %d, want %d (ECDSA-256-with-P-256)", verifier.ErrMalformedEvidence, ErrUnsupportedQuote, akt, attKeyTypeP256)
	}
	switch {
	case q.Version == quoteVersionSGX:
		return nil, fmt.Errorf("%w: %w: expected TDX quote (v4/v5), got SGX quote (v3)", verifier.ErrMalformedEvidence, ErrUnsupportedQuote)
	case (q.Version != quoteVersionV4 && q.Version != quoteVersionV5) || tee != teeTypeTDX:
		return nil, fmt.Errorf("%w: %w: quote version %d / tee_type %#010x", verifier.ErrMalformedEvidence, ErrUnsupportedQuote, q.Version, tee)
	}
	off := headerSize
	bodySize := body10Size
	if q.Version == quoteVersionV5 {
		if len(b) < off+v5BodyDescSize {
			return nil, malformedQuote("too short for the v5 body descriptor")
		}
		q.BodyType = binary.LittleEndian.Uint16(b[off:])
		q.BodySize = binary.LittleEndian.Uint32(b[off+2:])
		off += v5BodyDescSize
		switch q.BodyType {
		case bodyTypeTDX10:
		case bodyTypeTDX15:
			bodySize = body15Size
		default:
			return nil, fmt.Errorf("%w: %w: v5 body type %d not defined", verifier.ErrMalformedEvidence, ErrUnsupportedQuote, q.BodyType)
		}
		if q.BodySize != uint32(bodySize) {
			return nil, malformedQuote("v5 body type %d with size %d, want %d", q.BodyType, q.BodySize, bodySize)
		}
	}
	if len(b) < off+bodySize {
		return nil, malformedQuote("too short for the TD report body")
	}
	parseBody(&q.Body, b[off:off+bodySize])
	off += bodySize
	q.signed = b[:off:off]

	if len(b) < off+4 {
		return nil, malformedQuote("too short to read the signature data length")
	}
	sigLen := binary.LittleEndian.Uint32(b[off:])
	off += 4
	if uint64(sigLen) > uint64(len(b)-off) {
		return nil, malformedQuote("too short for the declared signature data length (%d)", sigLen)
	}
	if err := q.parseSignatureData(b[off : off+int(sigLen)]); err != nil {
		return nil, err
	}
	return q, nil
}

func parseBody(d *Body, b []byte) {
	p := 0
	next := func(dst []byte) { p += copy(dst, b[p:]) }
	next(d.TEETCBSVN[:])
	next(d.MRSEAM[:])
	next(d.MRSignerSEAM[:])
	next(d.SEAMAttributes[:])
	next(d.TDAttributes[:])
	next(d.XFAM[:])
	next(d.MRTD[:])
	next(d.MRConfigID[:])
	next(d.MROwner[:])
	next(d.MROwnerConfig[:])
	for i := range d.RTMR {
		next(d.RTMR[i][:])
	}
	next(d.ReportData[:])
	if len(b) == body15Size {
		next(d.TEETCBSVN2[:])
		next(d.MRServiceTD[:])
	}
}

// parseSignatureData parses the ECDSA signature data of a v4/v5 quote:
// signature, attestation key, then certification data of type 6 (QE report
// certification data) whose own certification data is type 5 (PEM PCK
// chain).
func (q *Quote) parseSignatureData(s []byte) error {
	if len(s) < minSigDataSize {
		return malformedQuote("signature data of %d bytes is too short", len(s))
	}
	p := copy(q.Signature[:], s)
	p += copy(q.AttestKey[:], s[p:])
	if typ := binary.LittleEndian.Uint16(s[p:]); typ != certTypeQEData {
		return malformedQuote("expected cert data type %d, got %d", certTypeQEData, typ)
	}
	size := binary.LittleEndian.Uint32(s[p+2:])
	p += 6
	if uint64(size) > uint64(len(s)-p) {
		return malformedQuote("QE report certification data of %d bytes exceeds the signature data", size)
	}
	c := s[p : p+int(size)]
	if len(c) < qeReportSize+signatureSize+2 {
		return malformedQuote("QE report certification data of %d bytes is too short", len(c))
	}
	p = copy(q.QEReport[:], c)
	p += copy(q.QEReportSignature[:], c[p:])
	authLen := int(binary.LittleEndian.Uint16(c[p:]))
	p += 2
	if authLen > len(c)-p {
		return malformedQuote("QE authentication data out of bounds")
	}
	q.QEAuthData = c[p : p+authLen : p+authLen]
	p += authLen
	if len(c)-p < 6 {
		return malformedQuote("too short for the PCK certification data header")
	}
	if typ := binary.LittleEndian.Uint16(c[p:]); typ != certTypePCKPEM {
		return malformedQuote("expected cert chain type %d, got %d", certTypePCKPEM, typ)
	}
	chainLen := binary.LittleEndian.Uint32(c[p+2:])
	p += 6
	if uint64(chainLen) > uint64(len(c)-p) {
		return malformedQuote("PCK certificate chain data out of bounds")
	}
	q.PCKChain = c[p : p+int(chainLen) : p+int(chainLen)]
	return nil
}

// qeReport field offsets (SGX report body).
const (
	qeMiscSelectOff = 16
	qeAttributesOff = 48
	qeMRSignerOff   = 128
	qeISVProdIDOff  = 256
	qeISVSVNOff     = 258
	qeReportDataOff = 320
)

func (q *Quote) qeMiscSelect() uint32 {
	return binary.LittleEndian.Uint32(q.QEReport[qeMiscSelectOff:])
}
func (q *Quote) qeAttributes() []byte { return q.QEReport[qeAttributesOff : qeAttributesOff+16] }
func (q *Quote) qeMRSigner() []byte   { return q.QEReport[qeMRSignerOff : qeMRSignerOff+32] }
func (q *Quote) qeISVProdID() uint16 {
	return binary.LittleEndian.Uint16(q.QEReport[qeISVProdIDOff:])
}
func (q *Quote) qeISVSVN() uint16 { return binary.LittleEndian.Uint16(q.QEReport[qeISVSVNOff:]) }
func (q *Quote) qeReportData() []byte {
	return q.QEReport[qeReportDataOff : qeReportDataOff+64]
}
