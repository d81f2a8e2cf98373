package cdh

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/go-trustee/go-trustee/imagecrypt"
	"github.com/go-trustee/go-trustee/imagecrypt/keyprovider"
	"github.com/go-trustee/go-trustee/sealedsecret"
)

// Bounds of the keyprovider protocol.
const (
	// MaxKeyProviderInput bounds a keyprovider request JSON
	// (keyprovider.MaxMessageBytes).
	MaxKeyProviderInput = keyprovider.MaxMessageBytes
	// MaxAnnotationPacket bounds a decoded annotation packet.
	MaxAnnotationPacket = imagecrypt.MaxAnnotationPacket
)

// ReplyShape selects how UnWrapKey encodes optsdata.
type ReplyShape = keyprovider.Shape

const (
	// ReplyRust writes optsdata as a JSON integer array (Rust Vec<u8>), the
	// shape ocicrypt-rs, the only ttRPC keyprovider client, expects; the
	// default.
	ReplyRust = keyprovider.ShapeRust
	// ReplyGo writes optsdata as standard base64 (Go []byte), the shape
	// containers/ocicrypt expects.
	ReplyGo = keyprovider.ShapeGo
)

// ParseReplyShape parses "rust" or "go".
func ParseReplyShape(s string) (ReplyShape, error) {
	switch s {
	case "rust", "":
		return ReplyRust, nil
	case "go":
		return ReplyGo, nil
	}
	return 0, fmt.Errorf("keyprovider reply shape %q is neither rust nor go", s)
}

// KeyProviderInput is the part of a keyprovider request the hub uses.
type KeyProviderInput struct {
	// Op is "keyunwrap" or "keywrap".
	Op string
	// Annotation is the decoded keyunwrapparams.annotation: the annotation
	// packet JSON.
	Annotation []byte
}

// ParseKeyProviderInput decodes a keyprovider request from Go ocicrypt or
// ocicrypt-rs with package keyprovider (base64 string or integer array
// byte fields). Errors wrap ErrInvalidRequest.
func ParseKeyProviderInput(b []byte) (*KeyProviderInput, error) {
	req, err := keyprovider.DecodeUnwrapRequest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: keyprovider input: %w", ErrInvalidRequest, err)
	}
	if len(req.Annotation) > MaxAnnotationPacket {
		return nil, fmt.Errorf("%w: annotation packet of %d bytes exceeds %d", ErrInvalidRequest, len(req.Annotation), MaxAnnotationPacket)
	}
	return &KeyProviderInput{Op: req.Op, Annotation: req.Annotation}, nil
}

// MarshalUnwrapReply encodes the keyunwrap answer in the given shape
// (keyprovider.EncodeUnwrapReply).
func MarshalUnwrapReply(optsdata []byte, shape ReplyShape) ([]byte, error) {
	return keyprovider.EncodeUnwrapReply(optsdata, shape)
}

// AnnotationPacket is the org.opencontainers.image.enc.keys.provider.
// attestation-agent annotation of an encrypted layer: one decoder, in
// package imagecrypt, serves the hub and the image pull engine.
type AnnotationPacket = imagecrypt.AnnotationPacket

// ParseAnnotationPacket decodes a packet (imagecrypt.ParseAnnotationPacket):
// version defaults to "0.1.0", provider to "kbs"; kid and wrapped_data are
// required. Errors wrap ErrInvalidRequest.
func ParseAnnotationPacket(b []byte) (*AnnotationPacket, error) {
	p, err := imagecrypt.ParseAnnotationPacket(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return p, nil
}

// unwrapPacket returns the layer key options (optsdata) a packet wraps.
func (h *Hub) unwrapPacket(ctx context.Context, p *AnnotationPacket) ([]byte, error) {
	wrapped, err := base64.StdEncoding.DecodeString(p.WrappedData)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped_data is not base64", ErrInvalidRequest)
	}
	if p.Provider != "kbs" {
		kms, ok := h.kmses[p.Provider]
		if !ok {
			return nil, fmt.Errorf("%w: KMS provider %q", sealedsecret.ErrUnknownProvider, p.Provider)
		}
		return kms.Decrypt(ctx, wrapped, p.Kid, p.ProviderSettings, p.Annotations)
	}
	if p.Version != sealedsecret.Version {
		return nil, fmt.Errorf("%w: annotation packet version %q (only %s)", ErrInvalidRequest, p.Version, sealedsecret.Version)
	}
	if p.IV == nil || p.WrapType == nil {
		return nil, fmt.Errorf("%w: a kbs annotation packet needs iv and wrap_type", ErrInvalidRequest)
	}
	if !isResourceURI(p.Kid) {
		return nil, fmt.Errorf("%w: kid %q is not a kbs:// resource URI", ErrInvalidRequest, p.Kid)
	}
	iv, err := base64.StdEncoding.DecodeString(*p.IV)
	if err != nil {
		return nil, fmt.Errorf("%w: iv is not base64", ErrInvalidRequest)
	}
	kek, err := h.GetResource(ctx, p.Kid)
	if err != nil {
		return nil, fmt.Errorf("getting the KEK %s: %w", p.Kid, err)
	}
	defer clear(kek)
	return sealedsecret.Decrypt(kek, iv, wrapped, *p.WrapType)
}

// UnwrapKey decrypts the layer key options an annotation packet wraps:
// for provider "kbs" with the KEK the KBS releases at kid, otherwise with
// the named KMS.
func (h *Hub) UnwrapKey(ctx context.Context, packet []byte) ([]byte, error) {
	p, err := ParseAnnotationPacket(packet)
	if err != nil {
		return nil, err
	}
	return h.unwrapPacket(ctx, p)
}

// KeyProviderUnwrap serves one keyprovider "keyunwrap" JSON request and
// returns the JSON reply in the hub's ReplyShape.
func (h *Hub) KeyProviderUnwrap(ctx context.Context, input []byte) ([]byte, error) {
	in, err := ParseKeyProviderInput(input)
	if err != nil {
		return nil, err
	}
	if in.Op != "keyunwrap" {
		return nil, fmt.Errorf("%w: keyprovider op %q (only keyunwrap)", ErrInvalidRequest, in.Op)
	}
	if in.Annotation == nil {
		return nil, fmt.Errorf("%w: no annotation packet given", ErrInvalidRequest)
	}
	opts, err := h.UnwrapKey(ctx, in.Annotation)
	if err != nil {
		return nil, err
	}
	defer clear(opts)
	return MarshalUnwrapReply(opts, h.replyShape)
}
