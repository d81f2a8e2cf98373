// Package token verifies the attestation tokens a KBS accepts, from its
// session cookie or from an "Authorization: Bearer" header: EAR tokens of
// the Attestation Service, or tokens of an external verifier such as Intel
// Trust Authority. It is configured by the [attestation_token] section of
// upstream's KBS configuration.
//
// # Trust decisions (upstream kbs/src/crypto/jwt.rs)
//
//   - A token whose header carries a "jwk" is verified with that key only if
//     insecure_header_jwk is set, or if the key is endorsed: the JWK's "x5c"
//     is non-empty, the public key of x5c[0] equals the JWK, and x5c[0]
//     chains, through x5c[1..] in any order and through the non-self-signed
//     certificates of trusted_certs_paths, to a self-signed certificate of
//     trusted_certs_paths, valid at Options.Now. As with upstream's OpenSSL
//     store (no partial-chain flag), a trusted intermediate is not an anchor
//     by itself.
//   - Otherwise a token's "kid" selects a key of trusted_jwk_sets (https://,
//     file:// or a path; OpenID discovery as a fallback for https).
//   - The algorithm is the trusted JWK's "alg", and the header "alg" must
//     equal it; only asymmetric algorithms exist here (see package jwt).
//   - If neither path yields a key, the keys in Options.TrustedKeys are
//     tried with the header algorithm (checked against each key's type).
//   - "exp" is required and checked with 60 s leeway; "nbf" is checked when
//     present; "aud" is not checked, as upstream.
//   - With no trust material at all and insecure_header_jwk unset,
//     NewVerifier fails, as upstream refuses to start.
//
// A Verifier is immutable after NewVerifier except for two caches, and safe
// for concurrent use: the JWK set cache (see jwt.KeySet) and a bounded cache
// of endorsed header JWKs, keyed by their exact bytes and honoured only
// within the validity window of the certificate chain that endorsed them.
package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/token/jwt"
)

// Built-in tee-pubkey locations (JSON pointers into the claims), tried in
// this order after Config.ExtraTeeKeyPaths.
const (
	TeePubKeyPathITA     = "/tdx/attester_runtime_data/tee-pubkey"
	TeePubKeyPathITAVTPM = "/tdx/attester_user_data/tee-pubkey"
	TeePubKeyPathCoCo    = "/customized_claims/runtime_data/tee-pubkey"
	TeePubKeyPathEAR     = "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey"
	TeePubKeyPathValue   = "/tee-pubkey"
)

var defaultTeeKeyPaths = []string{TeePubKeyPathITA, TeePubKeyPathITAVTPM, TeePubKeyPathCoCo, TeePubKeyPathEAR, TeePubKeyPathValue}

var (
	// ErrInvalidToken is returned by Verify for any token that must not be
	// believed: malformed, "alg" none or unsupported, bad signature,
	// untrusted key, missing or past "exp".
	ErrInvalidToken = errors.New("token: invalid attestation token")
	// ErrUntrustedKey is returned (with ErrInvalidToken from Verify) when
	// no trusted key can be found for a token: an unendorsed header JWK, an
	// unknown kid, a key that chains to no trusted certificate.
	ErrUntrustedKey = errors.New("token: untrusted token signing key")
	// ErrNoTeePubKey is returned by TeePubKey when none of the configured
	// and built-in locations holds a value.
	ErrNoTeePubKey = errors.New("token: tee public key not found in attestation token")
	// ErrInvalidTeePubKey is returned by TeePubKey when the first location
	// that holds a value does not hold a typed TEE public key.
	ErrInvalidTeePubKey = errors.New("token: invalid tee public key in attestation token")
	// ErrInvalidConfig is returned by NewVerifier for unusable configuration or
	// trust material.
	ErrInvalidConfig = errors.New("token: invalid attestation token configuration")
)

