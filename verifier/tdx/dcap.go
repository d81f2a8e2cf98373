package tdx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"

	"golang.org/x/sync/errgroup"
)

// This file is the quote verification of Intel's DCAP Quote Verification
// Library (QVL/QvE), which upstream Trustee calls through tee_verify_quote:
// PCK chain and CRLs, collateral, QE report and identity, quote signature,
// TCB level evaluation, and the supplemental data upstream turns into
// claims.

// collateralSet is the verified collateral of one quote.
type collateralSet struct {
	tcb     *tcbInfoItem
	qe      *qeIdentityItem
	pckCRL  *crlItem
	rootCRL *crlItem
}

// collateral fetches (or takes from the cache) the collateral for a
// platform, the four pieces concurrently.
func (v *Verifier) collateral(ctx context.Context, info *PlatformInfo) (*collateralSet, error) {
	var set collateralSet
	g, gctx := errgroup.WithContext(ctx)
	durable := v.src.durable()
	key, f := v.src.tcbInfo(gctx, info.FMSPC)
	g.Go(func() error {
		it, err := v.cache.get(gctx, key, durable, f, func(body, chain []byte) (any, time.Time, error) {
			it, err := buildTCBInfo(body, chain, v.rootKey)
			if err != nil {
				return nil, time.Time{}, err
			}
			return it, it.info.NextUpdate, nil
		})
		if err != nil {
			return fmt.Errorf("fetching TCB info: %w", err)
		}
		set.tcb = it.(*tcbInfoItem)
		return nil
	})
	qkey, qf := v.src.qeIdentity(gctx)
	g.Go(func() error {
		it, err := v.cache.get(gctx, qkey, durable, qf, func(body, chain []byte) (any, time.Time, error) {
			it, err := buildQEIdentity(body, chain, v.rootKey)
			if err != nil {
				return nil, time.Time{}, err
			}
			return it, it.id.NextUpdate, nil
		})
		if err != nil {
			return fmt.Errorf("fetching QE identity: %w", err)
		}
		set.qe = it.(*qeIdentityItem)
		return nil
	})
	pkey, pf := v.src.pckCRL(gctx, caType(info.PlatformCA))
	g.Go(func() error {
		it, err := v.cache.get(gctx, pkey, durable, pf, func(body, chain []byte) (any, time.Time, error) {
			it, err := buildPCKCRL(body, chain, v.rootKey)
			if err != nil {
				return nil, time.Time{}, err
			}
			return it, it.crl.NextUpdate, nil
		})
		if err != nil {
			return fmt.Errorf("fetching PCK CRL: %w", err)
		}
		set.pckCRL = it.(*crlItem)
		return nil
	})
	// The root CA CRL's distribution point is in the root certificate,
	// which every issuer chain must end in.
	var cdp string
	if len(v.root.CRLDistributionPoints) > 0 {
		cdp = v.root.CRLDistributionPoints[0]
	}
	rkey, rf := v.src.rootCRL(gctx, cdp)
	g.Go(func() error {
		it, err := v.cache.get(gctx, rkey, durable, rf, func(body, _ []byte) (any, time.Time, error) {
			it, err := buildRootCRL(body, v.root)
			if err != nil {
				return nil, time.Time{}, err
			}
			return it, it.crl.NextUpdate, nil
		})
		if err != nil {
			return fmt.Errorf("fetching root CA CRL: %w", err)
		}
		set.rootCRL = it.(*crlItem)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return &set, nil
}

// maxVerifiedChains bounds the cache of verified PCK chains (one per
// platform).
const maxVerifiedChains = limits.MaxTDXVerifiedChains

// verifiedChain parses and verifies a quote's PCK chain up to the trusted
// root, or takes it from the cache of chains verified before (keyed by the
// chain's bytes). It runs before any collateral is fetched, so that only
// Intel-signed FMSPCs are ever requested. Validity periods and revocation
// are checked per quote, later.
func (v *Verifier) verifiedChain(pem []byte) (*pckChain, error) {
	key := sha256.Sum256(pem)
	v.mu.Lock()
	c, ok := v.chains[key]
	v.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := parsePCKChain(pem)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c.root.Raw, v.root.Raw) {
		if err := checkRoot(c.root, v.rootKey); err != nil {
			return nil, err
		}
	}
	if !strings.Contains(c.leaf.Subject.CommonName, cnPCKPhrase) {
		return nil, fmt.Errorf("PCK certificate CN %q does not contain %q", c.leaf.Subject.CommonName, cnPCKPhrase)
	}
	if err := checkIssued(c.intermediate, c.root); err != nil {
		return nil, err
	}
	if err := checkIssued(c.leaf, c.intermediate); err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.chains) >= maxVerifiedChains {
		clear(v.chains)
	}
	v.chains[key] = c
	v.mu.Unlock()
	return c, nil
}

