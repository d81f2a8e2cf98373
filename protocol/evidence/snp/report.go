package snp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-trustee/go-trustee/protocol/evidence"
)

// Why this file rebuilds the binary report: the evidence carries the report
// in the Rust sev crate's serde form (fields, not bytes), and upstream
// verifies the signature over the bytes that crate re-encodes from those
// fields, with every reserved byte zero. Report is a field-for-field mirror
// of that type, and marshal is its encoder, so that the signed bytes are
// exactly what the AMD secure processor signed. ParseReport is the matching
// decoder; it refuses any byte the serde form cannot carry (a non-zero
// reserved byte), so binary → Report → binary is the identity and no byte
// of a report can be dropped unnoticed.

// ErrUnsupportedReport means the report version or processor generation is
// not one this package (and so the verifier) supports.
var ErrUnsupportedReport = errors.New("snp: unsupported attestation report")

// ReportSize is the size of a binary SEV-SNP attestation report.
const ReportSize = 1184

// SignedSize is the number of leading report bytes the signature covers.
const SignedSize = 0x2A0

// Offsets of the binary report (SEV-SNP firmware ABI, ATTESTATION_REPORT).
const (
	offVersion         = 0x000
	offGuestSVN        = 0x004
	offPolicy          = 0x008
	offFamilyID        = 0x010
	offImageID         = 0x020
	offVMPL            = 0x030
	offSigAlgo         = 0x034
	offCurrentTCB      = 0x038
	offPlatInfo        = 0x040
	offKeyInfo         = 0x048
	offReportData      = 0x050
	offMeasurement     = 0x090
	offHostData        = 0x0C0
	offIDKeyDigest     = 0x0E0
	offAuthorKeyDigest = 0x110
	offReportID        = 0x140
	offReportIDMA      = 0x160
	offReportedTCB     = 0x180
	offCPUIDFamID      = 0x188
	offCPUIDModID      = 0x189
	offCPUIDStep       = 0x18A
	offChipID          = 0x1A0
	offCommittedTCB    = 0x1E0
	offCurrent         = 0x1E8 // build, minor, major, reserved
	offCommitted       = 0x1EC // build, minor, major, reserved
	offLaunchTCB       = 0x1F0
	offLaunchMitVector = 0x1F8
	offCurMitVector    = 0x200
	offSignatureR      = 0x2A0
	offSignatureS      = 0x2E8
	sigComponentSize   = 72
)

// TCBVersion is a TCB_VERSION, as the sev crate's TcbVersion.
type TCBVersion struct {
	// FMC is the FMC SPL; present on Turin only.
	FMC        *uint8
	Bootloader uint8
	TEE        uint8
	SNP        uint8
	Microcode  uint8
}

// FirmwareVersion is a firmware version (major.minor.build).
type FirmwareVersion struct {
	Major uint8
	Minor uint8
	Build uint8
}

// Signature is the report signature: ECDSA P-384 r and s, little-endian,
// zero-extended to 72 bytes.
type Signature struct {
	R [sigComponentSize]byte
	S [sigComponentSize]byte
}

// Report is an SEV-SNP attestation report (versions 2 and up), with the
// fields and optional fields of the Rust sev crate's AttestationReport.
type Report struct {
	Version         uint32
	GuestSVN        uint32
	Policy          uint64
	FamilyID        [16]byte
	ImageID         [16]byte
	VMPL            uint32
	SigAlgo         uint32
	CurrentTCB      TCBVersion
	PlatInfo        uint64
	KeyInfo         uint32
	ReportData      [64]byte
	Measurement     [48]byte
	HostData        [32]byte
	IDKeyDigest     [48]byte
	AuthorKeyDigest [48]byte
	ReportID        [32]byte
	ReportIDMA      [32]byte
	ReportedTCB     TCBVersion
	// CPUIDFamID, CPUIDModID and CPUIDStep are present from version 3.
	CPUIDFamID   *uint8
	CPUIDModID   *uint8
	CPUIDStep    *uint8
	ChipID       [64]byte
	CommittedTCB TCBVersion
	Current      FirmwareVersion
	Committed    FirmwareVersion
	LaunchTCB    TCBVersion
	// LaunchMitVector and CurrentMitVector are present from version 5.
	LaunchMitVector  *uint64
	CurrentMitVector *uint64
	Signature        Signature
}

