// Package tdx is the Intel TDX attester ("tdx"): the TD quote comes from the
// kernel's configfs-tsm report interface (provider "tdx_guest"), runtime
// measurements go to the RTMRs through the kernel's sysfs measurement files
// (Linux 6.16+), and MRCONFIGID is read from sysfs or from a TDREPORT
// (/dev/tdx_guest ioctl) for init-data binding.
//
// Evidence, exactly as upstream's attester emits it (member order too):
//
//	{"cc_eventlog":"<base64 CCEL + AAEL + end marker>"|null,"quote":"<base64 TD quote>"}
//
// The report data is zero-padded to 64 bytes; more than 64 is an error.
// Every path is looked up under Options.Root, and configfs through an
// injectable configfsi.Client, so tests run against fake device trees.
package tdx

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"

	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/protocol/evidence"
	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"
)

// Paths (under Options.Root) and sizes.
const (
	MeasurementsDir  = "/sys/devices/virtual/misc/tdx_guest/measurements"
	GuestDevice      = "/dev/tdx_guest"
	Provider         = "tdx_guest\n"
	ReportDataSize   = 64
	RegisterSize     = 48
	TDReportSize     = 1024
	tdInfoOffset     = 512
	mrConfigIDOffset = tdInfoOffset + 8 + 8 + 48
	rtmrOffset       = tdInfoOffset + 8 + 8 + 4*48
)

// ErrNotSupported means the kernel offers no RTMR interface (sysfs
// measurement files need Linux 6.16).
var ErrNotSupported = errors.New("tdx: runtime measurement not supported by this kernel")

// Options configure New and Detect. Zero values take the documented defaults.
type Options struct {
	// TSM is the configfs-tsm client; nil uses the kernel's when present.
	TSM configfsi.Client
	// Root prefixes sysfs, /dev and ACPI paths ("" is "/").
	Root string
	// AAELPath is the AAEL file put in cc_eventlog; "" is $AAEL_PATH or
	// aael.DefaultPath.
	AAELPath string
	// Getenv reads the environment; nil is os.Getenv.
	Getenv func(string) string
	// TDReport returns a TDREPORT binding reportData; nil issues the
	// TDX_CMD_GET_REPORT0 ioctl on /dev/tdx_guest.
	TDReport func(reportData [64]byte) ([]byte, error)
}

func (o Options) path(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

func (o Options) tsm() (configfsi.Client, error) {
	if o.TSM != nil {
		return o.TSM, nil
	}
	return linuxtsm.MakeClient()
}

// ProviderIs reports whether client's configfs-tsm report provider is
// want ("tdx_guest\n", "sev_guest\n", ...), by creating and removing a
// report entry as upstream's detection does.
func ProviderIs(client configfsi.Client, want string) bool {
	r, err := report.CreateOpenReport(client)
	if err != nil {
		return false
	}
	defer r.Destroy()
	p, err := r.ReadOption("provider")
	return err == nil && string(p) == want
}

// Detect reports whether this is a TDX guest: the configfs-tsm provider is
// tdx_guest, or /dev/tdx_guest exists.
func Detect(opts Options) bool {
	if c, err := opts.tsm(); err == nil && ProviderIs(c, Provider) {
		return true
	}
	_, err := os.Stat(opts.path(GuestDevice))
	return err == nil
}

// Attester is the tdx attester. It is safe for concurrent use.
type Attester struct {
	opts     Options
	aaelPath string
}

var _ attester.Attester = (*Attester)(nil)

// New returns the attester for opts.
func New(opts Options) (*Attester, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	p := opts.AAELPath
	if p == "" {
		if p = getenv(aael.EnvPath); p == "" {
			p = aael.DefaultPath
		}
	}
	return &Attester{opts: opts, aaelPath: p}, nil
}

// Tee returns protocol.TeeTdx.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeTdx }

// Evidence returns a TD quote binding reportData (zero-padded to 64 bytes)
// and the event log.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	if len(reportData) > ReportDataSize {
		return nil, fmt.Errorf("tdx: report data must be no more than %d bytes, got %d", ReportDataSize, len(reportData))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inblob := make([]byte, ReportDataSize)
	copy(inblob, reportData)
	client, err := a.opts.tsm()
	if err != nil {
		return nil, fmt.Errorf("tdx: configfs-tsm: %w", err)
	}
	resp, err := report.Get(client, &report.Request{InBlob: inblob})
	if err != nil {
		return nil, fmt.Errorf("tdx: getting quote: %w", err)
	}
	if resp.Provider != Provider {
		return nil, fmt.Errorf("tdx: configfs-tsm provider is %q, want %q", resp.Provider, Provider)
	}
	if len(resp.OutBlob) == 0 {
		return nil, errors.New("tdx: empty quote")
	}
	ev := tdxev.Evidence{Quote: resp.OutBlob}
	el, ok, err := aael.EvidenceLog(a.opts.path(aael.DefaultCCELPath), a.aaelPath)
	if err != nil {
		return nil, fmt.Errorf("tdx: event log: %w", err)
	}
	if ok {
		ev.EventLog = el
	}
	return ev.MarshalJSON()
}

