// Package initdata parses the init-data document (trustee
// kbs/docs/initdata.md): the TOML a pod author attaches to a confidential
// pod, whose digest the TEE binds into its evidence (SNP HOST_DATA, TDX
// MRCONFIGID, a TPM PCR) and whose [data] documents configure the guest
// agents. The attestation-agent and the Attestation Service read it with the
// one parser here, so a document the guest accepts is the document the
// server checks, under the same limits.
//
// Invariants:
//   - The digest is H_algorithm over the document's exact bytes, never over a
//     re-encoding.
//   - A document is refused before it is decoded when it is larger than
//     limits.MaxInitDataBytes or nests deeper than limits.MaxJSONDepth (the
//     TOML decoder is super-linear in both).
//   - Every error wraps ErrInvalid.
package initdata

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("initdata: invalid init-data")

// Document is a parsed init-data document.
type Document struct {
	// Version is the document's version string (upstream writes "0.1.0").
	Version string
	// Algorithm is the hash the digest is computed with: sha256, sha384 or
	// sha512 (upstream's lowercase names).
	Algorithm protocol.HashAlgorithm
	// Data holds the named configuration documents ("aa.toml", "cdh.toml",
	// "policy.rego", ...) as strings.
	Data map[string]string
	// Digest is H_Algorithm over the document's bytes.
	Digest []byte
}

// Parse reads an init-data document as upstream does: version (a string),
// algorithm and a [data] table of strings are required; other keys are
// ignored. sm3 (Hygon CSV only) is recognised and refused.
func Parse(doc []byte) (*Document, error) {
	if len(doc) > limits.MaxInitDataBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed the limit of %d", ErrInvalid, len(doc), limits.MaxInitDataBytes)
	}
	if err := CheckTOMLShape(string(doc)); err != nil {
		return nil, fmt.Errorf("%w: parse TOML structured data: %v", ErrInvalid, err)
	}
	var raw struct {
		Version   *string            `toml:"version"`
		Algorithm *string            `toml:"algorithm"`
		Data      *map[string]string `toml:"data"`
	}
	md, err := toml.Decode(string(doc), &raw)
	if err != nil {
		return nil, fmt.Errorf("%w: parse TOML structured data: %v", ErrInvalid, err)
	}
	for _, f := range []struct {
		name    string
		missing bool
	}{{"version", raw.Version == nil}, {"algorithm", raw.Algorithm == nil}, {"data", raw.Data == nil}} {
		if f.missing {
			return nil, fmt.Errorf("%w: parse TOML structured data: missing field `%s`", ErrInvalid, f.name)
		}
	}
	// The decoder fills a map from an empty array ("data = []", "[[data]]")
	// with nil; upstream's serde refuses any [data] that is not a table.
	if t := md.Type("data"); t != "Hash" {
		return nil, fmt.Errorf("%w: parse TOML structured data: invalid type for `data`: %s, expected a table", ErrInvalid, strings.ToLower(t))
	}
	alg := protocol.HashAlgorithm(*raw.Algorithm)
	switch alg {
	case protocol.SHA256, protocol.SHA384, protocol.SHA512:
	case protocol.SM3:
		return nil, fmt.Errorf("%w: algorithm sm3 is not supported", ErrInvalid)
	default:
		hint := ""
		if strings.Contains(*raw.Algorithm, "-") {
			hint = " (use the names without a dash: sha256, sha384, sha512)"
		}
		return nil, fmt.Errorf("%w: parse TOML structured data: unknown algorithm %q%s", ErrInvalid, *raw.Algorithm, hint)
	}
	digest, err := alg.Sum(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &Document{Version: *raw.Version, Algorithm: alg, Data: *raw.Data, Digest: digest}, nil
}

// maxTOMLNesting bounds the bracket nesting and the components of a dotted
// key in a TOML document. The TOML decoder's cost grows faster than
// linearly with both (a 1 MiB document of nested inline tables or of one
// long dotted key takes hours), so documents beyond it are refused before
// they are decoded.
const maxTOMLNesting = limits.MaxJSONDepth

// CheckTOMLShape scans a TOML document, skipping comments and the four
// kinds of strings, and reports an error when a value nests arrays or
// inline tables deeper than limits.MaxJSONDepth or a key has that many
// dotted components. It does not validate the document. Parse applies it;
// it is exported for the TOML documents nested in [data].
func CheckTOMLShape(doc string) error {
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
	triple := string([]byte{q, q, q})
	if strings.HasPrefix(doc[i:], triple) {
		end := strings.Index(doc[i+3:], triple)
		for q == '"' && end >= 0 && escaped(doc, i+3+end) {
			next := strings.Index(doc[i+3+end+1:], triple)
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
