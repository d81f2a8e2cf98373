package tpmquote

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/verifier"
)

// Fields are the members of a JSON object, decoded the way upstream's
// serde types decode a struct: member names match exactly, unknown members
// are ignored, a missing or null required member is an error. Errors wrap
// verifier.ErrMalformedEvidence and name the member.
type Fields map[string]json.RawMessage

// evidenceError is a decoding error of an evidence member. It wraps
// verifier.ErrMalformedEvidence without repeating its text, so that it
// reads well inside other errors.
type evidenceError struct{ msg string }

func (e *evidenceError) Error() string { return e.msg }
func (e *evidenceError) Unwrap() error { return verifier.ErrMalformedEvidence }

func malformed(format string, args ...any) error {
	return &evidenceError{msg: fmt.Sprintf(format, args...)}
}

// ParseObject decodes a JSON object of at most limits.MaxEvidenceBytes.
func ParseObject(raw []byte) (Fields, error) {
	if len(raw) > limits.MaxEvidenceBytes {
		return nil, malformed("%d bytes exceeds the limit of %d", len(raw), limits.MaxEvidenceBytes)
	}
	var f Fields
	if err := json.Unmarshal(raw, &f); err != nil || f == nil {
		return nil, malformed("not a JSON object")
	}
	return f, nil
}

func (f Fields) get(name string) (json.RawMessage, error) {
	raw, ok := f[name]
	if !ok {
		return nil, malformed("missing field `%s`", name)
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, malformed("field `%s` is null", name)
	}
	return raw, nil
}

func fieldErr(name string, format string, args ...any) error {
	return malformed("field `%s`: %s", name, fmt.Sprintf(format, args...))
}

// Has reports whether the member name is present (even if null).
func (f Fields) Has(name string) bool {
	_, ok := f[name]
	return ok
}

// Object decodes the required object member name.
func (f Fields) Object(name string) (Fields, error) {
	raw, err := f.get(name)
	if err != nil {
		return nil, err
	}
	var o Fields
	if err := json.Unmarshal(raw, &o); err != nil || o == nil {
		return nil, fieldErr(name, "expected an object")
	}
	return o, nil
}

// String decodes the required string member name.
func (f Fields) String(name string) (string, error) {
	raw, err := f.get(name)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(name, "expected a string")
	}
	return s, nil
}

// Uint32 decodes the required unsigned 32-bit integer member name; as
// serde_json, only an integer literal is accepted (no fraction, exponent
// or sign).
func (f Fields) Uint32(name string) (uint32, error) {
	raw, err := f.get(name)
	if err != nil {
		return 0, err
	}
	v, rest, ok := parseUint(bytes.TrimSpace(raw), 1<<32-1)
	if !ok || len(rest) != 0 {
		return 0, fieldErr(name, "expected an unsigned 32-bit integer")
	}
	return uint32(v), nil
}

// Bytes decodes the required member name as serde decodes a Vec<u8>: a
// JSON array of integers 0..255.
func (f Fields) Bytes(name string) ([]byte, error) {
	raw, err := f.get(name)
	if err != nil {
		return nil, err
	}
	b, err := decodeByteArray(raw)
	if err != nil {
		return nil, fieldErr(name, "%v", err)
	}
	return b, nil
}

// Hex decodes the required member name as serde_with's Hex: a string of
// hex digits (either case), even in length.
func (f Fields) Hex(name string) ([]byte, error) {
	s, err := f.String(name)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fieldErr(name, "invalid hex: %v", err)
	}
	return b, nil
}

// Strings decodes the required member name as serde decodes a
// Vec<String>: an array whose elements are all strings (null is not).
func (f Fields) Strings(name string) ([]string, error) {
	raw, err := f.get(name)
	if err != nil {
		return nil, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, fieldErr(name, "expected an array of strings")
	}
	out := make([]string, len(items))
	for i, it := range items {
		if it[0] != '"' || json.Unmarshal(it, &out[i]) != nil {
			return nil, fieldErr(name, "element %d: expected a string", i)
		}
	}
	return out, nil
}

// HexList decodes the required member name as serde_with's Vec<Hex>.
func (f Fields) HexList(name string) ([][]byte, error) {
	ss, err := f.Strings(name)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		if out[i], err = hex.DecodeString(s); err != nil {
			return nil, fieldErr(name, "element %d: invalid hex: %v", i, err)
		}
	}
	return out, nil
}

// Base64URL decodes the required member name as serde_with's
// Base64<UrlSafe>: the URL-safe alphabet, padding optional.
func (f Fields) Base64URL(name string) ([]byte, error) {
	s, err := f.String(name)
	if err != nil {
		return nil, err
	}
	b, err := DecodeBase64URL(s)
	if err != nil {
		return nil, fieldErr(name, "%v", err)
	}
	return b, nil
}

// DecodeBase64URL decodes URL-safe base64 with optional (but never excess)
// padding and canonical trailing bits, as the Rust base64 crate with
// DecodePaddingMode::Indifferent. Line breaks are rejected.
func DecodeBase64URL(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("invalid base64: line break")
	}
	trimmed := strings.TrimRight(s, "=")
	if pad := len(s) - len(trimmed); pad > 0 && pad > (4-len(trimmed)%4)%4 {
		return nil, fmt.Errorf("invalid base64: excess padding")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(trimmed)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %v", err)
	}
	return b, nil
}

