package memory

import (
	"context"
	"testing"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s := New()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestStoresAreIndependent(t *testing.T) {
	ctx := context.Background()
	a, b := New(), New()
	if _, err := a.Set(ctx, "ns", "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Set(ctx, "ns", "k", []byte("w"), false); err != nil || !ok {
		t.Fatalf("Set in a second store = %v, %v; want inserted", ok, err)
	}
}
