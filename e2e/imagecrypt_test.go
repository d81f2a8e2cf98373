package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containers/ocicrypt/config"
	keyproviderconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	"github.com/containers/ocicrypt/keywrap/keyprovider"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/imagecrypt"
)

// imagePolicy admits the sample TEE to image keys except those of type
// "denied-kek". Test only.
const imagePolicy = `package policy
import rego.v1
default allow := false
allow if {
	data.plugin == "resource"
	data["resource-path"][1] != "denied-kek"
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
`

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestEncryptedImageKeys encrypts a layer the way an image owner does —
// Go ocicrypt talking to our coco-keyprovider process, which registers the
// KEK in our kbs — and decrypts it the way the guest does: the
// confidential-data-hub process fetches the KEK from the KBS after the
// attestation-agent attested, both for the in-process decrypter and over
// the hub's ttrpc KeyProviderService/UnWrapKey. A KEK the resource policy
// denies fails closed.
func TestEncryptedImageKeys(t *testing.T) {
	dir := socketDir(t, "ic-")
	kbsURL := startDevKBS(t, dir)
	pol := filepath.Join(dir, "policy.rego")
	os.WriteFile(pol, []byte(imagePolicy), 0o600)
	mustRun(t, dir, bin.kbsClient, "--url", kbsURL, "config", "set-resource-policy", "--policy-file", pol)

	tok := filepath.Join(dir, "admin-token")
	os.WriteFile(tok, []byte("unused-with-InsecureAllowAll"), 0o600)
	kpAddr := freeAddr(t)
	startDaemon(t, dir, tcpReady(kpAddr), bin.cocoKeyprovider, "--socket", kpAddr, "--kbs", kbsURL, "--admin-token-file", tok)

	// Image owner side: ocicrypt's own gRPC keyprovider client.
	kw := keyprovider.NewKeyWrapper(imagecrypt.ProviderName, keyproviderconfig.KeyProviderAttrs{Grpc: kpAddr})
	var mu sync.Mutex
	var lastOpts []byte
	wrapWith := func(params string) imagecrypt.WrapFunc {
		ec, err := config.EncryptWithKeyProvider([][]byte{[]byte("attestation-agent:" + params)})
		if err != nil {
			t.Fatal(err)
		}
		return func(opts []byte) ([]byte, error) {
			mu.Lock()
			lastOpts = bytes.Clone(opts)
			mu.Unlock()
			return kw.WrapKeys(ec.EncryptConfig, opts)
		}
	}
	plain := bytes.Repeat([]byte("fine-tuned model weights "), 40000) // ~1 MiB
	encrypt := func(params string) (ocispec.Descriptor, []byte) {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(plain), Size: int64(len(plain))}
		r, fin, err := imagecrypt.EncryptLayer(wrapWith(params), desc, bytes.NewReader(plain))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		ann, err := fin()
		if err != nil {
			t.Fatal(err)
		}
		return imagecrypt.EncryptedDescriptor(desc, digest.FromBytes(enc), int64(len(enc)), ann), enc
	}
	edesc, enc := encrypt("keyid=kbs:///default/image-kek/model::algorithm=A256GCM")
	mu.Lock()
	wrappedOpts := lastOpts
	mu.Unlock()
	deniedDesc, deniedEnc := encrypt("keyid=kbs:///default/denied-kek/model::algorithm=A256CTR")

	// The KEK is in the KBS now, under the kid's path.
	if _, err := os.Stat(filepath.Join(dir, "kbs-store", "repository", `default\x2Fimage-kek\x2Fmodel`)); err != nil {
		t.Fatalf("KEK not registered in the KBS: %v", err)
	}

	// Guest side.
	g := startGuestStack(t, dir, kbsURL, "", "--keyprovider-reply", "go")
	hub, err := cdh.NewClient("unix://" + g.cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keys := imagecrypt.KeySourceFunc(func(ctx context.Context, uri string) ([]byte, error) { return hub.GetResource(ctx, uri) })

	rc, err := imagecrypt.NewLayerDecrypter(keys).Decrypt(ctx, edesc, bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("decrypting through the data hub: %v (equal %v)", err, bytes.Equal(got, plain))
	}

	// The hub's own keyprovider service unwraps the layer key.
	packet := edesc.Annotations[imagecrypt.AnnotationKeys]
	if packet == "" {
		t.Fatal("no annotation packet")
	}
	pk, _ := base64.StdEncoding.DecodeString(packet)
	in, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{"annotation": pk}})
	out, err := hub.UnWrapKey(ctx, in)
	if err != nil {
		t.Fatalf("UnWrapKey: %v", err)
	}
	var reply struct {
		KeyUnwrapResults struct {
			OptsData []byte `json:"optsdata"`
		} `json:"keyunwrapresults"`
	}
	if err := json.Unmarshal(out, &reply); err != nil || !bytes.Equal(reply.KeyUnwrapResults.OptsData, wrappedOpts) {
		t.Fatalf("UnWrapKey reply %.200s: %v", out, err)
	}

	// A KEK the policy denies: no plaintext.
	if rc, err := imagecrypt.NewLayerDecrypter(keys).Decrypt(ctx, deniedDesc, bytes.NewReader(deniedEnc)); err == nil {
		if b, err := io.ReadAll(rc); err == nil {
			t.Fatalf("denied KEK released the layer (%d bytes)", len(b))
		}
	}
	// A corrupted layer fails its HMAC.
	bad := bytes.Clone(enc)
	bad[len(bad)/2] ^= 1
	rc, err = imagecrypt.NewLayerDecrypter(keys).Decrypt(ctx, edesc, bytes.NewReader(bad))
	if err == nil {
		if _, err := io.ReadAll(rc); err == nil {
			t.Fatal("corrupted layer decrypted without error")
		}
	}
}
