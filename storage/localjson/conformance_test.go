package localjson

import (
	"testing"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{FileDirPath: dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, t.TempDir())
	})
}

// TestConformanceTwoStores runs the suite with every call alternating
// between two Stores opened on one directory.
func TestConformanceTwoStores(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		dir := t.TempDir()
		return storagetest.RoundRobin(open(t, dir), open(t, dir))
	})
}
