// Package keyprovider is the JSON codec of the ocicrypt keyprovider
// protocol messages (KeyProviderKeyWrapProtocolInput and its output)
// exchanged between an image client (containers/ocicrypt, ocicrypt-rs)
// and a key provider: coco-keyprovider serves "keywrap" (package
// imagecrypt), the guest's data hub serves "keyunwrap" (package
// guest/cdh). It is the one decoder of the messages' byte fields for both.
//
// # Wire format
//
// Go's containers/ocicrypt writes []byte fields as standard base64
// strings; ocicrypt-rs (serde) writes Vec<u8> as an array of integers.
// Every byte field accepts either; null means absent. Replies are written
// as coco_keyprovider and the Rust data hub write them, byte fields as
// integer arrays, which both clients decode; ShapeGo writes base64 for
// the containers/ocicrypt keyunwrap client.
//
// # Invariants
//
//   - A message is at most MaxMessageBytes (limits.MaxKeyProviderBytes)
//     long, checked before it is decoded, so no decoded field is longer.
//   - An integer-array byte field holds only JSON integers 0..255 written
//     without sign, fraction or exponent, as serde's u8 wants; anything
//     else (null elements included) is refused rather than coerced.
//   - A string byte field is standard base64, as encoding/json decodes
//     []byte.
//   - Only the members a key provider uses are decoded; others are
//     ignored, as both clients' decoders ignore unknown members.
//   - Nothing here does I/O, logs or keeps state.
package keyprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// MaxMessageBytes bounds one keyprovider request JSON.
const MaxMessageBytes = limits.MaxKeyProviderBytes

var (
	// ErrMalformed is returned for a message that is not a keyprovider
	// request JSON with well-formed byte fields.
	ErrMalformed = errors.New("keyprovider: malformed message")
	// ErrTooLarge is returned for a message longer than MaxMessageBytes.
	ErrTooLarge = errors.New("keyprovider: message too large")
)

// Bytes is a keyprovider byte field. It decodes from a standard base64
// string (Go []byte), an integer array (Rust Vec<u8>) or null (nil), and
// encodes as an integer array ("[]" when empty or nil).
type Bytes []byte

// UnmarshalJSON implements json.Unmarshaler.
func (f *Bytes) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*f = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("not standard base64: %v", err)
		}
		*f = d
		return nil
	case len(b) > 0 && b[0] == '[':
		d, err := decodeIntArray(b)
		if err != nil {
			return err
		}
		*f = d
		return nil
	}
	return errors.New("want a base64 string or an integer array")
}

// MarshalJSON implements json.Marshaler.
func (f Bytes) MarshalJSON() ([]byte, error) {
	return appendIntArray(make([]byte, 0, 2+4*len(f)), f), nil
}

// decodeIntArray decodes a JSON array of integers 0..255. It accepts JSON
// whitespace between tokens and nothing else: no sign, fraction, exponent,
// leading zero or non-integer element.
func decodeIntArray(b []byte) ([]byte, error) {
	// Each element takes at least two bytes (a digit and a separator).
	out := make([]byte, 0, len(b)/2)
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return out, checkEnd(b, i+1)
	}
	for n := 0; ; n++ {
		i = skipSpace(b, i)
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int(b[i]-'0')
			if v > 255 {
				return nil, fmt.Errorf("byte %d out of range", n)
			}
			i++
		}
		if i == start || (i-start > 1 && b[start] == '0') {
			return nil, fmt.Errorf("byte %d is not an integer 0..255", n)
		}
		out = append(out, byte(v))
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, errors.New("unterminated integer array")
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return out, checkEnd(b, i+1)
		default:
			return nil, fmt.Errorf("byte %d is not an integer 0..255", n)
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func checkEnd(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errors.New("trailing data after the integer array")
	}
	return nil
}

// appendIntArray appends b as a JSON integer array, byte for byte what
// encoding/json writes for a []int.
func appendIntArray(dst, b []byte) []byte {
	dst = append(dst, '[')
	for i, v := range b {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, uint64(v), 10)
	}
	return append(dst, ']')
}

func checkSize(b []byte) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(b), MaxMessageBytes)
	}
	return nil
}

// EncryptConfig is keywrapparams.ec of a "keywrap" request.
type EncryptConfig struct {
	// Parameters are the wrapping parameters by key provider name.
	Parameters map[string][][]byte
}

