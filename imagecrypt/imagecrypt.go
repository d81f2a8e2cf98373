package imagecrypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/containers/ocicrypt/blockcipher"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/go-trustee/go-trustee/sealedsecret"
)

// Names of the attestation-agent key provider.
const (
	// ProviderName is the ocicrypt key provider name of CoCo.
	ProviderName = "attestation-agent"
	// Scheme is the ocicrypt key wrapper scheme this package registers.
	Scheme = "provider." + ProviderName
	// AnnotationKeys holds the comma-separated base64 annotation packets.
	AnnotationKeys = "org.opencontainers.image.enc.keys.provider." + ProviderName
	// AnnotationPubOpts holds the base64 public block cipher options
	// (cipher type and HMAC).
	AnnotationPubOpts = "org.opencontainers.image.enc.pubopts"
	// EncryptedSuffix ends the media type of an encrypted layer.
	EncryptedSuffix = "+encrypted"

	// WrapA256GCM wraps the layer key options with AES-256-GCM (12-byte IV).
	WrapA256GCM = sealedsecret.WrapA256GCM
	// WrapA256CTR wraps them with AES-256-CTR (16-byte IV), unauthenticated.
	WrapA256CTR = sealedsecret.WrapA256CTR

	// KEKSize is the size of a key-encryption key.
	KEKSize = 32
)

// Bounds of attacker-controlled annotations.
const (
	// MaxKeysAnnotation bounds the base64 keys annotation of a layer.
	MaxKeysAnnotation = limits.MaxImageKeysAnnotationBytes
	// MaxPubOptsAnnotation bounds the base64 pubopts annotation of a layer.
	MaxPubOptsAnnotation = limits.MaxImagePubOptsAnnotationBytes
)

// Sentinel errors.
var (
	// ErrNotEncrypted: the descriptor's media type is not an encrypted one.
	ErrNotEncrypted = errors.New("layer is not encrypted")
	// ErrNoKeyAnnotation: an encrypted layer lacks the attestation-agent
	// keys annotation (it was encrypted for another key wrapper).
	ErrNoKeyAnnotation = errors.New("layer has no attestation-agent key annotation")
	// ErrInvalidAnnotation: an annotation or annotation packet is malformed
	// or too large.
	ErrInvalidAnnotation = errors.New("invalid layer encryption annotation")
	// ErrKeyUnavailable: the KeySource did not release the KEK (not found,
	// policy deny, unreachable, ...); the cause is wrapped too.
	ErrKeyUnavailable = errors.New("key-encryption key unavailable")
	// ErrUnwrap: the KEK did not open the wrapped layer key options (wrong
	// key, corrupted packet, wrong wrap type).
	ErrUnwrap = errors.New("unwrapping the layer key failed")
	// ErrIntegrity: the encrypted layer does not match its HMAC (corrupted,
	// truncated or extended). Errors carrying it also match
	// io.ErrUnexpectedEOF.
	ErrIntegrity = errors.New("encrypted layer failed its integrity check")
	// ErrInvalidKEK: a KEK is not 32 bytes or its kid is no kbs:// URI.
	ErrInvalidKEK = errors.New("invalid key-encryption key")
)

// KeySource releases KEKs by kbs:/// resource URI. The confidential data
// hub implements it with GetResource; tests use fakes. The caller clears
// the returned slice after use, so a KeySource returns a copy of any key
// it keeps (cdh.Hub.GetResource does).
type KeySource interface {
	Key(ctx context.Context, uri string) ([]byte, error)
}

// KeySourceFunc adapts a function to KeySource.
type KeySourceFunc func(ctx context.Context, uri string) ([]byte, error)

// Key calls f.
func (f KeySourceFunc) Key(ctx context.Context, uri string) ([]byte, error) { return f(ctx, uri) }

// IsEncrypted reports whether mediaType is an encrypted layer media type
// (ends in "+encrypted").
func IsEncrypted(mediaType string) bool {
	return strings.HasSuffix(mediaType, EncryptedSuffix)
}

