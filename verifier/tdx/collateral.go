package tdx

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
)

// The collateral documents of Intel's PCS API v4, decoded only as far as
// verification needs. Field names are Intel's.

// hexBytes decodes a hex string (either case).
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

type tcbComponent struct {
	SVN int `json:"svn"`
}

type tcb struct {
	SGX    []tcbComponent `json:"sgxtcbcomponents"`
	PCESVN int            `json:"pcesvn"`
	TDX    []tcbComponent `json:"tdxtcbcomponents"`
	ISVSVN int            `json:"isvsvn"`
}

type tcbLevel struct {
	TCB         tcb       `json:"tcb"`
	TCBDate     time.Time `json:"tcbDate"`
	TCBStatus   string    `json:"tcbStatus"`
	AdvisoryIDs []string  `json:"advisoryIDs"`
}

type tdxModule struct {
	MRSigner       hexBytes `json:"mrsigner"`
	Attributes     hexBytes `json:"attributes"`
	AttributesMask hexBytes `json:"attributesMask"`
}

type tdxModuleIdentity struct {
	ID string `json:"id"`
	tdxModule
	TCBLevels []tcbLevel `json:"tcbLevels"`
}

type tcbInfo struct {
	ID                      string              `json:"id"`
	Version                 int                 `json:"version"`
	IssueDate               time.Time           `json:"issueDate"`
	NextUpdate              time.Time           `json:"nextUpdate"`
	FMSPC                   hexBytes            `json:"fmspc"`
	PCEID                   hexBytes            `json:"pceId"`
	TCBType                 int                 `json:"tcbType"`
	TCBEvaluationDataNumber int64               `json:"tcbEvaluationDataNumber"`
	TDXModule               *tdxModule          `json:"tdxModule"`
	TDXModuleIdentities     []tdxModuleIdentity `json:"tdxModuleIdentities"`
	TCBLevels               []tcbLevel          `json:"tcbLevels"`
}

type enclaveIdentity struct {
	ID                      string     `json:"id"`
	Version                 int        `json:"version"`
	IssueDate               time.Time  `json:"issueDate"`
	NextUpdate              time.Time  `json:"nextUpdate"`
	TCBEvaluationDataNumber int64      `json:"tcbEvaluationDataNumber"`
	Miscselect              hexBytes   `json:"miscselect"`
	MiscselectMask          hexBytes   `json:"miscselectMask"`
	Attributes              hexBytes   `json:"attributes"`
	AttributesMask          hexBytes   `json:"attributesMask"`
	MRSigner                hexBytes   `json:"mrsigner"`
	ISVProdID               int        `json:"isvprodid"`
	TCBLevels               []tcbLevel `json:"tcbLevels"`
}

// signedDoc is a signed collateral document: TCB info or QE identity,
// verified with its issuer chain when built.
type signedDoc struct {
	signing, root *x509.Certificate
}

type tcbInfoItem struct {
	signedDoc
	info tcbInfo
}

type qeIdentityItem struct {
	signedDoc
	id enclaveIdentity
}

// crlItem is a verified CRL. chain is the issuer chain that came with it
// (the PCK CRL's), nil for the root CA CRL.
type crlItem struct {
	crl     *x509.RevocationList
	chain   []*x509.Certificate
	number  uint32
	revoked map[string]bool // serial numbers, as decimal strings
}

func (c *crlItem) isRevoked(cert *x509.Certificate) bool {
	return c.revoked[cert.SerialNumber.String()]
}

// decodeIssuerChain decodes a URL-encoded PEM issuer chain (as in the PCS
// response headers) and checks that it is [signer, trusted root] with the
// signer issued by the root.
func decodeIssuerChain(raw []byte, signerCN string, trustedKey []byte) ([]*x509.Certificate, error) {
	s, err := url.PathUnescape(string(raw))
	if err != nil {
		// Already decoded PEM contains no '%' escapes to fail on; anything
		// else is broken.
		return nil, fmt.Errorf("issuer chain is not URL-encoded PEM: %w", err)
	}
	certs, err := parsePEMCerts([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("issuer chain has %d certificates, want 2 (signer, root)", len(certs))
	}
	if err := checkRoot(certs[1], trustedKey); err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	if !strings.Contains(certs[0].Subject.CommonName, signerCN) {
		return nil, fmt.Errorf("issuer chain signer CN %q does not contain %q", certs[0].Subject.CommonName, signerCN)
	}
	if err := checkIssued(certs[0], certs[1]); err != nil {
		return nil, fmt.Errorf("issuer chain: %w", err)
	}
	return certs, nil
}

// splitSigned returns the raw bytes of member name of a signed collateral
// document and its signature.
func splitSigned(doc []byte, name string) (body, sig []byte, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, nil, fmt.Errorf("not a JSON object: %w", err)
	}
	body, ok := m[name]
	if !ok {
		return nil, nil, fmt.Errorf("%q field is missing", name)
	}
	var sigHex string
	if err := json.Unmarshal(m["signature"], &sigHex); err != nil {
		return nil, nil, errors.New("signature is not a string")
	}
	if sig, err = hex.DecodeString(sigHex); err != nil || len(sig) != 64 {
		return nil, nil, errors.New("signature is not 64 hex-encoded bytes")
	}
	return body, sig, nil
}

