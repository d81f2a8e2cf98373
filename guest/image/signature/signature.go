//go:build containers_image_openpgp

// Package signature evaluates a containers policy.json (the image security
// policy of image-rs) for an image in a registry, before any of its layers
// is fetched. It is go.podman.io/image/v5/signature underneath (build tag
// containers_image_openpgp: pure-Go OpenPGP, no gpgme), with image-rs's
// extensions in front:
//
//   - every keyPath, the policy itself and the sigstore configuration may
//     be a kbs:/// resource URI, fetched through the confidential-data-hub
//     after attestation (file:// URIs and plain paths read local files);
//   - sigstoreSigned keyData may be PEM text (image-rs) or base64 (containers),
//     and its signedIdentity defaults to matchRepository (image-rs; cosign
//     payloads carry no tag);
//   - cosign signatures are always looked up as sha256-<hex>.sig tags
//     (use-sigstore-attachments), and the sigstore configuration (a
//     registries.d document) names the lookaside of simple signatures.
//
// # Invariants
//
//   - A Verifier is built from a policy that parsed completely, with every
//     key already resolved: key fetch failures surface at New, never as an
//     accept.
//   - Verify evaluates the policy against exactly the manifest digest it
//     is given; the caller pulls layers only by that digest afterwards.
//   - The host's containers configuration (registries.conf, auth files,
//     policy.json) is never read.
//
// # Concurrency
//
// A Verifier is safe for concurrent use.
package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	csig "go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.yaml.in/yaml/v3"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrPolicy: the policy (or the sigstore configuration) is malformed.
	ErrPolicy = errors.New("signature: invalid image security policy")
	// ErrResource: a policy, key or configuration could not be fetched.
	ErrResource = errors.New("signature: fetching a signature resource failed")
	// ErrDenied: the policy denies the image (reject, or no valid
	// signature).
	ErrDenied = errors.New("signature: image denied by the security policy")
	// ErrReference: the image reference or digest is malformed.
	ErrReference = errors.New("signature: invalid image reference")
)

// MaxKeyBytes bounds one fetched public key or keyring.
const MaxKeyBytes = limits.MaxImageKeyBytes

// Getter fetches KBS resources ("kbs:///repo/type/tag"); *cdh.Hub is one.
type Getter interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// IsResourceURI reports whether uri names a KBS resource (kbs:// or
// kbs+<plugin>://).
func IsResourceURI(uri string) bool {
	scheme, _, ok := strings.Cut(uri, "://")
	return ok && (scheme == "kbs" || strings.HasPrefix(scheme, "kbs+"))
}

// ReadResource returns the content uri names: a KBS resource through g,
// a file:// URI or a plain path from the local file system. More than max
// bytes is an error.
func ReadResource(ctx context.Context, g Getter, uri string, max int) ([]byte, error) {
	var b []byte
	switch {
	case IsResourceURI(uri):
		if g == nil {
			return nil, fmt.Errorf("%w: %s: no KBS access configured", ErrResource, uri)
		}
		var err error
		if b, err = g.GetResource(ctx, uri); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrResource, uri, err)
		}
	default:
		p := uri
		if strings.HasPrefix(uri, "file://") {
			u, err := url.Parse(uri)
			if err != nil || u.Host != "" {
				return nil, fmt.Errorf("%w: %q is not a local file URI", ErrResource, uri)
			}
			p = u.Path
		} else if strings.Contains(uri, "://") {
			return nil, fmt.Errorf("%w: unsupported URI scheme in %q", ErrResource, uri)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrResource, err)
		}
		defer f.Close()
		if b, err = io.ReadAll(io.LimitReader(f, int64(max)+1)); err != nil {
			return nil, fmt.Errorf("%w: reading %s: %w", ErrResource, p, err)
		}
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrResource, uri, max)
	}
	return b, nil
}

// Options configure New.
type Options struct {
	// Resources fetches kbs:/// URIs; nil makes them an error.
	Resources Getter
	// Dir receives the generated registries.d and empty host
	// configuration; "" is a new directory under os.TempDir. Close
	// removes what New created.
	Dir string
}

// Verifier evaluates one policy.
type Verifier struct {
	policy   *csig.Policy
	dir      string
	ownDir   bool
	regDir   string
	emptyReg string
	noAuth   string
}

