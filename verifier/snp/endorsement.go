package snp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/go-trustee/go-trustee/verifier"
)

// keyKind is the kind of endorsement key that signs a report.
type keyKind int

const (
	kindVCEK keyKind = iota // chip key, issued by the ASK
	kindVLEK                // loaded key, issued by the ASVK
)

func (k keyKind) String() string {
	if k == kindVLEK {
		return "VLEK"
	}
	return "VCEK"
}

// OIDs of the AMD KDS certificate extensions upstream checks.
var (
	oidHWID     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 4}
	oidBlSPL    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 1}
	oidTeeSPL   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 2}
	oidSnpSPL   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 3}
	oidUcodeSPL = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 8}
	oidFmcSPL   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1, 3, 9}
)

// endorsement is a verified endorsement key: its certificate chains to a
// bundled AMD root. What remains per report is the time validity, the
// signature, and the TCB and chip ID comparison.
type endorsement struct {
	kind  keyKind
	pub   *ecdsa.PublicKey
	chain [3]*x509.Certificate // VCEK/VLEK, ASK/ASVK, ARK
	// From the certificate extensions.
	hwid                []byte // nil when absent (VLEK)
	bl, tee, snp, ucode uint8
	fmc                 uint8
	hasFMC              bool
	product             string
}

// endorsementCache is a bounded map of verified endorsement keys. When
// full, an arbitrary entry is evicted.
type endorsementCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]*endorsement
}

func newEndorsementCache(max int) *endorsementCache {
	return &endorsementCache{max: max, m: make(map[string]*endorsement)}
}

func (c *endorsementCache) get(key string) *endorsement {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[key]
}

func (c *endorsementCache) put(key string, e *endorsement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = e
}

type countingInt struct{ n atomic.Int64 }

func (c *countingInt) add() { c.n.Add(1) }

// parseCert parses one DER or PEM certificate, bounded in size.
func parseCert(b []byte) (*x509.Certificate, error) {
	if len(b) > limits.MaxSNPCertBytes {
		return nil, fmt.Errorf("certificate of %d bytes exceeds the limit of %d", len(b), limits.MaxSNPCertBytes)
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		blk, rest := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("not a single PEM CERTIFICATE block")
		}
		b = blk.Bytes
	}
	return x509.ParseCertificate(b)
}

// buildEndorsement verifies that vek chains to prod's ARK through inter
// (which must be prod's ASK/ASVK or be signed by prod's ARK) and extracts
// what the per-report checks need.
func buildEndorsement(prod *product, kind keyKind, vek, inter *x509.Certificate) (*endorsement, error) {
	role := "ASK"
	if kind == kindVLEK {
		role = "ASVK"
	}
	bundledInter := inter.Equal(prod.ask) || inter.Equal(prod.asvk)
	if !bundledInter {
		if err := inter.CheckSignatureFrom(prod.ark); err != nil {
			return nil, fmt.Errorf("%w: %s (CN=%s) is not signed by the AMD %s ARK: %v", ErrCertChain, role, inter.Subject.CommonName, prod.name, err)
		}
	}
	if err := vek.CheckSignatureFrom(inter); err != nil {
		return nil, fmt.Errorf("%w: %s (CN=%s) is not signed by the %s (CN=%s): %v", ErrCertChain, kind, vek.Subject.CommonName, role, inter.Subject.CommonName, err)
	}
	pub, ok := vek.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: the %s public key is not ECDSA P-384", ErrEndorsementKey, kind)
	}
	e := &endorsement{kind: kind, pub: pub, chain: [3]*x509.Certificate{vek, inter, prod.ark}, product: prod.name}
	if err := e.readExtensions(vek, prod); err != nil {
		return nil, fmt.Errorf("%w: %s certificate extensions: %w", ErrEndorsementKey, kind, err)
	}
	return e, nil
}