// tcbEval is a TCB level evaluation result.
type tcbEval struct {
	status     string // "UpToDate", ...; never Revoked
	date       time.Time
	advisories []string // sorted, unique
}

// verifyQuote verifies a parsed quote as Intel's library does and returns
// its PCK chain and the supplemental claims.
func (v *Verifier) verifyQuote(ctx context.Context, q *Quote) (*pckChain, map[string]any, error) {
	chain, err := v.verifiedChain(q.PCKChain)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: PCK certificate chain: %w", ErrQuoteVerification, err)
	}
	col, err := v.collateral(ctx, &chain.info)
	if err != nil {
		return nil, nil, err
	}
	if err := v.checkRevocation(chain, col); err != nil {
		return nil, nil, err
	}
	if err := checkQuote(q, chain, col); err != nil {
		return nil, nil, err
	}
	eval, err := evaluateTCB(q, &chain.info, col)
	if err != nil {
		return nil, nil, err
	}
	supp, err := v.supplemental(q, chain, col, eval)
	if err != nil {
		return nil, nil, err
	}
	return chain, supp, nil
}

// checkRevocation checks the CRLs against the chains: the PCK CRL must be
// the quote's PCK CA's, and no certificate may be revoked.
func (v *Verifier) checkRevocation(c *pckChain, col *collateralSet) error {
	pck := col.pckCRL
	if !bytes.Equal(pck.crl.RawIssuer, c.leaf.RawIssuer) {
		return fmt.Errorf("%w: PCK CRL is issued by another CA than the PCK certificate", ErrCollateral)
	}
	if !bytes.Equal(c.intermediate.Raw, pck.chain[0].Raw) {
		if err := pck.crl.CheckSignatureFrom(c.intermediate); err != nil {
			return fmt.Errorf("%w: PCK CRL is not signed by the PCK CA: %w", ErrCollateral, err)
		}
	}
	if col.rootCRL.isRevoked(c.intermediate) {
		return fmt.Errorf("%w: %w: PCK CA certificate is revoked by the root CA", ErrQuoteVerification, ErrRevoked)
	}
	if pck.isRevoked(c.leaf) {
		return fmt.Errorf("%w: %w: PCK certificate is revoked by the PCK CA", ErrQuoteVerification, ErrRevoked)
	}
	for _, s := range []struct {
		what string
		doc  signedDoc
	}{{"TCB info", col.tcb.signedDoc}, {"QE identity", col.qe.signedDoc}} {
		if col.rootCRL.isRevoked(s.doc.signing) {
			return fmt.Errorf("%w: %w: %s signing certificate is revoked", ErrCollateral, ErrRevoked, s.what)
		}
	}
	if col.rootCRL.isRevoked(pck.chain[0]) {
		return fmt.Errorf("%w: %w: PCK CRL issuer is revoked", ErrCollateral, ErrRevoked)
	}
	return nil
}

func applyMask(v, mask []byte) []byte {
	out := make([]byte, len(v))
	for i := range v {
		out[i] = v[i] & mask[i]
	}
	return out
}

