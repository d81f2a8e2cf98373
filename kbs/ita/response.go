package ita

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// DecodeAttestResponse reads ITA's 200 answer, upstream's AttestRespData:
// a JSON object whose required "token" is a string of 1 to
// limits.MaxTokenBytes bytes. Other members are ignored; a repeated
// "token" and trailing data are errors, as serde's.
func DecodeAttestResponse(b []byte) (string, error) {
	tok, err := decodeStringMember(b, "token")
	if err != nil {
		return "", err
	}
	if tok == "" || len(tok) > limits.MaxTokenBytes {
		return "", fmt.Errorf("token of %d bytes (want 1..%d)", len(tok), limits.MaxTokenBytes)
	}
	return tok, nil
}

// DecodeErrorResponse reads ITA's error answer, upstream's ErrorResponse:
// a JSON object whose required "error" is a string.
func DecodeErrorResponse(b []byte) (string, error) {
	return decodeStringMember(b, "error")
}

// decodeStringMember decodes one JSON object (depth-bounded, nothing after
// it) and returns its required string member name.
func decodeStringMember(b []byte, name string) (string, error) {
	if len(b) > MaxResponseBytes {
		return "", fmt.Errorf("body of %d bytes exceeds %d", len(b), MaxResponseBytes)
	}
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return "", err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // a top-level number is refused below, not parsed (and echoed) as a float
	t, err := d.Token()
	if err != nil {
		return "", fmt.Errorf("expected a JSON object: %v", bounded(err))
	}
	if delim, ok := t.(json.Delim); !ok || delim != '{' {
		return "", errors.New("expected a JSON object")
	}
	var val string
	found := false
	for d.More() {
		kt, err := d.Token()
		if err != nil {
			return "", bounded(err)
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return "", bounded(err)
		}
		if key != name {
			continue
		}
		if found {
			return "", fmt.Errorf("duplicate field `%s`", name)
		}
		found = true
		if isNull(raw) || json.Unmarshal(raw, &val) != nil {
			return "", fmt.Errorf("invalid type for field `%s`: expected a string", name)
		}
	}
	if _, err := d.Token(); err != nil { // the closing brace
		return "", bounded(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return "", errors.New("trailing characters after the JSON object")
	}
	if !found {
		return "", fmt.Errorf("missing field `%s`", name)
	}
	return val, nil
}

// maxDecodeErrorBytes bounds the decoder's own text in an error. The body is
// the ITA's, or an impostor's, and the error reaches logs and the guest; the
// decoder's messages can quote the input (encoding/json built on its v2
// core names the member's JSON pointer), so they are cut here.
const maxDecodeErrorBytes = 200

func bounded(err error) error {
	s := err.Error()
	if len(s) <= maxDecodeErrorBytes {
		return err
	}
	return errors.New(strings.ToValidUTF8(s[:maxDecodeErrorBytes], "") + "...")
}
