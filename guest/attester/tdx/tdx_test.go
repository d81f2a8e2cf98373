package tdx

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	tdxev "github.com/go-trustee/go-trustee/protocol/evidence/tdx"

	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/verifier"
)

var reportFixture = testvectors.Path("guest-components/attestation-agent/attester/test/tdx_report_1.bin")

// quoteOf is a fake quoting: the "quote" is a marker and the inblob.
func quoteOf(in []byte) ([]byte, error) { return append([]byte("QUOTE:"), in...), nil }

// tree builds a fake TDX guest: /dev/tdx_guest and, with sysfs, the
// measurement files (zero RTMRs, MRCONFIGID given).
func tree(t *testing.T, sysfs bool, mrconfigid []byte) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	os.WriteFile(filepath.Join(root, GuestDevice), nil, 0o600)
	if sysfs {
		d := filepath.Join(root, MeasurementsDir)
		os.MkdirAll(d, 0o755)
		for i := 0; i < 4; i++ {
			os.WriteFile(filepath.Join(d, "rtmr"+string(rune('0'+i))+":sha384"), make([]byte, 48), 0o600)
		}
		os.WriteFile(filepath.Join(d, "mrconfigid"), mrconfigid, 0o400)
	}
	return root
}

func TestEvidence(t *testing.T) {
	ctx := context.Background()
	root := tree(t, false, nil)
	a, _ := New(Options{TSM: FakeTSM(Provider, quoteOf, nil), Root: root, AAELPath: filepath.Join(root, "none")})
	for _, tc := range []struct {
		name string
		rd   []byte
		ok   bool
	}{
		{"sha384 padded", bytes.Repeat([]byte{1}, 48), true},
		{"64 bytes", bytes.Repeat([]byte{2}, 64), true},
		{"empty", nil, true},
		{"65 bytes", make([]byte, 65), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := a.Evidence(ctx, tc.rd)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			want := make([]byte, 64)
			copy(want, tc.rd)
			wantJSON := `{"cc_eventlog":null,"quote":"` + base64.StdEncoding.EncodeToString(append([]byte("QUOTE:"), want...)) + `"}`
			if string(ev) != wantJSON {
				t.Fatalf("evidence\n got %s\nwant %s", ev, wantJSON)
			}
		})
	}
	wrong, _ := New(Options{TSM: FakeTSM("sev_guest\n", quoteOf, nil), Root: root})
	if _, err := wrong.Evidence(ctx, nil); err == nil {
		t.Error("a sev_guest provider gave TDX evidence")
	}
}

