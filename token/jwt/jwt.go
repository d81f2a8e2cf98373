// Package jwt is the strict subset of JWS (RFC 7515), JWK (RFC 7517) and
// JWT (RFC 7519) the repository needs: the KBS verifies attestation tokens
// (package token) and admin tokens (package admin) with it, the
// Attestation Service signs its EAR tokens with it, and kbs-client and the
// image key provider sign admin tokens with it (SignAdminToken). It is the
// one place that signs (Signer) and verifies (Token.Verify) compact JWS;
// it depends on nothing but the standard library and internal/limits, so
// guest, host tools and servers can all import it.
//
// # Invariants
//
//   - Only the compact serialization is parsed, and only after a size check
//     (limits.MaxTokenBytes). Header and claims are JSON objects whose nesting
//     is bounded by limits.MaxJSONDepth; a header with duplicate members or a
//     "crit" member is rejected.
//   - Only asymmetric algorithms are accepted: ES256, ES384, ES512, RS256,
//     RS384, RS512, PS256, PS384, PS512 and EdDSA (Ed25519). "none" and the
//     HMAC algorithms are never accepted, whatever a key or header says.
//   - The caller always chooses the algorithm (from a trusted JWK's "alg", or
//     from the header checked against the trusted key's type); Verify
//     refuses a header "alg" that differs from it and an algorithm that does
//     not fit the key (curve, key type). RSA keys are 2048 to 8192 bits.
//   - Claims are decoded with json.Number for numbers, so large integers in
//     claims reach the policy engine unchanged.
//   - Key material is fetched only from https:// URLs, file:// URLs and local
//     paths, with size bounds and the caller's HTTP client (timeouts).
//   - Signing writes the protected header exactly as given (see Signer),
//     and only with a header Parse accepts and an algorithm fitting the
//     key, so that nothing signed here is refused by Verify.
//
// Nothing here logs; callers decide what to log and never log tokens.
package jwt

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// Signature algorithms accepted by Verify.
const (
	ES256 = "ES256"
	ES384 = "ES384"
	ES512 = "ES512"
	RS256 = "RS256"
	RS384 = "RS384"
	RS512 = "RS512"
	PS256 = "PS256"
	PS384 = "PS384"
	PS512 = "PS512"
	EdDSA = "EdDSA"
)

// DefaultLeeway is the clock skew tolerated for exp and nbf, as upstream's
// jsonwebtoken default validation (60 s).
const DefaultLeeway = 60 * time.Second

// RSA modulus bounds, as ring (behind upstream's jsonwebtoken) enforces.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

var (
	// ErrMalformed is returned for a token that is not a well-formed JWS
	// compact serialization carrying a JSON object, or is too large.
	ErrMalformed = errors.New("jwt: malformed token")
	// ErrUnsupportedAlg is returned for "none", HMAC and unknown algorithms.
	ErrUnsupportedAlg = errors.New("jwt: unsupported algorithm")
	// ErrAlgMismatch is returned when the header "alg" differs from the
	// algorithm the trusted key dictates, or the algorithm does not fit the
	// key type or curve.
	ErrAlgMismatch = errors.New("jwt: algorithm does not match the key")
	// ErrSignature is returned when the signature does not verify.
	ErrSignature = errors.New("jwt: invalid signature")
	// ErrMissingExp is returned when exp is required and absent.
	ErrMissingExp = errors.New("jwt: missing exp claim")
	// ErrExpired is returned for a token whose exp lies in the past beyond
	// the leeway.
	ErrExpired = errors.New("jwt: token expired")
	// ErrNotYetValid is returned for a token whose nbf lies in the future
	// beyond the leeway.
	ErrNotYetValid = errors.New("jwt: token not yet valid")
	// ErrInvalidClaim is returned for a registered claim of the wrong type.
	ErrInvalidClaim = errors.New("jwt: invalid claim")
	// ErrInvalidKey is returned for a JWK or PEM key that cannot be used:
	// unsupported type or curve, bad encoding, weak RSA modulus.
	ErrInvalidKey = errors.New("jwt: invalid key")
)

