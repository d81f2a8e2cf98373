//go:build containers_image_openpgp

// Package image pulls container images into a bundle inside the TEE, the
// Go counterpart of image-rs: resolve the reference against the registry
// configuration, authenticate (auth.json, possibly a KBS resource),
// evaluate the image security policy (package signature) on the manifest
// digest, then stream every layer through decrypt → decompress → untar
// into <bundle>/rootfs.
//
// # Invariants
//
//   - The signature policy is evaluated on the manifest digest BEFORE any
//     layer is fetched; layers and config are then read only by digest
//     from that manifest. The layer cache is keyed by content digest and
//     never stands in for the policy check.
//   - No layer is ever held in memory: blobs stream to the digest-keyed
//     cache, then from the cache through decompression into the rootfs,
//     hashing on the way. A blob whose sha256 differs from its descriptor,
//     or an uncompressed stream whose sha256 differs from the config's
//     diff_id, fails the pull.
//   - Every write to the rootfs goes through os.Root (see Unpack): no
//     entry escapes it. Device nodes, absolute and ".." names are refused.
//   - Manifests and configs are read with bounds.
//   - On any failure the partial rootfs (and a bundle directory Pull
//     created) is removed.
//
// # Concurrency
//
// A Puller is safe for concurrent use; pulls into distinct bundles run in
// parallel, each with at most MaxConcurrentLayerDownloads downloads.
package image

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/sync/errgroup"

	"github.com/go-trustee/go-trustee/guest/image/signature"
	"github.com/go-trustee/go-trustee/internal/limits"
)

// LayerDecrypter decrypts an encrypted layer blob (media type ending in
// "+encrypted"); *imagecrypt.LayerDecrypter is one.
type LayerDecrypter interface {
	Decrypt(ctx context.Context, desc ocispec.Descriptor, r io.Reader) (io.ReadCloser, error)
}

// Options configure a Puller. Zero values take the documented defaults.
type Options struct {
	// Resources fetches kbs:/// URIs of the configuration (policy, keys,
	// sigstore config, auth.json, registry config); nil makes them errors.
	Resources signature.Getter
	// Decrypter decrypts encrypted layers; nil refuses them.
	Decrypter LayerDecrypter
	// Transport is the base HTTP transport; nil is a clone of
	// http.DefaultTransport with the configured roots and proxy.
	Transport http.RoundTripper
	// Logger receives progress records; nil discards them.
	Logger *slog.Logger
	// Platform selects the manifest of an index; zero is linux/GOARCH.
	Platform v1.Platform
}

// Puller pulls images as configured by an [image] table.
type Puller struct {
	cfg  *Config
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	state *pullState // fetched once, on the first successful init
}

// pullState is what image-rs fetches once, at the first pull.
type pullState struct {
	verifier  *signature.Verifier // nil: no policy, no check
	auths     *Auths
	registry  *RegistryConfig
	transport http.RoundTripper
	certDir   string
	proxy     func(*url.URL) (*url.URL, error)
}

