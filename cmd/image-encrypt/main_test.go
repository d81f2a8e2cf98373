package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/imagecrypt"
)

func TestEncryptRegistryToRegistryAndLayout(t *testing.T) {
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	kbs := fakekbs.New(fakekbs.Options{AdminToken: "tok"})
	kts := httptest.NewServer(kbs)
	defer kts.Close()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte("tok"), 0o600)

	host := strings.TrimPrefix(reg.URL, "http://")
	src, err := random.Image(300<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	srcRef, _ := name.ParseReference(host+"/model:plain", name.Insecure)
	if err := remote.Write(srcRef, src); err != nil {
		t.Fatal(err)
	}
	keys := imagecrypt.KeySourceFunc(func(_ context.Context, uri string) ([]byte, error) {
		u, err := client.ParseResourceURI(uri)
		if err != nil {
			return nil, err
		}
		b, ok := kbs.Resource(strings.Join(u.Path, "/"))
		if !ok {
			return nil, client.ErrResourceNotFound
		}
		return bytes.Clone(b), nil // the decrypter clears what it gets
	})
	base := []string{"--kbs", kts.URL, "--admin-token-file", tokFile, "--insecure-registry", "--tmp-dir", dir}
	cases := []struct{ name, kid, dst string }{
		{"registry", "kbs:///default/image_key/model", host + "/model:encrypted"},
		{"layout", "kbs:///default/image_key/model2", "oci:" + filepath.Join(dir, "layout") + ":enc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			if err := run(context.Background(), append(base, "--key-id", tc.kid, host+"/model:plain", tc.dst), &logs); err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			if strings.Contains(logs.String(), "tok\n") {
				t.Fatal("token logged")
			}
			enc, err := readImage(context.Background(), tc.dst, true)
			if err != nil {
				t.Fatal(err)
			}
			checkDecrypts(t, src, enc, keys, tc.kid)
		})
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "encrypted-layer-") {
			t.Fatalf("spool file %s left behind", e.Name())
		}
	}
}

func checkDecrypts(t *testing.T, src, enc v1.Image, keys imagecrypt.KeySource, kid string) {
	t.Helper()
	sm, _ := src.Manifest()
	em, err := enc.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(em.Layers) != len(sm.Layers) {
		t.Fatalf("%d layers, want %d", len(em.Layers), len(sm.Layers))
	}
	srcCfg, _ := src.RawConfigFile()
	encCfg, _ := enc.RawConfigFile()
	if !bytes.Equal(srcCfg, encCfg) {
		t.Fatal("config changed")
	}
	d := imagecrypt.NewLayerDecrypter(keys)
	for i, ld := range em.Layers {
		if !imagecrypt.IsEncrypted(string(ld.MediaType)) {
			t.Fatalf("layer %d media type %s", i, ld.MediaType)
		}
		if !strings.Contains(fmt.Sprint(ld.Annotations), "") || ld.Annotations[imagecrypt.AnnotationKeys] == "" {
			t.Fatalf("layer %d lacks the keys annotation", i)
		}
		l, err := enc.LayerByDigest(ld.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		desc := ocispec.Descriptor{MediaType: string(ld.MediaType), Digest: digest.Digest(ld.Digest.String()), Size: ld.Size, Annotations: ld.Annotations}
		pr, err := d.Decrypt(context.Background(), desc, rc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(pr)
		pr.Close()
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(got).String() != sm.Layers[i].Digest.String() {
			t.Fatalf("layer %d decrypts to %s, want %s", i, digest.FromBytes(got), sm.Layers[i].Digest)
		}
	}
	_ = kid
}

func TestProvision(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{})
	kts := httptest.NewServer(kbs)
	defer kts.Close()
	dir := t.TempDir()
	pub := filepath.Join(dir, "cosign.pub")
	os.WriteFile(pub, []byte("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"), 0o600)
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"r/x":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1"}]}}}`), 0o600)
	if err := run(context.Background(), []string{"provision", "--kbs", kts.URL, "--cosign-key", pub, "--policy", pol}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"default/cosign-key/1", "default/security-policy/test"} {
		if _, ok := kbs.Resource(p); !ok {
			t.Fatalf("%s not stored", p)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{}`), 0o600)
	if err := run(context.Background(), []string{"provision", "--kbs", kts.URL, "--policy", bad}, io.Discard); err == nil {
		t.Fatal("policy without default accepted")
	}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"no args", nil},
		{"bad key id", []string{"--kbs", "http://127.0.0.1:1", "--key-id", "nope", "a", "b"}},
		{"bad algorithm", []string{"--kbs", "http://127.0.0.1:1", "--key-id", "kbs:///a/b/c", "--algorithm", "X", "a", "b"}},
		{"no kbs", []string{"--key-id", "kbs:///a/b/c", "a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(context.Background(), tc.args, io.Discard); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