// DecryptedMediaType strips "+encrypted" from mediaType.
func DecryptedMediaType(mediaType string) string {
	return strings.TrimSuffix(mediaType, EncryptedSuffix)
}

// EncryptedMediaType appends "+encrypted" to mediaType unless present.
func EncryptedMediaType(mediaType string) string {
	if IsEncrypted(mediaType) {
		return mediaType
	}
	return mediaType + EncryptedSuffix
}

// LayerDecrypter decrypts encrypted layers with KEKs from a KeySource. It
// is safe for concurrent use.
type LayerDecrypter struct {
	keys KeySource
}

// NewLayerDecrypter returns a decrypter fetching KEKs from keys.
func NewLayerDecrypter(keys KeySource) *LayerDecrypter {
	return &LayerDecrypter{keys: keys}
}

// checkDescriptor bounds and pre-validates the annotations ocicrypt reads.
func checkDescriptor(desc ocispec.Descriptor) error {
	if !IsEncrypted(desc.MediaType) {
		return fmt.Errorf("%w: media type %q", ErrNotEncrypted, desc.MediaType)
	}
	keys, ok := desc.Annotations[AnnotationKeys]
	if !ok || keys == "" {
		return ErrNoKeyAnnotation
	}
	if len(keys) > MaxKeysAnnotation {
		return fmt.Errorf("%w: keys annotation of %d bytes exceeds %d", ErrInvalidAnnotation, len(keys), MaxKeysAnnotation)
	}
	pub := desc.Annotations[AnnotationPubOpts]
	if pub == "" {
		return fmt.Errorf("%w: no %s annotation", ErrInvalidAnnotation, AnnotationPubOpts)
	}
	if len(pub) > MaxPubOptsAnnotation {
		return fmt.Errorf("%w: pubopts annotation of %d bytes exceeds %d", ErrInvalidAnnotation, len(pub), MaxPubOptsAnnotation)
	}
	if _, err := ParsePubOpts(pub); err != nil {
		return err
	}
	return nil
}

// PubOpts are the public block cipher options of an encrypted layer.
type PubOpts struct {
	Cipher        string            `json:"cipher"`
	HMAC          []byte            `json:"hmac"`
	CipherOptions map[string][]byte `json:"cipheroptions"`
}

// ParsePubOpts decodes the base64 pubopts annotation. Only
// AES_256_CTR_HMAC_SHA256 with a 32-byte HMAC is accepted.
func ParsePubOpts(b64 string) (*PubOpts, error) {
	if len(b64) > MaxPubOptsAnnotation {
		return nil, fmt.Errorf("%w: pubopts annotation of %d bytes exceeds %d", ErrInvalidAnnotation, len(b64), MaxPubOptsAnnotation)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: pubopts is not base64", ErrInvalidAnnotation)
	}
	var p PubOpts
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%w: pubopts: %v", ErrInvalidAnnotation, err)
	}
	if p.Cipher != "AES_256_CTR_HMAC_SHA256" {
		return nil, fmt.Errorf("%w: layer cipher %q (only AES_256_CTR_HMAC_SHA256)", ErrInvalidAnnotation, p.Cipher)
	}
	if len(p.HMAC) != 32 {
		return nil, fmt.Errorf("%w: HMAC of %d bytes, want 32", ErrInvalidAnnotation, len(p.HMAC))
	}
	return &p, nil
}

// UnwrapOptions returns the layer key options (ocicrypt private options
// JSON) of desc: the first packet of its keys annotation (ocicrypt's
// comma-separated base64 packets) that opens with a KEK from the
// decrypter's KeySource. The caller must clear them.
func (d *LayerDecrypter) UnwrapOptions(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	var errs []error
	for _, b64 := range strings.Split(desc.Annotations[AnnotationKeys], ",") {
		packet, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: a keys annotation packet is not base64", ErrInvalidAnnotation)
		}
		opts, err := UnwrapPacket(ctx, d.keys, packet)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return opts, nil
	}
	return nil, errors.Join(errs...)
}

