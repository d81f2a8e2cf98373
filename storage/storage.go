// Package storage is the single key-value abstraction behind every piece of
// persistent KBS state: resources, policies, reference values and protocol
// sessions. Because sessions live here too, any number of KBS replicas that
// share one backend serve a client without sticky sessions.
//
// # Contract
//
// Every backend (Memory, LocalFs, LocalJson, PostgreSQL, Redis) implements
// Store with identical semantics, checked by the shared conformance suite in
// storagetest:
//
//   - Keys are scoped by a namespace. Namespaces and keys use the charset
//     [A-Za-z0-9._/-]; a namespace never contains "/". Anything else is
//     rejected with ErrInvalidKey before the backend is touched, so no key can
//     escape its namespace (no "..", no absolute paths).
//   - Get of a missing key returns an error that matches ErrNotFound.
//   - Set with overwrite=false is an atomic insert-if-absent: exactly one of
//     several concurrent callers (in this or another process sharing the
//     backend) gets inserted=true; the others get inserted=false and the
//     stored value is unchanged. Set with overwrite=true replaces the value
//     (or creates it) and always reports inserted=true, as upstream does.
//   - A write is atomic: a reader sees the old value or the new one, never a
//     mix. When Set or Delete returns nil, the change is durable (fsynced for
//     the file backends, committed for the database backends).
//   - Delete of a missing key returns ErrNotFound and changes nothing.
//   - List returns the keys of a namespace in lexical order; an empty or
//     unknown namespace gives an empty list.
//   - Values are opaque bytes, at most MaxValueSize long.
//
// Implementations are safe for concurrent use.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Namespaces used by the KBS, the Attestation Service and the RVPS. Their
// names are upstream Trustee's, so that existing data directories and
// operator-mounted volumes are read unchanged.
const (
	NamespaceKBS               = "kbs"                        // resource policy
	NamespaceRepository        = "repository"                 // resources
	NamespaceSession           = "kbs_protocol_session"       // RCAR sessions
	NamespaceAttestationPolicy = "attestation_service_policy" // AS Rego policies
	NamespaceReferenceValue    = "reference_value"            // RVPS records
)

// MaxValueSize bounds a stored value (64 MiB).
const MaxValueSize = limits.MaxStoredValueBytes

var (
	// ErrNotFound is returned by Get and Delete when the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrInvalidKey is returned for a namespace or key outside the allowed
	// charset, or an empty one.
	ErrInvalidKey = errors.New("storage: invalid namespace or key")
	// ErrValueTooLarge is returned by Set for a value over MaxValueSize.
	ErrValueTooLarge = errors.New("storage: value too large")
)

// Store is a namespaced key-value store. See the package documentation for
// the contract every implementation keeps.
type Store interface {
	// Set stores value under (ns, key). With overwrite=false it inserts only
	// if the key is absent and reports whether it did.
	Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (inserted bool, err error)
	// Get returns the value stored under (ns, key), or ErrNotFound.
	Get(ctx context.Context, ns, key string) ([]byte, error)
	// List returns the keys of ns in lexical order.
	List(ctx context.Context, ns string) ([]string, error)
	// Delete removes (ns, key), or returns ErrNotFound.
	Delete(ctx context.Context, ns, key string) error
	// Close releases the backend's resources.
	Close() error
}

// ValidateKey checks ns and key against the contract's charset.
func ValidateKey(ns, key string) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	if key == "" || !validChars(key) || key == "." || key == ".." ||
		strings.HasPrefix(key, "/") || strings.HasPrefix(key, "../") ||
		strings.HasSuffix(key, "/..") || strings.Contains(key, "/../") ||
		strings.HasPrefix(key, "./") || strings.Contains(key, "/./") || strings.HasSuffix(key, "/.") ||
		strings.Contains(key, "//") {
		return fmt.Errorf("%w: key %q", ErrInvalidKey, key)
	}
	return nil
}

// ValidateNamespace checks a namespace against the contract's charset.
func ValidateNamespace(ns string) error {
	if ns == "" || strings.Contains(ns, "/") || !validChars(ns) || ns == "." || ns == ".." {
		return fmt.Errorf("%w: namespace %q", ErrInvalidKey, ns)
	}
	return nil
}

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '/':
		default:
			return false
		}
	}
	return true
}
