package aael

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// TCG2 constants of an AAEL record.
const (
	// EvEventTag is the TCG event type EV_EVENT_TAG.
	EvEventTag = 0x00000006
	// TaggedEventID is the taggedEventID of AAEL events: "AAEL" read as a
	// little-endian u32 (bytes 4C 45 41 41).
	TaggedEventID = 0x4141454C
	// MaxTextBytes bounds one AAEL text ("<domain> <operation> <content>").
	MaxTextBytes = limits.MaxAAELTextBytes
)

// ErrInvalidEvent is returned for an AAEL event whose domain or operation is
// empty or holds whitespace, whose content holds a line break, or whose text
// exceeds MaxTextBytes.
var ErrInvalidEvent = errors.New("aael: invalid event")

// ErrUnsupportedHash is returned for a hash the TCG2 log cannot name.
var ErrUnsupportedHash = errors.New("aael: unsupported hash algorithm")

// Text returns the AAEL text "<domain> <operation> <content>". Domain and
// operation must be non-empty and hold no whitespace (upstream's parser
// splits on the first two spaces); content must hold no line break.
func Text(domain, operation, content string) (string, error) {
	if domain == "" || strings.IndexFunc(domain, unicode.IsSpace) >= 0 {
		return "", fmt.Errorf("%w: domain %q must be non-empty without whitespace", ErrInvalidEvent, clip(domain))
	}
	if operation == "" || strings.IndexFunc(operation, unicode.IsSpace) >= 0 {
		return "", fmt.Errorf("%w: operation %q must be non-empty without whitespace", ErrInvalidEvent, clip(operation))
	}
	if strings.ContainsAny(content, "\n\r") {
		return "", fmt.Errorf("%w: content must not contain a line break", ErrInvalidEvent)
	}
	t := domain + " " + operation + " " + content
	if len(t) > MaxTextBytes {
		return "", fmt.Errorf("%w: %d bytes exceed %d", ErrInvalidEvent, len(t), MaxTextBytes)
	}
	return t, nil
}

// ParseText splits an AAEL text at its first two spaces, as upstream's WAL
// recovery does, and checks it as Text does.
func ParseText(t string) (domain, operation, content string, err error) {
	d, rest, ok1 := strings.Cut(t, " ")
	o, c, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return "", "", "", fmt.Errorf("%w: text needs three space-separated parts", ErrInvalidEvent)
	}
	if _, err := Text(d, o, c); err != nil {
		return "", "", "", err
	}
	return d, o, c, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// algID returns the TPM_ALG_ID of h.
func algID(h crypto.Hash) (uint16, error) {
	switch h {
	case crypto.SHA256:
		return 0x000B, nil
	case crypto.SHA384:
		return 0x000C, nil
	case crypto.SHA512:
		return 0x000D, nil
	}
	return 0, fmt.Errorf("%w: %v", ErrUnsupportedHash, h)
}

// TaggedEvent returns the TCG_PCClientTaggedEvent of an AAEL text:
// u32 TaggedEventID, u32 length, text (all little-endian).
func TaggedEvent(text string) []byte {
	b := make([]byte, 8, 8+len(text))
	binary.LittleEndian.PutUint32(b[0:], TaggedEventID)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(text)))
	return append(b, text...)
}

// EncodeEvent returns the TCG_PCR_EVENT2 record of an AAEL text for
// measurement register mrIndex, with its single digest H(tagged event), and
// that digest: the value the register is extended with.
//
//	u32 mrIndex | u32 EV_EVENT_TAG | u32 1 | u16 alg | digest | u32 size | tagged event
func EncodeEvent(mrIndex uint32, h crypto.Hash, text string) (record, digest []byte, err error) {
	if len(text) > MaxTextBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes exceed %d", ErrInvalidEvent, len(text), MaxTextBytes)
	}
	id, err := algID(h)
	if err != nil {
		return nil, nil, err
	}
	ev := TaggedEvent(text)
	hh := h.New()
	hh.Write(ev)
	digest = hh.Sum(nil)
	record = make([]byte, 0, 14+len(digest)+4+len(ev))
	record = binary.LittleEndian.AppendUint32(record, mrIndex)
	record = binary.LittleEndian.AppendUint32(record, EvEventTag)
	record = binary.LittleEndian.AppendUint32(record, 1)
	record = binary.LittleEndian.AppendUint16(record, id)
	record = append(record, digest...)
	record = binary.LittleEndian.AppendUint32(record, uint32(len(ev)))
	record = append(record, ev...)
	return record, digest, nil
}
