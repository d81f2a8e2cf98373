// Package snp is the AMD SEV-SNP attester ("snp"): the attestation report
// comes from the kernel's configfs-tsm report interface (provider
// "sev_guest", VMPL 0, the certificate table as auxblob) or, when the
// kernel has none, from the /dev/sev-guest SNP_GET_EXT_REPORT ioctl.
//
// Evidence is what the Rust sev crate serializes, exactly what Trustee's
// snp verifier (and verifier/snp) reads:
//
//	{"attestation_report":{"version":..,"guest_svn":..,...,"signature":{"r":[..],"s":[..]}},
//	 "cert_chain":[{"cert_type":"VCEK"|"VLEK"|"ASK"|"ARK"|"CRL"|{"OTHER":"<uuid>"},"data":[..]}]|null}
//
// cert_chain is null when the host supplies no certificates. The report
// data is zero-padded to 64 bytes; more than 64 is an error.
//
// The certificate table comes from the untrusted host: it is parsed with
// overflow-safe bounds (ParseCertTable), and at most limits.MaxCertChain
// entries are kept. Its certificates are checked by the verifier, never here.
package snp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/tdx"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/protocol/evidence"
)

// Paths (under Options.Root) and sizes.
const (
	PlatformDir    = "/sys/devices/platform/sev-guest"
	GuestDevice    = "/dev/sev-guest"
	Provider       = "sev_guest\n"
	ReportDataSize = 64
	ReportSize     = 1184
	hostDataOffset = 0xC0
	hostDataSize   = 32
	// MaxCertTableBytes bounds the certificate table the host returns.
	MaxCertTableBytes = limits.MaxSNPCertTableBytes
)

// Well-known certificate table GUIDs (GHCB spec) and their sev crate names.
var certGUIDs = map[uuid.UUID]string{
	uuid.MustParse("c0b406a4-a803-4952-9743-3fb6014cd0ae"): snpev.CertARK,
	uuid.MustParse("4ab7b379-bbac-4fe4-a02f-05aef327c782"): snpev.CertASK,
	uuid.MustParse("63da758d-e664-4564-adc5-f4b93be8accd"): snpev.CertVCEK,
	uuid.MustParse("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): snpev.CertVLEK,
	uuid.MustParse("92f81bc3-5811-4d3d-97ff-d19f88dc67ea"): snpev.CertCRL,
}

// ErrCertTable means the host's certificate table is malformed.
var ErrCertTable = errors.New("snp: malformed certificate table")

// Options configure New and Detect. Zero values take the documented defaults.
type Options struct {
	// TSM is the configfs-tsm client; nil uses the kernel's when present.
	TSM configfsi.Client
	// Device issues the sev-guest ioctls; nil opens Root/dev/sev-guest.
	Device Device
	// Root prefixes sysfs and /dev paths ("" is "/").
	Root string
}

func (o Options) path(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

// Detect reports whether this is an SEV-SNP guest: the sev-guest platform
// device exists, as upstream checks.
func Detect(opts Options) bool {
	_, err := os.Stat(opts.path(PlatformDir))
	return err == nil
}

// Attester is the snp attester. It is safe for concurrent use.
type Attester struct {
	opts Options
}

var _ attester.Attester = (*Attester)(nil)

// New returns the attester for opts.
func New(opts Options) (*Attester, error) { return &Attester{opts: opts}, nil }

// Tee returns protocol.TeeSnp.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeSnp }

// Evidence returns the attestation report binding reportData and the
// host's certificate chain, as sev crate JSON.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	if len(reportData) > ReportDataSize {
		return nil, fmt.Errorf("snp: report data must be no more than %d bytes, got %d", ReportDataSize, len(reportData))
	}
	var rd [64]byte
	copy(rd[:], reportData)
	rep, table, err := a.report(ctx, rd, true)
	if err != nil {
		return nil, err
	}
	var certs []snpev.CertEntry
	if len(table) > 0 {
		if certs, err = ParseCertTable(table); err != nil {
			return nil, err
		}
		if certs == nil {
			certs = []snpev.CertEntry{}
		}
	}
	ev, err := snpev.MarshalEvidence(rep, certs)
	if err != nil {
		return nil, fmt.Errorf("snp: encoding evidence: %w", err)
	}
	return ev, nil
}