// TCBLayout is the encoding of a TCB_VERSION, which depends on the
// processor generation.
type TCBLayout int

const (
	// LayoutLegacy (Milan, Genoa): bootloader, tee, 4 reserved, snp, microcode.
	LayoutLegacy TCBLayout = iota
	// LayoutTurin: fmc, bootloader, tee, snp, 3 reserved, microcode.
	LayoutTurin
)

// reportVariant is the layout of the report body.
type reportVariant int

const (
	variantV2 reportVariant = iota // no CPUID, no mitigation vectors
	variantV3                      // versions 3 and 4: CPUID
	variantV5                      // versions 5 and up: CPUID, mitigation vectors
)

func variantOf(version uint32) (reportVariant, error) {
	switch {
	case version < 2:
		return 0, fmt.Errorf("%w: report version %d", ErrUnsupportedReport, version)
	case version == 2:
		return variantV2, nil
	case version < 5:
		return variantV3, nil
	default:
		return variantV5, nil
	}
}

// codecLayout is the TCB layout the sev crate uses to encode or decode a
// report: from CPUID (version 3+) or, for version 2, from the shape of the
// CHIP_ID (a Turin CHIP_ID is 8 bytes, zero-extended).
func codecLayout(variant reportVariant, fam, mod uint8, chipID []byte) (TCBLayout, error) {
	if variant == variantV2 {
		if allZero(chipID) {
			return 0, fmt.Errorf("%w: version 2 report with a masked CHIP_ID: processor generation unknown", ErrUnsupportedReport)
		}
		if allZero(chipID[8:]) {
			return LayoutTurin, nil
		}
		return LayoutLegacy, nil
	}
	switch fam {
	case 0x19:
		if mod <= 0x0F || (mod >= 0x10 && mod <= 0x1F) || (mod >= 0xA0 && mod <= 0xAF) {
			return LayoutLegacy, nil
		}
	case 0x1A:
		if mod <= 0x11 {
			return LayoutTurin, nil
		}
	}
	return 0, fmt.Errorf("%w: CPUID family 0x%x model 0x%x is not a known SEV-SNP processor", ErrUnsupportedReport, fam, mod)
}

func decodeTCB(b []byte, l TCBLayout) TCBVersion {
	if l == LayoutTurin {
		fmc := b[0]
		return TCBVersion{FMC: &fmc, Bootloader: b[1], TEE: b[2], SNP: b[3], Microcode: b[7]}
	}
	return TCBVersion{Bootloader: b[0], TEE: b[1], SNP: b[6], Microcode: b[7]}
}

func encodeTCB(b []byte, t TCBVersion, l TCBLayout, name string) error {
	if l == LayoutTurin {
		if t.FMC != nil {
			b[0] = *t.FMC
		}
		b[1], b[2], b[3], b[7] = t.Bootloader, t.TEE, t.SNP, t.Microcode
		return nil
	}
	if t.FMC != nil {
		return fmt.Errorf("%s has an fmc, which only Turin processors report", name)
	}
	b[0], b[1], b[6], b[7] = t.Bootloader, t.TEE, t.SNP, t.Microcode
	return nil
}

