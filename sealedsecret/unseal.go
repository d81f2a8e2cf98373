package sealedsecret

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// ResourceGetter reads a KBS resource by its kbs[+plugin]:// URI. The
// confidential-data-hub's KBC implements it.
type ResourceGetter interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// Vault is a vault-secret provider: it serves the secret called name.
type Vault interface {
	GetSecret(ctx context.Context, name string, settings, annotations Map) ([]byte, error)
}

// KMS is an envelope-secret provider: it decrypts a DEK wrapped under
// keyID.
type KMS interface {
	Decrypt(ctx context.Context, ciphertext []byte, keyID string, settings, annotations Map) ([]byte, error)
}

// Options configure an Unsealer. Zero values take the documented defaults.
type Options struct {
	// KBS reads kbs:// kids and backs the built-in "kbs" vault and KMS
	// providers. nil: kids must be local and "kbs" is unavailable.
	KBS ResourceGetter
	// KeyDir holds the JWKs of local kids; "" is DefaultKeyDir.
	KeyDir string
	// SkipVerification accepts secrets without checking their signature
	// (upstream's skip_sealed_secret_verification). Insecure: anyone who
	// can write the secret chooses what it unseals to.
	SkipVerification bool
	// Vaults adds vault providers by lower-case name; "kbs" is built in
	// when KBS is set.
	Vaults map[string]Vault
	// KMSes adds envelope providers by lower-case name; "kbs" (KEKs in the
	// KBS, see KBSKMS) is built in when KBS is set.
	KMSes map[string]KMS
}

// Unsealer verifies and unseals sealed secrets.
type Unsealer struct {
	kbs    ResourceGetter
	keyDir string
	skip   bool
	vaults map[string]Vault
	kmses  map[string]KMS
}

// New returns an Unsealer.
func New(opts Options) (*Unsealer, error) {
	u := &Unsealer{kbs: opts.KBS, keyDir: opts.KeyDir, skip: opts.SkipVerification,
		vaults: map[string]Vault{}, kmses: map[string]KMS{}}
	if u.keyDir == "" {
		u.keyDir = DefaultKeyDir
	}
	if opts.KBS != nil {
		u.vaults["kbs"] = KBSVault{KBS: opts.KBS}
		u.kmses["kbs"] = KBSKMS{KBS: opts.KBS}
	}
	for name, v := range opts.Vaults {
		if v == nil || name != strings.ToLower(name) || name == "" {
			return nil, fmt.Errorf("sealed secret options: vault provider %q must be a non-nil provider under a lower-case name", name)
		}
		u.vaults[name] = v
	}
	for name, k := range opts.KMSes {
		if k == nil || name != strings.ToLower(name) || name == "" {
			return nil, fmt.Errorf("sealed secret options: KMS provider %q must be a non-nil provider under a lower-case name", name)
		}
		u.kmses[name] = k
	}
	return u, nil
}

// Open parses a sealed secret, verifies its signature (unless verification
// is skipped) and decodes its payload. It does not contact providers other
// than for a kbs:// kid.
func (u *Unsealer) Open(ctx context.Context, sealed []byte) (*Secret, error) {
	if u.skip {
		payload, err := parseUnverified(sealed)
		if err != nil {
			return nil, err
		}
		return ParsePayload(payload)
	}
	s, err := Parse(sealed)
	if err != nil {
		return nil, err
	}
	pub, err := u.verificationKey(ctx, s.Header.Kid)
	if err != nil {
		return nil, err
	}
	if !verifyES256(pub, s.SigningInput, s.Signature) {
		return nil, ErrBadSignature
	}
	return ParsePayload(s.Payload)
}

// Unseal opens a sealed secret and returns its plaintext: from the vault
// provider, or by decrypting the envelope.
func (u *Unsealer) Unseal(ctx context.Context, sealed []byte) ([]byte, error) {
	s, err := u.Open(ctx, sealed)
	if err != nil {
		return nil, err
	}
	return u.UnsealSecret(ctx, s)
}

