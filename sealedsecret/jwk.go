package sealedsecret

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// JWK is an EC P-256 JSON Web Key as the secret CLI writes it. D is empty
// for a public key.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	Kid string `json:"kid,omitempty"`
	D   string `json:"d,omitempty"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func decodeJWK(b []byte) (*JWK, error) {
	if len(b) > limits.MaxJWKBytes {
		return nil, fmt.Errorf("JWK of %d bytes exceeds %d", len(b), limits.MaxJWKBytes)
	}
	var k JWK
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("JWK is not a JSON object: %v", err)
	}
	if k.Kty != "EC" || k.Crv != "P-256" {
		return nil, fmt.Errorf("JWK must be kty EC, crv P-256, got kty %q crv %q", k.Kty, k.Crv)
	}
	if k.Alg != "" && k.Alg != "ES256" {
		return nil, fmt.Errorf("JWK alg %q is not ES256", k.Alg)
	}
	return &k, nil
}

func coordinate(name, s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("JWK %s must be 32 bytes of base64url", name)
	}
	return b, nil
}

func (k *JWK) public() (*ecdsa.PublicKey, error) {
	x, err := coordinate("x", k.X)
	if err != nil {
		return nil, err
	}
	y, err := coordinate("y", k.Y)
	if err != nil {
		return nil, err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("JWK point: %v", err)
	}
	return pub, nil
}

// ParsePublicJWK decodes a P-256 public JWK (a private one is accepted and
// its public half used) and checks the point is on the curve.
func ParsePublicJWK(b []byte) (*ecdsa.PublicKey, error) {
	k, err := decodeJWK(b)
	if err != nil {
		return nil, err
	}
	return k.public()
}

// ParsePrivateJWK decodes a P-256 private JWK; x and y must belong to d.
func ParsePrivateJWK(b []byte) (*ecdsa.PrivateKey, error) {
	k, err := decodeJWK(b)
	if err != nil {
		return nil, err
	}
	d, err := coordinate("d", k.D)
	if err != nil {
		return nil, errors.New("JWK is not a private key: d must be 32 bytes of base64url")
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, fmt.Errorf("JWK d: %v", err)
	}
	pub, err := k.public()
	if err != nil {
		return nil, err
	}
	if !pub.Equal(&priv.PublicKey) {
		return nil, errors.New("JWK x and y do not belong to d")
	}
	return priv, nil
}

// GenerateJWK makes a P-256 signing key pair as the secret CLI's keygen
// does: alg ES256, use sig, the given kid.
func GenerateJWK(kid string, rand io.Reader) (private, public JWK, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return JWK{}, JWK{}, err
	}
	raw, err := priv.PublicKey.Bytes()
	if err != nil {
		return JWK{}, JWK{}, err
	}
	d, err := priv.Bytes()
	if err != nil {
		return JWK{}, JWK{}, err
	}
	public = JWK{Kty: "EC", Crv: "P-256", Alg: "ES256", Use: "sig", Kid: kid,
		X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:])}
	private = public
	private.D = b64.EncodeToString(d)
	return private, public, nil
}

// verifyES256 checks a raw r||s signature over input.
func verifyES256(pub *ecdsa.PublicKey, input string, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	h := sha256.Sum256([]byte(input))
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// signES256 returns the raw r||s signature over input.
func signES256(priv *ecdsa.PrivateKey, input string, rand io.Reader) ([]byte, error) {
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand, priv, h[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}
