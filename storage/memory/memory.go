// Package memory is the in-memory storage backend (upstream "Memory"), the
// default when no storage_type is configured.
//
// Invariants: values are copied on the way in and on the way out, so a
// caller can never alias stored bytes; all operations on one Store are
// serialized by a read-write mutex, which makes insert-if-absent atomic.
// Nothing survives Close or the process, and two Stores never share data.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/go-trustee/go-trustee/storage"
)

// Store is an in-memory storage.Store.
type Store struct {
	mu   sync.RWMutex
	data map[string]map[string][]byte // namespace -> key -> value
}

var _ storage.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{data: make(map[string]map[string][]byte)}
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return false, err
	}
	if len(value) > storage.MaxValueSize {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.data[ns]
	if keys == nil {
		keys = make(map[string][]byte)
		s.data[ns] = keys
	}
	if _, ok := keys[key]; ok && !overwrite {
		return false, nil
	}
	keys[key] = append(make([]byte, 0, len(value)), value...)
	return true, nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[ns][key]
	if !ok {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	return append(make([]byte, 0, len(v)), v...), nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, ns string) ([]string, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	keys := make([]string, 0, len(s.data[ns]))
	for k := range s.data[ns] {
		keys = append(keys, k)
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, ns, key string) error {
	if err := storage.ValidateKey(ns, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.data[ns]
	if _, ok := keys[key]; !ok {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	delete(keys, key)
	if len(keys) == 0 {
		delete(s.data, ns)
	}
	return nil
}

// Close implements storage.Store. The data stays readable after Close; a
// memory store holds no other resource.
func (s *Store) Close() error { return nil }