// NewPuller validates cfg and returns a Puller. Nothing is fetched yet:
// resources behind kbs:/// need attestation and are fetched at the first
// Pull.
func NewPuller(cfg *Config, opts Options) (*Puller, error) {
	if cfg == nil {
		var err error
		if cfg, err = ParseConfig(nil); err != nil {
			return nil, err
		}
	}
	c := *cfg
	cfg = &c
	if cfg.WorkDir == "" {
		cfg.WorkDir = DefaultWorkDir
	}
	if cfg.MaxConcurrentLayerDownloads <= 0 {
		cfg.MaxConcurrentLayerDownloads = DefaultMaxConcurrentDownloads
	}
	if !filepath.IsAbs(cfg.WorkDir) {
		return nil, fmt.Errorf("%w: work_dir %q is not absolute", ErrInvalidConfig, cfg.WorkDir)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Platform.OS == "" {
		opts.Platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	for i, c := range cfg.ExtraRootCertificates {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(c)) {
			return nil, fmt.Errorf("%w: extra_root_certificates[%d] holds no PEM certificate", ErrInvalidConfig, i)
		}
	}
	return &Puller{cfg: cfg, opts: opts, log: opts.Logger}, nil
}

// Close releases the verifier's files.
func (p *Puller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != nil && p.state.verifier != nil {
		return p.state.verifier.Close()
	}
	return nil
}

func (p *Puller) init(ctx context.Context) (*pullState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != nil {
		return p.state, nil
	}
	if err := os.MkdirAll(p.cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating work_dir: %w", err)
	}
	st := &pullState{registry: p.cfg.RegistryConfig}
	if st.registry == nil && p.cfg.RegistryConfigurationURI != "" {
		b, err := signature.ReadResource(ctx, p.opts.Resources, p.cfg.RegistryConfigurationURI, limits.MaxConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("registry configuration: %w", err)
		}
		if st.registry, err = ParseRegistryConfig(b); err != nil {
			return nil, err
		}
	}
	if u := p.cfg.AuthenticatedRegistryCredentialsURI; u != "" {
		b, err := signature.ReadResource(ctx, p.opts.Resources, u, limits.MaxConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("registry credentials: %w", err)
		}
		if st.auths, err = ParseAuthFile(b); err != nil {
			return nil, err
		}
	}
	policy := []byte(p.cfg.ImageSecurityPolicy)
	if u := p.cfg.ImageSecurityPolicyURI; u != "" {
		b, err := signature.ReadResource(ctx, p.opts.Resources, u, limits.MaxPolicyBytes)
		if err != nil {
			return nil, fmt.Errorf("image security policy: %w", err)
		}
		policy = b
	}
	sigstore := []byte(p.cfg.SigstoreConfig)
	if u := p.cfg.SigstoreConfigURI; u != "" {
		b, err := signature.ReadResource(ctx, p.opts.Resources, u, limits.MaxConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("sigstore configuration: %w", err)
		}
		sigstore = b
	}
	if pc := p.cfg.ImagePullProxy; pc != nil {
		pf := (&httpproxy.Config{HTTPProxy: pc.HTTPProxy, HTTPSProxy: pc.HTTPSProxy, NoProxy: pc.NoProxy}).ProxyFunc()
		st.proxy = func(u *url.URL) (*url.URL, error) { return pf(u) }
	}
	var pool *x509.CertPool
	if len(p.cfg.ExtraRootCertificates) > 0 {
		var err error
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		st.certDir = filepath.Join(p.cfg.WorkDir, "certs")
		if err := os.MkdirAll(st.certDir, 0o700); err != nil {
			return nil, err
		}
		var all []byte
		for _, c := range p.cfg.ExtraRootCertificates {
			pool.AppendCertsFromPEM([]byte(c))
			all = append(all, []byte(strings.TrimSpace(c)+"\n")...)
		}
		if err := os.WriteFile(filepath.Join(st.certDir, "extra-roots.crt"), all, 0o600); err != nil {
			return nil, err
		}
	}
	base := p.opts.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if st.proxy != nil {
			proxy := st.proxy
			t.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
		} else {
			t.Proxy = nil
		}
		if pool != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		base = t
	}
	st.transport = &boundedTransport{base: base, max: DefaultMaxManifestBytes}
	if len(policy) > 0 {
		v, err := signature.New(ctx, policy, sigstore, signature.Options{Resources: p.opts.Resources, Dir: p.cfg.WorkDir})
		if err != nil {
			return nil, fmt.Errorf("image security policy: %w", err)
		}
		st.verifier = v
	} else {
		p.log.Warn("no image security policy configured: image signatures are not verified")
	}
	p.state = st
	return st, nil
}

// Pull pulls imageURL into <bundlePath>/rootfs and returns the manifest
// digest. bundlePath must be absolute and its rootfs absent or empty.
func (p *Puller) Pull(ctx context.Context, imageURL, bundlePath string) (string, error) {
	if !filepath.IsAbs(bundlePath) || filepath.Clean(bundlePath) == "/" {
		return "", fmt.Errorf("%w: %q must be absolute and not /", ErrBundle, bundlePath)
	}
	bundlePath = filepath.Clean(bundlePath)
	st, err := p.init(ctx)
	if err != nil {
		return "", err
	}
	sources, err := st.registry.Resolve(imageURL)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, src := range sources {
		d, err := p.pullFrom(ctx, st, src, bundlePath)
		if err == nil {
			return d, nil
		}
		p.log.Warn("image pull attempt failed", "source", src.Ref, "err", err)
		errs = append(errs, fmt.Errorf("pulling %s: %w", src.Ref, err))
		if ctx.Err() != nil {
			break
		}
	}
	return "", errors.Join(errs...)
}

