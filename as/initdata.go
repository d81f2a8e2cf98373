package as

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol/initdata"
)

// policyDataMarker is the upstream policy_data marker: the JSON object after
// it, at the end of a Kata agent policy, becomes agent_policy_claims.
const policyDataMarker = "policy_data := {"

// InitDataClaims parses an init-data TOML document with protocol/initdata
// and returns its digest (the hash, with the document's algorithm, of its
// exact bytes) and the claims exposed to policies as init_data_claims: the [data] map, with the
// "cdh.toml" and "aa.toml" documents converted from TOML to JSON when they
// parse, and "policy.rego" replaced by "agent_policy_claims" (the JSON
// object after `policy_data := {`) when that object parses.
func InitDataClaims(doc string) (digest []byte, claims map[string]any, err error) {
	id, err := initdata.Parse([]byte(doc))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
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
		if initdata.CheckTOMLShape(s) != nil {
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
	return id.Digest, claims, nil
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
	if jsonlimit.Depth(doc) > limits.MaxJSONDepth {
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
