package imagecrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/imagecrypt/keyprovider"
	"github.com/go-trustee/go-trustee/sealedsecret"
	"github.com/go-trustee/go-trustee/token/jwt"
)

// MaxKeyProviderInput bounds a keyprovider request JSON
// (keyprovider.MaxMessageBytes).
const MaxKeyProviderInput = keyprovider.MaxMessageBytes

// DefaultKeyRepoPath prefixes the kid of a KEK drawn for a WrapKey request
// without keyid, as coco_keyprovider does.
const DefaultKeyRepoPath = "/default/image-kek"

// sampleKID and sampleKEK are coco_keyprovider's hard-coded "sample=true"
// key, which the sample KBC of the guest knows. Test only.
const sampleKID = "kbs:///default/test-key/1"

var sampleKEK = []byte{
	217, 155, 119, 5, 176, 186, 122, 22, 130, 149, 179, 163, 54, 114, 112, 176,
	221, 155, 55, 27, 245, 20, 202, 139, 155, 167, 240, 163, 55, 17, 218, 234,
}

// ErrInvalidKeyProviderRequest: a keyprovider request is malformed.
var ErrInvalidKeyProviderRequest = errors.New("invalid keyprovider request")

// WrapParams are the "provider:attestation-agent:<params>" parameters of a
// WrapKey request: k=v pairs joined by "::".
type WrapParams struct {
	// Sample selects the hard-coded test KEK (kid kbs:///default/test-key/1);
	// it is never registered.
	Sample bool
	// KeyID is the kid; "" draws /default/image-kek/<uuid>.
	KeyID string
	// KeyPath names a file holding the 32-byte KEK; "" draws a fresh KEK.
	KeyPath string
	// Algorithm is the wrap type, A256GCM by default. Unlike upstream
	// (which reads it from the keypath value) the algorithm= value is used.
	Algorithm string
}

// ParseWrapParams parses "k=v::k=v". Unknown keys are ignored as upstream.
func ParseWrapParams(s string) (WrapParams, error) {
	p := WrapParams{Algorithm: WrapA256GCM}
	for _, field := range strings.Split(s, "::") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			continue
		}
		switch k {
		case "sample":
			p.Sample = v == "true"
		case "keyid":
			p.KeyID = v
		case "keypath":
			p.KeyPath = v
		case "algorithm":
			if v != WrapA256GCM && v != WrapA256CTR {
				return WrapParams{}, fmt.Errorf("%w: algorithm %q is neither %s nor %s", ErrInvalidKeyProviderRequest, v, WrapA256GCM, WrapA256CTR)
			}
			p.Algorithm = v
		}
	}
	return p, nil
}

// NormalizeKID turns a keyid as coco_keyprovider accepts it
// (kbs:///r/t/g, kbs://addr/r/t/g, kbs+plugin:///r/t/g, /r/t/g, addr/r/t/g)
// into a kbs:// URI the guest can fetch, and returns the resource path
// "r/t/g" used to register it.
func NormalizeKID(keyid string) (kid, path string, err error) {
	rest, scheme := keyid, "kbs"
	if s, after, ok := strings.Cut(keyid, "://"); ok {
		if s != "kbs" && !strings.HasPrefix(s, "kbs+") {
			return "", "", fmt.Errorf("%w: keyid %q has scheme %q", ErrInvalidKeyProviderRequest, keyid, s)
		}
		rest, scheme = after, s
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("%w: keyid %q is not [kbs://][addr]/<repository>/<type>/<tag>", ErrInvalidKeyProviderRequest, keyid)
	}
	path = strings.Join(parts[1:], "/")
	if _, err := client.ParseResourceURI(path); err != nil {
		return "", "", fmt.Errorf("%w: keyid %q: %w", ErrInvalidKeyProviderRequest, keyid, err)
	}
	return scheme + "://" + parts[0] + "/" + path, path, nil
}

// WrapRequest is the part of a keyprovider "keywrap" request a key
// provider uses.
type WrapRequest struct {
	// Params are keywrapparams.ec.Parameters["attestation-agent"].
	Params [][]byte
	// OptsData are the layer key options to wrap.
	OptsData []byte
}

// ParseWrapRequest decodes a keyprovider "keywrap" request JSON from Go
// ocicrypt (base64 strings) or ocicrypt-rs (integer arrays) with package
// keyprovider, and checks it carries attestation-agent parameters and
// optsdata.
func ParseWrapRequest(b []byte) (*WrapRequest, error) {
	raw, err := keyprovider.DecodeWrapRequest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyProviderRequest, err)
	}
	if raw.Op != "keywrap" {
		return nil, fmt.Errorf("%w: op %q (want keywrap)", ErrInvalidKeyProviderRequest, raw.Op)
	}
	if raw.EC == nil {
		return nil, fmt.Errorf("%w: no keywrapparams.ec", ErrInvalidKeyProviderRequest)
	}
	ps := raw.EC.Parameters[ProviderName]
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: no %s parameters", ErrInvalidKeyProviderRequest, ProviderName)
	}
	if len(raw.OptsData) == 0 {
		return nil, fmt.Errorf("%w: no optsdata", ErrInvalidKeyProviderRequest)
	}
	return &WrapRequest{Params: ps, OptsData: raw.OptsData}, nil
}

