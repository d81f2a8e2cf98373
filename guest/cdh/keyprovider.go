package cdh

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/go-trustee/go-trustee/imagecrypt"
	"github.com/go-trustee/go-trustee/sealedsecret"
)

// Bounds of the keyprovider protocol.
const (
	// MaxKeyProviderInput bounds a keyprovider request JSON.
	MaxKeyProviderInput = 1 << 20
	// MaxAnnotationPacket bounds a decoded annotation packet.
	MaxAnnotationPacket = imagecrypt.MaxAnnotationPacket
)

// ReplyShape selects how UnWrapKey encodes optsdata.
type ReplyShape int

const (
	// ReplyRust writes optsdata as a JSON integer array (Rust Vec<u8>), the
	// shape ocicrypt-rs, the only ttRPC keyprovider client, expects; the
	// default.
	ReplyRust ReplyShape = iota
	// ReplyGo writes optsdata as standard base64 (Go []byte), the shape
	// containers/ocicrypt expects.
	ReplyGo
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

// byteField decodes a keyprovider byte field in either client's shape: a
// standard base64 string (Go []byte, ocicrypt-rs annotation) or an array of
// integers 0..255 (Rust Vec<u8>). null is nil.
type byteField []byte

func (f *byteField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*f = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("not standard base64: %v", err)
		}
		*f = d
		return nil
	case len(b) > 0 && b[0] == '[':
		var ints []int
		if err := json.Unmarshal(b, &ints); err != nil {
			return err
		}
		out := make([]byte, len(ints))
		for i, v := range ints {
			if v < 0 || v > 255 {
				return fmt.Errorf("byte %d out of range: %d", i, v)
			}
			out[i] = byte(v)
		}
		*f = out
		return nil
	}
	return fmt.Errorf("want a base64 string or an integer array")
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
// ocicrypt-rs (see byteField for the accepted byte shapes).
func ParseKeyProviderInput(b []byte) (*KeyProviderInput, error) {
	if len(b) > MaxKeyProviderInput {
		return nil, fmt.Errorf("%w: keyprovider input of %d bytes exceeds %d", ErrInvalidRequest, len(b), MaxKeyProviderInput)
	}
	var raw struct {
		Op              string `json:"op"`
		KeyUnwrapParams *struct {
			Annotation byteField `json:"annotation"`
		} `json:"keyunwrapparams"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: keyprovider input: %v", ErrInvalidRequest, err)
	}
	in := &KeyProviderInput{Op: raw.Op}
	if raw.KeyUnwrapParams != nil {
		in.Annotation = raw.KeyUnwrapParams.Annotation
	}
	if len(in.Annotation) > MaxAnnotationPacket {
		return nil, fmt.Errorf("%w: annotation packet of %d bytes exceeds %d", ErrInvalidRequest, len(in.Annotation), MaxAnnotationPacket)
	}
	return in, nil
}

// MarshalUnwrapReply encodes the keyunwrap answer in the given shape.
func MarshalUnwrapReply(optsdata []byte, shape ReplyShape) ([]byte, error) {
	if shape == ReplyGo {
		return json.Marshal(struct {
			KeyWrapResults struct {
				Annotation []byte `json:"annotation"`
			} `json:"keywrapresults"`
			KeyUnwrapResults struct {
				OptsData []byte `json:"optsdata"`
			} `json:"keyunwrapresults"`
		}{KeyUnwrapResults: struct {
			OptsData []byte `json:"optsdata"`
		}{optsdata}})
	}
	ints := make([]int, len(optsdata))
	for i, v := range optsdata {
		ints[i] = int(v)
	}
	return json.Marshal(struct {
		KeyUnwrapResults struct {
			OptsData []int `json:"optsdata"`
		} `json:"keyunwrapresults"`
	}{struct {
		OptsData []int `json:"optsdata"`
	}{ints}})
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
