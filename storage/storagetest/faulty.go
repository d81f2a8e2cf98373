package storagetest

import (
	"context"
	"sync"

	"github.com/go-trustee/go-trustee/storage"
)

// Faulty wraps a Store for tests of code built on storage: it counts Get
// calls and injects a failure into every call (Fail) or into Get only
// (FailGet), so callers can prove they fail closed when the backend is
// down. The zero value is not usable; use NewFaulty.
type Faulty struct {
	storage.Store
	mu      sync.Mutex
	fail    error
	failGet error
	gets    int
}

// NewFaulty wraps s.
func NewFaulty(s storage.Store) *Faulty { return &Faulty{Store: s} }

// Fail makes every call return err (nil: stop failing).
func (f *Faulty) Fail(err error) { f.mu.Lock(); f.fail = err; f.mu.Unlock() }

// FailGet makes Get return err (nil: stop failing).
func (f *Faulty) FailGet(err error) { f.mu.Lock(); f.failGet = err; f.mu.Unlock() }

// Gets returns how many times Get was called.
func (f *Faulty) Gets() int { f.mu.Lock(); defer f.mu.Unlock(); return f.gets }

func (f *Faulty) errs(get bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if get {
		f.gets++
		if f.failGet != nil {
			return f.failGet
		}
	}
	return f.fail
}

// Set implements storage.Store.
func (f *Faulty) Set(ctx context.Context, ns, key string, v []byte, overwrite bool) (bool, error) {
	if err := f.errs(false); err != nil {
		return false, err
	}
	return f.Store.Set(ctx, ns, key, v, overwrite)
}

// Get implements storage.Store.
func (f *Faulty) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := f.errs(true); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, ns, key)
}

// List implements storage.Store.
func (f *Faulty) List(ctx context.Context, ns string) ([]string, error) {
	if err := f.errs(false); err != nil {
		return nil, err
	}
	return f.Store.List(ctx, ns)
}

// Delete implements storage.Store.
func (f *Faulty) Delete(ctx context.Context, ns, key string) error {
	if err := f.errs(false); err != nil {
		return err
	}
	return f.Store.Delete(ctx, ns, key)
}