// Config is the [attestation_token] section.
type Config struct {
	// TrustedCertsPaths are PEM files, each holding one or more
	// certificates: self-signed roots and, optionally, intermediates.
	TrustedCertsPaths []string `toml:"trusted_certs_paths" json:"trusted_certs_paths"`
	// TrustedJWKSets are JWK set sources: https:// URLs (with OpenID
	// discovery fallback), file:// URLs or local paths.
	TrustedJWKSets []string `toml:"trusted_jwk_sets" json:"trusted_jwk_sets"`
	// ExtraTeeKeyPaths are JSON pointers tried before the built-in
	// tee-pubkey locations.
	ExtraTeeKeyPaths []string `toml:"extra_teekey_paths" json:"extra_teekey_paths"`
	// InsecureHeaderJWK trusts a token's header "jwk" without endorsement.
	// Testing only: anyone can then mint accepted tokens.
	InsecureHeaderJWK bool `toml:"insecure_header_jwk" json:"insecure_header_jwk"`

	// InsecureKey is the name insecure_header_jwk had up to v0.20. It is
	// accepted and deliberately IGNORED (with a warning), as current
	// upstream ignores it: honouring it would make a file that upstream
	// runs securely run insecurely here.
	InsecureKey *bool `toml:"insecure_key" json:"insecure_key,omitempty"`
	// AttestationTokenType is the v0.10 token type, "CoCo" or "Jwk". With
	// "Jwk", TrustedCertsPaths held JWK set sources, and is read so.
	AttestationTokenType string `toml:"attestation_token_type" json:"attestation_token_type,omitempty"`
}

// Options are the non-configuration inputs of a Verifier. Zero values are
// production defaults.
type Options struct {
	// HTTPClient fetches remote JWK sets; nil means a client with a 10 s
	// timeout. Remote sources must be https.
	HTTPClient *http.Client
	// Now is the clock for exp/nbf and certificate validity; nil: time.Now.
	Now func() time.Time
	// Logger receives configuration warnings and cache refresh failures;
	// nil discards. Tokens and keys are never logged.
	Logger *slog.Logger
	// TrustedKeys are public keys trusted directly (the signing keys of an
	// Attestation Service built into this process), tried with the header
	// algorithm when a token's header JWK or kid yields no trusted key.
	TrustedKeys []crypto.PublicKey
}

// Verifier verifies attestation tokens. See the package documentation.
type Verifier struct {
	roots         *x509.CertPool
	intermediates []*x509.Certificate // non-self-signed certificates of the trust files
	nCerts        int
	jwks          *jwt.KeySet
	keys          []crypto.PublicKey
	insecure      bool
	paths         []string
	now           func() time.Time
	log           *slog.Logger

	// endorsed caches successful endorsements by the SHA-256 of the header
	// JWK bytes. The trust store never changes, so an entry stays valid
	// while Now lies inside the validity window of the chain it was built
	// on; outside it, the chain is validated again (and fails).
	mu       sync.Mutex
	endorsed map[[32]byte]endorsement
}

type endorsement struct {
	jwk                 *jwt.JWK
	notBefore, notAfter time.Time
}