var b64 = base64.RawURLEncoding.Strict()

// Header is the decoded JOSE header of a token. Unknown members are kept in
// Raw.
type Header struct {
	Alg string
	Kid string
	Typ string
	// JWK is the raw "jwk" member, nil when absent.
	JWK json.RawMessage
	// Raw holds every member as received.
	Raw map[string]json.RawMessage
}

// Token is a parsed, not yet verified, compact JWS.
type Token struct {
	Header       Header
	signingInput string
	payload      []byte
	signature    []byte
}

// Parse splits and decodes a compact JWS. It checks form only: nothing in
// the returned Token is trusted until Verify succeeds.
func Parse(raw string) (*Token, error) {
	if len(raw) > limits.MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(raw), limits.MaxTokenBytes)
	}
	h, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding: %v", ErrMalformed, err)
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding: %v", ErrMalformed, err)
	}
	sb, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding: %v", ErrMalformed, err)
	}
	hdr, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	return &Token{Header: hdr, signingInput: raw[:len(h)+1+len(p)], payload: pb, signature: sb}, nil
}

func parseHeader(b []byte) (Header, error) {
	members, err := decodeObject(b)
	if err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	hdr := Header{Raw: members}
	str := func(name string) (string, error) {
		v, ok := members[name]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("%w: header %q is not a string", ErrMalformed, name)
		}
		return s, nil
	}
	if hdr.Alg, err = str("alg"); err != nil {
		return Header{}, err
	}
	if hdr.Alg == "" {
		return Header{}, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	if hdr.Kid, err = str("kid"); err != nil {
		return Header{}, err
	}
	if hdr.Typ, err = str("typ"); err != nil {
		return Header{}, err
	}
	if _, ok := members["crit"]; ok {
		// RFC 7515 §4.1.11: extensions we do not understand must be refused.
		return Header{}, fmt.Errorf("%w: unsupported crit header", ErrMalformed)
	}
	if j, ok := members["jwk"]; ok && !bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		hdr.JWK = j
	}
	return hdr, nil
}

// decodeObject decodes a JSON object into its members, rejecting duplicate
// names, trailing data and nesting deeper than limits.MaxJSONDepth.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // a top-level number is refused below, not parsed (and echoed) as a float
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid member name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON object")
	}
	return out, nil
}

// Verify checks the signature with key using alg, the algorithm the caller
// trusts for that key. The header "alg" must equal alg.
func (t *Token) Verify(key crypto.PublicKey, alg string) error {
	if t.Header.Alg != alg {
		return fmt.Errorf("%w: header alg %q, key alg %q", ErrAlgMismatch, t.Header.Alg, alg)
	}
	if err := CheckKeyAlg(key, alg); err != nil {
		return err
	}
	return verifySignature(key, alg, []byte(t.signingInput), t.signature)
}

// Claims decodes the payload as a JSON object (numbers as json.Number).
// Call it only after Verify.
func (t *Token) Claims() (map[string]any, error) {
	return DecodeClaims(t.payload)
}

// DecodeClaims decodes a JWT claims set: a JSON object, depth-bounded,
// numbers as json.Number.
func DecodeClaims(b []byte) (map[string]any, error) {
	if err := jsonlimit.Check(b, limits.MaxJSONDepth); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if claims == nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after claims", ErrMalformed)
	}
	return claims, nil
}