// DecodeBase64Std decodes standard base64 with canonical padding and
// trailing bits, as the Rust base64 crate's STANDARD engine. Line breaks
// are rejected.
func DecodeBase64Std(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("invalid base64: line break")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %v", err)
	}
	return b, nil
}

// HexQuote decodes upstream's TpmQuote (az-snp-vtpm and az-tdx-vtpm
// evidence v1 and v2): {"signature":hex,"message":hex,"pcrs":[hex,...]}.
func HexQuote(f Fields) (Quote, error) {
	var q Quote
	var err error
	if q.Signature, err = f.Hex("signature"); err != nil {
		return Quote{}, err
	}
	if q.Message, err = f.Hex("message"); err != nil {
		return Quote{}, err
	}
	if q.PCRs, err = f.HexList("pcrs"); err != nil {
		return Quote{}, err
	}
	return q, nil
}

// ByteQuote decodes the az-cvm-vtpm crate's Quote (evidence v0):
// {"signature":[u8...],"message":[u8...],"pcrs":[[u8;32]...]}.
func ByteQuote(f Fields) (Quote, error) {
	var q Quote
	var err error
	if q.Signature, err = f.Bytes("signature"); err != nil {
		return Quote{}, err
	}
	if q.Message, err = f.Bytes("message"); err != nil {
		return Quote{}, err
	}
	raw, err := f.get("pcrs")
	if err != nil {
		return Quote{}, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return Quote{}, fieldErr("pcrs", "expected an array")
	}
	if len(items) > MaxPCRs {
		return Quote{}, fieldErr("pcrs", "%d PCRs, at most %d", len(items), MaxPCRs)
	}
	for i, it := range items {
		p, err := decodeByteArray(it)
		if err != nil {
			return Quote{}, fieldErr("pcrs", "element %d: %v", i, err)
		}
		if len(p) != PCRSize {
			return Quote{}, fieldErr("pcrs", "element %d: %d bytes, expected an array of %d", i, len(p), PCRSize)
		}
		q.PCRs = append(q.PCRs, p)
	}
	return q, nil
}

// decodeByteArray decodes a JSON array of integers 0..255 without
// allocating per element.
func decodeByteArray(raw []byte) ([]byte, error) {
	s := bytes.TrimSpace(raw)
	if len(s) < 2 || s[0] != '[' {
		return nil, fmt.Errorf("expected an array of bytes")
	}
	s = skipSpace(s[1:])
	out := make([]byte, 0, len(s)/2)
	if len(s) > 0 && s[0] == ']' {
		if len(skipSpace(s[1:])) != 0 {
			return nil, fmt.Errorf("trailing data after array")
		}
		return out, nil
	}
	for {
		v, rest, ok := parseUint(s, 255)
		if !ok {
			return nil, fmt.Errorf("element %d: expected an integer 0..255", len(out))
		}
		out = append(out, byte(v))
		s = skipSpace(rest)
		if len(s) == 0 {
			return nil, fmt.Errorf("unterminated array")
		}
		switch s[0] {
		case ',':
			s = skipSpace(s[1:])
		case ']':
			if len(skipSpace(s[1:])) != 0 {
				return nil, fmt.Errorf("trailing data after array")
			}
			return out, nil
		default:
			return nil, fmt.Errorf("element %d: expected an integer 0..255", len(out))
		}
	}
}

// parseUint parses a JSON integer literal (no sign, fraction or exponent,
// no leading zeros) of at most max at the start of s.
func parseUint(s []byte, max uint64) (uint64, []byte, bool) {
	n := 0
	var v uint64
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		v = v*10 + uint64(s[n]-'0')
		if v > max {
			return 0, nil, false
		}
		n++
	}
	if n == 0 || (n > 1 && s[0] == '0') {
		return 0, nil, false
	}
	if n < len(s) && (s[n] == '.' || s[n] == 'e' || s[n] == 'E') {
		return 0, nil, false
	}
	return v, s[n:], true
}

func skipSpace(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r') {
		s = s[1:]
	}
	return s
}

// DecodeVersioned is the shape both Azure vTPM evidence decoders share
// (az-snp-vtpm, az-tdx-vtpm): the document is one JSON object; when it has
// a "version" of 1 or 2, the versioned form is tried with parseV1; any
// document is then tried as version 0 with parseV0, as upstream's untagged
// serde enum does. what names the evidence in errors ("Azure vTPM TDX
// evidence"); every failure wraps verifier.ErrMalformedEvidence as the
// parsers' errors do, and joins the reason of each form tried.
func DecodeVersioned(doc []byte, what string, parseV1 func(top Fields, version int) error, parseV0 func(top Fields) error) error {
	top, err := ParseObject(doc)
	if err != nil {
		return fmt.Errorf("failed to deserialize %s: %w", what, err)
	}
	var errs []error
	if top.Has("version") {
		if v, err := top.Uint32("version"); err == nil && (v == 1 || v == 2) {
			err := parseV1(top, int(v))
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("as version %d: %w", v, err))
		} else {
			errs = append(errs, fmt.Errorf("as version 1 or 2: %w: version is not 1 or 2", verifier.ErrMalformedEvidence))
		}
	}
	if err := parseV0(top); err != nil {
		errs = append(errs, fmt.Errorf("as version 0: %w", err))
		return fmt.Errorf("failed to deserialize %s: %w", what, errors.Join(errs...))
	}
	return nil
}
