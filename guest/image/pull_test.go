//go:build containers_image_openpgp

package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeKBS serves resources from a map, as the hub does after attestation.
type fakeKBS map[string][]byte

func (f fakeKBS) GetResource(_ context.Context, uri string) ([]byte, error) {
	if b, ok := f[uri]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no resource %s", uri)
}

// tamperHandler serves the registry, replacing the body of one blob.
type tamperHandler struct {
	next http.Handler
	mu   sync.Mutex
	blob string // digest whose content is corrupted
}

func (h *tamperHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	blob := h.blob
	h.mu.Unlock()
	if blob != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+blob) {
		rec := httptest.NewRecorder()
		h.next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 0 {
			b[len(b)/2] ^= 0xff
		}
		w.WriteHeader(rec.Code)
		w.Write(b)
		return
	}
	h.next.ServeHTTP(w, r)
}

func layerFromTar(t *testing.T, ents []tarEntry) v1.Layer {
	t.Helper()
	b := mkTar(t, ents)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		layerFromTar(t, []tarEntry{{name: "etc/", typ: tar.TypeDir, mode: 0o755}, {name: "etc/os-release", typ: tar.TypeReg, body: "ID=test"}, {name: "old", typ: tar.TypeReg, body: "x"}}),
		layerFromTar(t, []tarEntry{{name: "bin/app", typ: tar.TypeReg, body: "app", mode: 0o755}, {name: ".wh.old", typ: tar.TypeReg}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cosignSign attaches a cosign signature (sha256-<hex>.sig tag) of digest
// for repo, made with key, as `cosign sign --key` does.
func cosignSign(t *testing.T, repo name.Repository, d v1.Hash, key *ecdsa.PrivateKey) {
	t.Helper()
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo.Name(), d.String())
	sum := sha256.Sum256([]byte(payload))
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	l := static.NewLayer([]byte(payload), "application/vnd.dev.cosign.simplesigning.v1+json")
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: l, Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("sha256-"+d.Hex+".sig"), img); err != nil {
		t.Fatal(err)
	}
}

func pubPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

const sigstorePolicy = `{"default":[{"type":"reject"}],"transports":{"docker":{"%s":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1","signedIdentity":{"type":"matchRepository"}}]}}}`

func TestPull(t *testing.T) {
	th := &tamperHandler{next: registry.New(registry.Logger(nilLogger()))}
	srv := httptest.NewServer(th)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrong, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	img := testImage(t)
	dg, _ := img.Digest()

	push := func(repoName string, im v1.Image) name.Repository {
		repo, err := name.NewRepository(host + "/" + repoName)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(repo.Tag("v1"), im); err != nil {
			t.Fatal(err)
		}
		return repo
	}
	signed := push("signed", img)
	cosignSign(t, signed, dg, key)
	push("unsigned", img)
	wrongKey := push("wrongkey", img)
	cosignSign(t, wrongKey, dg, wrong)
	// tampered manifest: the tag now points at another manifest; the
	// signature covers the original digest only.
	tm := push("tampered-manifest", img)
	cosignSign(t, tm, dg, key)
	other, _ := mutate.Config(img, v1.Config{Env: []string{"EVIL=1"}})
	push("tampered-manifest", other)
	// tampered layer: signed, but the registry corrupts a blob.
	tl := push("tampered-layer", img)
	cosignSign(t, tl, dg, key)
	ls, _ := img.Layers()
	ld, _ := ls[1].Digest()
	// wrong diff_id: the config lies about the uncompressed content.
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: zeros}
	bad, _ := mutate.ConfigFile(img, cf)
	badDg, _ := bad.Digest()
	bd := push("bad-diffid", bad)
	cosignSign(t, bd, badDg, key)
	// encrypted layer media type.
	enc, _ := mutate.Append(empty.Image, mutate.Addendum{Layer: ls[0], MediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"})
	encDg, _ := enc.Digest()
	er := push("encrypted", enc)
	cosignSign(t, er, encDg, key)

	kbs := fakeKBS{"kbs:///default/cosign-key/1": pubPEM(t, key)}
	policyFor := func(scope string) string { return fmt.Sprintf(sigstorePolicy, scope) }

	tests := []struct {
		name    string
		ref     string
		policy  string
		tamper  string
		wantErr error
	}{
		{name: "signed", ref: signed.Tag("v1").String(), policy: policyFor(host)},
		{name: "signed by digest", ref: signed.Digest(dg.String()).String(), policy: policyFor(host + "/signed")},
		{name: "unsigned", ref: host + "/unsigned:v1", policy: policyFor(host), wantErr: ErrNotPermitted},
		{name: "wrong key", ref: wrongKey.Tag("v1").String(), policy: policyFor(host), wantErr: ErrNotPermitted},
		{name: "tampered manifest", ref: tm.Tag("v1").String(), policy: policyFor(host), wantErr: ErrNotPermitted},
		{name: "tampered layer", ref: tl.Tag("v1").String(), policy: policyFor(host), tamper: ld.String(), wantErr: ErrDigestMismatch},
		{name: "wrong diff_id", ref: bd.Tag("v1").String(), policy: policyFor(host), wantErr: ErrDigestMismatch},
		{name: "reject by default", ref: signed.Tag("v1").String(), policy: policyFor("other.io"), wantErr: ErrNotPermitted},
		{name: "insecureAcceptAnything", ref: host + "/unsigned:v1", policy: `{"default":[{"type":"insecureAcceptAnything"}],"transports":{}}`},
		{name: "no policy", ref: host + "/unsigned:v1"},
		{name: "encrypted without decrypter", ref: er.Tag("v1").String(), policy: policyFor(host), wantErr: ErrUnsupportedMediaType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th.mu.Lock()
			th.blob = tc.tamper
			th.mu.Unlock()
			work := t.TempDir()
			p, err := NewPuller(&Config{WorkDir: work, ImageSecurityPolicy: tc.policy, MaxConcurrentLayerDownloads: 2}, Options{Resources: kbs})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			bundle := filepath.Join(t.TempDir(), "bundle")
			got, err := p.Pull(context.Background(), tc.ref, bundle)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if _, serr := os.Stat(bundle); !os.IsNotExist(serr) {
					t.Fatalf("bundle left behind after failure: %v", serr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, "sha256:") {
				t.Fatalf("digest %q", got)
			}
			if b, _ := os.ReadFile(filepath.Join(bundle, "rootfs/etc/os-release")); string(b) != "ID=test" {
				t.Fatalf("rootfs not unpacked: %q", b)
			}
			if _, err := os.Lstat(filepath.Join(bundle, "rootfs/old")); !os.IsNotExist(err) {
				t.Fatal("whiteout not applied")
			}
		})
	}
}

// TestPullCacheDoesNotSkipPolicy pulls a signed image, then the same
// content under a repository the policy rejects: the cached blobs must
// not let it through.
func TestPullCacheDoesNotSkipPolicy(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	img := testImage(t)
	dg, _ := img.Digest()
	good, _ := name.NewRepository(host + "/good")
	remote.Write(good.Tag("v1"), img)
	cosignSign(t, good, dg, key)
	evil, _ := name.NewTag(host + "/evil:v1")
	remote.Write(evil, img)

	work := t.TempDir()
	policy := fmt.Sprintf(sigstorePolicy, host+"/good")
	p, err := NewPuller(&Config{WorkDir: work, ImageSecurityPolicy: policy}, Options{Resources: fakeKBS{"kbs:///default/cosign-key/1": pubPEM(t, key)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Pull(context.Background(), host+"/good:v1", filepath.Join(t.TempDir(), "b1")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pull(context.Background(), host+"/evil:v1", filepath.Join(t.TempDir(), "b2")); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("cached content bypassed the policy: %v", err)
	}
}

func TestPullBundleChecks(t *testing.T) {
	p, err := NewPuller(&Config{WorkDir: t.TempDir()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pull(context.Background(), "x.io/a:b", "relative/bundle"); !errors.Is(err, ErrBundle) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewPuller(&Config{WorkDir: "rel"}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
}

func TestBoundedManifest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.Write(bytes.Repeat([]byte(" "), DefaultMaxManifestBytes+10))
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	p, _ := NewPuller(&Config{WorkDir: t.TempDir()}, Options{})
	_, err := p.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/big:v1", filepath.Join(t.TempDir(), "b"))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// TestDecompressorForMediaTypes pins the media type → compression map: an
// OCI "tar+gzip" layer is gzip (ggcr's types.OCILayer), "tar" is not
// compressed. (An e2e pull of an OCI-typed encrypted image caught these
// swapped once.)
func TestDecompressorForMediaTypes(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("payload"))
	zw.Close()
	tests := []struct {
		mt      types.MediaType
		in      []byte
		wantErr bool
	}{
		{types.OCILayer, gz.Bytes(), false},
		{types.DockerLayer, gz.Bytes(), false},
		{types.OCIRestrictedLayer, gz.Bytes(), false},
		{types.OCIUncompressedLayer, []byte("payload"), false},
		{"application/vnd.docker.image.rootfs.diff.tar", []byte("payload"), false},
		{"application/vnd.oci.image.layer.v1.tar+bzip2", nil, true},
	}
	for _, tc := range tests {
		t.Run(string(tc.mt), func(t *testing.T) {
			d, err := decompressorFor(tc.mt)
			if tc.wantErr {
				if err == nil {
					t.Fatal("unsupported media type accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rc, err := d(bytes.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if err != nil || string(got) != "payload" {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}