// report returns a report binding rd (and the certificate table when
// withCerts), through configfs-tsm when the kernel offers it, else the
// sev-guest device.
func (a *Attester) report(ctx context.Context, rd [64]byte, withCerts bool) (rep, certs []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	client := a.opts.TSM
	if client == nil && a.opts.Device == nil {
		if c, err := linuxtsm.MakeClient(); err == nil && tdx.ProviderIs(c, Provider) {
			client = c
		}
	}
	if client != nil {
		resp, err := report.Get(client, &report.Request{InBlob: rd[:], Privilege: &report.Privilege{Level: 0}, GetAuxBlob: withCerts})
		if err != nil {
			return nil, nil, fmt.Errorf("snp: configfs-tsm report: %w", err)
		}
		if resp.Provider != Provider {
			return nil, nil, fmt.Errorf("snp: configfs-tsm provider is %q, want %q", resp.Provider, Provider)
		}
		if len(resp.AuxBlob) > MaxCertTableBytes {
			return nil, nil, fmt.Errorf("%w: %d bytes exceed %d", ErrCertTable, len(resp.AuxBlob), MaxCertTableBytes)
		}
		return resp.OutBlob, resp.AuxBlob, nil
	}
	dev := a.opts.Device
	if dev == nil {
		d, err := OpenDevice(a.opts.path(GuestDevice))
		if err != nil {
			return nil, nil, fmt.Errorf("snp: opening %s: %w", GuestDevice, err)
		}
		defer d.Close()
		dev = d
	}
	if !withCerts {
		rep, err := GetReport(dev, rd)
		return rep, nil, err
	}
	return GetExtendedReport(dev, rd)
}

// BindInitData checks that HOSTDATA (from a fresh report) is the digest
// zero-padded (or truncated) to 32 bytes.
func (a *Attester) BindInitData(ctx context.Context, digest []byte) error {
	rep, _, err := a.report(ctx, [64]byte{}, false)
	if err != nil {
		return err
	}
	if len(rep) < hostDataOffset+hostDataSize {
		return fmt.Errorf("snp: report of %d bytes", len(rep))
	}
	want := make([]byte, hostDataSize)
	copy(want, digest)
	if !bytes.Equal(rep[hostDataOffset:hostDataOffset+hostDataSize], want) {
		return fmt.Errorf("snp: %w: HOSTDATA does not hold the init-data digest", evidence.ErrInitDataMismatch)
	}
	return nil
}

// ParseCertTable parses a GHCB certificate table (GUID, u32 offset, u32
// length entries ended by an all-zero entry, then the certificates) into
// sev crate cert_chain entries, in table order.
func ParseCertTable(b []byte) ([]snpev.CertEntry, error) {
	if len(b) > MaxCertTableBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed %d", ErrCertTable, len(b), MaxCertTableBytes)
	}
	const entrySize = 24
	var out []snpev.CertEntry
	for off := 0; ; off += entrySize {
		if off+entrySize > len(b) {
			return nil, fmt.Errorf("%w: no terminating entry", ErrCertTable)
		}
		e := b[off : off+entrySize]
		if bytes.Equal(e, make([]byte, entrySize)) {
			return out, nil
		}
		if len(out) == limits.MaxCertChain {
			return nil, fmt.Errorf("%w: more than %d entries", ErrCertTable, limits.MaxCertChain)
		}
		id, _ := uuid.FromBytes(e[:16])
		start := uint64(binary.LittleEndian.Uint32(e[16:]))
		n := uint64(binary.LittleEndian.Uint32(e[20:]))
		if start < uint64(off+entrySize) || start+n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: entry %d spans [%d, %d) outside the table", ErrCertTable, len(out), start, start+n)
		}
		c := snpev.CertEntry{Data: bytes.Clone(b[start : start+n])}
		if t, ok := certGUIDs[id]; ok {
			c.Type = t
		} else {
			c.Type, c.GUID = snpev.CertOther, id.String()
		}
		out = append(out, c)
	}
}
