// Package eventlog parses and replays TCG2 crypto-agile event logs: the
// Confidential Computing Event Log (CCEL) that TDVF/OVMF publishes as an ACPI
// table, with the Attestation Agent's AAEL runtime events appended to it.
//
// Parse turns the binary log into typed events whose JSON form is exactly
// upstream Trustee's (deps/eventlog): {"uefi_event_logs":[{"details",
// "digest_matches_event","digests","event","index","type_name"}]}, with the
// same per-event-type details (strings, UEFI variables, device paths, AAEL
// domain/operation/content). Replay and ReplayAndMatch recompute a
// measurement register from the digests recorded for it, as a verifier does
// before trusting the events (on TDX, event-log register 1..4 is RTMR 0..3).
// The encoding half (NoCCELHeader, NewAAELEvent, Event.AppendBinary,
// EndMarker) builds the same wire format on the guest side.
//
// # Invariants
//
//   - Parse never panics and reads nothing outside its input, whose size is
//     bounded by MaxLogBytes. Where upstream's Rust parser would panic on a
//     malformed event, Parse returns an error wrapping ErrMalformed.
//   - Parse accepts and rejects the same logs as upstream: the first event
//     must be a known type and, when it is EV_NO_ACTION, a TCG
//     Spec ID event declaring the digest sizes; unknown event types, unknown
//     algorithms, digests of algorithms with no size, and detail parsers'
//     errors (e.g. invalid UTF-8 in an EV_EFI_ACTION) fail the whole log.
//   - A log ends at its end or at an 8-byte all-0x00 or all-0xFF marker.
//   - Replay follows upstream: it starts from zeros and extends, in log
//     order, every digest of the requested algorithm recorded for the
//     register, whatever the event type.
//
// The package holds no state; everything is safe for concurrent use.
package eventlog

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// MaxLogBytes bounds the binary event log Parse accepts: an event log
// travels inside the evidence, so it can be no larger.
const MaxLogBytes = limits.MaxEvidenceBytes

var (
	// ErrMalformed means the event log could not be parsed.
	ErrMalformed = errors.New("eventlog: malformed event log")
	// ErrUnsupportedAlgorithm means a digest algorithm has no known size
	// or cannot be computed (RSA, TDES, and SHA-1 for digest checks).
	ErrUnsupportedAlgorithm = errors.New("eventlog: unsupported digest algorithm")
	// ErrReplayMismatch means a replayed measurement register differs from
	// the reference value it must match.
	ErrReplayMismatch = errors.New("eventlog: measurement replay mismatch")
)

// Algorithm is a TCG algorithm identifier (TPM_ALG_ID).
type Algorithm uint16

// Algorithms upstream knows. Only SHA-256, SHA-384, SHA-512 and SM3 can be
// computed; SHA-1 has a size (it can be replayed with a caller's hash) but
// upstream rejects it in digest checks.
const (
	AlgRSA    Algorithm = 0x1
	AlgTDES   Algorithm = 0x3
	AlgSHA1   Algorithm = 0x4
	AlgSHA256 Algorithm = 0xB
	AlgSHA384 Algorithm = 0xC
	AlgSHA512 Algorithm = 0xD
	AlgSM3    Algorithm = 0x12
)

var algNames = map[Algorithm]string{
	AlgRSA: "RSA", AlgTDES: "TDES", AlgSHA1: "SHA-1", AlgSHA256: "SHA-256",
	AlgSHA384: "SHA-384", AlgSHA512: "SHA-512", AlgSM3: "SM3",
}

func (a Algorithm) known() bool { _, ok := algNames[a]; return ok }

// String returns upstream's name of the algorithm ("SHA-384"), or its
// number for an unknown one.
func (a Algorithm) String() string {
	if n, ok := algNames[a]; ok {
		return n
	}
	return fmt.Sprintf("Algorithm(%#x)", uint16(a))
}

// MarshalJSON encodes the algorithm by name, as upstream.
func (a Algorithm) MarshalJSON() ([]byte, error) {
	n, ok := algNames[a]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedAlgorithm, a)
	}
	return json.Marshal(n)
}

