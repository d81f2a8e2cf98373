//go:build containers_image_openpgp

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/cdh"
)

func e2eImage(t *testing.T, marker string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{{"etc/os-release", "ID=coco-e2e"}, {"etc/marker", marker}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestSignedImagePull runs the signed-image flow with real processes: a
// Debian docker-registry on loopback, images signed by the cosign CLI, the
// policy and cosign.pub served by our KBS after attestation, and PullImage
// through confidential-data-hub.
func TestSignedImagePull(t *testing.T) {
	cosignBin := lookTool(t, "COSIGN", "cosign")

	dir := socketDir(t, "gti-")
	write := fileWriter(t, dir)

	regAddr, regRoot := startRegistry(t, dir)

	repo, err := name.NewRepository(regAddr + "/coco/app")
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, img v1.Image) v1.Hash {
		if err := remote.Write(repo.Tag(tag), img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d
	}

	// cosign key pairs and signatures, by the real CLI.
	cosign := func(sub string, args ...string) {
		t.Helper()
		wd := filepath.Join(dir, sub)
		os.MkdirAll(wd, 0o700)
		cmd := exec.Command(cosignBin, args...)
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=e2e-pass", "HOME="+wd, "TUF_ROOT="+filepath.Join(wd, "tuf"), "COSIGN_EXPERIMENTAL=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign %v: %v\n%s", args, err, out)
		}
	}
	cosign("key", "generate-key-pair")
	cosign("wrong", "generate-key-pair")
	sign := func(sub string, d v1.Hash) {
		cosign(sub, "sign", "--yes", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", repo.Digest(d.String()).String())
	}

	signedD := push("signed", e2eImage(t, "signed"))
	sign("key", signedD)
	push("unsigned", e2eImage(t, "unsigned"))
	wrongD := push("wrong-key", e2eImage(t, "wrong-key"))
	sign("wrong", wrongD)
	// The tag is moved to a manifest the key never signed.
	tmD := push("tampered-manifest", e2eImage(t, "tampered-manifest"))
	sign("key", tmD)
	evil, _ := mutate.Config(e2eImage(t, "tampered-manifest"), v1.Config{Env: []string{"EVIL=1"}})
	push("tampered-manifest", evil)
	// A signed image whose layer blob is corrupted in the registry's store.
	tl := e2eImage(t, "tampered-layer")
	tlD := push("tampered-layer", tl)
	sign("key", tlD)
	layers, _ := tl.Layers()
	ld, _ := layers[0].Digest()
	blob := filepath.Join(regRoot, "docker/registry/v2/blobs/sha256", ld.Hex[:2], ld.Hex, "data")
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// The KBS: policy.json and cosign.pub are resources released after
	// attestation.
	kbsURL := startDevKBS(t, dir)
	admin := func(args ...string) {
		mustRun(t, dir, bin.kbsClient, append([]string{"--url", kbsURL, "config"}, args...)...)
	}
	policy := fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1"}]}}}`, repo.Name())
	admin("set-resource", "--path", "default/cosign-key/1", "--resource-file", filepath.Join(dir, "key", "cosign.pub"))
	admin("set-resource", "--path", "default/security-policy/test", "--resource-file", write("policy.json", []byte(policy)))
	admin("set-resource-policy", "--policy-file", write("policy.rego", []byte(guestPolicy)))

	// Encrypted and signed images: image-encrypt encrypts every layer under
	// a fresh KEK that it registers in the KBS at --key-id, then cosign signs
	// the result. The second KEK sits where the resource policy denies.
	adminTok := write("admin-token", []byte("unused-with-InsecureAllowAll"))
	encrypt := func(src, dst, kid string) v1.Hash {
		t.Helper()
		mustRun(t, dir, bin.imageEncrypt, "--kbs", kbsURL, "--admin-token-file", adminTok, "--key-id", kid,
			"--insecure-registry", "--no-progress", repo.Tag(src).String(), repo.Tag(dst).String())
		desc, err := remote.Head(repo.Tag(dst))
		if err != nil {
			t.Fatal(err)
		}
		sign("key", desc.Digest)
		return desc.Digest
	}
	push("model-plain", e2eImage(t, "encrypted"))
	encD := encrypt("model-plain", "model-encrypted", "kbs:///default/image-kek/model")
	encrypt("model-plain", "model-encrypted-denied", "kbs:///default/denied/model-kek")

	g := startGuestStack(t, dir, kbsURL, fmt.Sprintf("[image]\nwork_dir = %q\nimage_security_policy_uri = \"kbs:///default/security-policy/test\"\n", filepath.Join(dir, "image-work")))

	c, err := cdh.NewClient("unix://" + g.cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const anyError = codes.Code(1 << 20)
	tests := []struct {
		name   string
		tag    string
		want   codes.Code
		digest v1.Hash
		marker string
	}{
		{"signed", "signed", codes.OK, signedD, "signed"},
		{"unsigned", "unsigned", codes.PermissionDenied, v1.Hash{}, ""},
		{"wrong key", "wrong-key", codes.PermissionDenied, v1.Hash{}, ""},
		{"tampered manifest", "tampered-manifest", codes.PermissionDenied, v1.Hash{}, ""},
		{"tampered layer", "tampered-layer", codes.DataLoss, v1.Hash{}, ""},
		// attest → KEK from the KBS → verify → decrypt → unpack
		{"encrypted and signed", "model-encrypted", codes.OK, encD, "encrypted"},
		{"encrypted, KEK denied by policy", "model-encrypted-denied", anyError, v1.Hash{}, ""},
		{"encrypted, unsigned copy", "model-plain", codes.PermissionDenied, v1.Hash{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bundle := filepath.Join(dir, "bundles", strings.ReplaceAll(tc.name, " ", "-"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, err := c.PullImage(ctx, repo.Tag(tc.tag).String(), bundle)
			s, _ := status.FromError(err)
			if s.Code() == codes.Unimplemented && tc.want != codes.Unimplemented {
				t.Fatalf("confidential-data-hub does not serve ImagePullService (cmd/confidential-data-hub must register cdh.NewImageService): %v", err)
			}
			if (tc.want == anyError && err == nil) || (tc.want != anyError && s.Code() != tc.want) {
				t.Fatalf("PullImage: %v, want %v", err, tc.want)
			}
			if tc.want != codes.OK {
				if _, err := os.Stat(bundle); !os.IsNotExist(err) {
					t.Fatalf("bundle left behind after a denied pull: %v", err)
				}
				return
			}
			if d != tc.digest.String() {
				t.Fatalf("digest %s, want %s", d, tc.digest)
			}
			if b, _ := os.ReadFile(filepath.Join(bundle, "rootfs/etc/marker")); string(b) != tc.marker {
				t.Fatalf("rootfs not unpacked: %q", b)
			}
		})
	}
}
