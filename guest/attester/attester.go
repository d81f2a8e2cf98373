// Package attester defines how the guest client obtains TEE evidence: an
// Attester produces the evidence of one TEE (the primary CPU TEE, or a
// device such as a GPU) bound to caller-chosen report data.
//
// # Invariants
//
//   - Evidence returns one JSON document, exactly what Trustee's verifier for
//     Tee() deserializes; the report data is bound as the TEE defines it
//     (some pad it to 64 bytes, the sample TEE uses it as is).
//   - Device evidence travels in the KBS attestation as "additional
//     evidence": the JSON string {"<tee>": <evidence>, ...}, or "" when there
//     is no device. AdditionalEvidence builds that string.
//   - Implementations must be safe for concurrent use: one guest client may
//     attest from several goroutines.
//
// The only implementations in this module are the sample TEEs in package
// attester/sample, which prove nothing: they exist for tests and demos, and
// the KBS default resource policy refuses them.
package attester

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// Attester produces the evidence of one TEE.
type Attester interface {
	// Tee names the TEE type of the evidence, as sent in the KBS Request.
	Tee() protocol.Tee
	// Evidence returns the TEE evidence binding reportData.
	Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error)
}

// DeviceAttester is an Attester for a primary TEE that also reports on the
// device TEEs attached to it (GPUs, ...). The guest client collects each
// device's evidence as additional evidence before the primary evidence.
type DeviceAttester interface {
	Attester
	// Devices returns the device attesters, in a stable order.
	Devices() []Attester
}

// ErrInvalidEvidence is returned when an attester's output is not a JSON
// document within limits.MaxEvidenceBytes.
var ErrInvalidEvidence = errors.New("attester: invalid evidence")

// ErrDuplicateDevice is returned when two devices report the same TEE type:
// additional evidence is a map keyed by TEE type, so they cannot both be sent.
var ErrDuplicateDevice = errors.New("attester: duplicate device TEE type")

// WithDevices returns a DeviceAttester made of primary and devices.
func WithDevices(primary Attester, devices ...Attester) DeviceAttester {
	return &composite{Attester: primary, devices: append([]Attester(nil), devices...)}
}

type composite struct {
	Attester
	devices []Attester
}

func (c *composite) Devices() []Attester { return append([]Attester(nil), c.devices...) }

// Check verifies that evidence is a single JSON document within
// limits.MaxEvidenceBytes.
func Check(evidence json.RawMessage) error {
	if len(evidence) > limits.MaxEvidenceBytes {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidEvidence, len(evidence), limits.MaxEvidenceBytes)
	}
	if !json.Valid(evidence) {
		return fmt.Errorf("%w: not JSON", ErrInvalidEvidence)
	}
	return nil
}

// AdditionalEvidence asks each device for evidence binding reportData and
// returns the additional-evidence string of the KBS protocol: the JSON
// object {"<tee>": <evidence>} (keys sorted), or "" when devices is empty.
func AdditionalEvidence(ctx context.Context, devices []Attester, reportData []byte) (string, error) {
	if len(devices) == 0 {
		return "", nil
	}
	m := make(map[protocol.Tee]json.RawMessage, len(devices))
	for _, d := range devices {
		tee := d.Tee()
		if _, dup := m[tee]; dup {
			return "", fmt.Errorf("%w: %s", ErrDuplicateDevice, tee)
		}
		ev, err := d.Evidence(ctx, reportData)
		if err != nil {
			return "", fmt.Errorf("getting %s device evidence: %w", tee, err)
		}
		if err := Check(ev); err != nil {
			return "", fmt.Errorf("%s device evidence: %w", tee, err)
		}
		m[tee] = ev
	}
	// No HTML escaping, as serde_json writes it: the string is hashed into
	// the report data, so its bytes are what both sides must agree on.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return "", fmt.Errorf("encoding additional evidence: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