// checkQuote runs the quote checks of Intel's QuoteVerifier, in its order.
func checkQuote(q *Quote, c *pckChain, col *collateralSet) error {
	ti := &col.tcb.info
	if !bytes.Equal(ti.FMSPC, c.info.FMSPC[:]) {
		return fmt.Errorf("%w: FMSPC of the TCB info (%x) and of the PCK certificate (%x) differ", ErrQuoteVerification, ti.FMSPC, c.info.FMSPC)
	}
	if !bytes.Equal(ti.PCEID, c.info.PCEID[:]) {
		return fmt.Errorf("%w: PCEID of the TCB info (%x) and of the PCK certificate (%x) differ", ErrQuoteVerification, ti.PCEID, c.info.PCEID)
	}

	// TDX module identity.
	mod := ti.TDXModule
	if ver := q.Body.TEETCBSVN[1]; ver > 0 {
		m := findModuleIdentity(ti, ver)
		if m == nil {
			return fmt.Errorf("%w: TDX module mismatch: no module identity TDX_%02X in the TCB info", ErrQuoteVerification, ver)
		}
		mod = &m.tdxModule
	}
	if !bytes.Equal(mod.MRSigner, q.Body.MRSignerSEAM[:]) {
		return fmt.Errorf("%w: TDX module mismatch: MRSIGNERSEAM %x is not the TCB info's %x", ErrQuoteVerification, q.Body.MRSignerSEAM, []byte(mod.MRSigner))
	}
	for i, a := range q.Body.SEAMAttributes {
		if a != 0 || a != mod.Attributes[i] {
			return fmt.Errorf("%w: TDX module mismatch: SEAMATTRIBUTES %x are not zero and equal to the TCB info's %x", ErrQuoteVerification, q.Body.SEAMAttributes, []byte(mod.Attributes))
		}
	}

	// QE report, signed by the PCK, binding the attestation key.
	pckKey, err := certKey(c.leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrQuoteVerification, err)
	}
	d := sha256.Sum256(q.QEReport[:])
	if !verifyRaw(pckKey, d[:], q.QEReportSignature[:]) {
		return fmt.Errorf("%w: QE report signature does not verify with the PCK certificate", ErrQuoteVerification)
	}
	h := sha256.New()
	h.Write(q.AttestKey[:])
	h.Write(q.QEAuthData)
	if !bytes.Equal(h.Sum(nil), q.qeReportData()[:32]) {
		return fmt.Errorf("%w: QE report data is not SHA-256(attestation key || QE authentication data)", ErrQuoteVerification)
	}

	// QE identity.
	qe := &col.qe.id
	misc := uint32(qe.Miscselect[0]) | uint32(qe.Miscselect[1])<<8 | uint32(qe.Miscselect[2])<<16 | uint32(qe.Miscselect[3])<<24
	miscMask := uint32(qe.MiscselectMask[0]) | uint32(qe.MiscselectMask[1])<<8 | uint32(qe.MiscselectMask[2])<<16 | uint32(qe.MiscselectMask[3])<<24
	switch {
	case q.qeMiscSelect()&miscMask != misc:
		return fmt.Errorf("%w: QE identity mismatch: MISCSELECT", ErrQuoteVerification)
	case !bytes.Equal(applyMask(q.qeAttributes(), qe.AttributesMask), qe.Attributes):
		return fmt.Errorf("%w: QE identity mismatch: ATTRIBUTES", ErrQuoteVerification)
	case len(qe.MRSigner) > 0 && !bytes.Equal(qe.MRSigner, q.qeMRSigner()):
		return fmt.Errorf("%w: QE identity mismatch: MRSIGNER", ErrQuoteVerification)
	case int(q.qeISVProdID()) != qe.ISVProdID:
		return fmt.Errorf("%w: QE identity mismatch: ISVPRODID", ErrQuoteVerification)
	}

	// Quote signature by the attestation key.
	ak, err := rawP256Key(q.AttestKey[:])
	if err != nil {
		return fmt.Errorf("%w: attestation key: %w", ErrQuoteVerification, err)
	}
	d = sha256.Sum256(q.SignedData())
	if !verifyRaw(ak, d[:], q.Signature[:]) {
		return fmt.Errorf("%w: quote signature does not verify with the attestation key", ErrQuoteVerification)
	}
	return nil
}