// MarshalWrapReply encodes {"keywrapresults":{"annotation":[...]}} with
// the annotation as an integer array, as coco_keyprovider does
// (keyprovider.EncodeWrapReply); Go ocicrypt and ocicrypt-rs both decode
// it.
func MarshalWrapReply(packet []byte) ([]byte, error) {
	return keyprovider.EncodeWrapReply(packet), nil
}

// Registrar stores a KEK in the KBS at resource path "repo/type/tag".
type Registrar interface {
	Register(ctx context.Context, path string, kek []byte) error
}

// KBSRegistrar registers KEKs through the KBS admin API.
type KBSRegistrar struct {
	// KBS is an admin client (no attester needed).
	KBS *client.Client
	// Token returns the admin bearer token; nil or "" sends none.
	Token func() (string, error)
}

// Register stores kek at path.
func (r *KBSRegistrar) Register(ctx context.Context, path string, kek []byte) error {
	tok := ""
	if r.Token != nil {
		t, err := r.Token()
		if err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		tok = t
	}
	if err := r.KBS.SetResource(ctx, tok, path, kek); err != nil {
		return fmt.Errorf("storing the resource at %s: %w", path, err)
	}
	return nil
}

// LegacyAdminToken signs the admin JWT coco_keyprovider and old kbs-client
// versions made with an Ed25519 key (PKCS#8 PEM), valid for
// jwt.AdminTokenLifetime: jwt.ParseAdminKeyPEM then jwt.SignAdminToken.
func LegacyAdminToken(pemBytes []byte, now time.Time) (string, error) {
	key, err := jwt.ParseAdminKeyPEM(pemBytes)
	if err != nil {
		return "", fmt.Errorf("the admin private key: %w", err)
	}
	return jwt.SignAdminToken(key, now, jwt.AdminTokenLifetime)
}

// KeyProvider serves keyprovider "keywrap" requests as coco_keyprovider:
// it reads or draws the KEK, wraps the layer key options, and registers
// the KEK in the KBS when a Registrar is set.
type KeyProvider struct {
	// Registrar registers drawn or read KEKs; nil registers nothing.
	Registrar Registrar
	// Rand supplies KEKs and IVs; nil is crypto/rand.
	Rand io.Reader
	// ReadFile reads keypath files; nil is os.ReadFile (bounded to 1 KiB).
	ReadFile func(name string) ([]byte, error)
	// NewTag names a drawn kid's tag; nil is a random UUID.
	NewTag func() string
	// Logger receives one record per wrap (never key material).
	Logger *slog.Logger
}

// Wrap serves one keywrap request JSON and returns the reply JSON.
func (k *KeyProvider) Wrap(ctx context.Context, input []byte) ([]byte, error) {
	req, err := ParseWrapRequest(input)
	if err != nil {
		return nil, err
	}
	params, err := ParseWrapParams(string(req.Params[0]))
	if err != nil {
		return nil, err
	}
	kek, path, err := k.kek(params)
	if err != nil {
		return nil, err
	}
	defer clear(kek.Key)
	packet, err := kek.Wrap(req.OptsData)
	if err != nil {
		return nil, err
	}
	if k.Registrar != nil && !params.Sample {
		if err := k.Registrar.Register(ctx, path, kek.Key); err != nil {
			return nil, err
		}
	}
	if k.Logger != nil {
		k.Logger.Info("wrapped a layer key", "kid", kek.ID, "wrap_type", kek.WrapType, "registered", k.Registrar != nil && !params.Sample)
	}
	return MarshalWrapReply(packet)
}

func (k *KeyProvider) kek(p WrapParams) (*KEK, string, error) {
	rnd := k.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	if p.Sample {
		return &KEK{Key: bytes.Clone(sampleKEK), ID: sampleKID, WrapType: p.Algorithm, Rand: rnd}, "default/test-key/1", nil
	}
	keyid := p.KeyID
	if keyid == "" {
		tag := uuid.NewString()
		if k.NewTag != nil {
			tag = k.NewTag()
		}
		keyid = DefaultKeyRepoPath + "/" + tag
	}
	kid, path, err := NormalizeKID(keyid)
	if err != nil {
		return nil, "", err
	}
	if !sealedsecret.IsResourceURI(kid) {
		return nil, "", fmt.Errorf("%w: kid %q", ErrInvalidKeyProviderRequest, kid)
	}
	key := make([]byte, KEKSize)
	if p.KeyPath != "" {
		read := k.ReadFile
		if read == nil {
			read = readSmallFile
		}
		b, err := read(p.KeyPath)
		if err != nil {
			return nil, "", fmt.Errorf("reading the KEK: %w", err)
		}
		if len(b) != KEKSize {
			clear(b)
			return nil, "", fmt.Errorf("%w: the KEK file holds %d bytes, want %d", ErrInvalidKEK, len(b), KEKSize)
		}
		copy(key, b)
		clear(b)
	} else if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, "", fmt.Errorf("drawing a KEK: %w", err)
	}
	return &KEK{Key: key, ID: kid, WrapType: p.Algorithm, Rand: rnd}, path, nil
}

func readSmallFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1025))
	if err != nil {
		return nil, err
	}
	if len(b) > 1024 {
		return nil, fmt.Errorf("%s exceeds 1 KiB", name)
	}
	return b, nil
}
