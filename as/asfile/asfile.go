// Package asfile loads the standalone Attestation Service's configuration
// file (upstream's AS JSON, as restful-as and grpc-as read it) and opens the
// stores it names.
//
// # Invariants
//
//   - The file is bounded (limits.MaxConfigBytes) before it is parsed.
//   - Without a file the service runs on the defaults: policies and
//     reference values in memory, an ephemeral token signer.
//   - rvps_config.storage_type, when set for a built-in RVPS, opens a second
//     store of that type with the same storage_backend.backends parameters,
//     exactly as upstream; it never silently falls back to the main store.
package asfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/backends"
)

// fileConfig is the standalone AS JSON configuration.
type fileConfig struct {
	as.Config
	StorageBackend json.RawMessage `json:"storage_backend"`
}

// Load reads path ("" for the defaults) into the AS configuration and the
// storage_backend section.
func Load(path string) (as.Config, backends.Config, error) {
	sb := backends.DefaultConfig()
	if path == "" {
		return as.Config{}, sb, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return as.Config{}, sb, fmt.Errorf("failed to read AS config file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return as.Config{}, sb, fmt.Errorf("failed to read AS config file: %w", err)
	}
	if len(raw) > limits.MaxConfigBytes {
		return as.Config{}, sb, fmt.Errorf("AS config file %s exceeds %d bytes", path, limits.MaxConfigBytes)
	}
	var fc fileConfig
	if err := json.Unmarshal(raw, &fc); err != nil {
		return as.Config{}, sb, fmt.Errorf("failed to parse AS config file: %w", err)
	}
	if len(fc.StorageBackend) != 0 && string(fc.StorageBackend) != "null" {
		if err := json.Unmarshal(fc.StorageBackend, &sb); err != nil {
			return as.Config{}, sb, fmt.Errorf("failed to parse AS config file: storage_backend: %w", err)
		}
	}
	if err := fc.RVPS.Validate(); err != nil {
		return as.Config{}, sb, fmt.Errorf("AS config file: %w", err)
	}
	return fc.Config, sb, nil
}

// Stores are the stores of one AS.
type Stores struct {
	// Main holds policies (and, unless RVPS differs, reference values).
	Main storage.Store
	// RVPS holds the reference values of a built-in RVPS.
	RVPS    storage.Store
	closers []func() error
}

// Close closes every store Open opened.
func (s *Stores) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Open opens the stores of cfg on sb.
func Open(ctx context.Context, cfg as.Config, sb backends.Config) (*Stores, error) {
	main, err := backends.Open(ctx, sb)
	if err != nil {
		return nil, fmt.Errorf("opening storage backend: %w", err)
	}
	st := &Stores{Main: main, RVPS: main, closers: []func() error{main.Close}}
	if cfg.RVPS.Remote() || cfg.RVPS.StorageType == "" {
		return st, nil
	}
	a, err := backends.NormalizeType(cfg.RVPS.StorageType)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("rvps_config storage_type: %w", err)
	}
	b, _ := backends.NormalizeType(sb.StorageType)
	if a == b {
		return st, nil
	}
	rv, err := backends.OpenType(ctx, cfg.RVPS.StorageType, sb)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("opening reference value storage (rvps_config storage_type %s): %w", cfg.RVPS.StorageType, err)
	}
	st.RVPS = rv
	st.closers = append(st.closers, rv.Close)
	return st, nil
}