// ParseReport decodes a binary attestation report (exactly ReportSize
// bytes, version 2 or later) as the sev crate does, and refuses any
// non-zero reserved byte, so that MarshalBinary gives the input back.
// Errors wrap evidence.ErrMalformed or ErrUnsupportedReport.
func ParseReport(b []byte) (*Report, error) {
	if len(b) != ReportSize {
		return nil, fmt.Errorf("%w: attestation report is %d bytes, want %d", evidence.ErrMalformed, len(b), ReportSize)
	}
	le := binary.LittleEndian
	r := &Report{Version: le.Uint32(b[offVersion:])}
	variant, err := variantOf(r.Version)
	if err != nil {
		return nil, err
	}
	layout, err := codecLayout(variant, b[offCPUIDFamID], b[offCPUIDModID], b[offChipID:offChipID+64])
	if err != nil {
		return nil, err
	}
	r.GuestSVN = le.Uint32(b[offGuestSVN:])
	r.Policy = le.Uint64(b[offPolicy:])
	copy(r.FamilyID[:], b[offFamilyID:])
	copy(r.ImageID[:], b[offImageID:])
	r.VMPL = le.Uint32(b[offVMPL:])
	r.SigAlgo = le.Uint32(b[offSigAlgo:])
	r.CurrentTCB = decodeTCB(b[offCurrentTCB:offCurrentTCB+8], layout)
	r.PlatInfo = le.Uint64(b[offPlatInfo:])
	r.KeyInfo = le.Uint32(b[offKeyInfo:])
	copy(r.ReportData[:], b[offReportData:])
	copy(r.Measurement[:], b[offMeasurement:])
	copy(r.HostData[:], b[offHostData:])
	copy(r.IDKeyDigest[:], b[offIDKeyDigest:])
	copy(r.AuthorKeyDigest[:], b[offAuthorKeyDigest:])
	copy(r.ReportID[:], b[offReportID:])
	copy(r.ReportIDMA[:], b[offReportIDMA:])
	r.ReportedTCB = decodeTCB(b[offReportedTCB:offReportedTCB+8], layout)
	if variant != variantV2 {
		fam, mod, step := b[offCPUIDFamID], b[offCPUIDModID], b[offCPUIDStep]
		r.CPUIDFamID, r.CPUIDModID, r.CPUIDStep = &fam, &mod, &step
	}
	copy(r.ChipID[:], b[offChipID:])
	r.CommittedTCB = decodeTCB(b[offCommittedTCB:offCommittedTCB+8], layout)
	r.Current = FirmwareVersion{Build: b[offCurrent], Minor: b[offCurrent+1], Major: b[offCurrent+2]}
	r.Committed = FirmwareVersion{Build: b[offCommitted], Minor: b[offCommitted+1], Major: b[offCommitted+2]}
	r.LaunchTCB = decodeTCB(b[offLaunchTCB:offLaunchTCB+8], layout)
	if variant == variantV5 {
		lmv, cmv := le.Uint64(b[offLaunchMitVector:]), le.Uint64(b[offCurMitVector:])
		r.LaunchMitVector, r.CurrentMitVector = &lmv, &cmv
	}
	copy(r.Signature.R[:], b[offSignatureR:])
	copy(r.Signature.S[:], b[offSignatureS:])

	back, err := r.MarshalLayout(layout)
	if err != nil {
		return nil, fmt.Errorf("%w: attestation report: %w", evidence.ErrMalformed, err)
	}
	for i := range back {
		if back[i] != b[i] {
			return nil, fmt.Errorf("%w: attestation report byte 0x%03x is reserved and must be zero", evidence.ErrMalformed, i)
		}
	}
	return r, nil
}

// MarshalBinary encodes r as the sev crate does (reserved bytes zero), with
// the TCB layout of the processor generation its CPUID (or, for version 2,
// its CHIP_ID) names. It fails for fields the binary form cannot carry
// (an fmc on a pre-Turin processor, CPUID in version 2, mitigation vectors
// before version 5).
func (r *Report) MarshalBinary() ([]byte, error) {
	variant, err := variantOf(r.Version)
	if err != nil {
		return nil, err
	}
	var fam, mod uint8
	if r.CPUIDFamID != nil {
		fam = *r.CPUIDFamID
	}
	if r.CPUIDModID != nil {
		mod = *r.CPUIDModID
	}
	layout, err := codecLayout(variant, fam, mod, r.ChipID[:])
	if err != nil {
		return nil, err
	}
	b, err := r.MarshalLayout(layout)
	if err != nil {
		return nil, fmt.Errorf("%w: attestation report: %w", evidence.ErrMalformed, err)
	}
	return b, nil
}

