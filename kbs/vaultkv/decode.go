package vaultkv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The parts of Vault replies the backend reads. json.RawMessage keeps the
// value undecoded until its form (string, array, other) is known.
type (
	v1Reply struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	v2Reply struct {
		Data *struct {
			Data map[string]json.RawMessage `json:"data"`
		} `json:"data"`
	}
	errorReply struct {
		Errors   []string `json:"errors"`
		Warnings []string `json:"warnings"`
	}
)

// decodeErrorReply reads Vault's {"errors": [...], "warnings": [...]}; a
// body that is not such JSON gives nothing.
func decodeErrorReply(body []byte) (errs, warnings []string) {
	var r errorReply
	if json.Unmarshal(body, &r) != nil {
		return nil, nil
	}
	return shorten(r.Errors), shorten(r.Warnings)
}

// decodeSecret returns the resource held by a KV read reply: the field
// "data" of the secret (v1: reply.data, v2: reply.data.data). path names
// the secret in messages; max bounds the value. No error text holds any
// part of the value.
func decodeSecret(version int, path string, body []byte, max int) ([]byte, error) {
	var fields map[string]json.RawMessage
	if version == 2 {
		var r v2Reply
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, malformedReply(path, err)
		}
		if r.Data == nil {
			return nil, newErr(ErrMalformed, "Vault API error for path '%s': the reply has no data", path)
		}
		if r.Data.Data == nil {
			// The latest version is deleted or destroyed.
			return nil, newErr(ErrNotFound, "Secret not found at path '%s'", path)
		}
		fields = r.Data.Data
	} else {
		var r v1Reply
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, malformedReply(path, err)
		}
		if r.Data == nil {
			return nil, newErr(ErrMalformed, "Vault API error for path '%s': the reply has no data", path)
		}
		fields = r.Data
	}
	raw, ok := fields["data"]
	if !ok {
		return nil, newErr(ErrMalformed, "Secret exists at path '%s' but missing required 'data' key. Available keys: %s", path, keyList(fields))
	}
	v, err := decodeValue(raw, max)
	if err != nil {
		return nil, &Error{class: err.class, msg: fmt.Sprintf("Vault API error for path '%s': %s", path, err.msg)}
	}
	return v, nil
}

// malformedReply reports a reply that does not decode, naming the offset
// of a syntax error but never the bytes around it.
func malformedReply(path string, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return newErr(ErrMalformed, "Vault API error for path '%s': the reply is not JSON (syntax error at offset %d)", path, se.Offset)
	case errors.As(err, &te):
		return newErr(ErrMalformed, "Vault API error for path '%s': the reply's %s is a JSON %s", path, te.Field, te.Value)
	}
	return newErr(ErrMalformed, "Vault API error for path '%s': the reply does not decode", path)
}

// keyList formats the secret's field names as upstream's {:?} of a
// Vec<String> (["a", "b"]), sorted and bounded.
func keyList(fields map[string]json.RawMessage) string {
	const maxKeys, maxKeyLen = 16, 64
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	more := 0
	if len(keys) > maxKeys {
		more = len(keys) - maxKeys
		keys = keys[:maxKeys]
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if len(k) > maxKeyLen {
			k = strings.ToValidUTF8(k[:maxKeyLen], "") + "..."
		}
		b.WriteString(strconv.Quote(k))
	}
	if more > 0 {
		fmt.Fprintf(&b, ", ... %d more", more)
	}
	b.WriteByte(']')
	return b.String()
}

// decodeValue turns the field's JSON into the resource, as upstream: a
// string is its UTF-8 bytes, an array of integers 0..255 the bytes, and
// anything else its compact JSON text.
func decodeValue(raw json.RawMessage, max int) ([]byte, *Error) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return nil, newErr(ErrMalformed, "empty data")
	}
	var out []byte
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, newErr(ErrMalformed, "invalid string in data")
		}
		out = []byte(s)
	case '[':
		var err *Error
		if out, err = decodeByteArray(raw, max); err != nil {
			return nil, err
		}
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, newErr(ErrMalformed, "invalid JSON in data")
		}
		out = buf.Bytes()
	}
	if len(out) > max {
		return nil, newErr(ErrTooLarge, "the resource is %d bytes, larger than the limit of %d", len(out), max)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// decodeByteArray parses a JSON array of integers 0..255 (upstream's
// Vec<u8>): no null, sign, fraction or exponent. It stops at max+1
// elements.
func decodeByteArray(raw []byte, max int) ([]byte, *Error) {
	bad := func(i int) *Error {
		return newErr(ErrMalformed, "invalid byte array in data: element %d is not an integer 0..255", i)
	}
	i := 0
	ws := func() {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
			i++
		}
	}
	ws()
	if i >= len(raw) || raw[i] != '[' {
		return nil, newErr(ErrMalformed, "invalid byte array in data: not an array")
	}
	i++
	ws()
	out := make([]byte, 0, min(len(raw)/2, max+1))
	if i < len(raw) && raw[i] == ']' {
		i++
	} else {
		for n := 0; ; n++ {
			ws()
			start, v := i, 0
			for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
				v = v*10 + int(raw[i]-'0')
				i++
				if v > 255 {
					return nil, bad(n)
				}
			}
			if i == start || (raw[start] == '0' && i-start > 1) {
				return nil, bad(n)
			}
			if len(out) == max {
				return nil, newErr(ErrTooLarge, "the resource is larger than the limit of %d bytes", max)
			}
			out = append(out, byte(v))
			ws()
			if i < len(raw) && raw[i] == ',' {
				i++
				continue
			}
			if i < len(raw) && raw[i] == ']' {
				i++
				break
			}
			return nil, bad(n)
		}
	}
	ws()
	if i != len(raw) {
		return nil, newErr(ErrMalformed, "invalid byte array in data: text after the array")
	}
	return out, nil
}

// encodeSecret is the body of a KV write: {"data": V} (v1) or
// {"data": {"data": V}} (v2), V a JSON string when the resource is valid
// UTF-8 and an array of integers 0..255 otherwise.
func encodeSecret(version int, value []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(value) + 32)
	if version == 2 {
		b.WriteString(`{"data":{"data":`)
	} else {
		b.WriteString(`{"data":`)
	}
	if utf8.Valid(value) {
		writeJSONString(&b, value)
	} else {
		b.WriteByte('[')
		var num [3]byte
		for i, c := range value {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(strconv.AppendUint(num[:0], uint64(c), 10))
		}
		b.WriteByte(']')
	}
	if version == 2 {
		b.WriteString(`}}`)
	} else {
		b.WriteString(`}`)
	}
	return b.Bytes()
}

// writeJSONString writes valid UTF-8 s as a JSON string, escaping only
// what JSON requires.
func writeJSONString(b *bytes.Buffer, s []byte) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.Write(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	b.Write(s[start:])
	b.WriteByte('"')
}