func findModuleIdentity(ti *tcbInfo, version byte) *tdxModuleIdentity {
	want := fmt.Sprintf("TDX_%02X", version)
	for i := range ti.TDXModuleIdentities {
		if strings.ToUpper(ti.TDXModuleIdentities[i].ID) == want {
			return &ti.TDXModuleIdentities[i]
		}
	}
	return nil
}

// Evaluation statuses, as Intel's library names them.
const (
	stUpToDate                    = "UpToDate"
	stOutOfDate                   = "OutOfDate"
	stConfigurationNeeded         = "ConfigurationNeeded"
	stRevoked                     = "Revoked"
	stOutOfDateConfigNeeded       = "OutOfDateConfigurationNeeded"
	stSWHardeningNeeded           = "SWHardeningNeeded"
	stConfigAndSWHardeningNeeded  = "ConfigurationAndSWHardeningNeeded"
	stTDRelaunchAdvised           = "TDRelaunchAdvised"
	stTDRelaunchAdvisedConfNeeded = "TDRelaunchAdvisedConfigurationNeeded"
)

var (
	platformStatuses = map[string]bool{stUpToDate: true, stOutOfDate: true, stConfigurationNeeded: true, stRevoked: true,
		stOutOfDateConfigNeeded: true, stSWHardeningNeeded: true, stConfigAndSWHardeningNeeded: true}
	moduleStatuses = map[string]bool{stUpToDate: true, stOutOfDate: true, stRevoked: true}
	qeStatuses     = map[string]bool{stUpToDate: true, stOutOfDate: true, stConfigurationNeeded: true, stRevoked: true, stOutOfDateConfigNeeded: true}
)

func tcbNotSupported(format string, args ...any) error {
	return fmt.Errorf("%w: TCB not supported: %s", ErrTCBStatus, fmt.Sprintf(format, args...))
}

func svnsHigherOrEqual(svns []byte, level []tcbComponent, start int) bool {
	for i := start; i < 16; i++ {
		if int(svns[i]) < level[i].SVN {
			return false
		}
	}
	return true
}

// qeLevel finds the QE identity TCB level of the QE's ISVSVN: the first
// (highest) whose isvsvn is not above it.
func qeLevel(qe *enclaveIdentity, isvsvn uint16) *tcbLevel {
	for i := range qe.TCBLevels {
		if qe.TCBLevels[i].TCB.ISVSVN <= int(isvsvn) {
			return &qe.TCBLevels[i]
		}
	}
	return nil
}

// platformLevel finds the TCB info level that the PCK certificate's SGX
// TCB and the quote's TEE TCB SVN meet.
func platformLevel(info *PlatformInfo, teeSVN [16]byte, ti *tcbInfo) *tcbLevel {
	start := 0
	if teeSVN[1] > 0 {
		start = 2
	}
	for i := range ti.TCBLevels {
		l := &ti.TCBLevels[i]
		if svnsHigherOrEqual(info.TCBComponents[:], l.TCB.SGX, 0) &&
			int(info.PCESVN) >= l.TCB.PCESVN &&
			svnsHigherOrEqual(teeSVN[:], l.TCB.TDX, start) {
			return l
		}
	}
	return nil
}