// Decrypt returns the plaintext of the encrypted layer desc read from r.
// The layer key is unwrapped before Decrypt returns (failing closed); the
// stream is then decrypted as it is read, and its HMAC checked at EOF (see
// the package invariants). Close closes r when r is an io.Closer.
func (d *LayerDecrypter) Decrypt(ctx context.Context, desc ocispec.Descriptor, r io.Reader) (io.ReadCloser, error) {
	optsData, err := d.UnwrapOptions(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer clear(optsData)
	o, err := parseLayerOptions(optsData)
	if err != nil {
		return nil, err
	}
	defer clear(o.SymKey)
	pub, err := ParsePubOpts(desc.Annotations[AnnotationPubOpts])
	if err != nil {
		return nil, err
	}
	cr, err := newCTRHMACReader(r, o, pub.HMAC)
	if err != nil {
		return nil, err
	}
	return &LayerReader{src: r, plain: cr, digest: o.Digest}, nil
}

// LayerReader is the plaintext stream Decrypt returns.
type LayerReader struct {
	src    io.Reader
	plain  *ctrHMACReader
	digest digest.Digest
	closed bool
}

// Digest is the plaintext layer digest the layer key options record: the
// digest of the layer before encryption. Callers that need it bound to the
// bytes read compare it themselves.
func (l *LayerReader) Digest() digest.Digest { return l.digest }

// Read reads plaintext; see the package invariants for errors.
func (l *LayerReader) Read(p []byte) (int, error) {
	if l.closed {
		return 0, errClosed
	}
	return l.plain.Read(p)
}

// Close closes the source when it is an io.Closer.
func (l *LayerReader) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	clear(l.plain.buf)
	if c, ok := l.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// WrapFunc wraps layer key options into an annotation packet (JSON).
type WrapFunc func(optsData []byte) (packet []byte, err error)

// KEK is a key-encryption key and the KBS resource URI it is released at.
type KEK struct {
	// Key is the 32-byte KEK.
	Key []byte
	// ID is the kbs:/// resource URI written as the packet's kid.
	ID string
	// WrapType is WrapA256GCM (the default when "") or WrapA256CTR.
	WrapType string
	// Rand supplies IVs; nil is crypto/rand.
	Rand io.Reader
}

// NewKEK draws a fresh 32-byte KEK for resource uri from rnd (nil:
// crypto/rand).
func NewKEK(uri string, rnd io.Reader) (*KEK, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	k := &KEK{Key: make([]byte, KEKSize), ID: uri, Rand: rnd}
	if _, err := io.ReadFull(rnd, k.Key); err != nil {
		return nil, fmt.Errorf("drawing a KEK: %w", err)
	}
	return k, k.validate()
}

func (k *KEK) validate() error {
	if len(k.Key) != KEKSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidKEK, len(k.Key), KEKSize)
	}
	if !sealedsecret.IsResourceURI(k.ID) {
		return fmt.Errorf("%w: kid %q is not a kbs:// resource URI", ErrInvalidKEK, k.ID)
	}
	switch k.WrapType {
	case "", WrapA256GCM, WrapA256CTR:
		return nil
	}
	return fmt.Errorf("%w: wrap type %q is neither %s nor %s", ErrInvalidKEK, k.WrapType, WrapA256GCM, WrapA256CTR)
}

// annotationPacket is the v2 packet coco_keyprovider and this package
// write (provider "kbs").
type annotationPacket struct {
	Version          string         `json:"version"`
	Kid              string         `json:"kid"`
	WrappedData      string         `json:"wrapped_data"`
	Provider         string         `json:"provider"`
	IV               string         `json:"iv"`
	WrapType         string         `json:"wrap_type"`
	ProviderSettings map[string]any `json:"provider_settings"`
	Annotations      map[string]any `json:"annotations"`
}

