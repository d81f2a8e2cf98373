package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
)

// noCCELHeader is the Spec ID event the Attestation Agent puts in front of
// its AAEL events when the platform has no CCEL: EV_NO_ACTION declaring
// SHA-384 (48 bytes) and SM3 (32 bytes) digests.
var noCCELHeader = [69]byte{
	0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x25, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x30, 0x00,
	0x12, 0x00, 0x20, 0x00, 0x00,
}

// NoCCELHeader returns the 69-byte Spec ID event that starts a log with no
// CCEL (the Attestation Agent's EL_HEADER): it declares SHA-384 and SM3.
func NoCCELHeader() []byte { return append([]byte(nil), noCCELHeader[:]...) }

// EndMarker returns the 8 0xFF bytes that end a log in evidence.
func EndMarker() []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

// FormatAAEL returns the AAEL text "<domain> <operation> <content>". Domain
// and operation must be non-empty and free of whitespace, content free of
// line breaks.
func FormatAAEL(domain, operation, content string) (string, error) {
	if domain == "" || strings.IndexFunc(domain, unicode.IsSpace) >= 0 {
		return "", errors.New("eventlog: AAEL domain must be non-empty and contain no whitespace")
	}
	if operation == "" || strings.IndexFunc(operation, unicode.IsSpace) >= 0 {
		return "", errors.New("eventlog: AAEL operation must be non-empty and contain no whitespace")
	}
	if strings.ContainsAny(content, "\r\n") {
		return "", errors.New("eventlog: AAEL content must not contain line breaks")
	}
	return domain + " " + operation + " " + content, nil
}

// TaggedEventData returns a TCG_PCClientTaggedEvent: id, size, data.
func TaggedEventData(id uint32, data []byte) ([]byte, error) {
	if uint64(len(data)) > math.MaxUint32 {
		return nil, errors.New("eventlog: tagged event data too large")
	}
	b := make([]byte, 8, 8+len(data))
	binary.LittleEndian.PutUint32(b[0:], id)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(data)))
	return append(b, data...), nil
}

// NewAAELEvent returns the EV_EVENT_TAG event that records AAEL text in
// measurement register index, with one digest of alg over the whole tagged
// event, as the Attestation Agent writes it. The digest (padded or
// truncated to the register size) is what the register must be extended
// with.
func NewAAELEvent(index uint32, alg Algorithm, text string) (Event, error) {
	a, err := ParseAAEL(text)
	if err != nil {
		return Event{}, fmt.Errorf("eventlog: AAEL text: %w", err)
	}
	data, err := TaggedEventData(aaelTaggedEventID, []byte(text))
	if err != nil {
		return Event{}, err
	}
	sum, err := alg.Sum(data)
	if err != nil {
		return Event{}, err
	}
	name := "AAEL"
	return Event{
		Index:              index,
		Type:               EvEventTag,
		Digests:            []Digest{{Alg: alg, Digest: sum}},
		Data:               data,
		Details:            Details{String: &text, UnicodeName: &name, Data: &a},
		DigestMatchesEvent: true,
	}, nil
}

// AppendBinary appends the event as a TCG_PCR_EVENT2: index, type, digest
// count, (algorithm, digest)..., data size, data.
func (e Event) AppendBinary(b []byte) ([]byte, error) {
	if uint64(len(e.Data)) > math.MaxUint32 || uint64(len(e.Digests)) > math.MaxUint32 {
		return nil, errors.New("eventlog: event too large")
	}
	b = binary.LittleEndian.AppendUint32(b, e.Index)
	b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Digests)))
	for _, d := range e.Digests {
		size, err := d.Alg.Size()
		if err != nil {
			return nil, err
		}
		if len(d.Digest) != size {
			return nil, fmt.Errorf("eventlog: %s digest of %d bytes, want %d", d.Alg, len(d.Digest), size)
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(d.Alg))
		b = append(b, d.Digest...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
	return append(b, e.Data...), nil
}