func TestEvidenceEventLog(t *testing.T) {
	ctx := context.Background()
	root := tree(t, true, make([]byte, 48))
	aaelPath := filepath.Join(root, "run/eventlog")
	a, _ := New(Options{TSM: FakeTSM(Provider, quoteOf, nil), Root: root, AAELPath: aaelPath})
	l, err := aael.Open(ctx, aael.Options{Path: aaelPath, WALPath: filepath.Join(root, "run/.wal"), Register: a})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Extend(ctx, "github.com/confidential-containers", "PullImage", `{"image":"busybox", "digest":"sha256:00"}`, nil); err != nil {
		t.Fatal(err)
	}
	ev, err := a.Evidence(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := tdxev.ParseEvidence(ev)
	if err != nil || e.EventLog == nil {
		t.Fatalf("cc_eventlog missing (%v): %s", err, ev)
	}
	raw := e.EventLog
	if !bytes.HasPrefix(raw, aael.NoCCELHeader()) || !bytes.HasSuffix(raw, aael.EndMarker()) {
		t.Fatal("cc_eventlog lacks the no-CCEL header or the end marker")
	}
	// RTMR3 = SHA384(0^48 || digest), the extension via sysfs.
	rec, digest, _ := aael.EncodeEvent(4, crypto.SHA384, "github.com/confidential-containers PullImage {\"image\":\"busybox\", \"digest\":\"sha256:00\"}")
	if !bytes.Contains(raw, rec) {
		t.Error("record not in cc_eventlog")
	}
	_ = digest
	// The fake sysfs file records the last write: the extension data.
	got, _ := os.ReadFile(filepath.Join(root, MeasurementsDir, "rtmr3:sha384"))
	if !bytes.Equal(got, digest) {
		t.Errorf("rtmr3 write = %x, want the event digest %x", got, digest)
	}
}

func TestMRIndex(t *testing.T) {
	a, _ := New(Options{})
	for pcr, want := range map[uint64]uint32{0: 4, 1: 1, 7: 1, 2: 2, 6: 2, 8: 3, 15: 3, 16: 4, 17: 4} {
		if got := a.MRIndex(pcr); got != want {
			t.Errorf("MRIndex(%d) = %d, want %d", pcr, got, want)
		}
	}
}

// Upstream's TDREPORT vector: RTMR values through the PCR mapping.
func TestRuntimeMeasurementFromTDReport(t *testing.T) {
	rep, err := os.ReadFile(reportFixture)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := New(Options{Root: t.TempDir(), TDReport: func([64]byte) ([]byte, error) { return rep, nil }})
	if a.SupportsRuntimeMeasurement() {
		t.Fatal("no sysfs, yet runtime measurement supported")
	}
	for _, tc := range []struct {
		pcr  uint64
		want string
	}{
		{1, "f4ec1a04670fe7926cd5de4aef9aaa7689ab4ceaa132d7c5242b47f67dfaaea64c372a17ad68fef9a6ac99aabbddabdc"},
		{2, "4e5f8826653198ab4bc5156fbe4bc99db054c0b8239a16c4b59249fb427f4acc50eed1b46a85c7d526c4e1e47621b14c"},
		{8, "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"},
		{16, "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"},
	} {
		got, err := a.RuntimeMeasurement(context.Background(), tc.pcr)
		if err != nil || hex.EncodeToString(got) != tc.want {
			t.Errorf("PCR %d: %x %v, want %s", tc.pcr, got, err, tc.want)
		}
	}
	if err := a.ExtendRuntimeMeasurement(context.Background(), make([]byte, 48), 17); !errors.Is(err, ErrNotSupported) {
		t.Errorf("extend without sysfs: %v", err)
	}
	// MRCONFIGID of the vector is zero.
	if err := a.BindInitData(context.Background(), nil); err != nil {
		t.Errorf("zero MRCONFIGID vs empty digest: %v", err)
	}
	if err := a.BindInitData(context.Background(), []byte{1}); !errors.Is(err, verifier.ErrInitDataMismatch) {
		t.Errorf("mismatch: %v", err)
	}
}

func TestBindInitDataSysfs(t *testing.T) {
	d := sha512.Sum384([]byte("initdata"))
	a, _ := New(Options{Root: tree(t, true, d[:])})
	if err := a.BindInitData(context.Background(), d[:]); err != nil {
		t.Fatalf("matching MRCONFIGID: %v", err)
	}
	short := d[:32] // a sha256 digest is zero-padded to 48
	if err := a.BindInitData(context.Background(), short); !errors.Is(err, verifier.ErrInitDataMismatch) {
		t.Fatalf("padded sha256 vs sha384 MRCONFIGID: %v", err)
	}
}

func TestDetect(t *testing.T) {
	empty := t.TempDir()
	if Detect(Options{Root: empty, TSM: FakeTSM("sev_guest\n", quoteOf, nil)}) {
		t.Error("sev_guest provider detected as TDX")
	}
	if !Detect(Options{Root: empty, TSM: FakeTSM(Provider, quoteOf, nil)}) {
		t.Error("tdx_guest provider not detected")
	}
	if !Detect(Options{Root: tree(t, false, nil), TSM: FakeTSM("none\n", quoteOf, nil)}) {
		t.Error("/dev/tdx_guest not detected")
	}
}
