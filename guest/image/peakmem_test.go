//go:build containers_image_openpgp && !race

// Heap measurements are meaningless under the race detector (its shadow
// memory and allocation changes swamp what is measured), so this file is
// left out of -race builds; scripts/test.sh runs it in its own pass
// without -race.

package image

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestPullPeakMemoryIndependentOfLayerSize pulls an encrypted 10 MiB and
// an encrypted 500 MiB single-layer image (every stage — download to the
// blob cache, decrypt, untar — handles the full size: the layer is
// uncompressed) and compares the peak Go heap in use during each pull,
// registry included (it runs in this process and streams from disk).
// Streaming means the peak must not grow with the layer; the bound allows
// 32 MiB of noise (GC pacing, HTTP buffers). The 500 MiB case is skipped
// with -short.
func TestPullPeakMemoryIndependentOfLayerSize(t *testing.T) {
	sizes := []int64{10 << 20, 500 << 20}
	if testing.Short() {
		sizes = sizes[:1]
	}
	// The instrument first: an 8 MiB allocation held for a few samples
	// must show.
	var sink []byte
	base, peak, _ := peakHeapDuring(func() error {
		sink = make([]byte, 8<<20)
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	runtime.KeepAlive(sink)
	if peak < base+8<<20 {
		t.Fatalf("sampler missed an 8 MiB allocation: base %d KiB, peak %d KiB", base>>10, peak>>10)
	}
	reg, host := perfRegistry(t)
	peaks := map[int64]uint64{}
	for _, size := range sizes {
		_, enc, dec := perfImages(t, size)
		ref := fmt.Sprintf("%s/perf%d:enc", host, size>>20)
		reg.push(t, ref, enc)
		start := time.Now()
		work := t.TempDir()
		base, peak, err := peakHeapDuring(func() error { return pullOnce(work, ref, dec, size) })
		if err != nil {
			t.Fatalf("%d MiB: %v", size>>20, err)
		}
		peaks[size] = peak
		t.Logf("encrypted layer %3d MiB: peak heap in use %6d KiB (before the pull %6d KiB, delta %6d KiB), pull took %v",
			size>>20, peak>>10, base>>10, (peak-min(peak, base))>>10, time.Since(start).Round(time.Millisecond))
	}
	if len(sizes) < 2 {
		return
	}
	small, large := peaks[sizes[0]], peaks[sizes[1]]
	if large > small+32<<20 {
		t.Fatalf("peak heap grew with the layer: %d KiB for 10 MiB, %d KiB for 500 MiB", small>>10, large>>10)
	}
}