// loopback reports whether host is a loopback registry, which both
// registry clients reach over plain HTTP.
func loopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (p *Puller) pullFrom(ctx context.Context, st *pullState, src Source, bundlePath string) (_ string, err error) {
	var nopts []name.Option
	if src.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(src.Ref, nopts...)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidReference, src.Ref, err)
	}
	repo := ref.Context()
	cred, hasCred := st.auths.Lookup(repo.RegistryStr() + "/" + repo.RepositoryStr())
	auth := authn.Anonymous
	if hasCred {
		auth = authn.FromConfig(authn.AuthConfig{Username: cred.Username, Password: cred.Password})
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(st.transport), remote.WithPlatform(p.opts.Platform)}

	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return "", fmt.Errorf("%w: fetching the manifest: %w", ErrRegistry, err)
	}
	top := desc.Digest
	img, err := desc.Image()
	if err != nil {
		return "", fmt.Errorf("%w: resolving the image manifest: %w", ErrRegistry, err)
	}
	imgDigest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRegistry, err)
	}

	// 1. The policy, on the digest, before any layer.
	if st.verifier != nil {
		acc := signature.Access{Username: cred.Username, Password: cred.Password, CertDir: st.certDir,
			Insecure: src.Insecure || loopback(repo.RegistryStr()), Proxy: st.proxy}
		sigRef := repo.Name() + "@" + top.String()
		if err := st.verifier.Verify(ctx, sigRef, top.String(), acc); err != nil {
			if top == imgDigest {
				return "", fmt.Errorf("%w: %w", ErrNotPermitted, err)
			}
			// An index: image-rs also accepts a signature on the
			// platform manifest.
			if err2 := st.verifier.Verify(ctx, repo.Name()+"@"+imgDigest.String(), imgDigest.String(), acc); err2 != nil {
				return "", fmt.Errorf("%w: %w", ErrNotPermitted, errors.Join(err, err2))
			}
		}
	}

	// 2. Manifest and config, bounded.
	m, err := img.Manifest()
	if err != nil {
		return "", fmt.Errorf("%w: parsing the manifest: %w", ErrRegistry, err)
	}
	if m.Config.Size > DefaultMaxConfigBytes || m.Config.Size < 0 {
		return "", fmt.Errorf("%w: config of %d bytes", ErrTooLarge, m.Config.Size)
	}
	cfgFile, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("%w: fetching the image config: %w", ErrRegistry, err)
	}
	if len(cfgFile.RootFS.DiffIDs) != len(m.Layers) {
		return "", fmt.Errorf("%w: %d layers but %d diff_ids", ErrDigestMismatch, len(m.Layers), len(cfgFile.RootFS.DiffIDs))
	}
	for _, l := range m.Layers {
		if _, err := decompressorFor(stripEncrypted(l.MediaType)); err != nil {
			return "", err
		}
		if isEncrypted(string(l.MediaType)) && p.opts.Decrypter == nil {
			return "", fmt.Errorf("%w: encrypted layers need package imagecrypt", ErrUnsupportedMediaType)
		}
		if l.Digest.Algorithm != "sha256" {
			return "", fmt.Errorf("%w: layer digest algorithm %q", ErrUnsupportedMediaType, l.Digest.Algorithm)
		}
	}

	// 3. The bundle: anything created from here on is removed on failure.
	rootfs := filepath.Join(bundlePath, "rootfs")
	createdBundle := false
	if _, err := os.Stat(bundlePath); errors.Is(err, fs.ErrNotExist) {
		createdBundle = true
	}
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBundle, err)
	}
	defer func() {
		if err != nil {
			if createdBundle {
				os.RemoveAll(bundlePath)
			} else {
				os.RemoveAll(rootfs)
			}
		}
	}()
	if ents, err := os.ReadDir(rootfs); err != nil || len(ents) > 0 {
		createdBundle = false
		return "", fmt.Errorf("%w: %s is not empty", ErrBundle, rootfs)
	}

	// 4. Download layers concurrently into the digest-keyed cache.
	cache := filepath.Join(p.cfg.WorkDir, "blobs", "sha256")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return "", err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.MaxConcurrentLayerDownloads)
	seen := map[v1.Hash]bool{}
	for _, l := range m.Layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		l := l
		g.Go(func() error { return fetchBlob(gctx, repo, l, cache, ropts) })
	}
	if err := g.Wait(); err != nil {
		return "", err
	}

	// 5. Apply in order.
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", err
	}
	defer root.Close()
	for i, l := range m.Layers {
		if err := p.applyLayer(ctx, root, l, cfgFile.RootFS.DiffIDs[i], cache); err != nil {
			return "", fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
	}
	p.log.Info("image pulled", "image", src.Ref, "digest", top.String(), "layers", len(m.Layers))
	return top.String(), nil
}

func isEncrypted(mt string) bool { return strings.HasSuffix(mt, "+encrypted") }

func stripEncrypted(mt types.MediaType) types.MediaType {
	return types.MediaType(strings.TrimSuffix(string(mt), "+encrypted"))
}

