package tdx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// intelRootKey is the uncompressed P-256 public key of the Intel SGX Root CA,
// as Intel's quote verification enclave hard-codes it.
var intelRootKey = []byte{
	0x04, 0x0b, 0xa9, 0xc4, 0xc0, 0xc0, 0xc8, 0x61, 0x93, 0xa3, 0xfe, 0x23, 0xd6, 0xb0, 0x2c,
	0xda, 0x10, 0xa8, 0xbb, 0xd4, 0xe8, 0x8e, 0x48, 0xb4, 0x45, 0x85, 0x61, 0xa3, 0x6e, 0x70,
	0x55, 0x25, 0xf5, 0x67, 0x91, 0x8e, 0x2e, 0xdc, 0x88, 0xe4, 0x0d, 0x86, 0x0b, 0xd0, 0xcc,
	0x4e, 0xe2, 0x6a, 0xac, 0xc9, 0x88, 0xe5, 0x05, 0xa9, 0x53, 0x55, 0x8c, 0x45, 0x3f, 0x6b,
	0x09, 0x04, 0xae, 0x73, 0x94,
}

// IntelRootCA returns the Intel SGX Root CA certificate every PCK and
// collateral signing chain must end in.
func IntelRootCA() *x509.Certificate {
	b, _ := pem.Decode(intelRootPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic("tdx: embedded Intel SGX Root CA does not parse: " + err.Error())
	}
	// The embedded certificate must carry the key Intel's QVL hard-codes:
	// a corrupted or swapped PEM never becomes a trust anchor.
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		panic("tdx: embedded Intel SGX Root CA key is not ECDSA")
	}
	if raw, err := pub.Bytes(); err != nil || !bytes.Equal(raw, intelRootKey) {
		panic("tdx: embedded Intel SGX Root CA key is not Intel's root key")
	}
	return c
}

// Common names and OIDs of the Intel SGX PKI.
const (
	cnRootCA      = "Intel SGX Root CA"
	cnPlatformCA  = "Intel SGX PCK Platform CA"
	cnProcessorCA = "Intel SGX PCK Processor CA"
	cnPCKPhrase   = "SGX PCK Certificate"
	cnTCBSigning  = "Intel SGX TCB Signing"
)

var (
	oidSGXExtensions = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB           = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidPlatformInst  = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidConfiguration = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
)

// PlatformInfo is what the SGX extensions of a PCK certificate say about the
// platform.
type PlatformInfo struct {
	PPID          [16]byte
	TCBComponents [16]byte // SGX TCB component SVNs
	PCESVN        uint16
	CPUSVN        [16]byte
	PCEID         [2]byte
	FMSPC         [6]byte
	// SGXType is 0 (Standard), 1 (Scalable) or 2 (Scalable with Integrity).
	SGXType int
	// PlatformCA is true for certificates of the PCK Platform CA
	// (multi-package platforms), false for the PCK Processor CA.
	PlatformCA bool
	// PlatformInstanceID, DynamicPlatform, CachedKeys and SMTEnabled are
	// only set for Platform CA certificates.
	PlatformInstanceID *[16]byte
	DynamicPlatform    bool
	CachedKeys         bool
	SMTEnabled         bool
}

// pckChain is a quote's PCK certificate chain.
type pckChain struct {
	leaf, intermediate, root *x509.Certificate
	info                     PlatformInfo
}

// parsePCKChain parses the PEM chain of a quote: exactly three
// certificates, leaf first (a trailing NUL is tolerated), and the leaf's
// SGX extensions.
func parsePCKChain(chain []byte) (*pckChain, error) {
	certs, err := parsePEMCerts(bytes.TrimSuffix(chain, []byte{0}))
	if err != nil {
		return nil, fmt.Errorf("PCK certificate chain: %w", err)
	}
	if len(certs) != 3 {
		return nil, fmt.Errorf("PCK cert chain must contain exactly 3 certificates (leaf, intermediate CA, root CA), got %d", len(certs))
	}
	c := &pckChain{leaf: certs[0], intermediate: certs[1], root: certs[2]}
	switch c.intermediate.Subject.CommonName {
	case cnPlatformCA:
		c.info.PlatformCA = true
	case cnProcessorCA:
	default:
		return nil, fmt.Errorf("unexpected PCK intermediate CA CN: %q", c.intermediate.Subject.CommonName)
	}
	if err := parseSGXExtensions(c.leaf, &c.info); err != nil {
		return nil, err
	}
	return c, nil
}

