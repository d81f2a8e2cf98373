package as

// EAR token assembly and signing.
//
// Why the header and claims are assembled here rather than with a JOSE or
// EAR library: upstream's tokens have a layout no library produces as is.
// The JWS header carries the signing key as a "jwk" member whose own "x5c"
// holds the certificate chain (standard base64 DER) — the KBS finds the key
// and the chain there — and the claims mix EAR members with
// Trustee-specific ones (annotated evidence keyed by TEE,
// "ear.trustee.identifiers", "exp"/"iss" as EAR extensions) in a fixed
// order. Writing these bytes ourselves keeps them exactly as upstream's
// ear/jsonwebtoken crates write them; the JWS itself is signed by package
// jwt (jwt.Signer signs a header as given), and tests check the result
// with go-jose.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/token/jwt"
)

// trustClaimNames are the AR4SI trustworthiness claims in EAR order.
var trustClaimNames = [8]string{
	"instance-identity", "configuration", "executables", "file-system",
	"hardware", "runtime-opaque", "storage-opaque", "sourced-data",
}

// trustVector is an EAR trustworthiness vector; unset claims are omitted
// from the token and count as 0.
type trustVector struct {
	value [8]int8
	isSet [8]bool
}

func (t *trustVector) set(i int, v int8) { t.value[i], t.isSet[i] = v, true }

func (t *trustVector) setAll(v int8) {
	for i := range t.value {
		t.set(i, v)
	}
}

func (t *trustVector) anySet() bool {
	for _, s := range t.isSet {
		if s {
			return true
		}
	}
	return false
}

// Trust tiers (EAR status), in increasing severity.
const (
	tierNone = iota
	tierAffirming
	tierWarning
	tierContraindicated
)

var tierNames = [...]string{"none", "affirming", "warning", "contraindicated"}

// tier is the AR4SI tier of a claim value: [-1,1] none, [-32,32)
// affirming, [-96,96) warning, otherwise contraindicated.
func tier(v int8) int {
	switch {
	case v >= -1 && v <= 1:
		return tierNone
	case v >= -32 && v < 32:
		return tierAffirming
	case v >= -96 && v < 96:
		return tierWarning
	}
	return tierContraindicated
}

// status is the worst tier over all claims (unset claims are 0).
func (t *trustVector) status() string {
	worst := tierNone
	for _, v := range t.value {
		worst = max(worst, tier(v))
	}
	return tierNames[worst]
}

// appraisal is one EAR submodule.
type appraisal struct {
	trust      trustVector
	policyID   string
	evidence   []byte // annotated evidence, JSON
	extensions []extension
}

// earClaims are the top-level claims of an EAR.
type earClaims struct {
	profile, developer, build, issuer string
	iat, exp                          int64
	submods                           map[string]*appraisal
	names                             []string // submod names, sorted
}

// encodeJSON marshals v compactly without HTML escaping, as serde_json.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonWriter writes JSON object members in a fixed order.
type jsonWriter struct {
	buf   bytes.Buffer
	first []bool
	err   error
}

func (w *jsonWriter) open() { w.buf.WriteByte('{'); w.first = append(w.first, true) }

func (w *jsonWriter) close() { w.buf.WriteByte('}'); w.first = w.first[:len(w.first)-1] }

func (w *jsonWriter) key(k string) {
	if !w.first[len(w.first)-1] {
		w.buf.WriteByte(',')
	}
	w.first[len(w.first)-1] = false
	w.value(k)
	w.buf.WriteByte(':')
}

func (w *jsonWriter) value(v any) {
	b, err := encodeJSON(v)
	if err != nil && w.err == nil {
		w.err = err
	}
	w.buf.Write(b)
}

func (w *jsonWriter) member(k string, v any) { w.key(k); w.value(v) }

func (w *jsonWriter) raw(k string, b []byte) { w.key(k); w.buf.Write(b) }

