package tpmquote

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/verifier"
)

// Layout of the HCL (Host Compatibility Layer) report of Azure
// confidential VMs, as the az-cvm-vtpm crate reads it:
//
//	0x000 header: signature "HCLA", version, report_size, request_type,
//	      status, 3 reserved (8 × u32)
//	0x020 hardware report: the SNP attestation report (1184 bytes) or the
//	      TDREPORT (1024 bytes), in a 1184-byte field
//	0x4c0 IGVM request data: data_size, version, report_type,
//	      report_data_hash_type, variable_data_size (5 × u32, little endian)
//	0x4d4 variable data (variable_data_size bytes): a JSON document with
//	      the vTPM keys ("keys": JWKs, "HCLAkPub" is the AK) and "user-data"
//
// The hardware report's report_data starts with H(variable data), which is
// what binds the AK to the hardware TEE.
const (
	hclHeaderSize     = 32
	hwReportFieldSize = 1184
	// SNPReportSize is the size of an SEV-SNP attestation report.
	SNPReportSize = 1184
	// TDReportSize is the size of a TDREPORT.
	TDReportSize   = 1024
	hclFixedSize   = hclHeaderSize + hwReportFieldSize + 20
	hclAKKeyID     = "HCLAkPub"
	hashTypeSHA256 = 1
)

// HCLReportType is the kind of hardware report in an HCL report.
type HCLReportType uint32

// HCL report types.
const (
	HCLReportSNP HCLReportType = 2
	HCLReportTDX HCLReportType = 4
)

func (t HCLReportType) String() string {
	switch t {
	case HCLReportSNP:
		return "SNP"
	case HCLReportTDX:
		return "TDX"
	}
	return fmt.Sprintf("HCLReportType(%d)", uint32(t))
}

var (
	// ErrMalformedHCLReport means an HCL report is truncated, of an
	// unknown type, or its variable data cannot be read. It wraps
	// verifier.ErrMalformedEvidence.
	ErrMalformedHCLReport = fmt.Errorf("%w: HCL report", verifier.ErrMalformedEvidence)
	// ErrVarDataBinding means the hardware report does not bind the HCL
	// variable data (SHA-256 of it is not the start of report_data).
	ErrVarDataBinding = errors.New("tpmquote: HCL variable data digest doesn't match the hardware report's report data")
)

// HCLReport is a parsed HCL report.
type HCLReport struct {
	// Type is the kind of hardware report.
	Type HCLReportType
	// HashType is the IGVM report_data_hash_type (1: SHA-256).
	HashType uint32
	// HWReport is the hardware report: SNPReportSize bytes for SNP,
	// TDReportSize bytes for TDX.
	HWReport []byte
	// VarData is the variable data.
	VarData []byte
}

// ParseHCLReport parses an HCL report: it must hold the fixed part and
// the variable data it announces, and be of type SNP or TDX. Bytes after
// the variable data are ignored, as upstream.
func ParseHCLReport(b []byte) (*HCLReport, error) {
	if len(b) > limits.MaxEvidenceBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrMalformedHCLReport, len(b), limits.MaxEvidenceBytes)
	}
	if len(b) < hclFixedSize {
		return nil, fmt.Errorf("%w: invalid report size: %d bytes, at least %d expected", ErrMalformedHCLReport, len(b), hclFixedSize)
	}
	igvm := b[hclHeaderSize+hwReportFieldSize:]
	r := &HCLReport{
		Type:     HCLReportType(binary.LittleEndian.Uint32(igvm[8:])),
		HashType: binary.LittleEndian.Uint32(igvm[12:]),
	}
	varSize := uint64(binary.LittleEndian.Uint32(igvm[16:]))
	if varSize > uint64(len(b)-hclFixedSize) {
		return nil, fmt.Errorf("%w: invalid report size: variable data of %d bytes exceeds the report", ErrMalformedHCLReport, varSize)
	}
	hw := b[hclHeaderSize:]
	switch r.Type {
	case HCLReportSNP:
		r.HWReport = hw[:SNPReportSize]
	case HCLReportTDX:
		r.HWReport = hw[:TDReportSize]
	default:
		return nil, fmt.Errorf("%w: invalid report type %d", ErrMalformedHCLReport, uint32(r.Type))
	}
	r.VarData = b[hclFixedSize : hclFixedSize+int(varSize)]
	return r, nil
}