// WrapRequest is the part of a "keywrap" request a key provider uses.
type WrapRequest struct {
	// Op is the request's "op" (not checked here).
	Op string
	// EC is keywrapparams.ec; nil when null or absent.
	EC *EncryptConfig
	// OptsData is keywrapparams.optsdata, the layer key options to wrap;
	// nil when null or absent.
	OptsData []byte
}

// DecodeWrapRequest decodes the op and keywrapparams of a request.
func DecodeWrapRequest(b []byte) (*WrapRequest, error) {
	if err := checkSize(b); err != nil {
		return nil, err
	}
	var raw struct {
		Op            string `json:"op"`
		KeyWrapParams struct {
			EC *struct {
				Parameters map[string][]Bytes `json:"Parameters"`
			} `json:"ec"`
			OptsData Bytes `json:"optsdata"`
		} `json:"keywrapparams"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	req := &WrapRequest{Op: raw.Op, OptsData: raw.KeyWrapParams.OptsData}
	if ec := raw.KeyWrapParams.EC; ec != nil {
		req.EC = &EncryptConfig{}
		if ec.Parameters != nil {
			req.EC.Parameters = make(map[string][][]byte, len(ec.Parameters))
			for name, ps := range ec.Parameters {
				out := make([][]byte, len(ps))
				for i, p := range ps {
					out[i] = p
				}
				req.EC.Parameters[name] = out
			}
		}
	}
	return req, nil
}

// UnwrapRequest is the part of a "keyunwrap" request a key provider uses.
type UnwrapRequest struct {
	// Op is the request's "op" (not checked here).
	Op string
	// Annotation is keyunwrapparams.annotation, the annotation packet
	// JSON; nil when null or absent.
	Annotation []byte
}

// DecodeUnwrapRequest decodes the op and keyunwrapparams.annotation of a
// request.
func DecodeUnwrapRequest(b []byte) (*UnwrapRequest, error) {
	if err := checkSize(b); err != nil {
		return nil, err
	}
	var raw struct {
		Op              string `json:"op"`
		KeyUnwrapParams *struct {
			Annotation Bytes `json:"annotation"`
		} `json:"keyunwrapparams"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	req := &UnwrapRequest{Op: raw.Op}
	if raw.KeyUnwrapParams != nil {
		req.Annotation = raw.KeyUnwrapParams.Annotation
	}
	return req, nil
}

// EncodeWrapReply encodes {"keywrapresults":{"annotation":[...]}}, the
// annotation packet as an integer array, as coco_keyprovider does; Go
// ocicrypt and ocicrypt-rs both decode it.
func EncodeWrapReply(annotation []byte) []byte {
	out := make([]byte, 0, 40+4*len(annotation))
	out = append(out, `{"keywrapresults":{"annotation":`...)
	out = appendIntArray(out, annotation)
	return append(out, "}}"...)
}

// Shape selects the byte-field encoding of a keyunwrap reply.
type Shape int

const (
	// ShapeRust writes optsdata as an integer array (Rust Vec<u8>), what
	// ocicrypt-rs, the only ttRPC keyprovider client, expects.
	ShapeRust Shape = iota
	// ShapeGo writes optsdata as standard base64 (Go []byte), with a null
	// keywrapresults.annotation, what containers/ocicrypt expects.
	ShapeGo
)

// EncodeUnwrapReply encodes the keyunwrap reply carrying optsdata in the
// given shape.
func EncodeUnwrapReply(optsdata []byte, shape Shape) ([]byte, error) {
	switch shape {
	case ShapeRust:
		out := make([]byte, 0, 40+4*len(optsdata))
		out = append(out, `{"keyunwrapresults":{"optsdata":`...)
		out = appendIntArray(out, optsdata)
		return append(out, "}}"...), nil
	case ShapeGo:
		return json.Marshal(struct {
			KeyWrapResults struct {
				Annotation []byte `json:"annotation"`
			} `json:"keywrapresults"`
			KeyUnwrapResults struct {
				OptsData []byte `json:"optsdata"`
			} `json:"keyunwrapresults"`
		}{KeyUnwrapResults: struct {
			OptsData []byte `json:"optsdata"`
		}{optsdata}})
	}
	return nil, fmt.Errorf("keyprovider: unknown reply shape %d", shape)
}