func (e *endorsement) readExtensions(c *x509.Certificate, prod *product) error {
	ext := func(oid asn1.ObjectIdentifier) []byte {
		for _, x := range c.Extensions {
			if x.Id.Equal(oid) {
				return x.Value
			}
		}
		return nil
	}
	spls := []struct {
		oid  asn1.ObjectIdentifier
		name string
		dst  *uint8
	}{
		{oidUcodeSPL, "ucodeSPL", &e.ucode},
		{oidSnpSPL, "snpSPL", &e.snp},
		{oidTeeSPL, "teeSPL", &e.tee},
		{oidBlSPL, "blSPL", &e.bl},
	}
	if prod.name == "Turin" {
		spls = append(spls, struct {
			oid  asn1.ObjectIdentifier
			name string
			dst  *uint8
		}{oidFmcSPL, "fmcSPL", &e.fmc})
		e.hasFMC = true
	}
	for _, s := range spls {
		v := ext(s.oid)
		if v == nil {
			return fmt.Errorf("no %s extension (%s)", s.name, s.oid)
		}
		var i int
		rest, err := asn1.Unmarshal(v, &i)
		if err != nil || len(rest) != 0 || i < 0 || i > 255 {
			return fmt.Errorf("%s extension is not a DER INTEGER 0..255", s.name)
		}
		*s.dst = uint8(i)
	}
	if v := ext(oidHWID); v != nil {
		hwid, err := parseHWID(v, prod)
		if err != nil {
			return err
		}
		e.hwid = hwid
	}
	return nil
}

// parseHWID reads the hwID extension: the raw ID (64 bytes; 8 on Turin)
// as the KDS has long issued it, or the same as a DER OCTET STRING.
func parseHWID(v []byte, prod *product) ([]byte, error) {
	okLen := func(n int) bool { return n == 64 || (prod.name == "Turin" && n == 8) }
	if okLen(len(v)) {
		return v, nil
	}
	var octets []byte
	rest, err := asn1.Unmarshal(v, &octets)
	if err != nil || len(rest) != 0 || !okLen(len(octets)) {
		return nil, fmt.Errorf("hwID extension is neither a raw hardware ID nor a DER OCTET STRING of one (%d bytes)", len(v))
	}
	return octets, nil
}

// endorsementFromChain returns the endorsement key of an evidence
// cert_chain, as upstream: the first VCEK or VLEK entry; the ASK entry (the
// last one), else the bundled ASK (ASVK for a VLEK); every ARK entry must
// be the bundled ARK. Verified chains are remembered by their digest.
func (v *Verifier) endorsementFromChain(prod *product, entries []snpev.CertEntry) (*endorsement, error) {
	var vekDER, askDER []byte
	kind := kindVCEK
	for i, c := range entries {
		switch c.Type {
		case snpev.CertARK:
			if err := checkARK(prod, c.Data, i); err != nil {
				return nil, err
			}
		case snpev.CertASK:
			askDER = c.Data
		case snpev.CertVCEK, snpev.CertVLEK:
			if vekDER == nil {
				vekDER = c.Data
				if c.Type == snpev.CertVLEK {
					kind = kindVLEK
				}
			}
		}
	}
	if vekDER == nil {
		return nil, fmt.Errorf("%w: the evidence cert_chain has no VCEK or VLEK", ErrEndorsementKey)
	}
	h := sha256.New()
	fmt.Fprintf(h, "chain\x00%s\x00%d\x00%d\x00", prod.name, kind, len(vekDER))
	h.Write(vekDER)
	h.Write(askDER)
	key := string(h.Sum(nil))
	if e := v.mem.get(key); e != nil {
		return e, nil
	}
	vek, err := parseCert(vekDER)
	if err != nil {
		return nil, fmt.Errorf("%w: cert_chain %s: %v", ErrEndorsementKey, kind, err)
	}
	inter := prod.ask
	if kind == kindVLEK {
		inter = prod.asvk
	}
	if askDER != nil {
		if inter, err = parseCert(askDER); err != nil {
			return nil, fmt.Errorf("%w: cert_chain ASK: %v", ErrCertChain, err)
		}
	}
	e, err := buildEndorsement(prod, kind, vek, inter)
	if err != nil {
		return nil, err
	}
	v.mem.put(key, e)
	return e, nil
}

