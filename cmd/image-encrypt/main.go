// Command image-encrypt encrypts a container image for Confidential
// Containers in one step and registers its key in the KBS:
//
//	image-encrypt --kbs http://kbs:8080 --admin-token-file T --key-id kbs:///default/image_key/model \
//	    [--insecure-registry] SRC DST
//	image-encrypt provision --kbs URL --admin-token-file T [--cosign-key cosign.pub] [--policy policy.json]
//
// SRC and DST are registry references (registry/repo:tag) or OCI layouts
// ("oci:<dir>[:<tag>]"). Every layer is encrypted (AES_256_CTR_HMAC_SHA256
// via ocicrypt) under a fresh layer key, wrapped with one fresh 32-byte KEK
// (A256GCM by default) whose kid is --key-id; the KEK is stored in the KBS
// at that path before the image is written. Only a guest whose attestation
// satisfies the KBS resource policy gets the KEK and can decrypt.
//
//	image-encrypt ──POST /kbs/v0/resource/<key-id> (admin)──> KBS
//	      └──push encrypted layers──> registry / OCI layout
//
// provision stores a cosign public key (default/cosign-key/1) and an image
// policy.json (default/security-policy/test), the resources image-rs reads.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/schollz/progressbar/v3"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/imagecrypt"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image-encrypt:", err)
		os.Exit(1)
	}
}

type common struct {
	kbs            string
	adminTokenFile string
	authPrivateKey string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.kbs, "kbs", "", "KBS URL (required)")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "", "file holding the KBS admin bearer token")
	fs.StringVar(&c.authPrivateKey, "auth-private-key", "", "legacy: Ed25519 private key (PKCS#8 PEM) to sign an admin JWT")
}

func (c *common) registrar(log *slog.Logger) (*imagecrypt.KBSRegistrar, error) {
	if c.kbs == "" {
		return nil, errors.New("--kbs is required")
	}
	if c.adminTokenFile != "" && c.authPrivateKey != "" {
		return nil, errors.New("--admin-token-file and --auth-private-key are mutually exclusive")
	}
	kbs, err := client.New(client.Options{URL: c.kbs, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--kbs: %w", err)
	}
	r := &imagecrypt.KBSRegistrar{KBS: kbs}
	switch {
	case c.adminTokenFile != "":
		b, err := readBounded(c.adminTokenFile, limits.MaxTokenBytes)
		if err != nil {
			return nil, err
		}
		tok := strings.TrimSpace(string(b))
		r.Token = func() (string, error) { return tok, nil }
	case c.authPrivateKey != "":
		b, err := readBounded(c.authPrivateKey, 64<<10)
		if err != nil {
			return nil, err
		}
		r.Token = func() (string, error) { return imagecrypt.LegacyAdminToken(b, time.Now()) }
	default:
		log.Warn("no admin credential: sending anonymous admin requests (only a KBS with authorization_mode InsecureAllowAll accepts them)")
	}
	return r, nil
}

func readBounded(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", name, max)
	}
	return b, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	log, err := logging.New(stderr, slog.LevelInfo, logging.FormatText)
	if err != nil {
		return err
	}
	if len(args) > 0 && args[0] == "provision" {
		return provision(ctx, args[1:], stderr, log)
	}
	var c common
	var keyID, algorithm, tmpDir string
	var insecure, noProgress bool
	fs := flag.NewFlagSet("image-encrypt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&keyID, "key-id", "", "KBS resource URI of the KEK, e.g. kbs:///default/image_key/model (required)")
	fs.StringVar(&algorithm, "algorithm", imagecrypt.WrapA256GCM, "KEK wrap type: A256GCM or A256CTR")
	fs.BoolVar(&insecure, "insecure-registry", false, "talk plain HTTP to the registries (loopback test registries)")
	fs.StringVar(&tmpDir, "tmp-dir", "", "directory for spooled encrypted layers (default: the system temp dir)")
	fs.BoolVar(&noProgress, "no-progress", false, "no progress bar")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("want SRC and DST")
	}
	kid, path, err := imagecrypt.NormalizeKID(keyID)
	if err != nil {
		return fmt.Errorf("--key-id: %w", err)
	}
	if algorithm != imagecrypt.WrapA256GCM && algorithm != imagecrypt.WrapA256CTR {
		return fmt.Errorf("--algorithm %q is neither A256GCM nor A256CTR", algorithm)
	}
	reg, err := c.registrar(log)
	if err != nil {
		return err
	}
	src, err := readImage(ctx, fs.Arg(0), insecure)
	if err != nil {
		return fmt.Errorf("reading %s: %w", fs.Arg(0), err)
	}
	kek, err := imagecrypt.NewKEK(kid, nil)
	if err != nil {
		return err
	}
	defer clear(kek.Key)
	kek.WrapType = algorithm

	var total int64
	if ls, err := src.Layers(); err == nil {
		for _, l := range ls {
			if n, err := l.Size(); err == nil {
				total += n
			}
		}
	}
	var progress func(int64)
	var bar *progressbar.ProgressBar
	if !noProgress {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("encrypting"), progressbar.OptionThrottle(100*time.Millisecond))
		progress = func(n int64) { bar.Add64(n) }
	}
	enc, cleanup, err := imagecrypt.EncryptImage(src, kek.Wrap, tmpDir, progress)
	if err != nil {
		return err
	}
	defer cleanup()
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(stderr)
	}
	// The KEK is registered before the image is published, so a pushed
	// image always has its key in the KBS.
	if err := reg.Register(ctx, path, kek.Key); err != nil {
		return err
	}
	if err := writeImage(ctx, fs.Arg(1), enc, insecure); err != nil {
		return fmt.Errorf("writing %s: %w", fs.Arg(1), err)
	}
	d, _ := enc.Digest()
	log.Info("encrypted image written", "dst", fs.Arg(1), "digest", d.String(), "kid", kid)
	return nil
}

