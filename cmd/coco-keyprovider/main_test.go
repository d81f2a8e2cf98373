package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containers/ocicrypt/config"
	keyproviderconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	"github.com/containers/ocicrypt/keywrap/keyprovider"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/imagecrypt"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

// upstreamGRPCConf is image-rs's ocicrypt keyprovider config for a gRPC
// coco_keyprovider.
var upstreamGRPCConf = testvectors.Path("guest-components/image-rs/test_data/ocicrypt_keyprovider_grpc.conf")

// startServer runs coco-keyprovider on a free port and returns its address.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	go func() {
		errc <- run(ctx, append([]string{"--socket", "127.0.0.1:0"}, args...), w, func(a string) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(logs.String(), "BEGIN") {
			t.Error("key material in the logs")
		}
	})
	select {
	case a := <-addrc:
		return a
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// grpcWrap wraps through the server with Go ocicrypt's own keyprovider
// client, as skopeo does, addressing it like the upstream config file.
func grpcWrap(t *testing.T, addr, params string) imagecrypt.WrapFunc {
	raw, err := os.ReadFile(upstreamGRPCConf)
	if err != nil {
		t.Fatal(err)
	}
	var conf keyproviderconfig.OcicryptConfig
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	attrs := conf.KeyProviderConfig[imagecrypt.ProviderName]
	if attrs.Grpc != "127.0.0.1:50000" {
		t.Fatalf("upstream vector grpc = %q", attrs.Grpc)
	}
	attrs.Grpc = addr
	kw := keyprovider.NewKeyWrapper(imagecrypt.ProviderName, attrs)
	ec, err := config.EncryptWithKeyProvider([][]byte{[]byte("attestation-agent:" + params)})
	if err != nil {
		t.Fatal(err)
	}
	return func(opts []byte) ([]byte, error) { return kw.WrapKeys(ec.EncryptConfig, opts) }
}

func encryptDecrypt(t *testing.T, wrap imagecrypt.WrapFunc, keys imagecrypt.KeySource) (packet map[string]any) {
	t.Helper()
	plain := bytes.Repeat([]byte("layer bytes "), 10000)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(plain), Size: int64(len(plain))}
	r, fin, err := imagecrypt.EncryptLayer(wrap, desc, bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := io.ReadAll(r)
	ann, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	edesc := imagecrypt.EncryptedDescriptor(desc, digest.FromBytes(enc), int64(len(enc)), ann)
	raw, err := base64.StdEncoding.DecodeString(ann[imagecrypt.AnnotationKeys])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &packet); err != nil {
		t.Fatal(err)
	}
	rc, err := imagecrypt.NewLayerDecrypter(keys).Decrypt(context.Background(), edesc, bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("decrypt: %v (equal %v)", err, bytes.Equal(got, plain))
	}
	return packet
}

func kbsKeys(k *fakekbs.KBS) imagecrypt.KeySource {
	return imagecrypt.KeySourceFunc(func(_ context.Context, uri string) ([]byte, error) {
		u, err := client.ParseResourceURI(uri)
		if err != nil {
			return nil, err
		}
		b, ok := k.Resource(strings.Join(u.Path, "/"))
		if !ok {
			return nil, fmt.Errorf("%s: %w", uri, client.ErrResourceNotFound)
		}
		return bytes.Clone(b), nil // the decrypter clears what it gets
	})
}

func TestWrapKeyRegistersKEK(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{AdminToken: "admin-secret"})
	ts := httptest.NewServer(kbs)
	defer ts.Close()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("admin-secret\n"), 0o600)
	addr := startServer(t, "--kbs", ts.URL, "--admin-token-file", tokFile)

	cases := []struct {
		name, params, kid, wrapType string
	}{
		{"keyid gcm", "keyid=kbs:///default/image_key/a::algorithm=A256GCM", "kbs:///default/image_key/a", "A256GCM"},
		{"algorithm honoured", "keyid=kbs:///default/image_key/b::algorithm=A256CTR", "kbs:///default/image_key/b", "A256CTR"},
		{"bare path", "keyid=/default/image_key/c", "kbs:///default/image_key/c", "A256GCM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := encryptDecrypt(t, grpcWrap(t, addr, tc.params), kbsKeys(kbs))
			if p["kid"] != tc.kid || p["wrap_type"] != tc.wrapType {
				t.Fatalf("packet %v", p)
			}
			u, _ := client.ParseResourceURI(tc.kid)
			if k, ok := kbs.Resource(strings.Join(u.Path, "/")); !ok || len(k) != 32 {
				t.Fatalf("KEK not registered at %s", tc.kid)
			}
		})
	}
	if kbs.Count("POST", "/kbs/v0/resource/") != 3 {
		t.Fatalf("%d registrations", kbs.Count("POST", "/kbs/v0/resource/"))
	}
}

func TestWrapKeyKeypathAndDefaultKID(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x42}, 32)
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, key, 0o600)
	addr := startServer(t)

	fixed := imagecrypt.KeySourceFunc(func(context.Context, string) ([]byte, error) { return bytes.Clone(key), nil })
	p := encryptDecrypt(t, grpcWrap(t, addr, "keypath="+keyFile), fixed)
	kid, _ := p["kid"].(string)
	if !strings.HasPrefix(kid, "kbs:///default/image-kek/") {
		t.Fatalf("kid %q", kid)
	}
	// The sample key is upstream's hard-coded KEK.
	sample := imagecrypt.KeySourceFunc(func(_ context.Context, uri string) ([]byte, error) {
		if uri != "kbs:///default/test-key/1" {
			return nil, client.ErrResourceNotFound
		}
		return []byte{217, 155, 119, 5, 176, 186, 122, 22, 130, 149, 179, 163, 54, 114, 112, 176, 221, 155, 55, 27,
			245, 20, 202, 139, 155, 167, 240, 163, 55, 17, 218, 234}, nil
	})
	encryptDecrypt(t, grpcWrap(t, addr, "sample=true"), sample)
}

func TestWrapKeyErrors(t *testing.T) {
	kbs := fakekbs.New(fakekbs.Options{AdminToken: "admin-secret"})
	ts := httptest.NewServer(kbs)
	defer ts.Close()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("wrong"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("short"), 0o600)
	addr := startServer(t, "--kbs", ts.URL, "--admin-token-file", tokFile)
	cases := []struct{ name, params, want string }{
		{"bad algorithm", "algorithm=A128GCM", "InvalidArgument"},
		{"short key file", "keypath=" + short, "InvalidArgument"},
		{"bad keyid", "keyid=https://x/a/b/c", "InvalidArgument"},
		{"admin refused", "keyid=kbs:///default/k/1", "storing the resource"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grpcWrap(t, addr, tc.params)([]byte(`{"symkey":"AA=="}`))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"no socket", nil},
		{"bad socket", []string{"--socket", "nope"}},
		{"both credentials", []string{"--socket", "127.0.0.1:0", "--admin-token-file", "a", "--auth-private-key", "b"}},
		{"credential without kbs", []string{"--socket", "127.0.0.1:0", "--admin-token-file", os.Args[0]}},
		{"bad private key", []string{"--socket", "127.0.0.1:0", "--kbs", "http://127.0.0.1:1", "--auth-private-key", os.Args[0]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(context.Background(), tc.args, io.Discard, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