// verifyDocSignature checks the signer's ECDSA P-256/SHA-256 signature of
// the document body. Intel signs the body as it serves it; a body that was
// re-indented on the way (an offline collateral file) is checked in its
// compact form.
func verifyDocSignature(signer *x509.Certificate, body, sig []byte) error {
	k, err := certKey(signer)
	if err != nil {
		return err
	}
	d := sha256.Sum256(body)
	if verifyRaw(k, d[:], sig) {
		return nil
	}
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil && !bytes.Equal(compact.Bytes(), body) {
		d = sha256.Sum256(compact.Bytes())
		if verifyRaw(k, d[:], sig) {
			return nil
		}
	}
	return errors.New("signature does not verify")
}

func validLevels(levels []tcbLevel, nSGX, nTDX int) error {
	if len(levels) == 0 {
		return errors.New("no TCB levels")
	}
	for i, l := range levels {
		if len(l.TCB.SGX) != nSGX || len(l.TCB.TDX) != nTDX {
			return fmt.Errorf("TCB level %d has %d SGX and %d TDX components, want %d and %d", i, len(l.TCB.SGX), len(l.TCB.TDX), nSGX, nTDX)
		}
		for _, c := range append(append([]tcbComponent(nil), l.TCB.SGX...), l.TCB.TDX...) {
			if c.SVN < 0 || c.SVN > 255 {
				return fmt.Errorf("TCB level %d has an SVN out of range", i)
			}
		}
		if l.TCB.PCESVN < 0 || l.TCB.PCESVN > math.MaxUint16 || l.TCB.ISVSVN < 0 || l.TCB.ISVSVN > math.MaxUint16 {
			return fmt.Errorf("TCB level %d has an SVN out of range", i)
		}
		if l.TCBDate.IsZero() {
			return fmt.Errorf("TCB level %d has no tcbDate", i)
		}
	}
	return nil
}

func validModule(m *tdxModule) error {
	if m == nil {
		return errors.New("tdxModule missing")
	}
	if len(m.MRSigner) != 48 || len(m.Attributes) != 8 || len(m.AttributesMask) != 8 {
		return errors.New("tdxModule has malformed mrsigner or attributes")
	}
	return nil
}

// buildTCBInfo verifies and decodes a TDX TCB info response.
func buildTCBInfo(doc, chainRaw, trustedKey []byte) (*tcbInfoItem, error) {
	chain, err := decodeIssuerChain(chainRaw, "SGX TCB Signing", trustedKey)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	body, sig, err := splitSigned(doc, "tcbInfo")
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if err := verifyDocSignature(chain[0], body, sig); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	it := &tcbInfoItem{signedDoc: signedDoc{signing: chain[0], root: chain[1]}}
	if err := json.Unmarshal(body, &it.info); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	ti := &it.info
	switch {
	case ti.ID != "TDX":
		return nil, fmt.Errorf("TCB info: id %q, want \"TDX\"", ti.ID)
	case ti.Version != 3:
		return nil, fmt.Errorf("TCB info: version %d, want 3", ti.Version)
	case len(ti.FMSPC) != 6 || len(ti.PCEID) != 2:
		return nil, errors.New("TCB info: malformed fmspc or pceId")
	case ti.IssueDate.IsZero() || ti.NextUpdate.IsZero():
		return nil, errors.New("TCB info: issueDate and nextUpdate are required")
	case ti.TCBEvaluationDataNumber < 0 || ti.TCBEvaluationDataNumber > math.MaxUint32:
		return nil, errors.New("TCB info: tcbEvaluationDataNumber out of range")
	}
	if err := validModule(ti.TDXModule); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if err := validLevels(ti.TCBLevels, 16, 16); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	for _, m := range ti.TDXModuleIdentities {
		if err := validModule(&m.tdxModule); err != nil {
			return nil, fmt.Errorf("TCB info: module identity %q: %w", m.ID, err)
		}
		if err := validLevels(m.TCBLevels, 0, 0); err != nil {
			return nil, fmt.Errorf("TCB info: module identity %q: %w", m.ID, err)
		}
	}
	return it, nil
}

