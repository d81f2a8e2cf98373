package aael

import (
	"bytes"
	"context"
	"crypto"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-trustee/go-trustee/eventlog"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var fixtureDir = testvectors.Path("trustee/eventlog/")

// fakeRegisters is a TDX-like (SHA-384, CCMR mapping) or vTPM-like
// (SHA-256, identity) register file. failExtend makes the next extension
// fail, after (crash=true) or before moving the register.
type fakeRegisters struct {
	mu         sync.Mutex
	h          crypto.Hash
	tdx        bool
	regs       map[uint32][]byte
	extends    int
	failExtend error
	crash      bool
}

func newFake(tdx bool) *fakeRegisters {
	h := crypto.SHA256
	if tdx {
		h = crypto.SHA384
	}
	return &fakeRegisters{h: h, tdx: tdx, regs: map[uint32][]byte{}}
}

func (f *fakeRegisters) EventLogHash() crypto.Hash { return f.h }

func (f *fakeRegisters) MRIndex(pcr uint64) uint32 {
	if !f.tdx {
		return uint32(pcr)
	}
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

func (f *fakeRegisters) value(pcr uint64) []byte {
	v, ok := f.regs[f.MRIndex(pcr)]
	if !ok {
		v = make([]byte, f.h.Size())
	}
	return v
}

func (f *fakeRegisters) RuntimeMeasurement(_ context.Context, pcr uint64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.value(pcr)), nil
}

func (f *fakeRegisters) ExtendRuntimeMeasurement(_ context.Context, digest []byte, pcr uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failExtend; err != nil {
		f.failExtend = nil
		if !f.crash {
			return err
		}
		defer func() { _ = err }()
		f.extendLocked(digest, pcr)
		return err
	}
	f.extendLocked(digest, pcr)
	return nil
}

func (f *fakeRegisters) extendLocked(digest []byte, pcr uint64) {
	h := f.h.New()
	h.Write(f.value(pcr))
	d := make([]byte, f.h.Size())
	copy(d, digest)
	h.Write(d)
	f.regs[f.MRIndex(pcr)] = h.Sum(nil)
	f.extends++
}

func openLog(t *testing.T, dir string, reg Register) *Log {
	t.Helper()
	l, err := Open(context.Background(), Options{Path: filepath.Join(dir, "eventlog"), WALPath: filepath.Join(dir, ".wal_event_entry"), Register: reg})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Upstream's event digest vectors (attestation-agent/src/eventlog/mod.rs).
func TestEventDigestVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    crypto.Hash
		want string
	}{
		{"sha256", crypto.SHA256, "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"},
		{"sha384", crypto.SHA384, "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440fb00f3aa0609db7e49cd8d793f670d02"},
		{"sha512", crypto.SHA512, "b708d222ca8bd44dfe6ba0c4ca2cbb72379276fba8091025217064be45a813e5d6124ccf073219edb617d1faf007d55061465bdf34b7437dbdc9a7405bd4e9c0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d, err := EncodeEvent(1, tc.h, "domain operation content")
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(d); got != tc.want {
				t.Errorf("digest = %s, want %s", got, tc.want)
			}
		})
	}
	if _, _, err := EncodeEvent(1, crypto.MD5, "a b c"); !errors.Is(err, ErrUnsupportedHash) {
		t.Errorf("MD5: err = %v, want ErrUnsupportedHash", err)
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		name, d, o, c string
		ok            bool
	}{
		{"pull image", "github.com/confidential-containers", "PullImage", `{"image":"x", "digest":"y"}`, true},
		{"empty content", "d", "o", "", true},
		{"content newline", "d", "o", "a\nb", false},
		{"content CR", "d", "o", "a\rb", false},
		{"domain space", "d d", "o", "c", false},
		{"empty domain", "", "o", "c", false},
		{"operation tab", "d", "o\to", "c", false},
		{"empty operation", "d", "", "c", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Text(tc.d, tc.o, tc.c)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

// The AAEL events and the evidence log our writer produces for the two
// events of upstream's fixture are the fixture's bytes, and the eventlog
// parser gives upstream's golden JSON for them.
func TestGoldenAlibabaCloud(t *testing.T) {
	fixture, err := os.ReadFile(fixtureDir + "CCEL_AAEL_alibabacloud")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	reg := newFake(true)
	l := openLog(t, dir, reg)
	ctx := context.Background()
	if err := l.Extend(ctx, "coco.com", "some-operation", "some-content", nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, "coco.com", "some-operation", `{"key": "value", "nested-key": {"sub-key": "value"}}`, nil); err != nil {
		t.Fatal(err)
	}
	aael, err := os.ReadFile(filepath.Join(dir, "eventlog"))
	if err != nil {
		t.Fatal(err)
	}
	cut := len(fixture) - len(EndMarker()) - len(aael)
	if cut <= 0 || !bytes.Equal(fixture[cut:len(fixture)-8], aael) {
		t.Fatalf("AAEL records differ from the fixture's tail:\n got %x\nwant %x", aael, fixture[max(cut, 0):len(fixture)-8])
	}
	// A CCEL ACPI table: the fixture's firmware part, then filler.
	ccel := append(bytes.Clone(fixture[:cut]), bytes.Repeat([]byte{0xFF}, 4096)...)
	ccelPath := filepath.Join(dir, "CCEL")
	if err := os.WriteFile(ccelPath, ccel, 0o644); err != nil {
		t.Fatal(err)
	}
	got, ok, err := EvidenceLog(ccelPath, filepath.Join(dir, "eventlog"))
	if err != nil || !ok {
		t.Fatalf("EvidenceLog: ok=%v err=%v", ok, err)
	}
	if !bytes.Equal(got, fixture) {
		t.Fatalf("evidence log differs from the fixture (got %d bytes, want %d)", len(got), len(fixture))
	}
	// The register holds the replay of the AAEL records.
	parsed, err := eventlog.Parse(got)
	if err != nil {
		t.Fatalf("eventlog.Parse: %v", err)
	}
	wantJSON, err := os.ReadFile(fixtureDir + "CCEL_AAEL_alibabacloud_out.json")
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, err := json.Marshal(parsed)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal(gotJSON, &a)
	json.Unmarshal(wantJSON, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Errorf("parsed log differs from upstream's golden JSON")
	}
	// Replaying only our records (no CCEL) gives the fake RTMR3.
	own, err := eventlog.Parse(append(append(NoCCELHeader(), aael...), EndMarker()...))
	if err != nil {
		t.Fatalf("eventlog.Parse(own): %v", err)
	}
	rtmr3, err := own.Replay(4, eventlog.AlgSHA384)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rtmr3, reg.value(17)) {
		t.Errorf("replayed RTMR3 %x != register %x", rtmr3, reg.value(17))
	}
}

func TestEvidenceLogFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, ok, err := EvidenceLog(missing, missing); ok || err != nil {
		t.Fatalf("no files: ok=%v err=%v, want absent", ok, err)
	}
	aaelPath := filepath.Join(dir, "aael")
	rec, _, _ := EncodeEvent(4, crypto.SHA384, "a b c")
	os.WriteFile(aaelPath, rec, 0o644)
	got, ok, err := EvidenceLog(missing, aaelPath)
	if err != nil || !ok {
		t.Fatalf("AAEL only: ok=%v err=%v", ok, err)
	}
	want := append(append(NoCCELHeader(), rec...), EndMarker()...)
	if !bytes.Equal(got, want) {
		t.Fatalf("AAEL only: got %x, want header+record+marker", got)
	}
	if _, err := eventlog.Parse(got); err != nil {
		t.Fatalf("eventlog.Parse: %v", err)
	}
	bad := filepath.Join(dir, "badccel")
	os.WriteFile(bad, []byte{1, 2, 3}, 0o644)
	if _, _, err := EvidenceLog(bad, aaelPath); !errors.Is(err, ErrMalformedCCEL) {
		t.Fatalf("bad CCEL: err = %v, want ErrMalformedCCEL", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxEvidenceLogBytes+1), 0o644)
	if _, _, err := EvidenceLog(missing, big); err == nil {
		t.Fatal("oversized AAEL: no error")
	}
}

func TestTrimCCELOVMF(t *testing.T) {
	ccel, err := os.ReadFile(fixtureDir + "CCEL_data_ovmf")
	if err != nil {
		t.Fatal(err)
	}
	trimmed, err := TrimCCEL(ccel)
	if err != nil {
		t.Fatal(err)
	}
	if len(trimmed) == 0 || len(trimmed) >= len(ccel) {
		t.Fatalf("trimmed %d of %d bytes", len(trimmed), len(ccel))
	}
	full, err := eventlog.Parse(ccel)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := eventlog.Parse(trimmed)
	if err != nil {
		t.Fatal(err)
	}
	fj, _ := json.Marshal(full)
	cj, _ := json.Marshal(cut)
	if !bytes.Equal(fj, cj) {
		t.Error("trimming changed the parsed events")
	}
}
