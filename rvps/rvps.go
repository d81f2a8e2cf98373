// Package rvps is the Reference Value Provider Service built into the
// Attestation Service: it accepts reference-value messages, extracts the
// values they carry, stores them in the shared key-value store and answers
// queries from attestation policies (the query_reference_value Rego
// builtin) and from the KBS admin API.
//
// # Invariants
//
//   - A message is {"version":"0.1.0","type":"sample","payload":"..."}; the
//     version defaults to, and must equal, "0.1.0". Only the "sample"
//     extractor is implemented: its payload is the standard (padded) base64
//     of a JSON object whose members each become one reference value.
//   - A reference value is stored in namespace "reference_value" under its
//     name, overwriting any earlier one, as the JSON record upstream Trustee
//     writes: {"version":"0.1.0","name":..,"expiration":"%Y-%m-%dT%H:%M:%SZ",
//     "value":..}, expiring twelve months after registration. Records written
//     by upstream (or mounted by trustee-operator) are read unchanged.
//   - A message is validated as a whole before anything is written: either
//     every name it carries is a valid storage key or nothing is stored.
//   - Query returns only the value; expiration is recorded but, as upstream,
//     not enforced. A name that cannot be a storage key is simply not found.
//   - Messages are size-bounded (MaxMessageBytes) before they are parsed.
//
// A Service is safe for concurrent use; its state lives entirely in the
// store, so replicas sharing one backend see the same reference values.
package rvps

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
)

// MessageVersion is the only message (and record) version.
const MessageVersion = "0.1.0"

// MaxMessageBytes bounds a register message before it is parsed. It matches
// the KBS's default request body limit, through which messages arrive.
const MaxMessageBytes = limits.MaxRVPSMessageBytes

// expirationLayout is chrono's "%Y-%m-%dT%H:%M:%SZ".
const expirationLayout = "2006-01-02T15:04:05Z"

// monthsBeforeExpiration is how long a registered value is valid.
const monthsBeforeExpiration = 12

// Config types of the [attestation_service.rvps_config] section.
const (
	TypeBuiltIn    = "BuiltIn"
	TypeGrpcRemote = "GrpcRemote"
)

var (
	// ErrInvalidMessage is returned by Register for a message that cannot
	// be parsed, has the wrong version, or carries an invalid payload.
	ErrInvalidMessage = errors.New("rvps: invalid reference value message")
	// ErrUnsupportedProvenance is returned by Register for a provenance type
	// without an extractor here (only "sample" is implemented).
	ErrUnsupportedProvenance = errors.New("rvps: unsupported provenance type")
	// ErrUnsupportedConfig is returned for an RVPS configuration that
	// cannot be served: an unknown type, or a GrpcRemote configuration given
	// to New (a remote RVPS is reached with package rvpsgrpc).
	ErrUnsupportedConfig = errors.New("rvps: unsupported configuration")
	// ErrUnavailable is returned by a remote Provider when the RVPS cannot
	// be reached or does not answer in time.
	ErrUnavailable = errors.New("rvps: reference value provider unavailable")
	// ErrCorruptRecord is returned by Query when the stored record cannot be
	// parsed.
	ErrCorruptRecord = errors.New("rvps: corrupt reference value record")
)

// Config is the [attestation_service.rvps_config] section of the KBS
// configuration (also the "rvps_config" member of the standalone AS JSON).
type Config struct {
	// Type is "BuiltIn" (the default when empty) or "GrpcRemote".
	Type string `toml:"type" json:"type"`
	// Address of a remote RVPS (GrpcRemote only): host:port, http://host:port
	// or https://host:port; DefaultRemoteAddress when empty.
	Address string `toml:"address" json:"address"`
	// StorageType optionally overrides the storage backend type for the
	// RVPS; it is resolved by the caller that opens the store.
	StorageType string `toml:"storage_type" json:"storage_type"`
	// Extractors configures extractors (upstream: swid_extractor). Accepted
	// for configuration compatibility; the sample extractor needs none.
	Extractors map[string]any `toml:"extractors" json:"extractors"`
}