// NewVerifier loads the trust material of cfg. It fails when a trust file
// or JWK set cannot be loaded, when an extra tee-pubkey path is not a JSON
// pointer, or when there is no trust material and InsecureHeaderJWK is off.
func NewVerifier(ctx context.Context, cfg Config, opts Options) (*Verifier, error) {
	v := &Verifier{now: opts.Now, log: opts.Logger, insecure: cfg.InsecureHeaderJWK, roots: x509.NewCertPool(), endorsed: map[[32]byte]endorsement{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if cfg.InsecureKey != nil {
		v.log.Warn("[attestation_token] insecure_key is a pre-v0.21 key and is ignored; use insecure_header_jwk", "insecure_key", *cfg.InsecureKey)
	}
	certPaths, jwkSets := cfg.TrustedCertsPaths, cfg.TrustedJWKSets
	switch strings.ToLower(cfg.AttestationTokenType) {
	case "", "coco":
	case "jwk":
		v.log.Warn("[attestation_token] attestation_token_type = \"Jwk\" is a v0.10 setting: reading trusted_certs_paths as JWK sets; move them to trusted_jwk_sets")
		jwkSets = append(append([]string(nil), jwkSets...), certPaths...)
		certPaths = nil
	default:
		return nil, fmt.Errorf("%w: unknown attestation_token_type %q", ErrInvalidConfig, cfg.AttestationTokenType)
	}
	for _, p := range certPaths {
		if err := v.addTrustFile(p); err != nil {
			return nil, err
		}
	}
	ks, err := jwt.NewKeySet(ctx, jwkSets, jwt.KeySetOptions{HTTPClient: opts.HTTPClient, Now: v.now, Logger: v.log})
	if err != nil {
		return nil, fmt.Errorf("%w: loading trusted_jwk_sets: %w", ErrInvalidConfig, err)
	}
	v.jwks = ks
	for i, k := range opts.TrustedKeys {
		if jwt.AlgForKey(k) == nil {
			return nil, fmt.Errorf("%w: trusted key %d has unsupported type %T", ErrInvalidConfig, i, k)
		}
		v.keys = append(v.keys, k)
	}
	for _, p := range cfg.ExtraTeeKeyPaths {
		if p != "" && !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%w: extra_teekey_paths entry %q is not a JSON pointer (must start with /)", ErrInvalidConfig, p)
		}
	}
	v.paths = append(append([]string(nil), cfg.ExtraTeeKeyPaths...), defaultTeeKeyPaths...)
	if v.nCerts == 0 && ks.Len() == 0 && len(v.keys) == 0 {
		if !v.insecure {
			return nil, fmt.Errorf("%w: no trusted certificates, JWK sets or keys, and insecure_header_jwk is off: no token could ever be verified", ErrInvalidConfig)
		}
	}
	if v.insecure {
		v.log.Warn("insecure_header_jwk is enabled: any key in a token header is trusted; for testing only")
	}
	return v, nil
}

func (v *Verifier) addTrustFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: reading certificate %s: %w", ErrInvalidConfig, path, err)
	}
	if len(b) > limits.MaxConfigBytes {
		return fmt.Errorf("%w: certificate file %s exceeds %d bytes", ErrInvalidConfig, path, limits.MaxConfigBytes)
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" && blk.Type != "TRUSTED CERTIFICATE" && blk.Type != "X509 CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("%w: parsing certificate in %s: %w", ErrInvalidConfig, path, err)
		}
		if selfSigned(c) {
			v.roots.AddCert(c)
		} else {
			v.intermediates = append(v.intermediates, c)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: no certificates found in %s", ErrInvalidConfig, path)
	}
	v.nCerts += n
	return nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// Verify checks raw and returns its claims (numbers as json.Number). Every
// failure matches ErrInvalidToken; key trust failures also ErrUntrustedKey.
func (v *Verifier) Verify(ctx context.Context, raw string) (map[string]any, error) {
	tok, err := jwt.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	key, alg, kerr := v.headerKey(ctx, tok.Header)
	switch {
	case kerr == nil:
		if err := tok.Verify(key, alg); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
	case len(v.keys) > 0:
		if err := v.verifyWithTrustedKeys(tok); err != nil {
			return nil, fmt.Errorf("%w: %w (header key: %w)", ErrInvalidToken, err, kerr)
		}
	default:
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, kerr)
	}
	claims, err := tok.Claims()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err := jwt.ValidateTime(claims, v.now(), jwt.DefaultLeeway, true); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return claims, nil
}

// headerKey finds the trusted key and algorithm a token's header names.
func (v *Verifier) headerKey(ctx context.Context, h jwt.Header) (crypto.PublicKey, string, error) {
	var jwk *jwt.JWK
	if h.JWK != nil {
		k, err := v.trustJWK(h.JWK)
		if err != nil {
			return nil, "", err
		}
		jwk = k
	} else {
		if v.jwks.Len() == 0 {
			return nil, "", fmt.Errorf("%w: token has no header jwk and no trusted JWK set is configured", ErrUntrustedKey)
		}
		if h.Kid == "" {
			return nil, "", fmt.Errorf("%w: token header has neither jwk nor kid", ErrUntrustedKey)
		}
		k, ok := v.jwks.Lookup(ctx, h.Kid)
		if !ok {
			return nil, "", fmt.Errorf("%w: kid %q not in the trusted JWK sets", ErrUntrustedKey, h.Kid)
		}
		jwk = k
	}
	if jwk.Alg == "" {
		return nil, "", fmt.Errorf("%w: trusted JWK has no alg", ErrUntrustedKey)
	}
	return jwk.Key, jwk.Alg, nil
}

func (v *Verifier) verifyWithTrustedKeys(tok *jwt.Token) error {
	var last error
	for _, k := range v.keys {
		if err := tok.Verify(k, tok.Header.Alg); err != nil {
			last = err
			continue
		}
		return nil
	}
	return fmt.Errorf("no trusted key verifies the token: %w", last)
}

