//go:build containers_image_openpgp

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/cdh"
)

// gpgTool finds an external tool for the GPG simple-signing test: $envVar,
// then PATH. In CI (env CI set) a missing tool fails the test.
// TestGPGSignedImagePull runs the simple-signing (signedBy, GPGKeys) flow
// with real processes: a Debian docker-registry on loopback, images signed
// by skopeo --sign-by with GPG keys made by gpg into a file:// lookaside,
// the policy, the public keyring and the sigstore configuration served by
// our KBS after attestation, and PullImage through confidential-data-hub.
func TestGPGSignedImagePull(t *testing.T) {
	skopeoBin := lookTool(t, "SKOPEO", "skopeo")
	gpgBin := lookTool(t, "GPG", "gpg")

	dir := socketDir(t, "gtg-")
	write := fileWriter(t, dir)

	// Two GPG signing keys in a private GNUPGHOME: only the first one's
	// public keyring goes to the KBS.
	gnupg := filepath.Join(dir, "gnupg")
	if err := os.MkdirAll(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	gpgEnv := append(os.Environ(), "GNUPGHOME="+gnupg, "HOME="+dir)
	gpg := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(gpgBin, append([]string{"--batch", "--no-tty"}, args...)...)
		cmd.Env = gpgEnv
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	t.Cleanup(func() {
		// gpg (and gpgme inside skopeo) started a gpg-agent for GNUPGHOME.
		if p, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(p, "--kill", "gpg-agent")
			cmd.Env = gpgEnv
			cmd.Run()
		}
	})
	genKey := func(uid string) string {
		t.Helper()
		gpg("--passphrase", "", "--quick-gen-key", uid, "rsa3072", "sign", "never")
		sc := bufio.NewScanner(strings.NewReader(string(gpg("--with-colons", "--list-secret-keys", uid))))
		for sc.Scan() {
			if f := strings.Split(sc.Text(), ":"); f[0] == "fpr" && len(f) > 9 && f[9] != "" {
				return f[9]
			}
		}
		t.Fatalf("no fingerprint for %s", uid)
		return ""
	}
	keyFpr := genKey("go-trustee e2e signer <signer@e2e.invalid>")
	wrongFpr := genKey("go-trustee e2e other <other@e2e.invalid>")
	// A binary keyring, as `gpg --export` gives and upstream documents.
	pubring := write("pubring.gpg", gpg("--export", keyFpr))
	if len(pubring) == 0 {
		t.Fatal("empty exported keyring")
	}

	regAddr, _ := startRegistry(t, dir)

	repo, err := name.NewRepository(regAddr + "/coco/gpg")
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, img v1.Image) v1.Hash {
		t.Helper()
		if err := remote.Write(repo.Tag(tag), img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d
	}
	head := func(tag string) v1.Hash {
		t.Helper()
		desc, err := remote.Head(repo.Tag(tag))
		if err != nil {
			t.Fatal(err)
		}
		return desc.Digest
	}

	// skopeo writes simple signatures to the lookaside named by a
	// registries.d staging entry; the hub reads the same directory.
	lookaside := filepath.Join(dir, "sigstore")
	regD := filepath.Join(dir, "registries.d")
	write("registries.d/e2e.yaml", []byte(fmt.Sprintf("docker:\n  %s:\n    sigstore-staging: file://%s\n", repo.Name(), lookaside)))
	sigDir := func(d v1.Hash) string {
		return filepath.Join(lookaside, repo.RepositoryStr()+"@"+d.Algorithm+"="+d.Hex)
	}
	signCopy := func(fpr, src, dst string) v1.Hash {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, skopeoBin, "--registries.d", regD, "--insecure-policy", "copy",
			"--src-tls-verify=false", "--dest-tls-verify=false", "--sign-by", fpr,
			"docker://"+repo.Tag(src).String(), "docker://"+repo.Tag(dst).String())
		cmd.Dir = dir
		cmd.Env = gpgEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy --sign-by: %v\n%s", err, out)
		}
		d := head(dst)
		if _, err := os.Stat(filepath.Join(sigDir(d), "signature-1")); err != nil {
			t.Fatalf("skopeo wrote no signature to the lookaside: %v", err)
		}
		return d
	}

	push("src-signed", e2eImage(t, "gpg-signed"))
	signedD := signCopy(keyFpr, "src-signed", "gpg-signed")
	push("src-wrong", e2eImage(t, "wrong-key"))
	signCopy(wrongFpr, "src-wrong", "wrong-key")
	push("unsigned", e2eImage(t, "unsigned"))
	// A valid signature of another manifest, placed where this one's
	// signatures are looked up.
	stolenD := push("stolen-signature", e2eImage(t, "stolen-signature"))
	sig, err := os.ReadFile(filepath.Join(sigDir(signedD), "signature-1"))
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join("sigstore", repo.RepositoryStr()+"@"+stolenD.Algorithm+"="+stolenD.Hex, "signature-1"), sig)

	// The KBS releases the policy, the keyring and the sigstore
	// configuration after attestation.
	kbsURL := startDevKBS(t, dir)
	admin := func(args ...string) {
		mustRun(t, dir, bin.kbsClient, append([]string{"--url", kbsURL, "config"}, args...)...)
	}
	policy := fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"signedBy","keyType":"GPGKeys","keyPath":"kbs:///default/gpg-key/1"}]}}}`, repo.Name())
	// image-rs names the lookaside "sigstore" (it does not know "lookaside").
	sigstoreCfg := fmt.Sprintf("docker:\n  %s:\n    sigstore: file://%s\n", repo.Name(), lookaside)
	admin("set-resource", "--path", "default/gpg-key/1", "--resource-file", pubring)
	admin("set-resource", "--path", "default/security-policy/gpg", "--resource-file", write("policy.json", []byte(policy)))
	admin("set-resource", "--path", "default/sigstore-config/gpg", "--resource-file", write("sigstore.yaml", []byte(sigstoreCfg)))
	admin("set-resource-policy", "--policy-file", write("policy.rego", []byte(guestPolicy)))

	g := startGuestStack(t, dir, kbsURL, fmt.Sprintf("[image]\nwork_dir = %q\nimage_security_policy_uri = \"kbs:///default/security-policy/gpg\"\nsigstore_config_uri = \"kbs:///default/sigstore-config/gpg\"\n", filepath.Join(dir, "image-work")))

	c, err := cdh.NewClient("unix://" + g.cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		name   string
		tag    string
		want   codes.Code
		digest v1.Hash
		marker string
	}{
		{"gpg signed", "gpg-signed", codes.OK, signedD, "gpg-signed"},
		{"unsigned", "unsigned", codes.PermissionDenied, v1.Hash{}, ""},
		{"signed by another gpg key", "wrong-key", codes.PermissionDenied, v1.Hash{}, ""},
		{"signature of another manifest", "stolen-signature", codes.PermissionDenied, v1.Hash{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bundle := filepath.Join(dir, "bundles", strings.ReplaceAll(tc.name, " ", "-"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, err := c.PullImage(ctx, repo.Tag(tc.tag).String(), bundle)
			if s, _ := status.FromError(err); s.Code() != tc.want {
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
