package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Key types of TeePubKey.Kty.
const (
	KtyRSA = "RSA"
	KtyEC  = "EC"
	KtyAKP = "AKP"
)

// TeePubKey is the guest's public key in the typed form of kbs-types: an
// enum internally tagged on "kty". Only the members of the selected variant
// survive decoding (RSA: alg, n, e; EC: crv, alg, x, y; AKP: alg, pub), which
// is what both sides canonicalize when computing report data.
type TeePubKey struct {
	Kty string
	Alg string
	// RSA
	N string
	E string
	// EC
	Crv string
	X   string
	Y   string
	// AKP (experimental ML-KEM)
	Pub string
}

// ErrInvalidTeePubKey is returned when a tee-pubkey does not decode into one
// of the typed variants.
var ErrInvalidTeePubKey = errors.New("protocol: invalid tee-pubkey")

type rsaKey struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

type ecKey struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Alg string `json:"alg"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

type akpKey struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Pub string `json:"pub"`
}

// MarshalJSON emits the variant's members only, with "kty" first (the
// order serde uses for an internally tagged enum).
func (k TeePubKey) MarshalJSON() ([]byte, error) {
	switch k.Kty {
	case KtyRSA:
		return json.Marshal(rsaKey{k.Kty, k.Alg, k.N, k.E})
	case KtyEC:
		return json.Marshal(ecKey{k.Kty, k.Crv, k.Alg, k.X, k.Y})
	case KtyAKP:
		return json.Marshal(akpKey{k.Kty, k.Alg, k.Pub})
	}
	return nil, fmt.Errorf("%w: unknown kty %q", ErrInvalidTeePubKey, k.Kty)
}

// UnmarshalJSON decodes the variant selected by "kty"; every member of the
// variant is required and must be a string. Unknown members are ignored.
func (k *TeePubKey) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTeePubKey, err)
	}
	str := func(name string) (string, error) {
		v, ok := raw[name]
		if !ok {
			return "", fmt.Errorf("%w: missing field `%s`", ErrInvalidTeePubKey, name)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("%w: field `%s` is not a string", ErrInvalidTeePubKey, name)
		}
		return s, nil
	}
	kty, err := str("kty")
	if err != nil {
		return err
	}
	var names []string
	switch kty {
	case KtyRSA:
		names = []string{"alg", "n", "e"}
	case KtyEC:
		names = []string{"crv", "alg", "x", "y"}
	case KtyAKP:
		names = []string{"alg", "pub"}
	default:
		return fmt.Errorf("%w: unknown variant `%s`", ErrInvalidTeePubKey, kty)
	}
	vals := make([]string, len(names))
	for i, n := range names {
		if vals[i], err = str(n); err != nil {
			return err
		}
	}
	out := TeePubKey{Kty: kty}
	switch kty {
	case KtyRSA:
		out.Alg, out.N, out.E = vals[0], vals[1], vals[2]
	case KtyEC:
		out.Crv, out.Alg, out.X, out.Y = vals[0], vals[1], vals[2], vals[3]
	case KtyAKP:
		out.Alg, out.Pub = vals[0], vals[1]
	}
	*k = out
	return nil
}

// Equal reports whether two keys are the same typed key.
func (k TeePubKey) Equal(o TeePubKey) bool {
	a, err1 := k.MarshalJSON()
	b, err2 := o.MarshalJSON()
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