// MarshalLayout encodes r with the given TCB layout (the product decides
// it; MarshalBinary derives it from the report itself).
func (r *Report) MarshalLayout(layout TCBLayout) ([]byte, error) {
	variant, err := variantOf(r.Version)
	if err != nil {
		return nil, err
	}
	b := make([]byte, ReportSize)
	le := binary.LittleEndian
	le.PutUint32(b[offVersion:], r.Version)
	le.PutUint32(b[offGuestSVN:], r.GuestSVN)
	le.PutUint64(b[offPolicy:], r.Policy)
	copy(b[offFamilyID:], r.FamilyID[:])
	copy(b[offImageID:], r.ImageID[:])
	le.PutUint32(b[offVMPL:], r.VMPL)
	le.PutUint32(b[offSigAlgo:], r.SigAlgo)
	tcbs := []struct {
		off  int
		t    TCBVersion
		name string
	}{
		{offCurrentTCB, r.CurrentTCB, "current_tcb"},
		{offReportedTCB, r.ReportedTCB, "reported_tcb"},
		{offCommittedTCB, r.CommittedTCB, "committed_tcb"},
		{offLaunchTCB, r.LaunchTCB, "launch_tcb"},
	}
	for _, t := range tcbs {
		if err := encodeTCB(b[t.off:t.off+8], t.t, layout, t.name); err != nil {
			return nil, err
		}
	}
	le.PutUint64(b[offPlatInfo:], r.PlatInfo)
	le.PutUint32(b[offKeyInfo:], r.KeyInfo)
	copy(b[offReportData:], r.ReportData[:])
	copy(b[offMeasurement:], r.Measurement[:])
	copy(b[offHostData:], r.HostData[:])
	copy(b[offIDKeyDigest:], r.IDKeyDigest[:])
	copy(b[offAuthorKeyDigest:], r.AuthorKeyDigest[:])
	copy(b[offReportID:], r.ReportID[:])
	copy(b[offReportIDMA:], r.ReportIDMA[:])
	hasCPUID := r.CPUIDFamID != nil || r.CPUIDModID != nil || r.CPUIDStep != nil
	if variant == variantV2 {
		if hasCPUID {
			return nil, fmt.Errorf("a version %d report has no CPUID fields", r.Version)
		}
	} else {
		for i, p := range []*uint8{r.CPUIDFamID, r.CPUIDModID, r.CPUIDStep} {
			if p != nil {
				b[offCPUIDFamID+i] = *p
			}
		}
	}
	copy(b[offChipID:], r.ChipID[:])
	b[offCurrent], b[offCurrent+1], b[offCurrent+2] = r.Current.Build, r.Current.Minor, r.Current.Major
	b[offCommitted], b[offCommitted+1], b[offCommitted+2] = r.Committed.Build, r.Committed.Minor, r.Committed.Major
	if variant == variantV5 {
		if r.LaunchMitVector != nil {
			le.PutUint64(b[offLaunchMitVector:], *r.LaunchMitVector)
		}
		if r.CurrentMitVector != nil {
			le.PutUint64(b[offCurMitVector:], *r.CurrentMitVector)
		}
	} else if r.LaunchMitVector != nil || r.CurrentMitVector != nil {
		return nil, fmt.Errorf("a version %d report has no mitigation vectors", r.Version)
	}
	copy(b[offSignatureR:], r.Signature.R[:])
	copy(b[offSignatureS:], r.Signature.S[:])
	return b, nil
}

// Report version bounds upstream accepts (version 3 is the first to name
// the processor generation).
const (
	minReportVersion = 3
	maxReportVersion = 5
)

// CheckVersion refuses report versions outside upstream's 3..5.
func CheckVersion(v uint32) error {
	if v < minReportVersion {
		return fmt.Errorf("%w: attestation report version %d is too old (want %d..%d); update the SEV-SNP firmware", ErrUnsupportedReport, v, minReportVersion, maxReportVersion)
	}
	if v > maxReportVersion {
		return fmt.Errorf("%w: unexpected attestation report version %d (want %d..%d); check the SEV-SNP firmware ABI specification", ErrUnsupportedReport, v, minReportVersion, maxReportVersion)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
