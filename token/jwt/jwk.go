package jwt

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// JWK is a parsed public JSON Web Key. Key is *ecdsa.PublicKey,
// *rsa.PublicKey or ed25519.PublicKey.
type JWK struct {
	Kty string
	Kid string
	Alg string
	Crv string
	Use string
	// X5C holds the DER certificates of the "x5c" member, leaf first, not
	// validated.
	X5C [][]byte
	Key crypto.PublicKey
}

type rawJWK struct {
	Kty string   `json:"kty"`
	Kid string   `json:"kid"`
	Alg string   `json:"alg"`
	Use string   `json:"use"`
	Crv string   `json:"crv"`
	X   string   `json:"x"`
	Y   string   `json:"y"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	X5C []string `json:"x5c"`
}

// ParseJWK decodes one public JWK (EC P-256/P-384/P-521, RSA, OKP Ed25519).
func ParseJWK(b []byte) (*JWK, error) {
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	var r rawJWK
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return r.build()
}

func (r *rawJWK) build() (*JWK, error) {
	k := &JWK{Kty: r.Kty, Kid: r.Kid, Alg: r.Alg, Crv: r.Crv, Use: r.Use}
	var err error
	switch r.Kty {
	case "EC":
		k.Key, err = ecKey(r.Crv, r.X, r.Y)
	case "RSA":
		k.Key, err = rsaKey(r.N, r.E)
	case "OKP":
		if r.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: OKP curve %q", ErrInvalidKey, r.Crv)
		}
		var x []byte
		if x, err = decodeB64URL(r.X); err == nil {
			if len(x) != ed25519.PublicKeySize {
				err = fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(x))
			} else {
				k.Key = ed25519.PublicKey(x)
			}
		}
	default:
		return nil, fmt.Errorf("%w: unsupported kty %q", ErrInvalidKey, r.Kty)
	}
	if err != nil {
		return nil, err
	}
	if len(r.X5C) > limits.MaxCertChain {
		return nil, fmt.Errorf("%w: x5c has %d certificates, at most %d", ErrInvalidKey, len(r.X5C), limits.MaxCertChain)
	}
	for i, c := range r.X5C {
		der, err := DecodeX5C(c)
		if err != nil {
			return nil, fmt.Errorf("%w: x5c[%d]: %v", ErrInvalidKey, i, err)
		}
		k.X5C = append(k.X5C, der)
	}
	if k.Alg != "" && !strings.HasPrefix(k.Alg, "HS") && k.Alg != "none" {
		// An "alg" that does not fit the key makes the key unusable; say so
		// early rather than at every verification.
		if err := CheckKeyAlg(k.Key, k.Alg); err != nil && !errors.Is(err, ErrUnsupportedAlg) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
	}
	return k, nil
}

// DecodeX5C decodes one "x5c" entry: standard base64 as RFC 7517 says, or
// base64url without padding, with embedded line breaks removed (upstream
// tolerates both).
func DecodeX5C(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if der, err := base64.StdEncoding.DecodeString(s); err == nil {
		return der, nil
	}
	der, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("neither base64 nor base64url")
	}
	return der, nil
}

func decodeB64URL(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: base64url: %v", ErrInvalidKey, err)
	}
	return b, nil
}

func ecKey(crv, xs, ys string) (*ecdsa.PublicKey, error) {
	var c elliptic.Curve
	switch crv {
	case "P-256":
		c = elliptic.P256()
	case "P-384":
		c = elliptic.P384()
	case "P-521":
		c = elliptic.P521()
	default:
		return nil, fmt.Errorf("%w: EC curve %q", ErrInvalidKey, crv)
	}
	x, err := decodeB64URL(xs)
	if err != nil {
		return nil, err
	}
	y, err := decodeB64URL(ys)
	if err != nil {
		return nil, err
	}
	size := (c.Params().BitSize + 7) / 8
	// Some encoders keep a leading zero byte of a full-size coordinate.
	if len(x) > size {
		x = bytes.TrimLeft(x, "\x00")
	}
	if len(y) > size {
		y = bytes.TrimLeft(y, "\x00")
	}
	if len(x) == 0 || len(y) == 0 || len(x) > size || len(y) > size {
		return nil, fmt.Errorf("%w: EC coordinates of %d/%d bytes for %s", ErrInvalidKey, len(x), len(y), crv)
	}
	point := make([]byte, 1+2*size)
	point[0] = 4
	copy(point[1+size-len(x):1+size], x)
	copy(point[1+2*size-len(y):], y)
	k, err := ecdsa.ParseUncompressedPublicKey(c, point)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return k, nil
}

func rsaKey(ns, es string) (*rsa.PublicKey, error) {
	n, err := decodeB64URL(ns)
	if err != nil {
		return nil, err
	}
	e, err := decodeB64URL(es)
	if err != nil {
		return nil, err
	}
	if len(n) > maxRSABits/8+1 || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("%w: RSA parameters out of range", ErrInvalidKey)
	}
	ev := new(big.Int).SetBytes(e)
	if !ev.IsInt64() || ev.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("%w: RSA exponent out of range", ErrInvalidKey)
	}
	k := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev.Int64())}
	if err := checkRSA(k); err != nil {
		return nil, err
	}
	return k, nil
}

// ParseJWKSet decodes a JWK Set ({"keys":[...]}). Keys that cannot be used
// (symmetric, unsupported curve, malformed) are skipped and reported in
// skipped, so that one exotic key does not disable a provider's set.
func ParseJWKSet(b []byte) (keys []*JWK, skipped []error, err error) {
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return nil, nil, fmt.Errorf("%w: JWK set: %v", ErrInvalidKey, err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, nil, fmt.Errorf("%w: JWK set: %v", ErrInvalidKey, err)
	}
	if set.Keys == nil {
		return nil, nil, fmt.Errorf("%w: JWK set has no \"keys\" member", ErrInvalidKey)
	}
	for i, raw := range set.Keys {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		k, err := r.build()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, r.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	return keys, skipped, nil
}

// ParsePublicKeyPEM decodes the first PEM block of b as a public key:
// "PUBLIC KEY" (SubjectPublicKeyInfo of an EC, RSA or Ed25519 key), "RSA
// PUBLIC KEY" (PKCS #1) or "CERTIFICATE" (its subject key). Upstream tries
// EC, RSA, then Ed25519; SubjectPublicKeyInfo names the type itself.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: PEM of %d bytes", ErrInvalidKey, len(b))
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no PEM public key found", ErrInvalidKey)
		}
		var (
			key crypto.PublicKey
			err error
		)
		switch blk.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				key = c.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidKey, blk.Type, err)
		}
		if AlgForKey(key) == nil {
			return nil, fmt.Errorf("%w: unsupported key type %T", ErrInvalidKey, key)
		}
		if k, ok := key.(*rsa.PublicKey); ok {
			if err := checkRSA(k); err != nil {
				return nil, err
			}
		}
		return key, nil
	}
}

// EqualKeys reports whether two public keys are the same key.
func EqualKeys(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
