package aael

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

var errCrash = errors.New("simulated crash")

// eventRecord returns the record and digest of text for the fake's pcr.
func eventRecord(t *testing.T, reg *fakeRegisters, pcr uint64, text string) ([]byte, []byte) {
	t.Helper()
	rec, d, err := EncodeEvent(reg.MRIndex(pcr), reg.h, text)
	if err != nil {
		t.Fatal(err)
	}
	return rec, d
}

// TestCrashRecovery simulates a crash at each step of Extend: the next Open
// must leave exactly one record and one extension per event.
func TestCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		name string
		tdx  bool
		// state after the crash: was the register extended, was the
		// record (fully or half) written?
		extended  bool
		written   int // 0 none, 1 half, 2 full
		pcr       uint64
		wantError error
	}{
		{name: "tdx after WAL", tdx: true},
		{name: "tdx after extend", tdx: true, extended: true},
		{name: "tdx torn record", tdx: true, extended: true, written: 1},
		{name: "tdx before WAL removal", tdx: true, extended: true, written: 2},
		{name: "vtpm after WAL"},
		{name: "vtpm after extend", extended: true},
		{name: "vtpm other register after extend", extended: true, pcr: 10},
		{name: "tdx other register after WAL", tdx: true, pcr: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := newFake(tc.tdx)
			l := openLog(t, dir, reg)
			ctx := context.Background()
			if err := l.Extend(ctx, "d", "first", "1", nil); err != nil {
				t.Fatal(err)
			}
			l.Close()
			pcr := tc.pcr
			if pcr == 0 {
				pcr = DefaultInitPCR
			}
			logPath := filepath.Join(dir, "eventlog")
			before, _ := os.ReadFile(logPath)
			text := "d second 2"
			rec, d := eventRecord(t, reg, pcr, text)
			cur := reg.value(pcr)
			h := reg.h.New()
			h.Write(cur)
			h.Write(d)
			w := WAL{Offset: uint64(len(before)), Expected: h.Sum(nil), Text: text}
			if err := os.WriteFile(filepath.Join(dir, ".wal_event_entry"), w.Encode(), 0o600); err != nil {
				t.Fatal(err)
			}
			if pcr != DefaultInitPCR {
				if err := writePCRFile(filepath.Join(dir, ".wal_event_entry"+pcrSuffix), pcr); err != nil {
					t.Fatal(err)
				}
			}
			if tc.extended {
				reg.extendLocked(d, pcr)
			}
			switch tc.written {
			case 1:
				os.WriteFile(logPath, append(bytes.Clone(before), rec[:len(rec)/2]...), 0o644)
			case 2:
				os.WriteFile(logPath, append(bytes.Clone(before), rec...), 0o644)
			}
			extendsBefore := reg.extends
			l2 := openLog(t, dir, reg)
			if got := reg.extends - extendsBefore; got != 1 && !tc.extended || got != 0 && tc.extended {
				t.Errorf("recovery extended %d times (register already extended: %v)", got, tc.extended)
			}
			if !bytes.Equal(reg.value(pcr), w.Expected) {
				t.Errorf("register %x, want %x", reg.value(pcr), w.Expected)
			}
			after, _ := os.ReadFile(logPath)
			if want := append(bytes.Clone(before), rec...); !bytes.Equal(after, want) {
				t.Errorf("log after recovery:\n got %x\nwant %x", after, want)
			}
			if _, err := os.Stat(filepath.Join(dir, ".wal_event_entry")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("WAL still present: %v", err)
			}
			// The log goes on at its end.
			if err := l2.Extend(ctx, "d", "third", "3", nil); err != nil {
				t.Fatal(err)
			}
			final, _ := os.ReadFile(logPath)
			rec3, _ := eventRecord(t, reg, DefaultInitPCR, "d third 3")
			if !bytes.HasSuffix(final, rec3) || len(final) != len(after)+len(rec3) {
				t.Errorf("third record not appended at the end")
			}
		})
	}
}

func TestRecoveryFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		wal  func(t *testing.T, reg *fakeRegisters) []byte
		want error
	}{
		{"garbage", func(*testing.T, *fakeRegisters) []byte { return []byte{1, 2, 3} }, ErrCorruptWAL},
		{"bad text", func(t *testing.T, reg *fakeRegisters) []byte {
			return WAL{Expected: make([]byte, 48), Text: "no-spaces"}.Encode()
		}, ErrCorruptWAL},
		{"offset past end", func(t *testing.T, reg *fakeRegisters) []byte {
			return WAL{Offset: 1 << 20, Expected: make([]byte, 48), Text: "a b c"}.Encode()
		}, ErrCorruptWAL},
		{"register moved by another party", func(t *testing.T, reg *fakeRegisters) []byte {
			return WAL{Expected: bytes.Repeat([]byte{7}, 48), Text: "a b c"}.Encode()
		}, ErrRecovery},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := newFake(true)
			os.WriteFile(filepath.Join(dir, ".wal_event_entry"), tc.wal(t, reg), 0o600)
			_, err := Open(context.Background(), Options{Path: filepath.Join(dir, "eventlog"), WALPath: filepath.Join(dir, ".wal_event_entry"), Register: reg})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: err = %v, want %v", err, tc.want)
			}
		})
	}
}

// A failed extension is settled at once: dropped when the register did not
// move, recorded when it did; never duplicated, never left pending.
func TestExtendFailureSettled(t *testing.T) {
	for _, tc := range []struct {
		name    string
		crash   bool
		wantErr bool
		records []string
	}{
		{"register untouched", false, true, []string{"d op next"}},
		{"register moved", true, false, []string{"d op first", "d op next"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := newFake(true)
			l := openLog(t, dir, reg)
			ctx := context.Background()
			reg.failExtend, reg.crash = errCrash, tc.crash
			err := l.Extend(ctx, "d", "op", "first", nil)
			if tc.wantErr != errors.Is(err, errCrash) {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if _, err := os.Stat(filepath.Join(dir, ".wal_event_entry")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("WAL left behind: %v", err)
			}
			if err := l.Extend(ctx, "d", "op", "next", nil); err != nil {
				t.Fatalf("next Extend: %v", err)
			}
			var want []byte
			for _, r := range tc.records {
				rec, _ := eventRecord(t, reg, 17, r)
				want = append(want, rec...)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "eventlog"))
			if !bytes.Equal(got, want) {
				t.Fatalf("log = %x, want %x", got, want)
			}
			if reg.extends != len(tc.records) {
				t.Fatalf("extends = %d, want %d", reg.extends, len(tc.records))
			}
		})
	}
}

func TestWALBigEndianOffset(t *testing.T) {
	raw := []byte{0, 0, 0, 0, 0, 0, 2, 0}
	raw = append(raw, bytes.Repeat([]byte{0xab}, 32)...)
	raw = append(raw, "domain operation content"...)
	w, err := DecodeWAL(raw, 32)
	if err != nil {
		t.Fatal(err)
	}
	if w.Offset != 512 || !bytes.Equal(w.Expected, bytes.Repeat([]byte{0xab}, 32)) || w.Text != "domain operation content" {
		t.Fatalf("decoded %+v", w)
	}
	if !bytes.Equal(w.Encode(), raw) {
		t.Fatal("Encode does not round-trip")
	}
}

func FuzzDecodeWAL(f *testing.F) {
	f.Add(WAL{Offset: 5, Expected: make([]byte, 48), Text: "a b c"}.Encode(), 48)
	f.Add([]byte{}, 32)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		w, err := DecodeWAL(b, n)
		if err != nil {
			return
		}
		w2, err := DecodeWAL(w.Encode(), n)
		if err != nil || w2.Offset != w.Offset || w2.Text != w.Text || !bytes.Equal(w2.Expected, w.Expected) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzTrimCCEL(f *testing.F) {
	if b, err := os.ReadFile(fixtureDir + "CCEL_data_ovmf"); err == nil {
		f.Add(b[:4096])
	}
	f.Add(NoCCELHeader())
	f.Add(append(NoCCELHeader(), EndMarker()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := TrimCCEL(b)
		if err == nil && (len(out) > len(b) || !bytes.Equal(out, b[:len(out)])) {
			t.Fatal("TrimCCEL returned bytes that are not a prefix")
		}
	})
}

// FuzzRecovery opens a log whose write-ahead log is arbitrary: Open must
// either recover or fail with a sentinel, never panic or leave two records.
func FuzzRecovery(f *testing.F) {
	f.Add(WAL{Expected: make([]byte, 48), Text: "a b c"}.Encode())
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, wal []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ".wal_event_entry"), wal, 0o600)
		l, err := Open(context.Background(), Options{Path: filepath.Join(dir, "eventlog"), WALPath: filepath.Join(dir, ".wal_event_entry"), Register: newFake(true)})
		if err != nil {
			if !errors.Is(err, ErrCorruptWAL) && !errors.Is(err, ErrRecovery) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		l.Close()
	})
}
