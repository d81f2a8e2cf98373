// Package tdx is the wire form of Intel TDX evidence, as upstream's tdx
// attester emits it and its verifier reads it:
//
//	{"cc_eventlog":"<standard base64 of the CCEL>"|null,"quote":"<standard base64 of the TD quote>"}
//
// The guest attester encodes with Evidence.MarshalJSON; the verifier
// decodes with ParseEvidence. Neither verifies the quote (verifier/tdx does).
package tdx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol/evidence"
)

// Evidence is decoded TDX evidence.
type Evidence struct {
	// Quote is the TD quote.
	Quote []byte
	// EventLog is the CC event log; nil when absent, null or empty.
	EventLog []byte
}

func decodeB64(s, what string) ([]byte, error) {
	// Standard padded base64 without line breaks, as Rust's STANDARD engine.
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: base64 decode %s: invalid character", evidence.ErrMalformed, what)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: base64 decode %s: %v", evidence.ErrMalformed, what, err)
	}
	return b, nil
}

// ParseEvidence decodes the evidence document: a JSON object with a
// required "quote" string and an optional "cc_eventlog" string or null
// (member names matched exactly, unknown members ignored), both standard
// base64. The size is bounded by limits.MaxEvidenceBytes.
func ParseEvidence(doc []byte) (*Evidence, error) {
	if len(doc) > limits.MaxEvidenceBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", evidence.ErrMalformed, len(doc), limits.MaxEvidenceBytes)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("%w: Deserialize TDX Evidence failed: not a JSON object", evidence.ErrMalformed)
	}
	raw, ok := fields["quote"]
	if !ok {
		return nil, fmt.Errorf("%w: Deserialize TDX Evidence failed: missing field `quote`", evidence.ErrMalformed)
	}
	var quote string
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &quote) != nil {
		return nil, fmt.Errorf("%w: Deserialize TDX Evidence failed: quote must be a string", evidence.ErrMalformed)
	}
	if quote == "" {
		return nil, fmt.Errorf("%w: TDX Quote is empty", evidence.ErrMalformed)
	}
	ev := &Evidence{}
	var err error
	if ev.Quote, err = decodeB64(quote, "TDX quote"); err != nil {
		return nil, err
	}
	if raw, ok := fields["cc_eventlog"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var el string
		if err := json.Unmarshal(raw, &el); err != nil {
			return nil, fmt.Errorf("%w: Deserialize TDX Evidence failed: cc_eventlog must be a string or null", evidence.ErrMalformed)
		}
		if el != "" {
			if ev.EventLog, err = decodeB64(el, "CC event log"); err != nil {
				return nil, err
			}
		}
	}
	return ev, nil
}

// MarshalJSON encodes the evidence as upstream's attester does: member
// order cc_eventlog, quote; an absent event log is null.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	type wire struct {
		CCEventLog *string `json:"cc_eventlog"`
		Quote      string  `json:"quote"`
	}
	w := wire{Quote: base64.StdEncoding.EncodeToString(e.Quote)}
	if len(e.EventLog) > 0 {
		el := base64.StdEncoding.EncodeToString(e.EventLog)
		w.CCEventLog = &el
	}
	return json.Marshal(w)
}