// tdxEvaluate evaluates the TDX TCB for one TEE TCB SVN: the platform
// level, converged with the TDX module and QE levels.
func tdxEvaluate(info *PlatformInfo, qeSVN uint16, teeSVN [16]byte, ti *tcbInfo, qe *enclaveIdentity) (tcbEval, error) {
	pl := platformLevel(info, teeSVN, ti)
	if pl == nil {
		return tcbEval{}, tcbNotSupported("no TDX TCB level matches the platform")
	}
	if !platformStatuses[pl.TCBStatus] {
		return tcbEval{}, tcbNotSupported("unrecognized TCB status %q", pl.TCBStatus)
	}
	var components []string
	dates := []time.Time{pl.TCBDate}
	adv := map[string]bool{}
	for _, a := range pl.AdvisoryIDs {
		adv[a] = true
	}
	if ver := teeSVN[1]; ver > 0 {
		m := findModuleIdentity(ti, ver)
		if m == nil {
			return tcbEval{}, tcbNotSupported("no TDX module identity TDX_%02X", ver)
		}
		var ml *tcbLevel
		for i := range m.TCBLevels {
			if int(teeSVN[0]) >= m.TCBLevels[i].TCB.ISVSVN {
				ml = &m.TCBLevels[i]
				break
			}
		}
		if ml == nil {
			return tcbEval{}, tcbNotSupported("no TDX module TCB level matches ISVSVN %d", teeSVN[0])
		}
		if !moduleStatuses[ml.TCBStatus] {
			return tcbEval{}, tcbNotSupported("unrecognized TDX module TCB status %q", ml.TCBStatus)
		}
		components = append(components, ml.TCBStatus)
		dates = append(dates, ml.TCBDate)
		for _, a := range ml.AdvisoryIDs {
			adv[a] = true
		}
	}
	ql := qeLevel(qe, qeSVN)
	if ql == nil {
		return tcbEval{}, tcbNotSupported("no QE identity TCB level matches ISVSVN %d", qeSVN)
	}
	if !qeStatuses[ql.TCBStatus] {
		return tcbEval{}, tcbNotSupported("unrecognized QE identity TCB status %q", ql.TCBStatus)
	}
	components = append(components, ql.TCBStatus)
	dates = append(dates, ql.TCBDate)
	for _, a := range ql.AdvisoryIDs {
		adv[a] = true
	}

	status := pl.TCBStatus
	if slices.Contains(components, stOutOfDate) {
		switch status {
		case stUpToDate, stSWHardeningNeeded:
			status = stOutOfDate
		case stConfigurationNeeded, stConfigAndSWHardeningNeeded:
			status = stOutOfDateConfigNeeded
		}
	}
	if slices.Contains(components, stRevoked) {
		status = stRevoked
	}
	ids := make([]string, 0, len(adv))
	for a := range adv {
		ids = append(ids, a)
	}
	slices.Sort(ids)
	return tcbEval{status: status, date: slices.MinFunc(dates, func(a, b time.Time) int { return a.Compare(b) }), advisories: ids}, nil
}

func configurationNeeded(s string) bool {
	switch s {
	case stConfigurationNeeded, stOutOfDateConfigNeeded, stConfigAndSWHardeningNeeded, stTDRelaunchAdvisedConfNeeded:
		return true
	}
	return false
}

// evaluateTCB evaluates the TCB status of a quote. For TDX 1.5 bodies the
// current TCB (TEE_TCB_SVN2) is evaluated too, and an out-of-date launch
// TCB whose current TCB is up to date becomes "TD relaunch advised".
// Revoked and unsupported TCBs are errors, as in upstream.
func evaluateTCB(q *Quote, info *PlatformInfo, col *collateralSet) (tcbEval, error) {
	launch, err := tdxEvaluate(info, q.qeISVSVN(), q.Body.TEETCBSVN, &col.tcb.info, &col.qe.id)
	if err != nil {
		return tcbEval{}, err
	}
	if q.isTDX15() {
		current, err := tdxEvaluate(info, q.qeISVSVN(), q.Body.TEETCBSVN2, &col.tcb.info, &col.qe.id)
		if err != nil {
			return tcbEval{}, fmt.Errorf("current TCB (TEE_TCB_SVN2): %w", err)
		}
		if launch.status == stOutOfDate || launch.status == stOutOfDateConfigNeeded {
			switch current.status {
			case stUpToDate, stSWHardeningNeeded, stConfigurationNeeded, stConfigAndSWHardeningNeeded:
				if configurationNeeded(launch.status) || configurationNeeded(current.status) {
					launch.status = stTDRelaunchAdvisedConfNeeded
				} else {
					launch.status = stTDRelaunchAdvised
				}
			}
		}
	}
	if launch.status == stRevoked {
		return tcbEval{}, fmt.Errorf("%w: verification completed with terminal result: TCB revoked", ErrTCBStatus)
	}
	return launch, nil
}