// UnsealSecret returns the plaintext of an opened secret.
func (u *Unsealer) UnsealSecret(ctx context.Context, s *Secret) ([]byte, error) {
	if s.Version != Version {
		return nil, fmt.Errorf("%w: %q (only %s)", ErrUnsupportedVersion, s.Version, Version)
	}
	switch {
	case s.Vault != nil:
		v, ok := u.vaults[strings.ToLower(s.Vault.Provider)]
		if !ok {
			return nil, fmt.Errorf("%w: vault provider %q", ErrUnknownProvider, s.Vault.Provider)
		}
		out, err := v.GetSecret(ctx, s.Vault.Name, s.Vault.ProviderSettings, s.Vault.Annotations)
		if err != nil {
			return nil, fmt.Errorf("getting vault secret %s from %s: %w", s.Vault.Name, s.Vault.Provider, err)
		}
		return out, nil
	case s.Envelope != nil:
		return u.openEnvelope(ctx, s.Envelope)
	}
	return nil, fmt.Errorf("%w: empty secret", ErrMalformed)
}

func (u *Unsealer) openEnvelope(ctx context.Context, e *EnvelopeSecret) ([]byte, error) {
	k, ok := u.kmses[strings.ToLower(e.Provider)]
	if !ok {
		return nil, fmt.Errorf("%w: KMS provider %q", ErrUnknownProvider, e.Provider)
	}
	encKey, err := base64.StdEncoding.DecodeString(e.EncryptedKey)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_key is not base64", ErrMalformed)
	}
	iv, err := base64.StdEncoding.DecodeString(e.IV)
	if err != nil {
		return nil, fmt.Errorf("%w: iv is not base64", ErrMalformed)
	}
	data, err := base64.StdEncoding.DecodeString(e.EncryptedData)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_data is not base64", ErrMalformed)
	}
	dek, err := k.Decrypt(ctx, encKey, e.KeyID, e.ProviderSettings, e.Annotations)
	if err != nil {
		return nil, fmt.Errorf("decrypting the envelope key with %s key %s: %w", e.Provider, e.KeyID, err)
	}
	defer clear(dek)
	return Decrypt(dek, iv, data, e.WrapType)
}

// verificationKey returns the public key the kid names: a KBS resource for
// a kbs:// URI, else a JWK file in the key directory.
func (u *Unsealer) verificationKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	var raw []byte
	if IsResourceURI(kid) {
		if u.kbs == nil {
			return nil, fmt.Errorf("%w: kid %s is a KBS resource but no KBS is configured", ErrVerificationKey, kid)
		}
		b, err := u.kbs.GetResource(ctx, kid)
		if err != nil {
			return nil, fmt.Errorf("%w: reading %s: %w", ErrVerificationKey, kid, err)
		}
		raw = b
	} else {
		b, err := readKeyFile(u.keyDir, kid)
		if err != nil {
			return nil, fmt.Errorf("%w: kid %q: %v", ErrVerificationKey, kid, err)
		}
		raw = b
	}
	pub, err := ParsePublicJWK(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s: %v", ErrVerificationKey, kid, err)
	}
	return pub, nil
}

// IsResourceURI reports whether s has a kbs:// or kbs+<plugin>:// scheme,
// the test upstream applies to a kid.
func IsResourceURI(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && (scheme == "kbs" || (strings.HasPrefix(scheme, "kbs+") && len(scheme) > 4))
}

// readKeyFile reads name inside dir without ever leaving it.
func readKeyFile(dir, name string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening key directory: %w", err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("no such key in the key directory")
		}
		return nil, fmt.Errorf("opening key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limits.MaxJWKBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if len(b) > limits.MaxJWKBytes {
		return nil, fmt.Errorf("key file exceeds %d bytes", limits.MaxJWKBytes)
	}
	return b, nil
}

