// Package aael writes the Attestation Agent Event Log: the runtime events
// ("<domain> <operation> <content>", e.g. "github.com/confidential-containers
// PullImage {...}") that the attestation-agent measures into a TEE register
// (TDX RTMR, vTPM PCR) and records, one TCG2 EV_EVENT_TAG record each, in a
// log file that evidence carries as cc_eventlog, after the firmware's CCEL.
// The record, file, write-ahead-log and evidence layouts are upstream
// guest-components' byte for byte.
//
// # Invariants
//
//   - A record's digest is H(tagged event), H the register's event-log hash
//     (SHA-384 on TDX, SHA-256 on vTPMs); the same digest extends the
//     register. The record's measurement-register index is that of the
//     register actually extended (upstream writes the init_pcr's index even
//     when a request names another register; see Log.Extend).
//   - Extend is atomic across crashes: it writes the write-ahead log
//     (u64 big-endian offset | expected register value | text, upstream's
//     .wal_event_entry) and syncs it, extends the register, writes the
//     record at the offset and syncs, then removes the write-ahead log.
//     Open finds a leftover write-ahead log and completes the interrupted
//     event: it extends the register only if the register does not already
//     hold the expected value, then rewrites the record. A write-ahead log
//     that matches no register state is an error: the log and the register
//     disagree and the agent must not go on. The register of the pending
//     event is kept in a separate file (see pcrSuffix), so events for other
//     registers than the init PCR recover too.
//   - An extension that fails is settled at once by reading the register
//     back: not moved, the event is dropped and the error returned; moved,
//     the event is recorded.
//   - Every read of the files is size-bounded; every decoder is fuzzed.
//
// # Concurrency
//
// A Log serializes Extend calls; it is safe for concurrent use.
package aael

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Default file locations, upstream's.
const (
	DefaultDir     = "/run/attestation-agent"
	DefaultPath    = DefaultDir + "/eventlog"
	DefaultWALPath = DefaultDir + "/.wal_event_entry"
	// EnvPath is the environment variable upstream reads for the AAEL file
	// path when building evidence.
	EnvPath = "AAEL_PATH"
	// DefaultInitPCR is upstream's default register (PCR 17, RTMR 3 on TDX).
	DefaultInitPCR = 17
)

// Register is the TEE side of runtime measurement, implemented by the
// attesters that can extend a register.
type Register interface {
	// EventLogHash is the digest algorithm of the platform's event log
	// (crypto.SHA384 on TDX, crypto.SHA256 on vTPMs).
	EventLogHash() crypto.Hash
	// MRIndex maps a PCR index to the event log's measurement register
	// index (TDX: CCMR 1..4; vTPM: the PCR itself).
	MRIndex(pcr uint64) uint32
	// RuntimeMeasurement returns the current value of the register pcr
	// maps to.
	RuntimeMeasurement(ctx context.Context, pcr uint64) ([]byte, error)
	// ExtendRuntimeMeasurement extends that register with digest.
	ExtendRuntimeMeasurement(ctx context.Context, digest []byte, pcr uint64) error
}

// Sentinel errors.
var (
	// ErrCorruptWAL means the write-ahead log cannot be decoded, or names an
	// offset past the end of the log.
	ErrCorruptWAL = errors.New("aael: corrupt write-ahead log")
	// ErrRecovery means the write-ahead log's expected register value is
	// neither the register's value nor reachable by the pending extension:
	// another party extended the register, or the files were altered.
	ErrRecovery = errors.New("aael: cannot recover interrupted event")
	// ErrRegisterSize means a register value and the event digest differ
	// in size, so the expected value cannot be predicted.
	ErrRegisterSize = errors.New("aael: register and digest sizes differ")
)