// marshal writes the EAR claims in upstream's member order: eat_profile,
// iat, ear.verifier-id, submods (sorted by name), then the extensions exp
// and iss (sorted by name). Each submodule: ear.status,
// ear.trustworthiness-vector (set claims, EAR order),
// ear.appraisal-policy-id, ear.veraison.annotated-evidence, then its
// extensions sorted by name, null values omitted.
func (c *earClaims) marshal() ([]byte, error) {
	var w jsonWriter
	w.open()
	w.member("eat_profile", c.profile)
	w.member("iat", c.iat)
	w.key("ear.verifier-id")
	w.open()
	w.member("developer", c.developer)
	w.member("build", c.build)
	w.close()
	w.key("submods")
	w.open()
	for _, name := range c.names {
		a := c.submods[name]
		w.key(name)
		w.open()
		w.member("ear.status", a.trust.status())
		if a.trust.anySet() {
			w.key("ear.trustworthiness-vector")
			w.open()
			for i, n := range trustClaimNames {
				if a.trust.isSet[i] {
					w.member(n, a.trust.value[i])
				}
			}
			w.close()
		}
		w.member("ear.appraisal-policy-id", a.policyID)
		w.raw("ear.veraison.annotated-evidence", a.evidence)
		for _, ext := range a.extensions {
			if ext.value == nil {
				continue
			}
			w.member(ext.name, ext.value)
		}
		w.close()
	}
	w.close()
	w.member("exp", c.exp)
	w.member("iss", c.issuer)
	w.close()
	if w.err != nil {
		return nil, fmt.Errorf("encoding EAR claims: %w", w.err)
	}
	return w.buf.Bytes(), nil
}

// signer signs EAR tokens with ES256.
type signer struct {
	jws       *jwt.Signer
	ephemeral bool
	jwk       []byte // public JWK JSON, upstream member order
}

// The token signing key of an AS without a configured signer: generated
// once and kept in the AS store, so that a restarted AS (and KBS), and
// every replica sharing the store, sign with the same key and accept each
// other's tokens. Upstream generates a new key at every start, which
// invalidates every token a guest holds on each restart.
const (
	NamespaceSigner = "attestation_service_signer"
	storedSignerKey = "token-signer-p256.pem"
)

// storedSigner returns the signer of the key kept in st, generating and
// storing it (insert-if-absent: when replicas start together, one key
// wins and all use it) when there is none.
func storedSigner(ctx context.Context, st storage.Store, rand io.Reader) (*signer, error) {
	for range 3 {
		b, err := st.Get(ctx, NamespaceSigner, storedSignerKey)
		if err == nil {
			key, err := ParseSigningKey(b)
			if err != nil {
				return nil, fmt.Errorf("the token signing key kept in the store (%s/%s) is unusable (delete it to have a new one generated): %w",
					NamespaceSigner, storedSignerKey, err)
			}
			return finishSigner(key, nil, "", true, rand)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("reading the token signing key from the store: %w", err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
		if err != nil {
			return nil, fmt.Errorf("generating the token signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		created, err := st.Set(ctx, NamespaceSigner, storedSignerKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), false)
		if err != nil {
			return nil, fmt.Errorf("storing the token signing key: %w", err)
		}
		if created {
			return finishSigner(key, nil, "", true, rand)
		}
		// Another replica stored one first: read and use it.
	}
	return nil, errors.New("storing the token signing key: the stored key keeps changing")
}

// newSigner loads the configured key (and chain) or, for a nil config,
// generates an ephemeral P-256 key.
func newSigner(cfg *SignerConfig, rand io.Reader) (*signer, error) {
	if cfg == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
		if err != nil {
			return nil, fmt.Errorf("generating ephemeral token signing key: %w", err)
		}
		return finishSigner(key, nil, "", true, rand)
	}
	keyPEM, err := readBounded(cfg.KeyPath)
	if err != nil {
		return nil, fmt.Errorf("%w: read token signer private key: %w", ErrInvalidConfig, err)
	}
	key, err := ParseSigningKey(keyPEM)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	if cfg.CertPath != "" {
		chainPEM, err := readBounded(cfg.CertPath)
		if err != nil {
			return nil, fmt.Errorf("%w: read token signer cert file: %w", ErrInvalidConfig, err)
		}
		chain, err = ParseCertChain(chainPEM)
		if err != nil {
			return nil, err
		}
		if !key.PublicKey.Equal(chain[0].PublicKey) {
			return nil, fmt.Errorf("%w: the first certificate of %s does not certify the key of %s", ErrInvalidConfig, cfg.CertPath, cfg.KeyPath)
		}
	}
	return finishSigner(key, chain, cfg.CertURL, false, rand)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, limits.MaxConfigBytes)
	}
	return b, nil
}

// ParseSigningKey parses a PEM P-256 private key, SEC1 ("EC PRIVATE KEY")
// or PKCS#8 ("PRIVATE KEY"). Other curves and key types are rejected:
// tokens are ES256 only.
func ParseSigningKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key found", ErrInvalidConfig)
		}
		var key any
		var err error
		switch block.Type {
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("%w: parsing token signing key: %v", ErrInvalidConfig, err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: Only P-256 attestation token signing keys are supported", ErrInvalidConfig)
		}
		return ec, nil
	}
}

