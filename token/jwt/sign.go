package jwt

// Signing: the one JWS (compact serialization) encoder of the repository,
// used by the Attestation Service for EAR tokens, by kbs-client and the
// image key provider for admin tokens, and by tests for fixtures.
//
// Why not go-jose: the protected header is signed exactly as the caller
// gives it, because the tokens we reproduce byte for byte pin a header
// member order that an encoder sorting members (encoding/json on a map,
// go-jose) cannot write. Upstream's admin tokens start {"typ":"JWT",
// "alg":"EdDSA"} (pinned by cmd/kbs-client TestLegacyAdminToken and
// TestSignAdminToken here), and EAR tokens {"typ":"JWT","alg":"ES256",
// "jwk":{"alg":"ES256","kty":"EC",...}} (pinned by as TestToken); go-jose
// writes {"alg":...,"typ":...}. Verification (jwt.go) is ours as well: it
// refuses duplicate header members and "crit", which go-jose accepts.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Signer signs payloads under one fixed protected header.
//
// Invariants: the header is a JSON object that Parse accepts (a string
// "alg", no "crit", no duplicate members, bounded depth), its "alg" fits
// the key (CheckKeyAlg), and it is signed byte for byte as given to
// NewSigner. ECDSA signatures are the fixed-size r||s of RFC 7518. A
// Signer is immutable, and safe for concurrent use when its key and
// random source are.
type Signer struct {
	key    crypto.Signer
	alg    string
	rnd    io.Reader
	header string // base64url of the protected header
}

// NewSigner returns a Signer for the protected header (encoded JSON). rnd
// may be nil (crypto/rand).
func NewSigner(key crypto.Signer, header []byte, rnd io.Reader) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no signing key", ErrInvalidKey)
	}
	hdr, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	if err := CheckKeyAlg(key.Public(), hdr.Alg); err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Signer{key: key, alg: hdr.Alg, rnd: rnd, header: b64.EncodeToString(header)}, nil
}

// Alg returns the signature algorithm, the header's "alg".
func (s *Signer) Alg() string { return s.alg }

// Sign returns the compact JWS of payload, which is signed as given.
func (s *Signer) Sign(payload []byte) (string, error) {
	out := make([]byte, 0, len(s.header)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(512))
	out = append(out, s.header...)
	out = append(out, '.')
	out = b64.AppendEncode(out, payload)
	sig, err := signBytes(s.key, s.alg, out, s.rnd)
	if err != nil {
		return "", err
	}
	out = append(out, '.')
	out = b64.AppendEncode(out, sig)
	return string(out), nil
}

// Sign produces a compact JWS of claims with header (which must carry
// "alg") and key: both are encoded with encoding/json, so header members
// come out sorted. It exists for tools and tests that mint tokens or
// fixtures; see NewSigner for a header of fixed member order. rnd may be
// nil (crypto/rand).
func Sign(header map[string]any, claims any, key crypto.Signer, rnd io.Reader) (string, error) {
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encoding JWS header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding JWT claims: %w", err)
	}
	s, err := NewSigner(key, hb, rnd)
	if err != nil {
		return "", err
	}
	return s.Sign(cb)
}

func signBytes(key crypto.Signer, alg string, input []byte, rnd io.Reader) ([]byte, error) {
	if alg == EdDSA {
		sig, err := key.Sign(rnd, input, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("signing JWS: %w", err)
		}
		return sig, nil
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
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("signing JWS: decoding ECDSA signature: %v", err)
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("signing JWS: ECDSA signature out of range")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// AdminTokenLifetime is the lifetime of the admin tokens upstream's
// kbs-client (--auth-private-key) and coco_keyprovider sign: 2 hours.
const AdminTokenLifetime = 2 * time.Hour

// SignAdminToken signs the admin token upstream's kbs-client and
// coco_keyprovider sign with the admin private key, for a KBS that
// authenticates admins by public key (auth_public_key, "Simple" personas
// or a bearer identity provider key): header {"typ":"JWT","alg":ALG},
// claims {"exp":now+ttl,"iat":now}, exactly these bytes. ALG is the first
// algorithm of AlgForKey: EdDSA for Ed25519 (the only key upstream's tools
// sign with), ES256/ES384/ES512 by curve, RS256 for RSA. The token carries
// no "role": KBS v0.21+ admin personas that require one need a token from
// their identity provider.
func SignAdminToken(key crypto.Signer, now time.Time, ttl time.Duration) (string, error) {
	if key == nil {
		return "", fmt.Errorf("%w: no admin signing key", ErrInvalidKey)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("jwt: admin token lifetime %v is not positive", ttl)
	}
	algs := AlgForKey(key.Public())
	if len(algs) == 0 {
		return "", fmt.Errorf("%w: unsupported admin key type %T", ErrInvalidKey, key.Public())
	}
	s, err := NewSigner(key, []byte(`{"typ":"JWT","alg":"`+algs[0]+`"}`), nil)
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(struct {
		Exp int64 `json:"exp"`
		Iat int64 `json:"iat"`
	}{now.Add(ttl).Unix(), now.Unix()})
	if err != nil {
		return "", err
	}
	return s.Sign(claims)
}

// ParseAdminKeyPEM decodes the admin private key of upstream's kbs-client
// and coco_keyprovider: the first PEM block of b, a PKCS#8 "PRIVATE KEY"
// holding an Ed25519 key. Other key types are refused, as upstream's
// tools do.
func ParseAdminKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: PEM of %d bytes", ErrInvalidKey, len(b))
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: want a PKCS#8 \"PRIVATE KEY\" PEM block holding an Ed25519 key", ErrInvalidKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: an Ed25519 admin key is required, got %T", ErrInvalidKey, key)
	}
	return priv, nil
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