// Options configure Open. Zero values take the documented defaults.
type Options struct {
	// Path of the log file; "" is DefaultPath.
	Path string
	// WALPath of the write-ahead log; "" is DefaultWALPath.
	WALPath string
	// Register extends and reads the measurement registers. Required.
	Register Register
	// InitPCR is the register used when Extend is given none (upstream
	// eventlog_config.init_pcr); 0 means DefaultInitPCR.
	InitPCR uint64
	// Logger receives recovery warnings; nil discards.
	Logger *slog.Logger
}

// Log is an open AAEL file. Build it with Open.
type Log struct {
	mu      sync.Mutex
	f       *os.File
	pos     int64
	walPath string
	reg     Register
	hash    crypto.Hash
	initPCR uint64
	log     *slog.Logger
	// pending is set when an Extend failed after writing the write-ahead
	// log: the next Extend completes that event first.
	pending bool
}

// Open creates the log's directory and file when missing, positions at its
// end and recovers an event a crash interrupted (see the package doc).
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Register == nil {
		return nil, errors.New("aael: Options.Register is required")
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.WALPath == "" {
		opts.WALPath = DefaultWALPath
	}
	if opts.InitPCR == 0 {
		opts.InitPCR = DefaultInitPCR
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := opts.Register.EventLogHash()
	if _, err := algID(h); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("aael: creating log directory: %w", err)
	}
	// No O_APPEND: recovery rewrites a record at its recorded offset.
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("aael: opening log: %w", err)
	}
	pos, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("aael: seeking log end: %w", err)
	}
	l := &Log{f: f, pos: pos, walPath: opts.WALPath, reg: opts.Register, hash: h, initPCR: opts.InitPCR, log: opts.Logger}
	if err := l.recover(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// Close closes the log file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// InitPCR returns the register used when Extend is given none.
func (l *Log) InitPCR() uint64 { return l.initPCR }

// Extend measures the event "<domain> <operation> <content>" into register
// pcr (nil: the init PCR) and appends its record, crash-atomically.
//
// Upstream writes the record with the init PCR's register index whatever
// register it extends; this writes the index of the register extended, so
// the log replays to the registers. The two agree whenever pcr is nil or
// the init PCR, which is all confidential-data-hub ever sends.
func (l *Log) Extend(ctx context.Context, domain, operation, content string, pcr *uint64) error {
	text, err := Text(domain, operation, content)
	if err != nil {
		return err
	}
	p := l.initPCR
	if pcr != nil {
		p = *pcr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending {
		if err := l.recover(ctx); err != nil {
			return fmt.Errorf("aael: completing an earlier interrupted event: %w", err)
		}
		l.pending = false
	}
	record, digest, err := EncodeEvent(l.reg.MRIndex(p), l.hash, text)
	if err != nil {
		return err
	}
	cur, err := l.reg.RuntimeMeasurement(ctx, p)
	if err != nil {
		return fmt.Errorf("aael: reading register of PCR %d: %w", p, err)
	}
	expected, err := l.extended(cur, digest)
	if err != nil {
		return err
	}
	if err := writePCRFile(l.walPath+pcrSuffix, p); err != nil {
		return err
	}
	if err := writeWAL(l.walPath, WAL{Offset: uint64(l.pos), Expected: expected, Text: text}); err != nil {
		return err
	}
	if err := l.reg.ExtendRuntimeMeasurement(ctx, digest, p); err != nil {
		return l.settle(ctx, p, expected, record, fmt.Errorf("aael: extending register of PCR %d: %w", p, err))
	}
	if err := l.writeAt(l.pos, record); err != nil {
		// The register moved: the next Extend or start must write the record.
		l.pending = true
		return err
	}
	return l.removeWAL()
}

// settle resolves a failed extension by reading the register back: if it
// moved to the expected value the event is complete once its record is
// written; if it did not move the write-ahead log is dropped and cause is
// returned; if it cannot be read the write-ahead log stays for recovery.
func (l *Log) settle(ctx context.Context, pcr uint64, expected, record []byte, cause error) error {
	cur, err := l.reg.RuntimeMeasurement(ctx, pcr)
	switch {
	case err != nil:
		l.pending = true
		return cause
	case bytes.Equal(cur, expected):
		l.log.Warn("register extension reported an error but took effect; recording the event", "pcr", pcr, "err", cause)
		if err := l.writeAt(l.pos, record); err != nil {
			l.pending = true
			return err
		}
		return l.removeWAL()
	default:
		if err := os.Remove(l.walPath); err != nil {
			l.pending = true
		}
		l.removePCRFile()
		return cause
	}
}

// removeWAL removes the write-ahead log and its PCR file; a failure leaves
// the Log pending.
func (l *Log) removeWAL() error {
	if err := os.Remove(l.walPath); err != nil {
		l.pending = true
		return fmt.Errorf("aael: removing write-ahead log: %w", err)
	}
	l.removePCRFile()
	return nil
}

func (l *Log) removePCRFile() {
	if err := os.Remove(l.walPath + pcrSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("removing the write-ahead log's PCR file", "err", err)
	}
}

// extended returns H(cur || digest), the value a register holding cur has
// after being extended with digest.
func (l *Log) extended(cur, digest []byte) ([]byte, error) {
	if len(cur) != len(digest) {
		return nil, fmt.Errorf("%w: register %d bytes, digest %d", ErrRegisterSize, len(cur), len(digest))
	}
	h := l.hash.New()
	h.Write(cur)
	h.Write(digest)
	return h.Sum(nil), nil
}

// writeAt writes record at off, syncs, and moves the end of the log after it.
func (l *Log) writeAt(off int64, record []byte) error {
	if _, err := l.f.WriteAt(record, off); err != nil {
		return fmt.Errorf("aael: writing log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("aael: syncing log: %w", err)
	}
	l.pos = off + int64(len(record))
	return nil
}

// recover completes the event of a leftover write-ahead log.
func (l *Log) recover(ctx context.Context) error {
	b, err := readBounded(l.walPath, walMaxBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("aael: reading write-ahead log %s: %w", l.walPath, err)
	}
	w, err := DecodeWAL(b, l.hash.Size())
	if err != nil {
		return fmt.Errorf("%w (%s): %w; delete it only if the register is known untouched", ErrCorruptWAL, l.walPath, err)
	}
	if w.Offset > uint64(l.pos) {
		return fmt.Errorf("%w: offset %d is past the log end %d", ErrCorruptWAL, w.Offset, l.pos)
	}
	p, err := readPCRFile(l.walPath+pcrSuffix, l.initPCR)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptWAL, err)
	}
	l.log.Warn("recovering an event interrupted by a crash", "offset", w.Offset, "pcr", p)
	record, digest, err := EncodeEvent(l.reg.MRIndex(p), l.hash, w.Text)
	if err != nil {
		return err
	}
	cur, err := l.reg.RuntimeMeasurement(ctx, p)
	if err != nil {
		return fmt.Errorf("aael: recovery: reading register of PCR %d: %w", p, err)
	}
	if !bytes.Equal(cur, w.Expected) {
		// Not extended before the crash: extend now, if that leads to the
		// expected value.
		next, err := l.extended(cur, digest)
		if err != nil || !bytes.Equal(next, w.Expected) {
			return fmt.Errorf("%w: the register of PCR %d neither holds nor leads to the value expected by %s; it was extended by another party or the files were altered", ErrRecovery, p, l.walPath)
		}
		if err := l.reg.ExtendRuntimeMeasurement(ctx, digest, p); err != nil {
			return fmt.Errorf("aael: recovery: extending register of PCR %d: %w", p, err)
		}
	}
	if err := l.writeAt(int64(w.Offset), record); err != nil {
		return err
	}
	// Anything past the record is a torn write of the same record.
	if err := l.f.Truncate(l.pos); err != nil {
		return fmt.Errorf("aael: truncating log: %w", err)
	}
	return l.removeWAL()
}
