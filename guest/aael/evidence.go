package aael

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// DefaultCCELPath is where Linux exposes the CCEL ACPI table data.
const DefaultCCELPath = "/sys/firmware/acpi/tables/data/CCEL"

// MaxEvidenceLogBytes bounds the event log (trimmed CCEL plus AAEL) put in
// evidence: its base64 form must fit, with the quote, in
// limits.MaxEvidenceBytes.
const MaxEvidenceLogBytes = limits.MaxEvidenceEventLogBytes

// ErrMalformedCCEL is returned by TrimCCEL for a CCEL that cannot be walked
// to its end marker.
var ErrMalformedCCEL = errors.New("aael: malformed CCEL")

// noCCELHeader is the 69-byte TCG1 EV_NO_ACTION Spec ID event upstream puts
// in front of the AAEL records when the platform has no CCEL: it declares
// SHA-384 (48 bytes) and SM3 (32 bytes) digests. Never modified; callers
// get copies from NoCCELHeader.
var noCCELHeader = [69]byte{
	0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x25, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x30, 0x00,
	0x12, 0x00, 0x20, 0x00, 0x00,
}

// NoCCELHeader returns a copy of the Spec ID event upstream puts in front of
// the AAEL records when the platform has no CCEL (SHA-384 and SM3 declared).
func NoCCELHeader() []byte { h := noCCELHeader; return h[:] }

// EndMarker returns the 8 0xFF bytes that end the event log in evidence.
func EndMarker() []byte { return bytes.Repeat([]byte{0xFF}, 8) }

// TrimCCEL returns the CCEL cut at its end: the first 8-byte all-0xFF or
// all-0x00 word found where a TCG2 record would start, after the TCG1
// header event. The ACPI table is larger than the log; the rest is filler.
func TrimCCEL(ccel []byte) ([]byte, error) {
	n := uint64(len(ccel))
	u32 := func(off uint64) (uint64, error) {
		if off+4 > n {
			return 0, fmt.Errorf("%w: truncated at offset %d", ErrMalformedCCEL, off)
		}
		return uint64(binary.LittleEndian.Uint32(ccel[off:])), nil
	}
	// TCG_PCR_EVENT: pcr u32, type u32, SHA-1 digest [20], size u32, data.
	size, err := u32(28)
	if err != nil {
		return nil, err
	}
	off := 32 + size
	for {
		if off+8 > n {
			return nil, fmt.Errorf("%w: no end marker", ErrMalformedCCEL)
		}
		w := ccel[off : off+8]
		if bytes.Equal(w, EndMarker()) || bytes.Equal(w, make([]byte, 8)) {
			return ccel[:off:off], nil
		}
		// TCG_PCR_EVENT2: index u32, type u32, count u32, {alg u16, digest}, size u32, data.
		count, err := u32(off + 8)
		if err != nil {
			return nil, err
		}
		off += 12
		for i := uint64(0); i < count; i++ {
			if off+2 > n {
				return nil, fmt.Errorf("%w: truncated digest at offset %d", ErrMalformedCCEL, off)
			}
			var dl uint64
			switch binary.LittleEndian.Uint16(ccel[off:]) {
			case 0x000B, 0x0012:
				dl = 32
			case 0x000C:
				dl = 48
			case 0x000D:
				dl = 64
			default:
				return nil, fmt.Errorf("%w: unsupported digest algorithm %#x at offset %d", ErrMalformedCCEL, binary.LittleEndian.Uint16(ccel[off:]), off)
			}
			off += 2 + dl
		}
		size, err := u32(off)
		if err != nil {
			return nil, err
		}
		off += 4 + size
	}
}

// EvidenceLog builds the cc_eventlog of evidence as upstream does: the
// trimmed CCEL at ccelPath, or NoCCELHeader when there is none but an AAEL
// exists; then the AAEL file at aaelPath; then EndMarker (the evidence
// encoder base64s it).
// Missing files are skipped; ok is false when both are missing (the
// evidence then carries null).
func EvidenceLog(ccelPath, aaelPath string) (log []byte, ok bool, err error) {
	var out []byte
	ccel, err := readBounded(ccelPath, MaxEvidenceLogBytes)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, false, fmt.Errorf("aael: reading CCEL: %w", err)
	default:
		if out, err = TrimCCEL(ccel); err != nil {
			return nil, false, err
		}
	}
	aael, err := readBounded(aaelPath, MaxEvidenceLogBytes)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, false, fmt.Errorf("aael: reading AAEL: %w", err)
	default:
		if len(out) == 0 {
			out = append(out, NoCCELHeader()...)
		}
		out = append(out, aael...)
	}
	if len(out) == 0 {
		return nil, false, nil
	}
	if len(out) > MaxEvidenceLogBytes {
		return nil, false, fmt.Errorf("aael: event log of %d bytes exceeds %d", len(out), MaxEvidenceLogBytes)
	}
	return append(out, EndMarker()...), true, nil
}