// decompressorFor maps a layer media type to its decompression.
func decompressorFor(mt types.MediaType) (func(io.Reader) (io.ReadCloser, error), error) {
	switch mt {
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, "application/vnd.docker.image.rootfs.diff.tar":
		return func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil }, nil
	case types.OCILayerZStd:
		return func(r io.Reader) (io.ReadCloser, error) {
			d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		}, nil
	case types.OCILayer, types.DockerLayer, types.OCIRestrictedLayer, types.DockerForeignLayer:
		return func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }, nil
	}
	return nil, fmt.Errorf("%w: layer media type %q", ErrUnsupportedMediaType, mt)
}

// fetchBlob streams a layer blob into the cache unless a file of that
// digest is there already; it lands under its digest name only after its
// size and sha256 matched the descriptor.
func fetchBlob(ctx context.Context, repo name.Repository, l v1.Descriptor, cache string, ropts []remote.Option) error {
	final := filepath.Join(cache, l.Digest.Hex)
	if _, err := os.Stat(final); err == nil {
		return nil // verified again while it is read
	}
	layer, err := remote.Layer(repo.Digest(l.Digest.String()), ropts...)
	if err != nil {
		return fmt.Errorf("%w: layer %s: %w", ErrRegistry, l.Digest, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("%w: layer %s: %w", ErrRegistry, l.Digest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(cache, ".partial-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, l.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// go-containerregistry checks the digest and size itself at EOF;
		// its error type is internal, so its text classifies it.
		if strings.Contains(err.Error(), "error verifying") {
			return fmt.Errorf("%w: layer %s: %v", ErrDigestMismatch, l.Digest, err)
		}
		return fmt.Errorf("%w: layer %s: %w", ErrRegistry, l.Digest, err)
	}
	if n != l.Size || hex.EncodeToString(h.Sum(nil)) != l.Digest.Hex {
		return fmt.Errorf("%w: layer %s content does not match its descriptor", ErrDigestMismatch, l.Digest)
	}
	return os.Rename(tmp.Name(), final)
}

// applyLayer streams a cached blob through decrypt → decompress → untar,
// checking the blob digest and the diff_id on the way.
func (p *Puller) applyLayer(ctx context.Context, root *os.Root, l v1.Descriptor, diffID v1.Hash, cache string) error {
	f, err := os.Open(filepath.Join(cache, l.Digest.Hex))
	if err != nil {
		return err
	}
	defer f.Close()
	blobHash := sha256.New()
	var r io.Reader = io.TeeReader(f, blobHash)
	mt := l.MediaType
	if isEncrypted(string(mt)) {
		if p.opts.Decrypter == nil {
			return fmt.Errorf("%w: encrypted layers need package imagecrypt", ErrUnsupportedMediaType)
		}
		d, err := digest.Parse(l.Digest.String())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDigestMismatch, err)
		}
		dec, err := p.opts.Decrypter.Decrypt(ctx, ocispec.Descriptor{MediaType: string(mt), Digest: d, Size: l.Size, Annotations: l.Annotations}, r)
		if err != nil {
			return fmt.Errorf("decrypting: %w", err)
		}
		defer dec.Close()
		r = dec
		mt = stripEncrypted(mt)
	}
	decomp, err := decompressorFor(mt)
	if err != nil {
		return err
	}
	dr, err := decomp(r)
	if err != nil {
		return fmt.Errorf("%w: decompressing: %v", ErrBadLayer, err)
	}
	defer dr.Close()
	diffHash := sha256.New()
	tr := io.TeeReader(dr, diffHash)
	if err := Unpack(ctx, root, tr, UnpackOptions{}); err != nil {
		return err
	}
	if err := drain(tr); err != nil {
		return fmt.Errorf("%w: %v", ErrBadLayer, err)
	}
	if err := drain(r); err != nil {
		return fmt.Errorf("%w: %v", ErrBadLayer, err)
	}
	if got := hex.EncodeToString(diffHash.Sum(nil)); diffID.Algorithm != "sha256" || got != diffID.Hex {
		return fmt.Errorf("%w: uncompressed sha256:%s, diff_id %s", ErrDigestMismatch, got, diffID)
	}
	if _, err := io.Copy(blobHash, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(blobHash.Sum(nil)); got != l.Digest.Hex {
		return fmt.Errorf("%w: cached blob is sha256:%s", ErrDigestMismatch, got)
	}
	return nil
}

// drain reads r to its end (tar padding, trailing data) so the hash
// covers the whole stream.
func drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// boundedTransport fails manifest responses larger than max, so a
// hostile registry cannot make the puller read an unbounded manifest.
type boundedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly max from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: manifest exceeds %d bytes", ErrTooLarge, DefaultMaxManifestBytes)
		}
		return b.rc.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
