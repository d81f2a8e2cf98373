//go:build containers_image_openpgp

package cdh

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/aa"
)

type recordingAA struct {
	mu     sync.Mutex
	events []string
}

func (r *recordingAA) ExtendRuntimeMeasurement(_ context.Context, domain, op, content string) (aa.MeasurementResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, domain+"|"+op+"|"+content)
	return aa.MeasurementOK, nil
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, body := range files {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func cosignAttach(t *testing.T, repo name.Repository, d v1.Hash, key *ecdsa.PrivateKey) {
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo.Name(), d)
	sum := sha256.Sum256([]byte(payload))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, sum[:])
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer([]byte(payload), "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("sha256-"+d.Hex+".sig"), img); err != nil {
		t.Fatal(err)
	}
}

func TestPullImageOverTTRPC(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, map[string]string{"etc/hostname": "tee"}))
	if err != nil {
		t.Fatal(err)
	}
	dg, _ := img.Digest()
	signed, _ := name.NewRepository(host + "/signed")
	unsigned, _ := name.NewRepository(host + "/unsigned")
	for _, r := range []name.Repository{signed, unsigned} {
		if err := remote.Write(r.Tag("v1"), img); err != nil {
			t.Fatal(err)
		}
	}
	cosignAttach(t, signed, dg, key)

	env := newKBS(t, fakekbs.Options{})
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	env.kbs.SetResource("default/cosign-key/1", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	env.kbs.SetResource("default/security-policy/test", []byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"`+host+`":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1"}]}}}`))
	cfg := ccConfig(env.srv.URL)
	cfg.Image = map[string]any{"work_dir": t.TempDir(), "image_security_policy_uri": "kbs:///default/security-policy/test"}
	hub := newHub(t, env, cfg, nil)
	aa := &recordingAA{}
	is, err := NewImageService(hub, ImageOptions{AA: aa})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	ic := serveImage(t, is)

	tests := []struct {
		name  string
		ref   string
		want  codes.Code
		event bool
	}{
		{"signed", signed.Tag("v1").String(), codes.OK, true},
		{"unsigned", unsigned.Tag("v1").String(), codes.PermissionDenied, false},
		{"empty reference", "", codes.InvalidArgument, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aa.mu.Lock()
			aa.events = nil
			aa.mu.Unlock()
			bundle := filepath.Join(t.TempDir(), "bundle")
			d, err := ic.PullImage(context.Background(), tt.ref, bundle)
			if s, _ := status.FromError(err); s.Code() != tt.want {
				t.Fatalf("PullImage: %v, want %v", err, tt.want)
			}
			aa.mu.Lock()
			n := len(aa.events)
			aa.mu.Unlock()
			if (n == 1) != tt.event {
				t.Fatalf("events = %d", n)
			}
			if tt.want != codes.OK {
				if _, err := os.Stat(bundle); !os.IsNotExist(err) {
					t.Fatalf("bundle left behind: %v", err)
				}
				return
			}
			if d != dg.String() {
				t.Fatalf("digest %s, want %s", d, dg)
			}
			want := PullImageDomain + "|" + PullImageOperation + `|{"image":"` + tt.ref + `", "digest":"` + dg.String() + `"}`
			if aa.events[0] != want {
				t.Fatalf("event %q, want %q", aa.events[0], want)
			}
			if b, _ := os.ReadFile(filepath.Join(bundle, "rootfs/etc/hostname")); string(b) != "tee" {
				t.Fatalf("rootfs: %q", b)
			}
		})
	}
}

func serveImage(t *testing.T, is *ImageService) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "cdhimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "unix://" + filepath.Join(dir, "cdh.sock")
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	is.Register(srv)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	c, err := NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
