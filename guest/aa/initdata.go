package aa

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// ErrInvalidInitData is returned for init-data that is not a TOML document
// with a string version, a known algorithm and a [data] table of strings.
var ErrInvalidInitData = errors.New("aa: invalid init-data")

// InitData is the init-data TOML (trustee kbs/docs/initdata.md).
type InitData struct {
	Version   string            `toml:"version"`
	Algorithm string            `toml:"algorithm"`
	Data      map[string]string `toml:"data"`
}

// ParseInitData decodes an init-data TOML document and returns it with its
// digest: H_algorithm over the raw bytes exactly as given (re-encoding would
// change the digest). Algorithms are upstream's lowercase names sha256,
// sha384 and sha512; sm3 (Hygon CSV only) is not supported here.
func ParseInitData(b []byte) (*InitData, []byte, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes exceed %d", ErrInvalidInitData, len(b), limits.MaxConfigBytes)
	}
	var d InitData
	md, err := toml.Decode(string(b), &d)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidInitData, err)
	}
	for _, k := range []string{"version", "algorithm", "data"} {
		if !md.IsDefined(k) {
			return nil, nil, fmt.Errorf("%w: missing %q", ErrInvalidInitData, k)
		}
	}
	var digest []byte
	switch d.Algorithm {
	case "sha256":
		s := sha256.Sum256(b)
		digest = s[:]
	case "sha384":
		s := sha512.Sum384(b)
		digest = s[:]
	case "sha512":
		s := sha512.Sum512(b)
		digest = s[:]
	case "sm3":
		return nil, nil, fmt.Errorf("%w: algorithm sm3 is not supported", ErrInvalidInitData)
	default:
		hint := ""
		if strings.Contains(d.Algorithm, "-") {
			hint = " (use the names without a dash: sha256, sha384, sha512)"
		}
		return nil, nil, fmt.Errorf("%w: unknown algorithm %q%s", ErrInvalidInitData, d.Algorithm, hint)
	}
	return &d, digest, nil
}