// parseLayout splits "oci:<dir>[:<tag>]".
func parseLayout(ref string) (dir, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, "oci:")
	if !ok {
		return "", "", false
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		return rest[:i], rest[i+1:], true
	}
	return rest, "", true
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

func readImage(ctx context.Context, ref string, insecure bool) (v1.Image, error) {
	if dir, tag, ok := parseLayout(ref); ok {
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		var found []v1.Descriptor
		for _, d := range im.Manifests {
			if tag == "" || d.Annotations[refNameAnnotation] == tag {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("%d images match %q in the layout (name one with :<tag>)", len(found), tag)
		}
		return idx.Image(found[0].Digest)
	}
	opts := []name.Option{}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, remote.WithContext(ctx))
}

func writeImage(ctx context.Context, ref string, img v1.Image, insecure bool) error {
	if dir, tag, ok := parseLayout(ref); ok {
		p, err := layout.FromPath(dir)
		if err != nil {
			p, err = layout.Write(dir, empty.Index)
			if err != nil {
				return err
			}
		}
		var opts []layout.Option
		if tag != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: tag}))
		}
		return p.AppendImage(img, opts...)
	}
	opts := []name.Option{}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// Upstream's resource paths for image signature verification.
const (
	defaultCosignKeyPath = "default/cosign-key/1"
	defaultPolicyPath    = "default/security-policy/test"
)

func provision(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) error {
	var c common
	var cosignKey, cosignPath, policy, policyPath string
	fs := flag.NewFlagSet("image-encrypt provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&cosignKey, "cosign-key", "", "cosign public key (PEM) to store")
	fs.StringVar(&cosignPath, "cosign-key-path", defaultCosignKeyPath, "resource path of the cosign key")
	fs.StringVar(&policy, "policy", "", "image security policy.json to store")
	fs.StringVar(&policyPath, "policy-path", defaultPolicyPath, "resource path of the policy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || (cosignKey == "" && policy == "") {
		return errors.New("provision wants --cosign-key and/or --policy")
	}
	reg, err := c.registrar(log)
	if err != nil {
		return err
	}
	if cosignKey != "" {
		b, err := readBounded(cosignKey, 64<<10)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "-----BEGIN PUBLIC KEY-----") {
			return fmt.Errorf("%s is not a PEM public key", cosignKey)
		}
		if err := reg.Register(ctx, cosignPath, b); err != nil {
			return err
		}
		log.Info("cosign key stored", "path", cosignPath)
	}
	if policy != "" {
		b, err := readBounded(policy, limits.MaxPolicyBytes)
		if err != nil {
			return err
		}
		var v struct {
			Default []any `json:"default"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.Default == nil {
			return fmt.Errorf("%s is not a policy.json with a \"default\" list", policy)
		}
		if err := reg.Register(ctx, policyPath, b); err != nil {
			return err
		}
		log.Info("image policy stored", "path", policyPath)
	}
	return nil
}