// TrustHeaderJWK makes the trust decision Verify makes for a token header's
// "jwk" member, on its own, and returns the key to verify with.
func (v *Verifier) TrustHeaderJWK(jwkJSON []byte) (crypto.PublicKey, error) {
	k, err := v.trustJWK(jwkJSON)
	if err != nil {
		return nil, err
	}
	return k.Key, nil
}

func (v *Verifier) trustJWK(b []byte) (*jwt.JWK, error) {
	k, err := jwt.ParseJWK(b)
	if err != nil {
		return nil, fmt.Errorf("%w: header jwk: %w", ErrUntrustedKey, err)
	}
	if v.insecure {
		return k, nil
	}
	if v.nCerts == 0 {
		return nil, fmt.Errorf("%w: header jwk cannot be endorsed: no trusted_certs_paths configured", ErrUntrustedKey)
	}
	id := sha256.Sum256(b)
	now := v.now()
	v.mu.Lock()
	e, ok := v.endorsed[id]
	v.mu.Unlock()
	if ok && !now.Before(e.notBefore) && !now.After(e.notAfter) {
		return e.jwk, nil
	}
	nb, na, err := v.endorse(k, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedKey, err)
	}
	v.mu.Lock()
	if len(v.endorsed) >= limits.MaxEndorsedTokenKeys {
		clear(v.endorsed)
	}
	v.endorsed[id] = endorsement{jwk: k, notBefore: nb, notAfter: na}
	v.mu.Unlock()
	return k, nil
}

// endorse checks that k's x5c binds it to a trusted certificate chain valid
// at now, and returns the validity window of that chain.
func (v *Verifier) endorse(k *jwt.JWK, now time.Time) (notBefore, notAfter time.Time, err error) {
	if k.Kty != "RSA" && k.Kty != "EC" {
		return notBefore, notAfter, fmt.Errorf("only RSA or EC JWKs can be endorsed, not %q", k.Kty)
	}
	if len(k.X5C) == 0 {
		return notBefore, notAfter, errors.New("header jwk has no x5c certificate chain")
	}
	leaf, err := x509.ParseCertificate(k.X5C[0])
	if err != nil {
		return notBefore, notAfter, fmt.Errorf("x5c[0]: %w", err)
	}
	if !jwt.EqualKeys(k.Key, leaf.PublicKey) {
		return notBefore, notAfter, errors.New("header jwk does not match the x5c leaf certificate")
	}
	inter := x509.NewCertPool()
	for i, der := range k.X5C[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return notBefore, notAfter, fmt.Errorf("x5c[%d]: %w", i+1, err)
		}
		inter.AddCert(c)
	}
	for _, c := range v.intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return notBefore, notAfter, fmt.Errorf("x5c does not chain to a trusted certificate: %w", err)
	}
	notBefore, notAfter = leaf.NotBefore, leaf.NotAfter
	for _, c := range chains[0] {
		if c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return notBefore, notAfter, nil
}

// TeePubKey extracts the guest's public key from verified claims: the
// first of ExtraTeeKeyPaths and then the built-in locations that holds a
// value decides; a value that is not a typed TEE key is an error (the next
// location is not tried), as upstream.
func (v *Verifier) TeePubKey(claims map[string]any) (protocol.TeePubKey, error) {
	for _, p := range v.paths {
		val, ok := pointer(claims, p)
		if !ok {
			continue
		}
		b, err := json.Marshal(val)
		if err != nil {
			return protocol.TeePubKey{}, fmt.Errorf("%w: at %s: %w", ErrInvalidTeePubKey, p, err)
		}
		var k protocol.TeePubKey
		if err := json.Unmarshal(b, &k); err != nil {
			return protocol.TeePubKey{}, fmt.Errorf("%w: at %s: %w", ErrInvalidTeePubKey, p, err)
		}
		return k, nil
	}
	return protocol.TeePubKey{}, ErrNoTeePubKey
}

// pointer resolves an RFC 6901 JSON pointer in a decoded JSON document.
func pointer(doc any, p string) (any, bool) {
	if p == "" {
		return doc, doc != nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(p[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			if tok == "" || (len(tok) > 1 && tok[0] == '0') || tok[0] == '+' {
				return nil, false
			}
			i, err := strconv.ParseUint(tok, 10, 31)
			if err != nil || int(i) >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}