// New parses policy (policy.json bytes) and sigstoreConfig (a registries.d
// YAML document; may be empty), resolving every key reference first.
func New(ctx context.Context, policy, sigstoreConfig []byte, opts Options) (*Verifier, error) {
	resolved, err := ResolvePolicy(ctx, policy, opts.Resources)
	if err != nil {
		return nil, err
	}
	pol, err := csig.NewPolicyFromBytes(resolved)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	regd, err := registriesD(sigstoreConfig)
	if err != nil {
		return nil, err
	}
	v := &Verifier{policy: pol, dir: opts.Dir}
	if v.dir == "" {
		if v.dir, err = os.MkdirTemp("", "image-signature-"); err != nil {
			return nil, err
		}
		v.ownDir = true
	} else {
		v.dir, err = os.MkdirTemp(opts.Dir, "signature-")
		if err != nil {
			return nil, err
		}
		v.ownDir = true
	}
	v.regDir = filepath.Join(v.dir, "registries.d")
	v.emptyReg = filepath.Join(v.dir, "registries.conf")
	v.noAuth = filepath.Join(v.dir, "auth.json")
	if err := os.Mkdir(v.regDir, 0o700); err != nil {
		v.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(v.regDir, "default.yaml"), regd, 0o600); err != nil {
		v.Close()
		return nil, err
	}
	if err := os.WriteFile(v.emptyReg, nil, 0o600); err != nil {
		v.Close()
		return nil, err
	}
	if err := os.WriteFile(v.noAuth, []byte(`{"auths":{}}`), 0o600); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Close removes the files New created.
func (v *Verifier) Close() error {
	if v.ownDir {
		return os.RemoveAll(v.dir)
	}
	return nil
}

// Access says how to reach the registry holding the image's signatures.
type Access struct {
	// Username and Password authenticate; both empty is anonymous.
	Username, Password string
	// CertDir holds extra CA certificates (*.crt); "" is the system pool.
	CertDir string
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool
	// Proxy chooses the proxy of a request; nil is none.
	Proxy func(*url.URL) (*url.URL, error)
}

// Verify evaluates the policy for the image ref (a fully qualified docker
// reference such as "example.com/app:v1") whose manifest has
// manifestDigest. It returns nil if the image may run and an error
// wrapping ErrDenied if the policy refuses it.
func (v *Verifier) Verify(ctx context.Context, ref, manifestDigest string, acc Access) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrReference, ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		if t, ok := named.(reference.Tagged); ok {
			// docker transport references carry a tag or a digest.
			_ = t
			named = reference.TrimNamed(named)
			d, _ := digest.Parse(manifestDigest)
			if named, err = reference.WithDigest(named, d); err != nil {
				return fmt.Errorf("%w: %v", ErrReference, err)
			}
		}
	}
	dg, err := digest.Parse(manifestDigest)
	if err != nil {
		return fmt.Errorf("%w: manifest digest %q: %v", ErrReference, manifestDigest, err)
	}
	iref, err := docker.NewReference(named)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReference, err)
	}
	sys := &types.SystemContext{
		RegistriesDirPath:           v.regDir,
		SystemRegistriesConfPath:    v.emptyReg,
		SystemRegistriesConfDirPath: v.regDir + ".none",
		AuthFilePath:                v.noAuth,
		DockerCompatAuthFilePath:    v.noAuth,
		DockerCertPath:              acc.CertDir,
		DockerAuthConfig:            &types.DockerAuthConfig{Username: acc.Username, Password: acc.Password},
		DockerProxy:                 acc.Proxy,
		DockerRegistryUserAgent:     "go-trustee-image",
	}
	if acc.Insecure {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	src, err := iref.NewImageSource(ctx, sys)
	if err != nil {
		return fmt.Errorf("opening %s for signature verification: %w", ref, err)
	}
	defer src.Close()
	pc, err := csig.NewPolicyContext(v.policy)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	defer pc.Destroy()
	ok, err := pc.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, &dg))
	if !ok || err != nil {
		return fmt.Errorf("%w: %s@%s: %v", ErrDenied, ref, dg, err)
	}
	return nil
}

