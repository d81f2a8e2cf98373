package sealedsecret

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Seal signs s with key and returns the sealed secret: the "sealed."
// prefix and a compact JWS whose header is {"b64":true,"alg":"ES256",
// "kid":kid}, the header the upstream secret CLI writes. rnd feeds the
// ECDSA signature; nil is crypto/rand.
func Seal(s *Secret, key *ecdsa.PrivateKey, kid string, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if kid == "" {
		return "", errors.New("sealing: empty kid")
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("sealing: %w", err)
	}
	k, err := json.Marshal(kid)
	if err != nil {
		return "", fmt.Errorf("sealing: %w", err)
	}
	hdr := `{"b64":true,"alg":"ES256","kid":` + string(k) + `}`
	input := b64.EncodeToString([]byte(hdr)) + "." + b64.EncodeToString(payload)
	sig, err := signES256(key, input, rnd)
	if err != nil {
		return "", fmt.Errorf("sealing: signing: %w", err)
	}
	out := Prefix + input + "." + b64.EncodeToString(sig)
	if len(out) > MaxSealedBytes {
		return "", fmt.Errorf("sealing: %w: %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}

// NewEnvelope encrypts plaintext under a fresh random DEK (AES-256-GCM,
// 12-byte IV) and returns the envelope secret, with the DEK wrapped by
// wrap (which returns encrypted_key and the annotations the KMS needs).
func NewEnvelope(plaintext []byte, provider, keyID string, settings Map, wrap func(dek []byte) ([]byte, Map, error), rnd io.Reader) (*Secret, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	dek := make([]byte, 32)
	defer clear(dek)
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, err
	}
	iv, data, err := Encrypt(dek, plaintext, rnd)
	if err != nil {
		return nil, err
	}
	encKey, ann, err := wrap(dek)
	if err != nil {
		return nil, fmt.Errorf("wrapping the DEK with %s: %w", provider, err)
	}
	if settings == nil {
		settings = Map{}
	}
	if ann == nil {
		ann = Map{}
	}
	return &Secret{Version: Version, Envelope: &EnvelopeSecret{
		KeyID: keyID, EncryptedKey: base64.StdEncoding.EncodeToString(encKey),
		EncryptedData: base64.StdEncoding.EncodeToString(data), WrapType: WrapA256GCM,
		IV: base64.StdEncoding.EncodeToString(iv), Provider: provider,
		ProviderSettings: settings, Annotations: ann,
	}}, nil
}
