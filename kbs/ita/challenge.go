package ita

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-trustee/go-trustee/protocol"
)

// Upstream's challenge errors.
const (
	errNoTeeAlgos  = "ITA: TEE does not support any hash algorithms"
	errInvalidTee  = "ITA: Unknown TEE specified"
	supportedAlgos = "supported-hash-algorithms"
	nonceSize      = 32
)

// SelectHashAlgorithm is upstream's ITA generate_challenge, without the
// nonce: the hash algorithm ITA needs the guest to bind its runtime data
// with, read from the extra-params of the guest's Request (params, JSON).
//
//   - extra-params null, absent, not an object, or without
//     "supported-hash-algorithms": "" (the legacy challenge, no selection);
//   - "supported-hash-algorithms" not an array: "ITA: expected array,
//     found <value>"; no string in it: "ITA: TEE does not support any hash
//     algorithms";
//   - tdx: sha512; sgx and az-tdx-vtpm: sha256, each an error ("ITA: TDX
//     TEE does not support sha512", "ITA: SGX TEE does not support
//     sha256") when the guest does not list it (case-insensitively);
//   - any other TEE: "ITA: Unknown TEE specified".
func SelectHashAlgorithm(tee protocol.Tee, params string) (protocol.HashAlgorithm, error) {
	if strings.TrimSpace(params) == "" {
		return "", nil
	}
	d := json.NewDecoder(strings.NewReader(params))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		// The KBS decoded the request already; unreadable here means no
		// parameters upstream could have read.
		return "", nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", nil
	}
	found, ok := obj[supportedAlgos]
	if !ok {
		return "", nil
	}
	arr, ok := found.([]any)
	if !ok {
		return "", errorf(ErrUnsupportedTee, "ITA: expected array, found %s", rustDebug(found))
	}
	var algs []string
	for _, a := range arr {
		if s, ok := a.(string); ok {
			algs = append(algs, strings.ToLower(s))
		}
	}
	if len(algs) == 0 {
		return "", errorf(ErrUnsupportedTee, errNoTeeAlgos)
	}
	switch tee {
	case protocol.TeeSgx, protocol.TeeAzTdxVtpm:
		if !slices.Contains(algs, string(protocol.SHA256)) {
			return "", errorf(ErrUnsupportedTee, "ITA: SGX TEE does not support sha256")
		}
		return protocol.SHA256, nil
	case protocol.TeeTdx:
		if !slices.Contains(algs, string(protocol.SHA512)) {
			return "", errorf(ErrUnsupportedTee, "ITA: TDX TEE does not support sha512")
		}
		return protocol.SHA512, nil
	}
	return "", errorf(ErrUnsupportedTee, errInvalidTee)
}

// GenerateSupplementalChallenge returns "": with ITA the KBS makes the
// nonce (32 random bytes, as upstream's make_nonce) and
// ChallengeHashAlgorithm selects the hash.
func (c *Client) GenerateSupplementalChallenge(context.Context, protocol.Tee, string) (string, error) {
	return "", nil
}

// ChallengeHashAlgorithm is SelectHashAlgorithm: the KBS sends a selection
// as the challenge's "selected-hash-algorithm", so the challenge is
// exactly upstream's (sha512 for tdx, sha256 for sgx and az-tdx-vtpm).
func (c *Client) ChallengeHashAlgorithm(tee protocol.Tee, params string) (protocol.HashAlgorithm, error) {
	return SelectHashAlgorithm(tee, params)
}

// rustDebug approximates serde_json::Value's Debug form, which upstream
// prints in "expected array, found ...".
func rustDebug(v any) string {
	switch x := v.(type) {
	case nil:
		return "Null"
	case bool:
		return "Bool(" + strconv.FormatBool(x) + ")"
	case json.Number:
		return "Number(" + x.String() + ")"
	case string:
		return "String(" + strconv.Quote(x) + ")"
	case []any:
		var b bytes.Buffer
		b.WriteString("Array [")
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(rustDebug(e))
		}
		b.WriteString("]")
		return b.String()
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b bytes.Buffer
		b.WriteString("Object {")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(k) + ": " + rustDebug(x[k]))
		}
		b.WriteString("}")
		return b.String()
	}
	return fmt.Sprint(v)
}
