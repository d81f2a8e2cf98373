package imagecrypt

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociMediaType maps Docker schema 2 media types to their OCI equivalents:
// an encrypted image is always written as an OCI manifest, as skopeo does.
func ociMediaType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerConfigJSON:
		return types.OCIConfigJSON
	}
	return mt
}

// EncryptImage encrypts every layer of src with wrap, spooling each
// encrypted layer to a temporary file in tmpDir ("" is os.TempDir) so no
// layer is held in memory. progress, when set, is called with the number
// of plaintext bytes consumed as they are read. The config blob is kept
// byte for byte (its diff_ids name the plaintext layers). Call cleanup
// once the returned image was written.
func EncryptImage(src v1.Image, wrap WrapFunc, tmpDir string, progress func(n int64)) (img v1.Image, cleanup func(), err error) {
	m, err := src.Manifest()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the manifest: %w", err)
	}
	rawCfg, err := src.RawConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the config: %w", err)
	}
	ei := &encryptedImage{config: rawCfg, layers: map[v1.Hash]*spooledLayer{}}
	cleanup = func() {
		for _, l := range ei.layers {
			os.Remove(l.path)
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	out := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Annotations: m.Annotations,
		Config: ocispec.Descriptor{MediaType: string(ociMediaType(m.Config.MediaType)),
			Digest: digest.Digest(m.Config.Digest.String()), Size: m.Config.Size},
	}
	out.SchemaVersion = 2
	for i, ld := range m.Layers {
		if IsEncrypted(string(ld.MediaType)) {
			return nil, nil, fmt.Errorf("layer %d (%s) is already encrypted", i, ld.Digest)
		}
		l, err := src.LayerByDigest(ld.Digest)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %d: %w", i, err)
		}
		desc := ocispec.Descriptor{MediaType: string(ociMediaType(ld.MediaType)), Digest: digest.Digest(ld.Digest.String()),
			Size: ld.Size, Annotations: ld.Annotations}
		sl, edesc, err := spoolEncrypted(l, desc, wrap, tmpDir, progress)
		if err != nil {
			return nil, nil, fmt.Errorf("encrypting layer %d (%s): %w", i, ld.Digest, err)
		}
		h, _ := v1.NewHash(edesc.Digest.String())
		ei.layers[h] = sl
		out.Layers = append(out.Layers, edesc)
	}
	ei.manifest, err = json.Marshal(out)
	if err != nil {
		return nil, nil, err
	}
	img, err = partial.CompressedToImage(ei)
	if err != nil {
		return nil, nil, err
	}
	return img, cleanup, nil
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 && p.fn != nil {
		p.fn(int64(n))
	}
	return n, err
}

func spoolEncrypted(l v1.Layer, desc ocispec.Descriptor, wrap WrapFunc, tmpDir string, progress func(int64)) (*spooledLayer, ocispec.Descriptor, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	defer rc.Close()
	// The plaintext is verified against its descriptor while read.
	vr := &verifyingReader{r: &progressReader{r: rc, fn: progress}, h: sha256.New(), want: desc.Digest}
	enc, fin, err := EncryptLayer(wrap, desc, vr)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	f, err := os.CreateTemp(tmpDir, "encrypted-layer-*")
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	sl := &spooledLayer{path: f.Name()}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), enc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = vr.check()
	}
	if err != nil {
		os.Remove(sl.path)
		return nil, ocispec.Descriptor{}, err
	}
	ann, err := fin()
	if err != nil {
		os.Remove(sl.path)
		return nil, ocispec.Descriptor{}, err
	}
	edesc := EncryptedDescriptor(desc, digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), n, ann)
	sl.digest, _ = v1.NewHash(edesc.Digest.String())
	sl.size = n
	sl.mediaType = types.MediaType(edesc.MediaType)
	return sl, edesc, nil
}

type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want digest.Digest
	eof  bool
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		v.eof = true
	}
	return n, err
}

func (v *verifyingReader) check() error {
	if !v.eof {
		return errors.New("source layer not read to the end")
	}
	if v.want.Algorithm() == digest.SHA256 && v.want != digest.NewDigestFromBytes(digest.SHA256, v.h.Sum(nil)) {
		return fmt.Errorf("source layer does not match its digest %s", v.want)
	}
	return nil
}

// encryptedImage is the partial.CompressedImageCore of an encrypted image.
type encryptedImage struct {
	manifest []byte
	config   []byte
	layers   map[v1.Hash]*spooledLayer
}

func (e *encryptedImage) RawConfigFile() ([]byte, error) { return e.config, nil }

func (e *encryptedImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (e *encryptedImage) RawManifest() ([]byte, error) { return e.manifest, nil }

func (e *encryptedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := e.layers[h]; ok {
		return l, nil
	}
	cfgHash := sha256.Sum256(e.config)
	if h.Algorithm == "sha256" && h.Hex == fmt.Sprintf("%x", cfgHash) {
		return &configBlob{b: e.config, h: h}, nil
	}
	return nil, fmt.Errorf("blob %s is not part of the encrypted image", h)
}

type spooledLayer struct {
	path      string
	digest    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (s *spooledLayer) Digest() (v1.Hash, error)            { return s.digest, nil }
func (s *spooledLayer) Compressed() (io.ReadCloser, error)  { return os.Open(s.path) }
func (s *spooledLayer) Size() (int64, error)                { return s.size, nil }
func (s *spooledLayer) MediaType() (types.MediaType, error) { return s.mediaType, nil }
func (c *configBlob) Digest() (v1.Hash, error)              { return c.h, nil }
func (c *configBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(c.b)), nil
}
func (c *configBlob) Size() (int64, error)                { return int64(len(c.b)), nil }
func (c *configBlob) MediaType() (types.MediaType, error) { return types.OCIConfigJSON, nil }

type configBlob struct {
	b []byte
	h v1.Hash
}