// VarDataSHA256 is the SHA-256 of the variable data; the report must
// declare SHA-256 as its report data hash type.
func (r *HCLReport) VarDataSHA256() ([sha256.Size]byte, error) {
	if r.HashType != hashTypeSHA256 {
		return [sha256.Size]byte{}, fmt.Errorf("%w: report data hash type %d, only SHA-256 (1) is supported", ErrMalformedHCLReport, r.HashType)
	}
	return sha256.Sum256(r.VarData), nil
}

// CheckVarDataBinding checks that reportData (the hardware report's report
// data) starts with the SHA-256 of the variable data.
func (r *HCLReport) CheckVarDataBinding(reportData []byte) error {
	h, err := r.VarDataSHA256()
	if err != nil {
		return err
	}
	if len(reportData) < len(h) || [sha256.Size]byte(reportData[:sha256.Size]) != h {
		return ErrVarDataBinding
	}
	return nil
}

// AKPub returns the vTPM attestation key: the RSA JWK with kid "HCLAkPub"
// in the variable data's "keys" (member names matched exactly).
func (r *HCLReport) AKPub() (*rsa.PublicKey, error) {
	vd, err := ParseObject(r.VarData)
	if err != nil {
		return nil, fmt.Errorf("%w: variable data: %v", ErrMalformedHCLReport, err)
	}
	raw, err := vd.get("keys")
	if err != nil {
		return nil, fmt.Errorf("%w: variable data: %v", ErrMalformedHCLReport, err)
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("%w: variable data \"keys\" is not an array", ErrMalformedHCLReport)
	}
	if len(keys) > limits.MaxHCLJWKs {
		return nil, fmt.Errorf("%w: %d keys in variable data, at most %d", ErrMalformedHCLReport, len(keys), limits.MaxHCLJWKs)
	}
	for i, raw := range keys {
		k, err := ParseObject(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: variable data key %d: %v", ErrMalformedHCLReport, i, err)
		}
		if !k.Has("kid") {
			continue
		}
		if kid, err := k.String("kid"); err != nil || kid != hclAKKeyID {
			continue
		}
		kty, err := k.String("kty")
		if err != nil {
			return nil, fmt.Errorf("%w: AK (%s): %v", ErrMalformedHCLReport, hclAKKeyID, err)
		}
		if kty != "RSA" {
			return nil, fmt.Errorf("%w: AK (%s) is of key type %q, expected RSA", ErrUnsupportedKey, hclAKKeyID, kty)
		}
		n, err := k.Base64URL("n")
		if err != nil || len(n) == 0 || len(n) > limits.MaxTPMRSAModulusBytes {
			return nil, fmt.Errorf("%w: AK (%s) modulus", ErrMalformedHCLReport, hclAKKeyID)
		}
		e, err := k.Base64URL("e")
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: AK (%s) exponent", ErrMalformedHCLReport, hclAKKeyID)
		}
		var ev int
		for _, x := range e {
			ev = ev<<8 | int(x)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}, nil
	}
	return nil, fmt.Errorf("%w: AkPub (%s) not found in variable data", ErrMalformedHCLReport, hclAKKeyID)
}

// UserData returns the hex-decoded "user-data" of the variable data.
func (r *HCLReport) UserData() ([]byte, error) {
	vd, err := ParseObject(r.VarData)
	if err != nil {
		return nil, fmt.Errorf("%w: failed to parse var data as JSON: %v", ErrMalformedHCLReport, err)
	}
	b, err := vd.Hex("user-data")
	if err != nil {
		return nil, fmt.Errorf("%w: variable data: %v", ErrMalformedHCLReport, err)
	}
	return b, nil
}

// CheckUserData checks that the variable data's user-data starts with
// reportData (evidence v2, where the guest writes the report data into the
// vTPM's user-data NV index before reading the HCL report).
func (r *HCLReport) CheckUserData(reportData []byte) error {
	ud, err := r.UserData()
	if err != nil {
		return err
	}
	if len(ud) < len(reportData) || string(ud[:len(reportData)]) != string(reportData) {
		return fmt.Errorf("%w: user-data in HCL variable data doesn't match report_data", verifier.ErrReportDataMismatch)
	}
	return nil
}