// ParseCertChain parses a PEM certificate chain, leaf first.
func ParseCertChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if len(chain) == limits.MaxCertChain {
			return nil, fmt.Errorf("%w: certificate chain longer than %d", ErrInvalidConfig, limits.MaxCertChain)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: Invalid PEM certificate chain: %v", ErrInvalidConfig, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: Invalid PEM certificate chain: no certificate", ErrInvalidConfig)
	}
	return chain, nil
}

func finishSigner(key *ecdsa.PrivateKey, chain []*x509.Certificate, certURL string, ephemeral bool, rand io.Reader) (*signer, error) {
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y, fixed length
	if err != nil {
		return nil, fmt.Errorf("encoding token signing key: %w", err)
	}
	// The JWK members in the order upstream (jsonwebtoken) writes them:
	// alg, x5u, x5c, kty, crv, x, y.
	var w jsonWriter
	w.open()
	w.member("alg", "ES256")
	if certURL != "" {
		w.member("x5u", certURL)
	}
	if chain != nil {
		x5c := make([]string, len(chain))
		for i, c := range chain {
			x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		w.member("x5c", x5c)
	}
	w.member("kty", "EC")
	w.member("crv", "P-256")
	w.member("x", base64.RawURLEncoding.EncodeToString(pub[1:33]))
	w.member("y", base64.RawURLEncoding.EncodeToString(pub[33:65]))
	w.close()
	if w.err != nil {
		return nil, w.err
	}
	jwk := w.buf.Bytes()
	// The header members in the order upstream writes them: typ, alg, jwk.
	header := append(append([]byte(`{"typ":"JWT","alg":"ES256","jwk":`), jwk...), '}')
	jws, err := jwt.NewSigner(key, header, rand)
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	return &signer{jws: jws, ephemeral: ephemeral, jwk: jwk}, nil
}

// jwks is the JSON Web Key Set with the signing key.
func (s *signer) jwks() []byte {
	return append(append([]byte(`{"keys":[`), s.jwk...), ']', '}')
}

// sign returns the compact JWS of claims.
func (s *signer) sign(claims []byte) (string, error) {
	tok, err := s.jws.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("signing EAR token: %w", err)
	}
	return tok, nil
}

// errNoSubmods mirrors the EAR validation of an empty result.
var errNoSubmods = errors.New("empty submods")

// issue signs an EAR.
func (s *signer) issue(c *earClaims) (string, error) {
	if len(c.names) == 0 {
		return "", fmt.Errorf("%w: %w", ErrVerification, errNoSubmods)
	}
	claims, err := c.marshal()
	if err != nil {
		return "", err
	}
	return s.sign(claims)
}