// Size returns the digest size of the algorithm.
func (a Algorithm) Size() (int, error) {
	switch a {
	case AlgSHA1:
		return 20, nil
	case AlgSHA256, AlgSM3:
		return 32, nil
	case AlgSHA384:
		return 48, nil
	case AlgSHA512:
		return 64, nil
	}
	return 0, fmt.Errorf("%w: no digest size for %s", ErrUnsupportedAlgorithm, a)
}

// New returns a hash of the algorithm: SHA-256, SHA-384, SHA-512 or SM3.
func (a Algorithm) New() (hash.Hash, error) {
	switch a {
	case AlgSHA256:
		return sha256.New(), nil
	case AlgSHA384:
		return sha512.New384(), nil
	case AlgSHA512:
		return sha512.New(), nil
	case AlgSM3:
		return newSM3(), nil
	}
	return nil, fmt.Errorf("%w: cannot compute %s", ErrUnsupportedAlgorithm, a)
}

// Sum returns the digest of data with the algorithm.
func (a Algorithm) Sum(data []byte) ([]byte, error) {
	h, err := a.New()
	if err != nil {
		return nil, err
	}
	h.Write(data)
	return h.Sum(nil), nil
}

// Digest is one digest recorded for an event.
type Digest struct {
	Alg    Algorithm
	Digest []byte
}

// MarshalJSON encodes {"alg":"SHA-384","digest":"<hex>"}.
func (d Digest) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Alg    Algorithm `json:"alg"`
		Digest string    `json:"digest"`
	}{d.Alg, hex.EncodeToString(d.Digest)})
}

// AAEL is the parsed form of an Attestation Agent event log entry,
// "<domain> <operation> <content>". Content is the content's JSON value when
// it parses as JSON (numbers kept as json.Number), else the string itself.
type AAEL struct {
	Domain    string `json:"domain"`
	Operation string `json:"operation"`
	Content   any    `json:"content"`
}

// Details are the decoded contents of an event's data, as upstream's
// EventDetails; nil fields are omitted from JSON.
type Details struct {
	String             *string  `json:"string,omitempty"`
	UnicodeName        *string  `json:"unicode_name,omitempty"`
	UnicodeNameLength  *uint64  `json:"unicode_name_length,omitempty"`
	VariableData       *string  `json:"variable_data,omitempty"`
	VariableDataLength *uint64  `json:"variable_data_length,omitempty"`
	VariableName       *string  `json:"variable_name,omitempty"`
	DevicePaths        []string `json:"device_paths,omitempty"`
	// Data is set for AAEL events.
	Data *AAEL `json:"data,omitempty"`
}

func stringDetails(s string) Details { return Details{String: &s} }

// Event is one TCG_PCR_EVENT2 of the log.
type Event struct {
	// Index is the measurement register the event was extended into (the
	// CC measurement register index; on TDX, RTMR = Index-1).
	Index uint32
	// Type is the TCG event type.
	Type EventType
	// Digests are the recorded digests, in log order.
	Digests []Digest
	// Data is the raw event data.
	Data []byte
	// Details is Data decoded according to Type.
	Details Details
	// DigestMatchesEvent reports whether every recorded digest is the hash
	// of Data (false for events that measure something else, such as a
	// firmware volume).
	DigestMatchesEvent bool
}

// MarshalJSON encodes the event as upstream does.
func (e Event) MarshalJSON() ([]byte, error) {
	digests := e.Digests
	if digests == nil {
		digests = []Digest{}
	}
	return json.Marshal(struct {
		Details            Details   `json:"details"`
		DigestMatchesEvent bool      `json:"digest_matches_event"`
		Digests            []Digest  `json:"digests"`
		Event              string    `json:"event"`
		Index              uint32    `json:"index"`
		TypeName           EventType `json:"type_name"`
	}{e.Details, e.DigestMatchesEvent, digests, base64.StdEncoding.EncodeToString(e.Data), e.Index, e.Type})
}