// Wrap wraps optsData under the KEK and returns the v2 annotation packet
// JSON. It is a WrapFunc.
func (k *KEK) Wrap(optsData []byte) ([]byte, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	wt := k.WrapType
	if wt == "" {
		wt = WrapA256GCM
	}
	iv, wrapped, err := WrapKey(k.Key, optsData, wt, k.Rand)
	if err != nil {
		return nil, err
	}
	return json.Marshal(annotationPacket{
		Version: sealedsecret.Version, Kid: k.ID, Provider: "kbs",
		WrappedData: base64.StdEncoding.EncodeToString(wrapped),
		IV:          base64.StdEncoding.EncodeToString(iv), WrapType: wt,
		ProviderSettings: map[string]any{}, Annotations: map[string]any{},
	})
}

// WrapKey encrypts optsData under kek with wrapType (A256GCM: 12-byte IV,
// ciphertext||tag; A256CTR: 16-byte IV), drawing the IV from rnd (nil:
// crypto/rand). It is the inverse of the unwrap the data hub performs.
func WrapKey(kek, optsData []byte, wrapType string, rnd io.Reader) (iv, wrapped []byte, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if len(kek) != KEKSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidKEK, len(kek), KEKSize)
	}
	switch wrapType {
	case WrapA256GCM:
		iv, wrapped, err = sealedsecret.Encrypt(kek, optsData, rnd)
		if err != nil {
			return nil, nil, fmt.Errorf("wrapping the layer key: %w", err)
		}
		return iv, wrapped, nil
	case WrapA256CTR:
		block, err := aes.NewCipher(kek)
		if err != nil {
			return nil, nil, fmt.Errorf("wrapping the layer key: %w", err)
		}
		iv = make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return nil, nil, fmt.Errorf("drawing an IV: %w", err)
		}
		wrapped = make([]byte, len(optsData))
		cipher.NewCTR(block, iv).XORKeyStream(wrapped, optsData)
		return iv, wrapped, nil
	}
	return nil, nil, fmt.Errorf("%w: wrap type %q is neither %s nor %s", ErrInvalidKEK, wrapType, WrapA256GCM, WrapA256CTR)
}

// UnwrapPacket opens an annotation packet (v1 or v2, provider "kbs") with
// the KEK keys releases at its kid and returns the layer key options.
func UnwrapPacket(ctx context.Context, keys KeySource, packet []byte) ([]byte, error) {
	p, err := ParseAnnotationPacket(packet)
	if err != nil {
		return nil, err
	}
	if p.Provider != "kbs" {
		return nil, fmt.Errorf("%w: packet provider %q (only kbs)", ErrInvalidAnnotation, p.Provider)
	}
	if p.Version != sealedsecret.Version {
		return nil, fmt.Errorf("%w: packet version %q (only %s)", ErrInvalidAnnotation, p.Version, sealedsecret.Version)
	}
	if p.IV == nil || p.WrapType == nil {
		return nil, fmt.Errorf("%w: packet lacks iv or wrap_type", ErrInvalidAnnotation)
	}
	if *p.WrapType != WrapA256GCM && *p.WrapType != WrapA256CTR {
		return nil, fmt.Errorf("%w: wrap_type %q", ErrInvalidAnnotation, *p.WrapType)
	}
	if !sealedsecret.IsResourceURI(p.Kid) {
		return nil, fmt.Errorf("%w: kid %q is not a kbs:// resource URI", ErrInvalidAnnotation, p.Kid)
	}
	iv, err := base64.StdEncoding.DecodeString(*p.IV)
	if err != nil {
		return nil, fmt.Errorf("%w: iv is not base64", ErrInvalidAnnotation)
	}
	wrapped, err := base64.StdEncoding.DecodeString(p.WrappedData)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped_data is not base64", ErrInvalidAnnotation)
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: no key source", ErrKeyUnavailable)
	}
	kek, err := keys.Key(ctx, p.Kid)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyUnavailable, p.Kid, err)
	}
	defer clear(kek)
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("%w: the KEK at %s has %d bytes, want %d", ErrUnwrap, p.Kid, len(kek), KEKSize)
	}
	opts, err := sealedsecret.Decrypt(kek, iv, wrapped, *p.WrapType)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnwrap, err)
	}
	if !json.Valid(opts) {
		// A256CTR is unauthenticated: a wrong KEK yields garbage.
		clear(opts)
		return nil, fmt.Errorf("%w: the unwrapped key options are not JSON (wrong KEK?)", ErrUnwrap)
	}
	return opts, nil
}