// Decrypt opens envelope data: AES-256-GCM with a 12-byte IV over
// ciphertext||tag (no AAD), or AES-256-CTR with a 16-byte IV.
func Decrypt(key, iv, data []byte, wrapType string) ([]byte, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: key of %d bytes, want 32", ErrDecrypt, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	switch wrapType {
	case WrapA256GCM:
		if len(iv) != 12 {
			return nil, fmt.Errorf("%w: A256GCM IV of %d bytes, want 12", ErrDecrypt, len(iv))
		}
		g, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		pt, err := g.Open(nil, iv, data, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
		}
		return pt, nil
	case WrapA256CTR:
		if len(iv) != aes.BlockSize {
			return nil, fmt.Errorf("%w: A256CTR IV of %d bytes, want 16", ErrDecrypt, len(iv))
		}
		out := make([]byte, len(data))
		cipher.NewCTR(block, iv).XORKeyStream(out, data)
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown wrap type %q", ErrDecrypt, wrapType)
}

// Encrypt is Decrypt's inverse for A256GCM: it returns a fresh 12-byte IV
// and ciphertext||tag.
func Encrypt(key, plaintext []byte, rnd io.Reader) (iv, data []byte, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if len(key) != 32 {
		return nil, nil, fmt.Errorf("key of %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	iv = make([]byte, g.NonceSize())
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, nil, err
	}
	return iv, g.Seal(nil, iv, plaintext, nil), nil
}

// KBSVault is the "kbs" vault provider: the secret is the KBS resource
// named by a kbs:// URI.
type KBSVault struct{ KBS ResourceGetter }

// GetSecret reads the resource name.
func (v KBSVault) GetSecret(ctx context.Context, name string, _, _ Map) ([]byte, error) {
	if !IsResourceURI(name) {
		return nil, fmt.Errorf("%w: kbs vault secret name %q is not a kbs:// URI", ErrMalformed, name)
	}
	return v.KBS.GetResource(ctx, name)
}

// KBSKMS is the "kbs" envelope provider (our addition; upstream has no KBS
// decrypter): the key_id is a kbs:// URI naming a 32-byte KEK, the
// encrypted_key is AES-256-GCM(KEK) of the DEK as ciphertext||tag, and the
// annotation "iv" holds the 12-byte GCM IV in standard base64, as
// upstream's aliyun provider keeps its IV.
type KBSKMS struct{ KBS ResourceGetter }

// Decrypt fetches the KEK and opens the DEK.
func (k KBSKMS) Decrypt(ctx context.Context, ciphertext []byte, keyID string, _, annotations Map) ([]byte, error) {
	if !IsResourceURI(keyID) {
		return nil, fmt.Errorf("%w: kbs key_id %q is not a kbs:// URI", ErrMalformed, keyID)
	}
	var ivs string
	if err := json.Unmarshal(annotations["iv"], &ivs); err != nil {
		return nil, fmt.Errorf("%w: kbs envelope needs the annotation \"iv\" (base64 string)", ErrMalformed)
	}
	iv, err := base64.StdEncoding.DecodeString(ivs)
	if err != nil {
		return nil, fmt.Errorf("%w: annotation iv is not base64", ErrMalformed)
	}
	kek, err := k.KBS.GetResource(ctx, keyID)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	return Decrypt(kek, iv, ciphertext, WrapA256GCM)
}

// WrapKeyKBS is KBSKMS's sealing half: it wraps dek under kek and returns
// the encrypted_key and the annotations to put in the envelope.
func WrapKeyKBS(kek, dek []byte, rnd io.Reader) ([]byte, Map, error) {
	iv, ct, err := Encrypt(kek, dek, rnd)
	if err != nil {
		return nil, nil, err
	}
	ivj, _ := json.Marshal(base64.StdEncoding.EncodeToString(iv))
	return ct, Map{"iv": ivj}, nil
}