func rfc3339(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// supplemental computes the claims upstream derives from Intel's
// supplemental data.
func (v *Verifier) supplemental(q *Quote, c *pckChain, col *collateralSet, eval tcbEval) (map[string]any, error) {
	now := v.now()
	var earliestIssue, latestIssue, earliestExpiry time.Time
	issue := func(ts ...time.Time) {
		for _, t := range ts {
			if earliestIssue.IsZero() || t.Before(earliestIssue) {
				earliestIssue = t
			}
			if t.After(latestIssue) {
				latestIssue = t
			}
		}
	}
	expire := func(ts ...time.Time) {
		for _, t := range ts {
			if earliestExpiry.IsZero() || t.Before(earliestExpiry) {
				earliestExpiry = t
			}
		}
	}
	for _, crl := range []*crlItem{col.rootCRL, col.pckCRL} {
		issue(crl.crl.ThisUpdate)
		expire(crl.crl.NextUpdate)
	}
	for _, cert := range slices.Concat(col.pckCRL.chain, []*x509.Certificate{c.leaf, c.intermediate, c.root},
		[]*x509.Certificate{col.tcb.signing, col.tcb.root, col.qe.signing, col.qe.root}) {
		issue(cert.NotBefore)
		expire(cert.NotAfter)
	}
	issue(col.tcb.info.IssueDate, col.qe.id.IssueDate)
	expire(col.tcb.info.NextUpdate, col.qe.id.NextUpdate)

	// TCB date: the earlier of the platform TCB level's and the QE
	// identity level's dates.
	pl := platformLevel(&c.info, q.Body.TEETCBSVN, &col.tcb.info)
	ql := qeLevel(&col.qe.id, q.qeISVSVN())
	tcbDate := pl.TCBDate
	if ql.TCBDate.Before(tcbDate) {
		tcbDate = ql.TCBDate
	}
	rootID, err := rootKeyID(c.root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrQuoteVerification, err)
	}
	evalNum := min(col.tcb.info.TCBEvaluationDataNumber, col.qe.id.TCBEvaluationDataNumber)
	expired := "0"
	if !earliestExpiry.After(now) {
		expired = "1"
	}
	advisories := make([]any, len(eval.advisories))
	for i, a := range eval.advisories {
		advisories[i] = a
	}
	m := map[string]any{
		"earliest_issue_date":          rfc3339(earliestIssue),
		"latest_issue_date":            rfc3339(latestIssue),
		"earliest_expiration_date":     rfc3339(earliestExpiry),
		"tcb_date":                     rfc3339(tcbDate),
		"pck_crl_num":                  col.pckCRL.number,
		"root_ca_crl_num":              col.rootCRL.number,
		"tcb_eval_num":                 uint32(evalNum),
		"platform_provider_id":         hex.EncodeToString(c.info.PPID[:]),
		"sgx_type":                     sgxTypeName(c.info.SGXType),
		"root_key_id":                  hex.EncodeToString(rootID),
		"tcb_status":                   eval.status,
		"collateral_expiration_status": expired,
		"advisory_ids":                 advisories,
	}
	if c.info.SGXType > 0 {
		m["is_dynamic_platform"] = c.info.DynamicPlatform
		m["is_cached_keys"] = c.info.CachedKeys
		m["is_smt_enabled"] = c.info.SMTEnabled
	}
	return m, nil
}

func sgxTypeName(t int) string {
	switch t {
	case 0:
		return "Standard"
	case 1:
		return "Scalable"
	case 2:
		return "Scalable with Integrity"
	}
	return fmt.Sprintf("Unknown (%d)", t)
}
