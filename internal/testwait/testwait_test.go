package testwait

import (
	"sync/atomic"
	"testing"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	Until(t, "three polls", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("polled %d times, want 3", n.Load())
	}
}
