//go:build containers_image_openpgp

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/go-trustee/go-trustee/imagecrypt"
)

// perfKEKURI is the KBS resource the in-test KeySource releases.
const perfKEKURI = "kbs:///default/image-kek/perf"

// genLayer is an uncompressed single-layer tar holding one regular file
// ("data") of size bytes, generated on the fly: a 64 KiB pseudo-random
// block repeated, so it is incompressible within any deflate window but
// costs no memory to produce. Digest and DiffID are the same hash.
type genLayer struct {
	size   int64 // of the file; a multiple of 512, so the tar has no padding
	block  []byte
	hdr    []byte
	digest v1.Hash
}

func newGenLayer(t testing.TB, size int64, seed uint64) *genLayer {
	t.Helper()
	if size%512 != 0 {
		t.Fatalf("layer size %d is not a multiple of 512", size)
	}
	g := &genLayer{size: size, block: make([]byte, 64<<10)}
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(g.block)
	var hb bytes.Buffer
	tw := tar.NewWriter(&hb)
	if err := tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	// No Close: the header block is complete; the trailer is added by open.
	g.hdr = hb.Bytes()
	h := sha256.New()
	if _, err := io.Copy(h, g.open()); err != nil {
		t.Fatal(err)
	}
	g.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return g
}

func (g *genLayer) open() io.Reader {
	return io.MultiReader(bytes.NewReader(g.hdr), &patternReader{block: g.block, left: g.size}, bytes.NewReader(make([]byte, 1024)))
}

func (g *genLayer) Digest() (v1.Hash, error)             { return g.digest, nil }
func (g *genLayer) DiffID() (v1.Hash, error)             { return g.digest, nil }
func (g *genLayer) Compressed() (io.ReadCloser, error)   { return io.NopCloser(g.open()), nil }
func (g *genLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(g.open()), nil }
func (g *genLayer) Size() (int64, error)                 { return int64(len(g.hdr)) + g.size + 1024, nil }
func (g *genLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

type patternReader struct {
	block []byte
	off   int
	left  int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && p.left > 0 {
		k := copy(b[n:min(len(b), n+int(min(p.left, int64(len(p.block)-p.off))))], p.block[p.off:])
		n += k
		p.off = (p.off + k) % len(p.block)
		p.left -= int64(k)
	}
	return n, nil
}

// diskRegistry is go-containerregistry's registry for manifests and small
// blobs, with layer blobs served from files in dir. ggcr's registry keeps
// blobs in memory and buffers a blob whole before answering a GET (even
// with its disk handler), which would put the layer on this process's
// heap; here GET and HEAD of a blob found in dir stream the file.
type diskRegistry struct {
	dir  string
	next http.Handler
}

func (d *diskRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if _, h, ok := strings.Cut(r.URL.Path, "/blobs/sha256:"); ok && len(h) == 64 && !strings.ContainsAny(h, "/.") {
			if f, err := os.Open(filepath.Join(d.dir, h)); err == nil {
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("Docker-Content-Digest", "sha256:"+h)
				http.ServeContent(w, r, "", st.ModTime(), f)
				return
			}
		}
	}
	d.next.ServeHTTP(w, r)
}

// perfRegistry starts a diskRegistry and returns its host.
func perfRegistry(t testing.TB) (*diskRegistry, string) {
	t.Helper()
	d := &diskRegistry{dir: t.TempDir(), next: registry.New(registry.Logger(nilLogger()))}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return d, strings.TrimPrefix(srv.URL, "http://")
}

// push stores img's layers as files of the registry, then writes the
// image: remote.Write finds the layers present (HEAD) and uploads only
// the config and the manifest.
func (d *diskRegistry) push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(d.dir, h.Hex))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(f, rc)
		rc.Close()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
}

// perfImages builds a single-layer image of size bytes (OCI, uncompressed
// layer) and its encryption under a fixed in-test KEK; the returned
// decrypter releases that KEK. The encrypted layer is spooled to disk.
func perfImages(t testing.TB, size int64) (plain, encrypted v1.Image, dec *imagecrypt.LayerDecrypter) {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	plain, err := mutate.AppendLayers(base, newGenLayer(t, size, uint64(size>>20)))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := imagecrypt.NewKEK(perfKEKURI, rand.NewChaCha8([32]byte{42}))
	if err != nil {
		t.Fatal(err)
	}
	encrypted, cleanup, err := imagecrypt.EncryptImage(plain, kek.Wrap, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	keys := imagecrypt.KeySourceFunc(func(_ context.Context, uri string) ([]byte, error) {
		if uri != perfKEKURI {
			return nil, fmt.Errorf("perf kbs: no resource %s", uri)
		}
		return bytes.Clone(kek.Key), nil
	})
	return plain, encrypted, imagecrypt.NewLayerDecrypter(keys)
}

// pullOnce pulls ref with a fresh puller whose blob cache is in the empty
// directory work into a bundle there, and checks the unpacked file's size.
func pullOnce(work, ref string, dec *imagecrypt.LayerDecrypter, want int64) error {
	opts := Options{}
	if dec != nil {
		opts.Decrypter = dec
	}
	p, err := NewPuller(&Config{WorkDir: work, MaxConcurrentLayerDownloads: 1}, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	bundle := filepath.Join(work, "bundle")
	if _, err := p.Pull(context.Background(), ref, bundle); err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(bundle, "rootfs", "data"))
	if err != nil {
		return err
	}
	if st.Size() != want {
		return fmt.Errorf("unpacked %d bytes, want %d", st.Size(), want)
	}
	return nil
}

// heapInUse is MemStats.HeapInuse read through runtime/metrics, which
// does not stop the world.
func heapInUse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// peakHeapDuring runs f while sampling the heap in use every 2 ms, after
// a GC; it returns the heap before f and the highest sample.
func peakHeapDuring(f func() error) (base, peak uint64, err error) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	runtime.GC()
	base = heapInUse(samples)
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: samples[0].Name}, {Name: samples[1].Name}}
		p := heapInUse(s)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				done <- max(p, heapInUse(s))
				return
			case <-tk.C:
				p = max(p, heapInUse(s))
			}
		}
	}()
	err = f()
	close(stop)
	return base, <-done, err
}

// BenchmarkPull pulls a 200 MiB single-layer image (uncompressed layer)
// from a local registry into a fresh bundle with a fresh blob cache, as
// is and encrypted; MB/s is of the layer.
//
//	GOFLAGS=-tags=containers_image_openpgp go test -run '^$' -bench BenchmarkPull -benchtime 3x ./guest/image
func BenchmarkPull(b *testing.B) {
	const size = 200 << 20
	reg, host := perfRegistry(b)
	plain, enc, dec := perfImages(b, size)
	reg.push(b, host+"/bench:plain", plain)
	reg.push(b, host+"/bench:enc", enc)
	for _, bc := range []struct {
		name string
		ref  string
		dec  *imagecrypt.LayerDecrypter
	}{
		{"plain", host + "/bench:plain", nil},
		{"encrypted", host + "/bench:enc", dec},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(size)
			for b.Loop() {
				work, err := os.MkdirTemp(dir, "work-")
				if err != nil {
					b.Fatal(err)
				}
				if err := pullOnce(work, bc.ref, bc.dec, size); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.RemoveAll(work); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