// Finalizer returns the annotations of an encrypted layer; call it after
// the encrypted stream was read to EOF.
type Finalizer func() (map[string]string, error)

// EncryptLayer encrypts the plain layer r (descriptor desc) under a fresh
// layer key with ocicrypt's block cipher, wrapping the key options with
// wrap. Read the returned stream to EOF, then call the Finalizer for the
// annotations (keys packet and pubopts) of the encrypted descriptor.
func EncryptLayer(wrap WrapFunc, desc ocispec.Descriptor, r io.Reader) (io.Reader, Finalizer, error) {
	if wrap == nil {
		return nil, nil, errors.New("encrypting a layer: no wrap function")
	}
	// Only our annotation may be present: a layer already carrying
	// encryption annotations is refused rather than re-wrapped.
	for k := range desc.Annotations {
		if strings.HasPrefix(k, "org.opencontainers.image.enc.") {
			return nil, nil, fmt.Errorf("encrypting a layer: %s is already encrypted", desc.Digest)
		}
	}
	// ocicrypt's block cipher does the layer encryption; the annotations are
	// assembled here as ocicrypt.EncryptLayer would (one base64 packet of
	// the wrapped private options, base64 JSON public options), so no key
	// wrapper has to be registered in ocicrypt's process-wide registry.
	lbch, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return nil, nil, fmt.Errorf("encrypting a layer: %w", err)
	}
	enc, fin, err := lbch.Encrypt(r, blockcipher.AES256CTR)
	if err != nil {
		return nil, nil, fmt.Errorf("encrypting a layer: %w", err)
	}
	return enc, func() (map[string]string, error) {
		opts, err := fin()
		if err != nil {
			return nil, fmt.Errorf("finalizing an encrypted layer: %w", err)
		}
		opts.Private.Digest = desc.Digest
		priv, err := json.Marshal(opts.Private)
		if err != nil {
			return nil, fmt.Errorf("finalizing an encrypted layer: %w", err)
		}
		defer clear(priv)
		pub, err := json.Marshal(opts.Public)
		if err != nil {
			return nil, fmt.Errorf("finalizing an encrypted layer: %w", err)
		}
		packet, err := wrap(priv)
		if err != nil {
			return nil, fmt.Errorf("finalizing an encrypted layer: %w", err)
		}
		return map[string]string{
			AnnotationKeys:    base64.StdEncoding.EncodeToString(packet),
			AnnotationPubOpts: base64.StdEncoding.EncodeToString(pub),
		}, nil
	}, nil
}

// EncryptedDescriptor is desc after encryption: media type +encrypted,
// the encrypted blob's digest and size, and the encryption annotations
// added.
func EncryptedDescriptor(desc ocispec.Descriptor, encDigest digest.Digest, encSize int64, annotations map[string]string) ocispec.Descriptor {
	out := desc
	out.MediaType = EncryptedMediaType(desc.MediaType)
	out.Digest = encDigest
	out.Size = encSize
	out.Annotations = make(map[string]string, len(desc.Annotations)+len(annotations))
	for k, v := range desc.Annotations {
		out.Annotations[k] = v
	}
	for k, v := range annotations {
		out.Annotations[k] = v
	}
	return out
}