// checkARK accepts an evidence ARK only if it is the bundled one (same
// certificate, or the same key and signed by it, should AMD re-issue it).
func checkARK(prod *product, der []byte, i int) error {
	if bytes.Equal(der, prod.ark.Raw) {
		return nil
	}
	ark, err := parseCert(der)
	if err != nil {
		return fmt.Errorf("%w: cert_chain[%d] ARK: %v", ErrCertChain, i, err)
	}
	if !bytes.Equal(ark.RawSubjectPublicKeyInfo, prod.ark.RawSubjectPublicKeyInfo) {
		return fmt.Errorf("%w: the cert_chain[%d] ARK (CN=%s) is not the AMD %s ARK", ErrCertChain, i, ark.Subject.CommonName, prod.name)
	}
	if err := ark.CheckSignatureFrom(prod.ark); err != nil {
		return fmt.Errorf("%w: the cert_chain[%d] ARK has an invalid signature: %v", ErrCertChain, i, err)
	}
	return nil
}

// endorsementFromDER returns the endorsement key of a VCEK or VLEK given
// on its own; the issuer name selects the ASK or the ASVK.
func (v *Verifier) endorsementFromDER(prod *product, der []byte) (*endorsement, error) {
	h := sha256.New()
	fmt.Fprintf(h, "der\x00%s\x00", prod.name)
	h.Write(der)
	key := string(h.Sum(nil))
	if e := v.mem.get(key); e != nil {
		return e, nil
	}
	vek, err := parseCert(der)
	if err != nil {
		return nil, fmt.Errorf("%w: endorsement key certificate: %v", ErrEndorsementKey, err)
	}
	kind, inter := kindVCEK, prod.ask
	if bytes.Equal(vek.RawIssuer, prod.asvk.RawSubject) {
		kind, inter = kindVLEK, prod.asvk
	}
	e, err := buildEndorsement(prod, kind, vek, inter)
	if err != nil {
		return nil, err
	}
	v.mem.put(key, e)
	return e, nil
}

