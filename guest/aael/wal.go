package aael

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// walMaxBytes bounds the write-ahead log: offset, the largest register
// (SHA-512) and the largest text.
const walMaxBytes = 8 + 64 + MaxTextBytes

// WAL is the write-ahead log of one event, upstream's .wal_event_entry:
// u64 big-endian Offset | Expected register value | Text (to the end).
type WAL struct {
	// Offset of the event's record in the log file.
	Offset uint64
	// Expected is the register value after the event's extension.
	Expected []byte
	// Text is the AAEL text of the event.
	Text string
}

// Encode returns the write-ahead log bytes.
func (w WAL) Encode() []byte {
	b := make([]byte, 0, 8+len(w.Expected)+len(w.Text))
	b = binary.BigEndian.AppendUint64(b, w.Offset)
	b = append(b, w.Expected...)
	return append(b, w.Text...)
}

// DecodeWAL decodes a write-ahead log whose register value has digestLen
// bytes. The text must be valid UTF-8 and a valid AAEL text.
func DecodeWAL(b []byte, digestLen int) (WAL, error) {
	if len(b) > walMaxBytes {
		return WAL{}, fmt.Errorf("%d bytes exceed %d", len(b), walMaxBytes)
	}
	if digestLen <= 0 || len(b) < 8+digestLen {
		return WAL{}, fmt.Errorf("%d bytes are too short for an offset and a %d-byte register", len(b), digestLen)
	}
	w := WAL{
		Offset:   binary.BigEndian.Uint64(b),
		Expected: append([]byte(nil), b[8:8+digestLen]...),
		Text:     string(b[8+digestLen:]),
	}
	if w.Offset > 1<<62 {
		return WAL{}, fmt.Errorf("offset %d out of range", w.Offset)
	}
	if !utf8.ValidString(w.Text) {
		return WAL{}, errors.New("event text is not UTF-8")
	}
	if _, _, _, err := ParseText(w.Text); err != nil {
		return WAL{}, err
	}
	return w, nil
}

// writeWAL writes w to path and syncs it.
func writeWAL(path string, w WAL) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("aael: creating write-ahead log: %w", err)
	}
	if _, err := f.Write(w.Encode()); err != nil {
		f.Close()
		return fmt.Errorf("aael: writing write-ahead log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("aael: syncing write-ahead log: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("aael: closing write-ahead log: %w", err)
	}
	return nil
}

// errTooLarge is returned by readBounded for a file over its bound.
var errTooLarge = errors.New("file too large")

// readBounded reads at most max bytes of path; a longer file is an error.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, errTooLarge, max)
	}
	return b, nil
}

// pcrSuffix names the file beside the write-ahead log that records the PCR
// of the pending event. Upstream's write-ahead log has no such field and
// its recovery assumes the init PCR; the separate file keeps the
// write-ahead log itself byte-compatible (an upstream agent ignores the
// file, and a write-ahead log without it means the init PCR).
const pcrSuffix = ".pcr"

func writePCRFile(path string, pcr uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("aael: creating write-ahead PCR file: %w", err)
	}
	_, err = f.Write(binary.BigEndian.AppendUint64(nil, pcr))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("aael: writing write-ahead PCR file: %w", err)
	}
	return nil
}

// readPCRFile returns the PCR recorded beside the write-ahead log, or def
// when there is no such file.
func readPCRFile(path string, def uint64) (uint64, error) {
	b, err := readBounded(path, 8)
	if errors.Is(err, os.ErrNotExist) {
		return def, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("PCR file of %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
