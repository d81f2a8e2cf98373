package as

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// MaxInitDataBytes bounds an init-data TOML document. Real documents carry
// a Kata agent policy and are tens of KiB; the KBS request limit (2 MiB)
// bounds them anyway.
const MaxInitDataBytes = 1 << 20

// InitDataDocument is the init-data TOML: version, algorithm and a string
// map of named configuration documents.
type InitDataDocument struct {
	Version   string
	Algorithm protocol.HashAlgorithm
	Data      map[string]string
}

// policyDataMarker is the upstream policy_data marker: the JSON object after
// it, at the end of a Kata agent policy, becomes agent_policy_claims.
const policyDataMarker = "policy_data := {"

// ParseInitData parses an init-data TOML document as upstream does: version
// (a string), algorithm (sha256, sha384 or sha512, lowercase) and a [data]
// table of strings are required; other keys are ignored.
func ParseInitData(doc string) (InitDataDocument, error) {
	if len(doc) > MaxInitDataBytes {
		return InitDataDocument{}, fmt.Errorf("%w: init-data of %d bytes exceeds the limit of %d", ErrInvalidRequest, len(doc), MaxInitDataBytes)
	}
	if err := checkTOMLShape(doc); err != nil {
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: %v", ErrInvalidRequest, err)
	}
	var raw struct {
		Version   *string            `toml:"version"`
		Algorithm *string            `toml:"algorithm"`
		Data      *map[string]string `toml:"data"`
	}
	if _, err := toml.Decode(doc, &raw); err != nil {
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: %v", ErrInvalidRequest, err)
	}
	switch {
	case raw.Version == nil:
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: missing field `version`", ErrInvalidRequest)
	case raw.Algorithm == nil:
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: missing field `algorithm`", ErrInvalidRequest)
	case raw.Data == nil:
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: missing field `data`", ErrInvalidRequest)
	}
	alg := protocol.HashAlgorithm(*raw.Algorithm)
	switch alg {
	case protocol.SHA256, protocol.SHA384, protocol.SHA512:
	case protocol.SM3:
		return InitDataDocument{}, fmt.Errorf("%w: init-data algorithm sm3 is not supported", ErrInvalidRequest)
	default:
		return InitDataDocument{}, fmt.Errorf("%w: parse TOML structured data: unknown algorithm %q", ErrInvalidRequest, *raw.Algorithm)
	}
	return InitDataDocument{Version: *raw.Version, Algorithm: alg, Data: *raw.Data}, nil
}

// InitDataClaims parses an init-data TOML document and returns its digest
// (the hash, with the document's algorithm, of its exact bytes) and the
// claims exposed to policies as init_data_claims: the [data] map, with the
// "cdh.toml" and "aa.toml" documents converted from TOML to JSON when they
// parse, and "policy.rego" replaced by "agent_policy_claims" (the JSON
// object after `policy_data := {`) when that object parses.
func InitDataClaims(doc string) (digest []byte, claims map[string]any, err error) {
	id, err := ParseInitData(doc)
	if err != nil {
		return nil, nil, err
	}
	digest, err = id.Algorithm.Sum([]byte(doc))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	claims = make(map[string]any, len(id.Data))
	for k, v := range id.Data {
		claims[k] = v
	}
	for _, key := range []string{"cdh.toml", "aa.toml"} {
		s, ok := id.Data[key]
		if !ok {
			continue
		}
		var v map[string]any
		if checkTOMLShape(s) != nil {
			continue
		}
		if _, err := toml.Decode(s, &v); err != nil {
			continue
		}
		if j, ok := tomlToJSON(v, 0); ok {
			claims[key] = j
		}
	}
	if rego, ok := id.Data["policy.rego"]; ok {
		if pd, ok := extractPolicyData(rego); ok {
			delete(claims, "policy.rego")
			claims["agent_policy_claims"] = pd
		}
	}
	return digest, claims, nil
}

