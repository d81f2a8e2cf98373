package resourcepolicy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/go-trustee/go-trustee/storage"
)

// mapStore is a test-only storage.Store keeping the package contract.
type mapStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	gets int
	fail error // returned by every call when set
}

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) Set(_ context.Context, ns, key string, v []byte, overwrite bool) (bool, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	k := ns + "\x00" + key
	if _, ok := s.m[k]; ok && !overwrite {
		return false, nil
	}
	s.m[k] = slices.Clone(v)
	return true, nil
}

func (s *mapStore) Get(_ context.Context, ns, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[ns+"\x00"+key]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", ns, key, storage.ErrNotFound)
	}
	return slices.Clone(v), nil
}

func (s *mapStore) List(_ context.Context, ns string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var keys []string
	for k := range s.m {
		if n, key, _ := strings.Cut(k, "\x00"); n == ns {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *mapStore) Delete(_ context.Context, ns, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ns+"\x00"+key]; !ok {
		return storage.ErrNotFound
	}
	delete(s.m, ns+"\x00"+key)
	return nil
}

func (s *mapStore) Close() error { return nil }