// SupportsRuntimeMeasurement reports whether the RTMRs can be extended:
// the kernel's sysfs measurement files exist.
func (a *Attester) SupportsRuntimeMeasurement() bool {
	_, err := os.Stat(a.opts.path(MeasurementsDir))
	return err == nil
}

// EventLogHash returns crypto.SHA384, the CCEL's algorithm on TDX.
func (a *Attester) EventLogHash() crypto.Hash { return crypto.SHA384 }

// MRIndex maps a PCR to the CC measurement register (CCMR) as the UEFI spec
// and td-shim do: PCR 1,7 → 1; 2..6 → 2; 8..15 → 3; others → 4. RTMR
// index = CCMR − 1, so the default PCR 17 is RTMR 3.
func (a *Attester) MRIndex(pcr uint64) uint32 {
	switch {
	case pcr == 1 || pcr == 7:
		return 1
	case pcr >= 2 && pcr <= 6:
		return 2
	case pcr >= 8 && pcr <= 15:
		return 3
	}
	return 4
}

func (a *Attester) rtmrFile(pcr uint64) string {
	return a.opts.path(filepath.Join(MeasurementsDir, fmt.Sprintf("rtmr%d:sha384", a.MRIndex(pcr)-1)))
}

// RuntimeMeasurement returns the RTMR that pcr maps to, from sysfs or from
// a TDREPORT.
func (a *Attester) RuntimeMeasurement(ctx context.Context, pcr uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.SupportsRuntimeMeasurement() {
		v, err := readRegister(a.rtmrFile(pcr))
		if err != nil {
			return nil, fmt.Errorf("tdx: reading RTMR: %w", err)
		}
		return v, nil
	}
	r, err := a.tdReport()
	if err != nil {
		return nil, err
	}
	off := rtmrOffset + RegisterSize*int(a.MRIndex(pcr)-1)
	return bytes.Clone(r[off : off+RegisterSize]), nil
}

// ExtendRuntimeMeasurement extends the RTMR pcr maps to with digest,
// zero-padded or truncated to 48 bytes.
func (a *Attester) ExtendRuntimeMeasurement(ctx context.Context, digest []byte, pcr uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !a.SupportsRuntimeMeasurement() {
		return ErrNotSupported
	}
	d := make([]byte, RegisterSize)
	copy(d, digest)
	f, err := os.OpenFile(a.rtmrFile(pcr), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("tdx: extending RTMR: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(d); err != nil {
		return fmt.Errorf("tdx: extending RTMR: %w", err)
	}
	return f.Close()
}

// BindInitData checks that MRCONFIGID is the digest zero-padded (or
// truncated) to 48 bytes.
func (a *Attester) BindInitData(ctx context.Context, digest []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var mr []byte
	if _, err := os.Stat(a.opts.path(MeasurementsDir)); err == nil {
		if mr, err = readRegister(a.opts.path(filepath.Join(MeasurementsDir, "mrconfigid"))); err != nil {
			return fmt.Errorf("tdx: reading MRCONFIGID: %w", err)
		}
	} else {
		r, err := a.tdReport()
		if err != nil {
			return err
		}
		mr = r[mrConfigIDOffset : mrConfigIDOffset+RegisterSize]
	}
	want := make([]byte, RegisterSize)
	copy(want, digest)
	if !bytes.Equal(mr, want) {
		return fmt.Errorf("tdx: %w: MRCONFIGID does not hold the init-data digest", evidence.ErrInitDataMismatch)
	}
	return nil
}

// readRegister reads a 48-byte register file.
func readRegister(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, RegisterSize+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, err
	}
	if n != RegisterSize {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, n, RegisterSize)
	}
	return b[:n], nil
}

func (a *Attester) tdReport() ([]byte, error) {
	get := a.opts.TDReport
	if get == nil {
		get = func(rd [64]byte) ([]byte, error) { return ioctlTDReport(a.opts.path(GuestDevice), rd) }
	}
	r, err := get([64]byte{})
	if err != nil {
		return nil, fmt.Errorf("tdx: getting TDREPORT: %w", err)
	}
	if len(r) != TDReportSize {
		return nil, fmt.Errorf("tdx: TDREPORT of %d bytes, want %d", len(r), TDReportSize)
	}
	return r, nil
}