// extractPolicyData returns the JSON value that starts at the "{" of the
// first `policy_data := {` and runs to the end of the Rego (trailing
// whitespace only), or false.
func extractPolicyData(rego string) (any, bool) {
	i := strings.Index(rego, policyDataMarker)
	if i < 0 {
		return nil, false
	}
	doc := []byte(rego[i+len(policyDataMarker)-1:])
	if jsonDepth(doc) > limits.MaxJSONDepth {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if len(bytes.TrimLeft(doc[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, false // trailing content after the object, as serde_json
	}
	return v, true
}

// tomlToJSON converts a decoded TOML value to the JSON value serde_json
// gives for toml::Value: datetimes become {"$__toml_private_datetime": s},
// non-finite floats null. It reports false beyond limits.MaxJSONDepth.
func tomlToJSON(v any, depth int) (any, bool) {
	if depth > limits.MaxJSONDepth {
		return nil, false
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			j, ok := tomlToJSON(e, depth+1)
			if !ok {
				return nil, false
			}
			out[k] = j
		}
		return out, true
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			j, ok := tomlToJSON(e, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = j
		}
		return out, true
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			j, ok := tomlToJSON(e, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = j
		}
		return out, true
	case int64:
		return json.Number(fmt.Sprint(x)), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, true
		}
		return json.Number(formatFloat(x)), true
	case time.Time:
		return map[string]any{"$__toml_private_datetime": tomlDatetime(x)}, true
	case string, bool:
		return x, true
	}
	return nil, false
}

// formatFloat renders a float as serde_json does: always with a fraction
// or exponent, so it stays a float when read back.
func formatFloat(f float64) string {
	b, _ := json.Marshal(f)
	s := string(b)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// tomlDatetime renders a TOML date-time the way the toml crate displays it.
func tomlDatetime(t time.Time) string {
	frac := ""
	if t.Nanosecond() != 0 {
		frac = strings.TrimRight(fmt.Sprintf(".%09d", t.Nanosecond()), "0")
	}
	switch t.Location().String() {
	case "datetime-local":
		return t.Format("2006-01-02T15:04:05") + frac
	case "date-local":
		return t.Format("2006-01-02")
	case "time-local":
		return t.Format("15:04:05") + frac
	}
	if _, off := t.Zone(); off == 0 && t.Location() == time.UTC {
		return t.Format("2006-01-02T15:04:05") + frac + "Z"
	}
	return t.Format("2006-01-02T15:04:05") + frac + t.Format("-07:00")
}

// jsonDepth returns the maximum nesting depth of arrays and objects in a
// JSON text (strings are skipped, so brackets inside them do not count). It
// does not validate the text.
func jsonDepth(b []byte) int {
	depth, maxDepth := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > maxDepth {
				maxDepth = depth
			}
		case ']', '}':
			depth--
		}
	}
	return maxDepth
}

// maxTOMLNesting bounds the bracket nesting and the components of a dotted
// key in a TOML document. The TOML decoder's cost grows faster than
// linearly with both (a 1 MiB document of nested inline tables or of one
// long dotted key takes hours), so documents beyond it are refused before
// they are decoded.
const maxTOMLNesting = limits.MaxJSONDepth

// checkTOMLShape scans a TOML document, skipping comments and the four
// kinds of strings, and checks that no value nests arrays or inline tables
// deeper than maxTOMLNesting and no key has more than maxTOMLNesting dotted
// components. It does not validate the document.
func checkTOMLShape(doc string) error {
	depth, dots := 0, 0
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; c {
		case '#':
			for i < len(doc) && doc[i] != '\n' {
				i++
			}
			dots = 0
		case '"', '\'':
			i = skipTOMLString(doc, i)
		case '[', '{':
			depth++
			dots = 0
			if depth > maxTOMLNesting {
				return fmt.Errorf("arrays or tables nested deeper than %d", maxTOMLNesting)
			}
		case ']', '}':
			depth--
			dots = 0
		case '=', ',', '\n':
			dots = 0
		case '.':
			dots++
			if dots >= maxTOMLNesting {
				return fmt.Errorf("a key with more than %d dotted components", maxTOMLNesting)
			}
		}
	}
	return nil
}

// skipTOMLString returns the index of the last byte of the string that
// starts at doc[i] (a quote), or len(doc) if it is not terminated.
func skipTOMLString(doc string, i int) int {
	q := doc[i]
	if strings.HasPrefix(doc[i:], string([]byte{q, q, q})) {
		end := strings.Index(doc[i+3:], string([]byte{q, q, q}))
		for q == '"' && end >= 0 && escaped(doc, i+3+end) {
			next := strings.Index(doc[i+3+end+1:], `"""`)
			if next < 0 {
				return len(doc)
			}
			end += 1 + next
		}
		if end < 0 {
			return len(doc)
		}
		// A multi-line string may end with up to two more quotes.
		j := i + 3 + end + 3
		for k := 0; k < 2 && j < len(doc) && doc[j] == q; k++ {
			j++
		}
		return j - 1
	}
	for j := i + 1; j < len(doc); j++ {
		switch doc[j] {
		case '\\':
			if q == '"' {
				j++
			}
		case q:
			return j
		case '\n':
			return j
		}
	}
	return len(doc)
}

// escaped reports whether doc[i] is preceded by an odd number of
// backslashes.
func escaped(doc string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && doc[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}