// Log is a parsed event log. The first (Spec ID) event is not part of
// Events, as upstream.
type Log struct {
	Events []Event
	// DigestSizes are the digest sizes the Spec ID event declared.
	DigestSizes map[Algorithm]int
}

// MarshalJSON encodes {"uefi_event_logs":[...]}.
func (l *Log) MarshalJSON() ([]byte, error) {
	events := l.Events
	if events == nil {
		events = []Event{}
	}
	return json.Marshal(struct {
		Events []Event `json:"uefi_event_logs"`
	}{events})
}

// reader reads little-endian fields from a byte slice without ever
// reading past its end.
type reader struct {
	b   []byte
	off int
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) u16() (uint16, bool) {
	if r.remaining() < 2 {
		return 0, false
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, true
}

func (r *reader) u32() (uint32, bool) {
	if r.remaining() < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, true
}

func (r *reader) u64() (uint64, bool) {
	if r.remaining() < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, true
}

// bytes returns the next n bytes (not copied).
func (r *reader) bytes(n uint64) ([]byte, bool) {
	if n > uint64(r.remaining()) {
		return nil, false
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v, true
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Parse parses a TCG2 crypto-agile event log: the CCEL ACPI table data,
// possibly followed by AAEL events and an end marker.
func Parse(data []byte) (*Log, error) {
	if len(data) > MaxLogBytes {
		return nil, malformed("%d bytes exceed the limit of %d", len(data), MaxLogBytes)
	}
	r := &reader{b: data}
	log := &Log{DigestSizes: map[Algorithm]int{}}
	if err := parseSpecID(r, log.DigestSizes); err != nil {
		return nil, err
	}
	for r.remaining() > 0 {
		if r.remaining() < 8 {
			return nil, malformed("cannot read potential stop flag at offset %d", r.off)
		}
		if stop := binary.LittleEndian.Uint64(r.b[r.off:]); stop == 0 || stop == ^uint64(0) {
			break
		}
		ev, err := parseEvent(r, log.DigestSizes)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", len(log.Events), err)
		}
		log.Events = append(log.Events, ev)
	}
	return log, nil
}

// parseSpecID parses the first event, a TCG_PCClientPCREvent (SHA-1 format)
// which in a crypto-agile log is an EV_NO_ACTION carrying the
// TCG_EfiSpecIDEvent that declares the digest sizes.
func parseSpecID(r *reader, sizes map[Algorithm]int) error {
	if _, ok := r.u32(); !ok {
		return malformed("cannot read PCR index")
	}
	et, ok := r.u32()
	if !ok {
		return malformed("cannot read event type number")
	}
	typ := EventType(et)
	if !typ.known() {
		return malformed("unknown event type detected: %#x", et)
	}
	if _, ok := r.bytes(20); !ok { // SHA-1 digest
		return malformed("cannot read event data size")
	}
	size, ok := r.u32()
	if !ok {
		return malformed("cannot read event data size")
	}
	if typ != EvNoAction {
		// Upstream leaves the event data in place: what follows is then
		// parsed as events (and, with no digest sizes, usually fails).
		return nil
	}
	spec, ok := r.bytes(uint64(size))
	if !ok {
		return malformed("out of bounds while reading digest data")
	}
	sr := &reader{b: spec, off: 24} // signature[16], platformClass, versions, uintnSize
	if len(spec) < 24 {
		return malformed("cannot read algorithm array size")
	}
	n, ok := sr.u32()
	if !ok {
		return malformed("cannot read algorithm array size")
	}
	for i := uint32(0); i < n; i++ {
		id, ok1 := sr.u16()
		sz, ok2 := sr.u16()
		if !ok1 || !ok2 {
			return malformed("cannot read algorithm id and size")
		}
		alg := Algorithm(id)
		if !alg.known() {
			return malformed("unknown algorithm type detected: %x", id)
		}
		sizes[alg] = int(sz)
	}
	vendor, ok := sr.bytes(1)
	if !ok {
		return malformed("cannot read vendor info size")
	}
	if _, ok := sr.bytes(uint64(vendor[0])); !ok || sr.off != len(spec) {
		return malformed("unexpected data size consumed for detecting digests")
	}
	return nil
}

func parseEvent(r *reader, sizes map[Algorithm]int) (Event, error) {
	var ev Event
	idx, ok1 := r.u32()
	et, ok2 := r.u32()
	if !ok1 || !ok2 {
		return ev, malformed("cannot read event header")
	}
	ev.Index, ev.Type = idx, EventType(et)
	if !ev.Type.known() {
		return ev, malformed("unknown event type detected: %#x", et)
	}
	count, ok := r.u32()
	if !ok {
		return ev, malformed("cannot read digest count")
	}
	for i := uint32(0); i < count; i++ {
		id, ok := r.u16()
		if !ok {
			return ev, malformed("cannot read algorithm id")
		}
		alg := Algorithm(id)
		if !alg.known() {
			return ev, malformed("unknown algorithm type detected: %x", id)
		}
		sz, ok := sizes[alg]
		if !ok {
			return ev, malformed("missing digest size for algorithm: %x", id)
		}
		d, ok := r.bytes(uint64(sz))
		if !ok {
			return ev, malformed("digest of %s out of bounds", alg)
		}
		ev.Digests = append(ev.Digests, Digest{Alg: alg, Digest: append([]byte(nil), d...)})
	}
	size, ok := r.u32()
	if !ok {
		return ev, malformed("cannot read event data size")
	}
	data, ok := r.bytes(uint64(size))
	if !ok {
		return ev, malformed("data is too short: expected at least %d bytes", size)
	}
	ev.Data = append([]byte{}, data...)
	match, err := digestsMatch(ev.Data, ev.Digests)
	if err != nil {
		return ev, err
	}
	ev.DigestMatchesEvent = match
	ev.Details, err = parseDetails(ev.Type, ev.Data)
	if err != nil {
		return ev, fmt.Errorf("%w: %s: %w", ErrMalformed, ev.Type, err)
	}
	return ev, nil
}

// digestsMatch reports whether every digest is the hash of data. As
// upstream, a digest of an algorithm that cannot be computed is an error.
func digestsMatch(data []byte, digests []Digest) (bool, error) {
	for _, d := range digests {
		sum, err := d.Alg.Sum(data)
		if err != nil {
			return false, fmt.Errorf("digest comparison failed: %w", err)
		}
		if string(sum) != string(d.Digest) {
			return false, nil
		}
	}
	return true, nil
}

// Reference is a value a measurement register must have.
type Reference struct {
	// Index is the event log's measurement register index.
	Index     uint32
	Algorithm Algorithm
	Value     []byte
}

// Replay recomputes measurement register index for alg: starting from
// zeros, it extends (reg = H(reg || digest)) every digest of alg recorded
// for the register, in log order.
func (l *Log) Replay(index uint32, alg Algorithm) ([]byte, error) {
	size, err := alg.Size()
	if err != nil {
		return nil, err
	}
	h, err := alg.New()
	if err != nil {
		return nil, err
	}
	reg := make([]byte, size)
	for i := range l.Events {
		ev := &l.Events[i]
		if ev.Index != index {
			continue
		}
		for _, d := range ev.Digests {
			if d.Alg != alg {
				continue
			}
			h.Reset()
			h.Write(reg)
			h.Write(d.Digest)
			reg = h.Sum(reg[:0])
		}
	}
	return reg, nil
}

// ReplayAndMatch replays every reference's register and returns an error
// wrapping ErrReplayMismatch for the first one that differs.
func (l *Log) ReplayAndMatch(refs []Reference) error {
	for _, ref := range refs {
		got, err := l.Replay(ref.Index, ref.Algorithm)
		if err != nil {
			return err
		}
		if string(got) != string(ref.Value) {
			return fmt.Errorf("%w: eventlog does not pass measurement replay CC Event Log Measurement Register [index = %d]. Calculated value: %x, Given value: %x",
				ErrReplayMismatch, ref.Index, got, ref.Value)
		}
	}
	return nil
}