// parsePEMCerts parses a sequence of PEM CERTIFICATE blocks with nothing
// else around them but whitespace.
func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(b)
	for len(rest) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, errors.New("trailing data that is not PEM")
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block of type %q, want CERTIFICATE", blk.Type)
		}
		if len(certs) == limits.MaxCertChain {
			return nil, fmt.Errorf("more than %d certificates", limits.MaxCertChain)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

type oidValue struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

// parseSGXExtensions parses the SGX extensions (1.2.840.113741.1.13.1) of a
// PCK certificate. The platform instance and configuration must be present
// in, and only in, Platform CA certificates.
func parseSGXExtensions(leaf *x509.Certificate, info *PlatformInfo) error {
	var ext []byte
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidSGXExtensions) {
			if ext != nil {
				return errors.New("duplicate SGX extensions in PCK leaf cert")
			}
			ext = e.Value
		}
	}
	if ext == nil {
		return errors.New("SGX extensions OID not found in PCK leaf cert")
	}
	var items []oidValue
	if rest, err := asn1.Unmarshal(ext, &items); err != nil || len(rest) != 0 {
		return fmt.Errorf("failed to parse SGX extension DER: %v", err)
	}
	seen := map[string]bool{}
	for _, it := range items {
		key := it.ID.String()
		if seen[key] {
			return fmt.Errorf("duplicate SGX extension %s", key)
		}
		seen[key] = true
		var err error
		switch {
		case it.ID.Equal(oidPPID):
			err = octets(it.Value, info.PPID[:], "ppid")
		case it.ID.Equal(oidTCB):
			err = parseTCBExtension(it.Value, info)
		case it.ID.Equal(oidPCEID):
			err = octets(it.Value, info.PCEID[:], "pceid")
		case it.ID.Equal(oidFMSPC):
			err = octets(it.Value, info.FMSPC[:], "fmspc")
		case it.ID.Equal(oidSGXType):
			var e asn1.Enumerated
			if _, err = asn1.Unmarshal(it.Value.FullBytes, &e); err == nil && (e < 0 || e > 255) {
				err = fmt.Errorf("sgx type %d out of range", e)
			}
			info.SGXType = int(e)
		case it.ID.Equal(oidPlatformInst):
			var id [16]byte
			if err = octets(it.Value, id[:], "platform_instance"); err == nil {
				// Stored little-endian; upstream reports it reversed.
				slices.Reverse(id[:])
				info.PlatformInstanceID = &id
			}
		case it.ID.Equal(oidConfiguration):
			err = parseConfiguration(it.Value, info)
		}
		if err != nil {
			return fmt.Errorf("SGX extension %s: %w", key, err)
		}
	}
	for _, req := range []asn1.ObjectIdentifier{oidPPID, oidTCB, oidPCEID, oidFMSPC, oidSGXType} {
		if !seen[req.String()] {
			return fmt.Errorf("SGX extension %s missing from PCK leaf cert", req)
		}
	}
	hasPI, hasCfg := seen[oidPlatformInst.String()], seen[oidConfiguration.String()]
	switch {
	case info.PlatformCA && !hasPI:
		return errors.New("platform PCK cert is missing platform_instance")
	case info.PlatformCA && !hasCfg:
		return errors.New("platform PCK cert is missing configuration")
	case !info.PlatformCA && (hasPI || hasCfg):
		return errors.New("processor CA cert unexpectedly contains platform_instance or configuration")
	}
	return nil
}

