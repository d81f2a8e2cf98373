package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// Sign produces a compact JWS of claims with header (which must carry
// "alg") and key. It exists for tools and tests that mint admin tokens or
// fixtures; it checks the algorithm against the key like Verify does.
// rnd may be nil (crypto/rand).
func Sign(header map[string]any, claims any, key crypto.Signer, rnd io.Reader) (string, error) {
	alg, _ := header["alg"].(string)
	if err := CheckKeyAlg(key.Public(), alg); err != nil {
		return "", err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encoding JWS header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding JWT claims: %w", err)
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	sig, err := signBytes(key, alg, []byte(input), rnd)
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

func signBytes(key crypto.Signer, alg string, input []byte, rnd io.Reader) ([]byte, error) {
	if alg == EdDSA {
		return key.Sign(rnd, input, crypto.Hash(0))
	}
	ch, newHash := hashFor(alg)
	h := newHash()
	h.Write(input)
	digest := h.Sum(nil)
	var opts crypto.SignerOpts = ch
	if strings.HasPrefix(alg, "PS") {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: ch}
	}
	sig, err := key.Sign(rnd, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("signing JWS: %w", err)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return sig, nil
	}
	// crypto.Signer returns ASN.1 DER for ECDSA; JWS wants fixed-size r||s.
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &rs); err != nil {
		return nil, fmt.Errorf("signing JWS: decoding ECDSA signature: %w", err)
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// PublicJWK returns the public JWK members of key (for a header "jwk" or a
// JWK set), with alg set.
func PublicJWK(key crypto.PublicKey, alg string) (map[string]any, error) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		return map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "alg": alg,
			"x": b64.EncodeToString(raw[1 : 1+size]), "y": b64.EncodeToString(raw[1+size:])}, nil
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "alg": alg, "n": b64.EncodeToString(k.N.Bytes()),
			"e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "alg": alg, "x": b64.EncodeToString(k)}, nil
	}
	return nil, fmt.Errorf("%w: unsupported key type %T", ErrInvalidKey, key)
}