// ValidateTime checks exp (required when requireExp) and, when present, nbf
// against now with the given leeway, as jsonwebtoken's default validation
// does for exp. A token is expired when exp < now - leeway.
func ValidateTime(claims map[string]any, now time.Time, leeway time.Duration, requireExp bool) error {
	n := float64(now.Unix())
	l := leeway.Seconds()
	if v, ok := claims["exp"]; ok {
		exp, err := numericDate(v)
		if err != nil {
			return fmt.Errorf("%w: exp: %v", ErrInvalidClaim, err)
		}
		if exp < n-l {
			return fmt.Errorf("%w: exp %s", ErrExpired, time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
		}
	} else if requireExp {
		return ErrMissingExp
	}
	if v, ok := claims["nbf"]; ok {
		nbf, err := numericDate(v)
		if err != nil {
			return fmt.Errorf("%w: nbf: %v", ErrInvalidClaim, err)
		}
		if nbf > n+l {
			return fmt.Errorf("%w: nbf %s", ErrNotYetValid, time.Unix(int64(nbf), 0).UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func numericDate(v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, err
		}
	case float64:
		f = x
	case int64:
		f = float64(x)
	case int:
		f = float64(x)
	default:
		return 0, fmt.Errorf("not a number (%T)", v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, errors.New("not a valid NumericDate")
	}
	return f, nil
}

// CheckKeyAlg reports whether alg is an accepted algorithm that fits key.
func CheckKeyAlg(key crypto.PublicKey, alg string) error {
	switch alg {
	case ES256, ES384, ES512:
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an EC key, have %T", ErrAlgMismatch, alg, key)
		}
		want := map[string]elliptic.Curve{ES256: elliptic.P256(), ES384: elliptic.P384(), ES512: elliptic.P521()}[alg]
		if k.Curve != want {
			return fmt.Errorf("%w: %s needs curve %s, have %s", ErrAlgMismatch, alg, want.Params().Name, k.Curve.Params().Name)
		}
	case RS256, RS384, RS512, PS256, PS384, PS512:
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an RSA key, have %T", ErrAlgMismatch, alg, key)
		}
		if err := checkRSA(k); err != nil {
			return err
		}
	case EdDSA:
		k, ok := key.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: %s needs an Ed25519 key, have %T", ErrAlgMismatch, alg, key)
		}
	default:
		return fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	return nil
}

// AlgForKey returns the algorithms that fit key, for a caller that takes
// the algorithm from the header of a token verified with a configured key.
func AlgForKey(key crypto.PublicKey) []string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{ES256}
		case elliptic.P384():
			return []string{ES384}
		case elliptic.P521():
			return []string{ES512}
		}
	case *rsa.PublicKey:
		return []string{RS256, RS384, RS512, PS256, PS384, PS512}
	case ed25519.PublicKey:
		return []string{EdDSA}
	}
	return nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k.N == nil || k.N.Sign() <= 0 {
		return fmt.Errorf("%w: empty RSA modulus", ErrInvalidKey)
	}
	if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
		return fmt.Errorf("%w: RSA modulus of %d bits, want %d..%d", ErrInvalidKey, bits, minRSABits, maxRSABits)
	}
	if k.E < 3 || k.E%2 == 0 {
		return fmt.Errorf("%w: RSA exponent %d", ErrInvalidKey, k.E)
	}
	return nil
}

func hashFor(alg string) (crypto.Hash, func() hash.Hash) {
	switch alg {
	case ES256, RS256, PS256:
		return crypto.SHA256, sha256.New
	case ES384, RS384, PS384:
		return crypto.SHA384, sha512.New384
	default:
		return crypto.SHA512, sha512.New
	}
}

func verifySignature(key crypto.PublicKey, alg string, input, sig []byte) error {
	if alg == EdDSA {
		if !ed25519.Verify(key.(ed25519.PublicKey), input, sig) {
			return ErrSignature
		}
		return nil
	}
	ch, newHash := hashFor(alg)
	h := newHash()
	h.Write(input)
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("%w: ECDSA signature of %d bytes, want %d", ErrSignature, len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return ErrSignature
		}
	case *rsa.PublicKey:
		var err error
		if strings.HasPrefix(alg, "PS") {
			err = rsa.VerifyPSS(k, ch, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: ch})
		} else {
			err = rsa.VerifyPKCS1v15(k, ch, digest, sig)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
	default:
		return fmt.Errorf("%w: key type %T", ErrAlgMismatch, key)
	}
	return nil
}