func octets(v asn1.RawValue, dst []byte, name string) error {
	var b []byte
	if rest, err := asn1.Unmarshal(v.FullBytes, &b); err != nil || len(rest) != 0 {
		return fmt.Errorf("%s is not an OCTET STRING", name)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s is %d bytes, want %d", name, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

func parseTCBExtension(v asn1.RawValue, info *PlatformInfo) error {
	var items []oidValue
	if rest, err := asn1.Unmarshal(v.FullBytes, &items); err != nil || len(rest) != 0 {
		return errors.New("TCB is not a SEQUENCE of (OID, value)")
	}
	var got [18]bool
	for _, it := range items {
		if len(it.ID) != len(oidTCB)+1 || !it.ID[:len(oidTCB)].Equal(oidTCB) {
			continue
		}
		n := it.ID[len(oidTCB)]
		switch {
		case n >= 1 && n <= 16:
			var svn int
			if _, err := asn1.Unmarshal(it.Value.FullBytes, &svn); err != nil || svn < 0 || svn > 255 {
				return fmt.Errorf("TCB component %d is not a byte", n)
			}
			info.TCBComponents[n-1] = byte(svn)
		case n == 17:
			var svn int
			if _, err := asn1.Unmarshal(it.Value.FullBytes, &svn); err != nil || svn < 0 || svn > 0xffff {
				return errors.New("PCESVN is not a u16")
			}
			info.PCESVN = uint16(svn)
		case n == 18:
			if err := octets(it.Value, info.CPUSVN[:], "cpusvn"); err != nil {
				return err
			}
		default:
			continue
		}
		if got[n-1] {
			return fmt.Errorf("duplicate TCB component %d", n)
		}
		got[n-1] = true
	}
	for i, ok := range got {
		if !ok {
			return fmt.Errorf("TCB component %d missing", i+1)
		}
	}
	return nil
}

func parseConfiguration(v asn1.RawValue, info *PlatformInfo) error {
	var items []oidValue
	if rest, err := asn1.Unmarshal(v.FullBytes, &items); err != nil || len(rest) != 0 {
		return errors.New("configuration is not a SEQUENCE of (OID, value)")
	}
	flags := map[int]*bool{1: &info.DynamicPlatform, 2: &info.CachedKeys, 3: &info.SMTEnabled}
	for _, it := range items {
		if len(it.ID) != len(oidConfiguration)+1 || !it.ID[:len(oidConfiguration)].Equal(oidConfiguration) {
			continue
		}
		dst, ok := flags[it.ID[len(oidConfiguration)]]
		if !ok {
			continue
		}
		if _, err := asn1.Unmarshal(it.Value.FullBytes, dst); err != nil {
			return fmt.Errorf("configuration flag %s is not a BOOLEAN", it.ID)
		}
	}
	return nil
}

// rawP256Key converts a raw X||Y P-256 public key.
func rawP256Key(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) != 64 {
		return nil, fmt.Errorf("public key of %d bytes, want 64", len(b))
	}
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, b...))
	if err != nil {
		return nil, fmt.Errorf("public key is not on P-256: %w", err)
	}
	return k, nil
}

// verifyRaw verifies a raw r||s ECDSA P-256 signature of the SHA-256 of msg.
func verifyRaw(pub *ecdsa.PublicKey, digest []byte, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest, r, s)
}

// certKey returns a certificate's P-256 public key.
func certKey(c *x509.Certificate) (*ecdsa.PublicKey, error) {
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certificate %q does not have a P-256 key", c.Subject.CommonName)
	}
	return k, nil
}

// uncompressedKey returns the 65-byte uncompressed form of a P-256 key.
func uncompressedKey(c *x509.Certificate) ([]byte, error) {
	k, err := certKey(c)
	if err != nil {
		return nil, err
	}
	return k.Bytes()
}

// rootKeyID is the SHA-384 of the uncompressed root public key, Intel's
// root_key_id.
func rootKeyID(root *x509.Certificate) ([]byte, error) {
	k, err := uncompressedKey(root)
	if err != nil {
		return nil, err
	}
	s := sha512.Sum384(k)
	return s[:], nil
}

// checkIssued verifies that child is signed by parent and names it as
// issuer. Validity periods are not checked here: expiry is reported, not
// fatal, as in Intel's library.
func checkIssued(child, parent *x509.Certificate) error {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return fmt.Errorf("%q is not issued by %q", child.Subject.CommonName, parent.Subject.CommonName)
	}
	if err := child.CheckSignatureFrom(parent); err != nil {
		return fmt.Errorf("signature of %q by %q: %w", child.Subject.CommonName, parent.Subject.CommonName, err)
	}
	return nil
}

// checkRoot verifies that c is the trusted root: self-signed, with the
// trusted root's public key.
func checkRoot(c *x509.Certificate, trusted []byte) error {
	if !strings.Contains(c.Subject.CommonName, "SGX Root CA") {
		return fmt.Errorf("%w: root CN %q does not contain \"SGX Root CA\"", ErrUntrustedRoot, c.Subject.CommonName)
	}
	k, err := uncompressedKey(c)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrustedRoot, err)
	}
	if !bytes.Equal(k, trusted) {
		return fmt.Errorf("%w: root CA public key is not the trusted root's", ErrUntrustedRoot)
	}
	if err := checkIssued(c, c); err != nil {
		return fmt.Errorf("%w: root CA is not self-signed: %v", ErrUntrustedRoot, err)
	}
	return nil
}