// ResolvePolicy checks policy the way image-rs does (both "default" and
// "transports" are required) and returns it with every kbs:/// or file://
// keyPath replaced by keyData, and PEM sigstoreSigned keyData
// base64-encoded, ready for containers' parser.
func ResolvePolicy(ctx context.Context, policy []byte, g Getter) ([]byte, error) {
	if len(policy) > limits.MaxPolicyBytes {
		return nil, fmt.Errorf("%w: exceeds %d bytes", ErrPolicy, limits.MaxPolicyBytes)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(policy, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if _, ok := doc["default"]; !ok {
		return nil, fmt.Errorf("%w: missing \"default\"", ErrPolicy)
	}
	if _, ok := doc["transports"]; !ok {
		return nil, fmt.Errorf("%w: missing \"transports\"", ErrPolicy)
	}
	var def []map[string]any
	if err := json.Unmarshal(doc["default"], &def); err != nil {
		return nil, fmt.Errorf("%w: default: %v", ErrPolicy, err)
	}
	if err := resolveReqs(ctx, def, g); err != nil {
		return nil, err
	}
	var transports map[string]map[string][]map[string]any
	if err := json.Unmarshal(doc["transports"], &transports); err != nil {
		return nil, fmt.Errorf("%w: transports: %v", ErrPolicy, err)
	}
	for _, scopes := range transports {
		for _, reqs := range scopes {
			if err := resolveReqs(ctx, reqs, g); err != nil {
				return nil, err
			}
		}
	}
	out := map[string]any{"default": def, "transports": transports}
	return json.Marshal(out)
}

func resolveReqs(ctx context.Context, reqs []map[string]any, g Getter) error {
	for _, r := range reqs {
		typ, _ := r["type"].(string)
		if typ != "signedBy" && typ != "sigstoreSigned" {
			continue
		}
		if _, ok := r["signedIdentity"]; !ok && typ == "sigstoreSigned" {
			// cosign payloads name the repository without tag or digest:
			// image-rs matches them by repository, whereas containers'
			// default (matchRepoDigestOrExact) would refuse every one.
			r["signedIdentity"] = map[string]any{"type": "matchRepository"}
		}
		if kd, ok := r["keyData"].(string); ok && typ == "sigstoreSigned" && strings.HasPrefix(strings.TrimSpace(kd), "-----BEGIN") {
			r["keyData"] = base64.StdEncoding.EncodeToString([]byte(kd))
		}
		var paths []string
		if p, ok := r["keyPath"].(string); ok {
			paths = append(paths, p)
		}
		if ps, ok := r["keyPaths"].([]any); ok {
			for _, p := range ps {
				s, ok := p.(string)
				if !ok {
					return fmt.Errorf("%w: keyPaths must be strings", ErrPolicy)
				}
				paths = append(paths, s)
			}
		}
		remote := false
		for _, p := range paths {
			remote = remote || IsResourceURI(p) || strings.HasPrefix(p, "file://")
		}
		if !remote {
			continue
		}
		if _, ok := r["keyData"]; ok {
			return fmt.Errorf("%w: %s has both keyPath and keyData", ErrPolicy, typ)
		}
		var keys [][]byte
		for _, p := range paths {
			b, err := ReadResource(ctx, g, p, MaxKeyBytes)
			if err != nil {
				return fmt.Errorf("policy key %s: %w", p, err)
			}
			keys = append(keys, b)
		}
		delete(r, "keyPath")
		delete(r, "keyPaths")
		switch {
		case len(keys) == 1:
			r["keyData"] = base64.StdEncoding.EncodeToString(keys[0])
		case typ == "signedBy":
			// Binary OpenPGP keyrings concatenate.
			var all []byte
			for _, k := range keys {
				all = append(all, k...)
			}
			r["keyData"] = base64.StdEncoding.EncodeToString(all)
		default:
			var ds []string
			for _, k := range keys {
				ds = append(ds, base64.StdEncoding.EncodeToString(k))
			}
			r["keyDatas"] = ds
		}
	}
	return nil
}

// registriesD turns image-rs's sigstore configuration (registries.d YAML:
// default-docker and docker namespaces with sigstore/lookaside URLs) into
// the registries.d document containers reads, with
// use-sigstore-attachments on wherever it is not set.
func registriesD(cfg []byte) ([]byte, error) {
	if len(cfg) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: sigstore configuration exceeds %d bytes", ErrPolicy, limits.MaxConfigBytes)
	}
	type ns struct {
		Lookaside              string `yaml:"lookaside,omitempty"`
		LookasideStaging       string `yaml:"lookaside-staging,omitempty"`
		SigStore               string `yaml:"sigstore,omitempty"`
		SigStoreStaging        string `yaml:"sigstore-staging,omitempty"`
		UseSigstoreAttachments *bool  `yaml:"use-sigstore-attachments,omitempty"`
	}
	var doc struct {
		DefaultDocker *ns           `yaml:"default-docker,omitempty"`
		Docker        map[string]ns `yaml:"docker,omitempty"`
	}
	if len(strings.TrimSpace(string(cfg))) > 0 {
		dec := yaml.NewDecoder(strings.NewReader(string(cfg)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: sigstore configuration: %v", ErrPolicy, err)
		}
	}
	yes := true
	if doc.DefaultDocker == nil {
		doc.DefaultDocker = &ns{}
	}
	if doc.DefaultDocker.UseSigstoreAttachments == nil {
		doc.DefaultDocker.UseSigstoreAttachments = &yes
	}
	for k, n := range doc.Docker {
		if n.UseSigstoreAttachments == nil {
			n.UseSigstoreAttachments = &yes
		}
		doc.Docker[k] = n
	}
	return yaml.Marshal(&doc)
}