// DefaultRemoteAddress is upstream's default address of a GrpcRemote RVPS.
const DefaultRemoteAddress = "127.0.0.1:50003"

// Remote reports whether c names a remote (gRPC) RVPS.
func (c Config) Remote() bool { return c.Type == TypeGrpcRemote }

// Validate reports whether c describes an RVPS this implementation serves.
func (c Config) Validate() error {
	switch c.Type {
	case "", TypeBuiltIn:
		return nil
	case TypeGrpcRemote:
		if c.StorageType != "" {
			return fmt.Errorf("%w: rvps_config storage_type %q has no effect on a GrpcRemote RVPS (its storage is configured in the rvps service); remove it",
				ErrUnsupportedConfig, c.StorageType)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown rvps_config type %q (want %q or %q)", ErrUnsupportedConfig, c.Type, TypeBuiltIn, TypeGrpcRemote)
}

// Provider is what the Attestation Service and the KBS need of an RVPS:
// the built-in Service, or a remote one over gRPC (package rvpsgrpc).
type Provider interface {
	// Register verifies a reference-value message and stores the values
	// it carries.
	Register(ctx context.Context, message []byte) error
	// Query returns the value of a reference value id (compact JSON), or
	// found=false when there is none.
	Query(ctx context.Context, id string) (value json.RawMessage, found bool, err error)
}

var _ Provider = (*Service)(nil)

// Options configure a Service.
type Options struct {
	// Now returns the current time; time.Now when nil. It dates the
	// expiration of registered values.
	Now func() time.Time
	// Config is the RVPS configuration; the zero value is BuiltIn.
	Config Config
}

// Service is the built-in RVPS.
type Service struct {
	store storage.Store
	now   func() time.Time
}

// New returns a Service storing reference values in store.
func New(store storage.Store, opts Options) (*Service, error) {
	if store == nil {
		return nil, errors.New("rvps: nil store")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Config.Remote() {
		return nil, fmt.Errorf("%w: a GrpcRemote RVPS is not built in; dial it with package rvpsgrpc", ErrUnsupportedConfig)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now}, nil
}

// Message is a register request.
type Message struct {
	Version string `json:"version"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

// Record is a stored reference value, in upstream's field order.
type Record struct {
	Version    string          `json:"version"`
	Name       string          `json:"name"`
	Expiration string          `json:"expiration"`
	Value      json.RawMessage `json:"value"`
}

// DecodeMessage parses and checks a register message.
func DecodeMessage(message []byte) (Message, error) {
	if len(message) > MaxMessageBytes {
		return Message{}, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrInvalidMessage, len(message), MaxMessageBytes)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(message, &fields); err != nil || fields == nil {
		return Message{}, fmt.Errorf("%w: parse message: not a JSON object", ErrInvalidMessage)
	}
	m := Message{Version: MessageVersion}
	if raw, ok := fields["version"]; ok {
		if err := json.Unmarshal(raw, &m.Version); err != nil {
			return Message{}, fmt.Errorf("%w: parse message: version is not a string", ErrInvalidMessage)
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"payload", &m.Payload}, {"type", &m.Type}} {
		raw, ok := fields[f.name]
		if !ok {
			return Message{}, fmt.Errorf("%w: parse message: missing field `%s`", ErrInvalidMessage, f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return Message{}, fmt.Errorf("%w: parse message: field `%s` is not a string", ErrInvalidMessage, f.name)
		}
	}
	if m.Version != MessageVersion {
		return Message{}, fmt.Errorf("%w: version unmatched: need %s, given %s", ErrInvalidMessage, MessageVersion, m.Version)
	}
	return m, nil
}

// ExtractSample decodes a sample-provenance payload into name → value (each
// value compacted JSON).
func ExtractSample(payload string) (map[string]json.RawMessage, error) {
	if strings.ContainsAny(payload, "\r\n") {
		return nil, fmt.Errorf("%w: base64 decode: invalid character", ErrInvalidMessage)
	}
	doc, err := base64.StdEncoding.Strict().DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: base64 decode: %v", ErrInvalidMessage, err)
	}
	var rvs map[string]json.RawMessage
	if err := json.Unmarshal(doc, &rvs); err != nil || rvs == nil {
		return nil, fmt.Errorf("%w: deserialize sample provenance: not a JSON object", ErrInvalidMessage)
	}
	for name, v := range rvs {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("%w: value of %q: %v", ErrInvalidMessage, name, err)
		}
		rvs[name] = buf.Bytes()
	}
	return rvs, nil
}

// Register verifies message, extracts its reference values and stores
// them, overwriting earlier values of the same names.
func (s *Service) Register(ctx context.Context, message []byte) error {
	m, err := DecodeMessage(message)
	if err != nil {
		return err
	}
	if m.Type != "sample" {
		return fmt.Errorf("%w: could not find extractor for %s", ErrUnsupportedProvenance, m.Type)
	}
	rvs, err := ExtractSample(m.Payload)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(rvs))
	for name := range rvs {
		if err := storage.ValidateKey(storage.NamespaceReferenceValue, name); err != nil {
			return fmt.Errorf("%w: reference value name %q: %w", ErrInvalidMessage, name, err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	expiration := expiry(s.now()).Format(expirationLayout)
	for _, name := range names {
		rec, err := json.Marshal(Record{Version: MessageVersion, Name: name, Expiration: expiration, Value: rvs[name]})
		if err != nil {
			return fmt.Errorf("rvps: encoding record %q: %w", name, err)
		}
		if _, err := s.store.Set(ctx, storage.NamespaceReferenceValue, name, rec, true); err != nil {
			return fmt.Errorf("rvps: storing reference value %q: %w", name, err)
		}
	}
	return nil
}

// Query returns the value of the reference value id, or found=false when
// there is none.
func (s *Service) Query(ctx context.Context, id string) (json.RawMessage, bool, error) {
	if storage.ValidateKey(storage.NamespaceReferenceValue, id) != nil {
		return nil, false, nil
	}
	raw, err := s.store.Get(ctx, storage.NamespaceReferenceValue, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("rvps: reading reference value %q: %w", id, err)
	}
	rec, err := DecodeRecord(raw)
	if err != nil {
		return nil, false, fmt.Errorf("rvps: reference value %q: %w", id, err)
	}
	return rec.Value, true, nil
}

// DecodeRecord parses a stored record as upstream does: name, expiration
// (in "%Y-%m-%dT%H:%M:%SZ") and value are required, version defaults to
// "0.1.0". The returned value is compacted.
func DecodeRecord(raw []byte) (Record, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Record{}, fmt.Errorf("%w: not a JSON object", ErrCorruptRecord)
	}
	rec := Record{Version: MessageVersion}
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{{"version", &rec.Version, false}, {"name", &rec.Name, true}, {"expiration", &rec.Expiration, true}} {
		v, ok := fields[f.name]
		if !ok {
			if f.required {
				return Record{}, fmt.Errorf("%w: missing field `%s`", ErrCorruptRecord, f.name)
			}
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return Record{}, fmt.Errorf("%w: field `%s` is not a string", ErrCorruptRecord, f.name)
		}
	}
	if _, err := time.Parse(expirationLayout, rec.Expiration); err != nil {
		return Record{}, fmt.Errorf("%w: expiration %q: %v", ErrCorruptRecord, rec.Expiration, err)
	}
	v, ok := fields["value"]
	if !ok {
		return Record{}, fmt.Errorf("%w: missing field `value`", ErrCorruptRecord)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return Record{}, fmt.Errorf("%w: value: %v", ErrCorruptRecord, err)
	}
	rec.Value = buf.Bytes()
	return rec, nil
}

// expiry returns now, truncated to the second and in UTC, plus twelve
// calendar months, clamping the day to the end of the month as chrono's
// checked_add_months does (29 Feb + 12 months = 28 Feb).
func expiry(now time.Time) time.Time {
	now = now.UTC().Truncate(time.Second)
	y, m, d := now.Date()
	total := int(m) - 1 + monthsBeforeExpiration
	y += total / 12
	m = time.Month(total%12 + 1)
	if last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day(); d > last {
		d = last
	}
	return time.Date(y, m, d, now.Hour(), now.Minute(), now.Second(), 0, time.UTC)
}
