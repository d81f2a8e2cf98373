package imagecrypt

import (
	"encoding/json"
	"fmt"

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/go-trustee/go-trustee/sealedsecret"
)

// MaxAnnotationPacket bounds one decoded annotation packet, as the data
// hub does (cdh.MaxAnnotationPacket).
const MaxAnnotationPacket = limits.MaxImageAnnotationPacketBytes

// AnnotationPacket is one decoded
// org.opencontainers.image.enc.keys.provider.attestation-agent packet. A v1
// packet has only kid, wrapped_data, iv and wrap_type; Version then
// defaults to "0.1.0" and Provider to "kbs".
//
// This is the one decoder of packets: the data hub's UnWrapKey
// (cdh.ParseAnnotationPacket) and the image pull engine both use it.
// ProviderSettings and Annotations are never nil after decoding.
type AnnotationPacket struct {
	Version          string                     `json:"version"`
	Kid              string                     `json:"kid"`
	WrappedData      string                     `json:"wrapped_data"`
	Provider         string                     `json:"provider"`
	IV               *string                    `json:"iv,omitempty"`
	WrapType         *string                    `json:"wrap_type,omitempty"`
	ProviderSettings map[string]json.RawMessage `json:"provider_settings"`
	Annotations      map[string]json.RawMessage `json:"annotations"`
}

// ParseAnnotationPacket decodes a packet (at most MaxAnnotationPacket
// bytes); kid and wrapped_data are required.
func ParseAnnotationPacket(b []byte) (*AnnotationPacket, error) {
	if len(b) > MaxAnnotationPacket {
		return nil, fmt.Errorf("%w: annotation packet of %d bytes exceeds %d", ErrInvalidAnnotation, len(b), MaxAnnotationPacket)
	}
	var raw struct {
		Version          *string                    `json:"version"`
		Kid              *string                    `json:"kid"`
		WrappedData      *string                    `json:"wrapped_data"`
		Provider         *string                    `json:"provider"`
		IV               *string                    `json:"iv"`
		WrapType         *string                    `json:"wrap_type"`
		ProviderSettings map[string]json.RawMessage `json:"provider_settings"`
		Annotations      map[string]json.RawMessage `json:"annotations"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: annotation packet: %v", ErrInvalidAnnotation, err)
	}
	if raw.Kid == nil || raw.WrappedData == nil {
		return nil, fmt.Errorf("%w: annotation packet lacks kid or wrapped_data", ErrInvalidAnnotation)
	}
	p := &AnnotationPacket{Version: sealedsecret.Version, Kid: *raw.Kid, WrappedData: *raw.WrappedData,
		Provider: "kbs", IV: raw.IV, WrapType: raw.WrapType,
		ProviderSettings: raw.ProviderSettings, Annotations: raw.Annotations}
	if raw.Version != nil {
		p.Version = *raw.Version
	}
	if raw.Provider != nil {
		p.Provider = *raw.Provider
	}
	if p.ProviderSettings == nil {
		p.ProviderSettings = map[string]json.RawMessage{}
	}
	if p.Annotations == nil {
		p.Annotations = map[string]json.RawMessage{}
	}
	return p, nil
}
