//go:build !race

// Heap measurements are meaningless under the race detector (its shadow
// memory and allocation changes swamp what is measured), so this file is
// left out of -race builds; scripts/test.sh runs it in its own pass
// without -race.

package imagecrypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"io"
	"runtime"
	"testing"
)

// TestPeakMemoryIndependentOfSize decrypts a 10 MiB and a 500 MiB layer,
// both generated as streams (encrypted through a pipe while decrypted),
// and compares the peak heap in use: streaming means the peak must not
// grow with the layer. Skipped with -short.
func TestPeakMemoryIndependentOfSize(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 510 MiB")
	}
	peak := func(size int64) uint64 {
		kek := testKEK(t, WrapA256GCM)
		// First pass: encrypt to learn the annotations (HMAC) without
		// storing the ciphertext.
		r, fin := encryptedStream(t, kek, size)
		io.Copy(io.Discard, r)
		ann := fin()
		// Second pass: the same ciphertext again (same key and nonce via
		// the unwrapped options), decrypted while generated.
		desc := EncryptedDescriptor(plainDesc(), "", 0, ann)
		d := NewLayerDecrypter(mapKeys{testKID: kek.Key})
		opts, err := d.UnwrapOptions(context.Background(), desc)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			SymKey []byte `json:"symkey"`
			Opts   struct {
				Nonce []byte `json:"nonce"`
			} `json:"cipheroptions"`
		}
		json.Unmarshal(opts, &o)
		block, _ := aes.NewCipher(o.SymKey)
		src := &cipherReader{r: io.LimitReader(zeroReader{}, size), s: cipher.NewCTR(block, o.Opts.Nonce)}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rc, err := d.Decrypt(context.Background(), desc, src)
		if err != nil {
			t.Fatal(err)
		}
		var maxHeap uint64
		buf := make([]byte, 64<<10)
		var n int64
		for {
			k, err := rc.Read(buf)
			n += int64(k)
			if n%(1<<20) < int64(k) {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				maxHeap = max(maxHeap, ms.HeapInuse)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if n != size {
			t.Fatalf("%d bytes, want %d", n, size)
		}
		t.Logf("layer %d MiB: peak heap in use %d KiB (before %d KiB)", size>>20, maxHeap>>10, before.HeapInuse>>10)
		return maxHeap
	}
	small := peak(10 << 20)
	large := peak(500 << 20)
	// 50x the data may not cost more than 8 MiB more heap.
	if large > small+8<<20 {
		t.Fatalf("peak heap grew with the layer: %d KiB for 10 MiB, %d KiB for 500 MiB", small>>10, large>>10)
	}
}
