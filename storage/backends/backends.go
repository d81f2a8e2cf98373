// Package backends opens the storage.Store selected by the [storage_backend]
// section of a KBS (or Attestation Service) configuration, with upstream's
// type names, aliases and per-backend parameters.
//
// Every Open returns a new, independent Store. For the file backends two
// Stores on one directory share the files, not memory, and coordinate
// through the file system exactly as two processes would; two Memory Stores
// share nothing.
package backends

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/localfs"
	"github.com/go-trustee/go-trustee/storage/localjson"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/postgres"
	"github.com/go-trustee/go-trustee/storage/redis"
)

// Canonical storage type names, as upstream spells them in kbs-config.toml.
const (
	TypeMemory    = "Memory"
	TypeLocalFs   = "LocalFs"
	TypeLocalJson = "LocalJson"
	TypePostgres  = "Postgres"
	TypeRedis     = "Redis"
)

// ErrUnknownType is returned for a storage type that is not one of the
// canonical names or their aliases.
var ErrUnknownType = errors.New("storage: unknown storage type")

// Config mirrors [storage_backend] of upstream's kbs-config.toml (and the
// "storage_backend" object of the standalone AS JSON configuration).
type Config struct {
	// StorageType is Memory (the default when empty), LocalFs, LocalJson,
	// Postgres or Redis; NormalizeType lists the accepted spellings.
	StorageType string `toml:"storage_type" json:"storage_type"`
	// Backends holds each backend's parameters; the ones of backends not
	// selected are ignored. Empty fields take upstream's defaults.
	Backends struct {
		LocalFs   localfs.Config   `toml:"local_fs" json:"local_fs"`
		LocalJson localjson.Config `toml:"local_json" json:"local_json"`
		Postgres  postgres.Config  `toml:"postgres" json:"postgres"`
		Redis     redis.Config     `toml:"redis" json:"redis"`
	} `toml:"backends" json:"backends"`
}

// DefaultConfig returns upstream's defaults: Memory, with every backend's
// default parameters filled in (decode a configuration over it).
func DefaultConfig() Config {
	var c Config
	c.StorageType = TypeMemory
	c.Backends.LocalFs = localfs.DefaultConfig()
	c.Backends.LocalJson = localjson.DefaultConfig()
	c.Backends.Postgres = postgres.DefaultConfig()
	c.Backends.Redis = redis.DefaultConfig()
	return c
}

// NormalizeType maps a storage type, case-insensitively, to its canonical
// name: "" and memory to Memory; localfs and local_fs to LocalFs; localjson
// and local_json to LocalJson; postgres and postgresql to Postgres; redis to
// Redis. Anything else is ErrUnknownType.
func NormalizeType(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "memory":
		return TypeMemory, nil
	case "localfs", "local_fs":
		return TypeLocalFs, nil
	case "localjson", "local_json":
		return TypeLocalJson, nil
	case "postgres", "postgresql":
		return TypePostgres, nil
	case "redis":
		return TypeRedis, nil
	default:
		return "", fmt.Errorf("%w: %q", ErrUnknownType, s)
	}
}

// Open opens the backend cfg.StorageType selects.
func Open(ctx context.Context, cfg Config) (storage.Store, error) {
	return OpenType(ctx, cfg.StorageType, cfg)
}

// OpenType opens the backend typ selects with cfg's parameters, as upstream
// does for session_storage_type and the AS/RVPS storage_type overrides.
// For Postgres and Redis the POSTGRES_URL and REDIS_URL environment
// variables, when set, override the configured connection.
func OpenType(ctx context.Context, typ string, cfg Config) (storage.Store, error) {
	t, err := NormalizeType(typ)
	if err != nil {
		return nil, err
	}
	var s storage.Store
	switch t {
	case TypeMemory:
		s = memory.New()
	case TypeLocalFs:
		s, err = localfs.Open(cfg.Backends.LocalFs, localfs.Options{})
	case TypeLocalJson:
		s, err = localjson.Open(cfg.Backends.LocalJson, localjson.Options{})
	case TypePostgres:
		s, err = postgres.Open(ctx, cfg.Backends.Postgres)
	case TypeRedis:
		s, err = redis.Open(ctx, cfg.Backends.Redis)
	}
	if err != nil {
		return nil, err // already names the backend
	}
	return s, nil
}