// buildQEIdentity verifies and decodes a TD QE identity response.
func buildQEIdentity(doc, chainRaw, trustedKey []byte) (*qeIdentityItem, error) {
	chain, err := decodeIssuerChain(chainRaw, "SGX TCB Signing", trustedKey)
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	body, sig, err := splitSigned(doc, "enclaveIdentity")
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	if err := verifyDocSignature(chain[0], body, sig); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	it := &qeIdentityItem{signedDoc: signedDoc{signing: chain[0], root: chain[1]}}
	if err := json.Unmarshal(body, &it.id); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	qe := &it.id
	switch {
	case qe.ID != "TD_QE":
		return nil, fmt.Errorf("QE identity: id %q, want \"TD_QE\"", qe.ID)
	case qe.Version != 2:
		return nil, fmt.Errorf("QE identity: version %d, want 2", qe.Version)
	case len(qe.Miscselect) != 4 || len(qe.MiscselectMask) != 4 || len(qe.Attributes) != 16 || len(qe.AttributesMask) != 16:
		return nil, errors.New("QE identity: malformed miscselect or attributes")
	case len(qe.MRSigner) != 0 && len(qe.MRSigner) != 32:
		return nil, errors.New("QE identity: malformed mrsigner")
	case qe.ISVProdID < 0 || qe.ISVProdID > math.MaxUint16:
		return nil, errors.New("QE identity: isvprodid out of range")
	case qe.IssueDate.IsZero() || qe.NextUpdate.IsZero():
		return nil, errors.New("QE identity: issueDate and nextUpdate are required")
	case qe.TCBEvaluationDataNumber < 0 || qe.TCBEvaluationDataNumber > math.MaxUint32:
		return nil, errors.New("QE identity: tcbEvaluationDataNumber out of range")
	}
	if err := validLevels(qe.TCBLevels, 0, 0); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	return it, nil
}

// parseCRL decodes a CRL served as DER, as hex of DER (PCCS), or as PEM.
func parseCRL(b []byte) (*x509.RevocationList, error) {
	if crl, err := x509.ParseRevocationList(b); err == nil {
		return crl, nil
	}
	t := bytes.TrimSpace(b)
	if blk, _ := pem.Decode(t); blk != nil && blk.Type == "X509 CRL" {
		return x509.ParseRevocationList(blk.Bytes)
	}
	if der, err := hex.DecodeString(string(t)); err == nil {
		return x509.ParseRevocationList(der)
	}
	return nil, errors.New("CRL is neither DER, hex-encoded DER nor PEM")
}

func newCRLItem(crl *x509.RevocationList) (*crlItem, error) {
	if crl.Number == nil || crl.Number.Sign() < 0 || !crl.Number.IsUint64() || crl.Number.Uint64() > math.MaxUint32 {
		return nil, errors.New("CRL number missing or out of range")
	}
	if crl.NextUpdate.IsZero() {
		return nil, errors.New("CRL has no nextUpdate")
	}
	it := &crlItem{crl: crl, number: uint32(crl.Number.Uint64()), revoked: map[string]bool{}}
	for _, r := range crl.RevokedCertificateEntries {
		it.revoked[r.SerialNumber.String()] = true
	}
	return it, nil
}

// buildPCKCRL verifies and decodes a PCK CRL with its issuer chain [PCK
// CA, root].
func buildPCKCRL(body, chainRaw, trustedKey []byte) (*crlItem, error) {
	chain, err := decodeIssuerChain(chainRaw, "CA", trustedKey)
	if err != nil {
		return nil, fmt.Errorf("PCK CRL: %w", err)
	}
	crl, err := parseCRL(body)
	if err != nil {
		return nil, fmt.Errorf("PCK CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(chain[0]); err != nil {
		return nil, fmt.Errorf("PCK CRL: not signed by its issuer chain: %w", err)
	}
	it, err := newCRLItem(crl)
	if err != nil {
		return nil, fmt.Errorf("PCK CRL: %w", err)
	}
	it.chain = chain
	return it, nil
}

// buildRootCRL verifies and decodes the Intel SGX Root CA CRL.
func buildRootCRL(body []byte, root *x509.Certificate) (*crlItem, error) {
	crl, err := parseCRL(body)
	if err != nil {
		return nil, fmt.Errorf("root CA CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("root CA CRL: not signed by the root CA: %w", err)
	}
	it, err := newCRLItem(crl)
	if err != nil {
		return nil, fmt.Errorf("root CA CRL: %w", err)
	}
	return it, nil
}