// verifyWith checks rep (whose signed encoding is raw) against a verified
// endorsement key: certificate validity at Now, the report signature, the
// chip ID and the reported TCB.
func (v *Verifier) verifyWith(e *endorsement, rep *snpev.Report, raw []byte, prod *product) error {
	if e.product != prod.name {
		return fmt.Errorf("%w: the %s chains to the %s root, the report is from a %s processor", ErrCertChain, e.kind, e.product, prod.name)
	}
	now := v.now()
	for i, c := range e.chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			role := [...]string{e.kind.String(), "ASK", "ARK"}[i]
			if i == 1 && e.kind == kindVLEK {
				role = "ASVK"
			}
			return fmt.Errorf("%w: %s certificate (CN=%s) is valid from %s to %s, not at %s", ErrCertValidity, role, c.Subject.CommonName,
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	if err := checkSignature(e.pub, raw, &rep.Signature); err != nil {
		return fmt.Errorf("%w: %s does not sign the attestation report", ErrReportSignature, e.kind)
	}
	return e.checkTCB(rep)
}

// checkTCB compares the chip ID and TCB the key certifies with the
// report's CHIP_ID and REPORTED_TCB.
func (e *endorsement) checkTCB(rep *snpev.Report) error {
	if !e.hwidMatches(&rep.ChipID) {
		return fmt.Errorf("%w: CHIP_ID %s is not the %s hardware ID %s", ErrTCBMismatch, hex.EncodeToString(rep.ChipID[:len(e.hwid)]), e.kind, hex.EncodeToString(e.hwid))
	}
	t := rep.ReportedTCB
	for _, c := range []struct {
		name      string
		got, cert uint8
	}{
		{"microcode", t.Microcode, e.ucode},
		{"SNP", t.SNP, e.snp},
		{"TEE", t.TEE, e.tee},
		{"boot loader", t.Bootloader, e.bl},
	} {
		if c.got != c.cert {
			return fmt.Errorf("%w: reported %s SVN is %d, the %s certifies %d", ErrTCBMismatch, c.name, c.got, e.kind, c.cert)
		}
	}
	if e.hasFMC {
		if t.FMC == nil {
			return fmt.Errorf("%w: the reported TCB of a Turin processor has no FMC SVN", ErrTCBMismatch)
		}
		if *t.FMC != e.fmc {
			return fmt.Errorf("%w: reported FMC SVN is %d, the %s certifies %d", ErrTCBMismatch, *t.FMC, e.kind, e.fmc)
		}
	}
	return nil
}

// hwidMatches reports whether the hardware ID the key certifies (if any) is
// the report's CHIP_ID (unless MASK_CHIP_ID zeroed it).
func (e *endorsement) hwidMatches(chipID *[64]byte) bool {
	return e.hwid == nil || bytes.Count(chipID[:], []byte{0}) == len(chipID) || bytes.Equal(e.hwid, chipID[:len(e.hwid)])
}

// checkSignature verifies the ECDSA P-384 signature (r, s little-endian)
// over SHA-384 of the signed part of the report.
func checkSignature(pub *ecdsa.PublicKey, raw []byte, sig *snpev.Signature) error {
	if len(raw) < snpev.SignedSize {
		return fmt.Errorf("short report")
	}
	digest := sha512.Sum384(raw[:snpev.SignedSize])
	if !ecdsa.Verify(pub, digest[:], leInt(sig.R[:]), leInt(sig.S[:])) {
		return fmt.Errorf("invalid signature")
	}
	return nil
}

func leInt(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	return new(big.Int).SetBytes(be)
}

// validate checks the binding of the verified report: VMPL 0, then the
// expected report data (padded or truncated to 64 bytes) and init-data
// digest (to 32 bytes), each when expected.
func validate(rep *snpev.Report, exp verifier.Expected) error {
	if err := checkVMPL(rep); err != nil {
		return err
	}
	if exp.ReportData != nil {
		want := regularize(exp.ReportData, len(rep.ReportData))
		if !bytes.Equal(want, rep.ReportData[:]) {
			return fmt.Errorf("%w: snp: REPORT_DATA %s is not the expected %s", verifier.ErrReportDataMismatch,
				hex.EncodeToString(rep.ReportData[:]), hex.EncodeToString(want))
		}
	}
	if exp.InitDataDigest != nil {
		want := regularize(exp.InitDataDigest, len(rep.HostData))
		if !bytes.Equal(want, rep.HostData[:]) {
			return fmt.Errorf("%w: snp: HOST_DATA %s is not the expected init-data digest %s", verifier.ErrInitDataMismatch,
				hex.EncodeToString(rep.HostData[:]), hex.EncodeToString(want))
		}
	}
	return nil
}

func checkVMPL(rep *snpev.Report) error {
	if rep.VMPL != 0 {
		return fmt.Errorf("%w: VMPL is %d, want 0", ErrVMPL, rep.VMPL)
	}
	return nil
}

// regularize zero-pads or truncates b to n bytes, as upstream's
// regularize_data.
func regularize(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// claims are upstream's parse_tee_evidence claims.
func claims(r *snpev.Report) verifier.Claims {
	p := r.Policy
	return verifier.Claims{
		"policy_abi_major":     int(p >> 8 & 0xFF),
		"policy_abi_minor":     int(p & 0xFF),
		"policy_smt_allowed":   p&policySMTAllowed != 0,
		"policy_migrate_ma":    p&policyMigrateMAAllowed != 0,
		"policy_debug_allowed": p&policyDebugAllowed != 0,
		"policy_single_socket": p&policySingleSocketRequire != 0,

		"reported_tcb_bootloader": int(r.ReportedTCB.Bootloader),
		"reported_tcb_tee":        int(r.ReportedTCB.TEE),
		"reported_tcb_snp":        int(r.ReportedTCB.SNP),
		"reported_tcb_microcode":  int(r.ReportedTCB.Microcode),

		"platform_tsme_enabled": r.PlatInfo&platTSMEEnabled != 0,
		"platform_smt_enabled":  r.PlatInfo&platSMTEnabled != 0,

		"measurement": hex.EncodeToString(r.Measurement[:]),
		"report_data": hex.EncodeToString(r.ReportData[:]),
		"init_data":   hex.EncodeToString(r.HostData[:]),

		"chip_id": hex.EncodeToString(r.ChipID[:]),
	}
}

// Policy bits (GuestPolicy).
const (
	policySMTAllowed          = 1 << 16
	policyMigrateMAAllowed    = 1 << 18
	policyDebugAllowed        = 1 << 19
	policySingleSocketRequire = 1 << 20
)

// Platform info bits (PlatformInfo).
const (
	platSMTEnabled  = 1 << 0
	platTSMEEnabled = 1 << 1
)
