package protocol

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// KeyAlgorithm selects the kind of TEE key pair to generate.
type KeyAlgorithm int

const (
	// KeyEC256 is an EC P-256 key for ECDH-ES+A256KW (the default).
	KeyEC256 KeyAlgorithm = iota
	// KeyEC521 is an EC P-521 key for ECDH-ES+A256KW.
	KeyEC521
	// KeyRSA2048 is an RSA key for RSA-OAEP-256: generated at 2048 bits;
	// keys loaded from PEM may be up to 4096 bits.
	KeyRSA2048
)

// keyAlgorithmNames are the names upstream's TeeKeyAlgorithm deserializes.
var keyAlgorithmNames = map[KeyAlgorithm]string{
	KeyEC256:   "ECDH-ES+A256KW-P256",
	KeyEC521:   "ECDH-ES+A256KW-P521",
	KeyRSA2048: "RSA-OAEP-256",
}

// String returns the upstream name: "ECDH-ES+A256KW-P256",
// "ECDH-ES+A256KW-P521" or "RSA-OAEP-256".
func (a KeyAlgorithm) String() string {
	if s, ok := keyAlgorithmNames[a]; ok {
		return s
	}
	return fmt.Sprintf("KeyAlgorithm(%d)", int(a))
}

// ParseKeyAlgorithm parses an upstream TeeKeyAlgorithm name (exact match).
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	for a, name := range keyAlgorithmNames {
		if name == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: key algorithm %q", ErrUnsupportedKey, s)
}

// MarshalText implements encoding.TextMarshaler with the upstream name.
func (a KeyAlgorithm) MarshalText() ([]byte, error) {
	s, ok := keyAlgorithmNames[a]
	if !ok {
		return nil, fmt.Errorf("%w: key algorithm %d", ErrUnsupportedKey, int(a))
	}
	return []byte(s), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with the upstream name.
func (a *KeyAlgorithm) UnmarshalText(b []byte) error {
	v, err := ParseKeyAlgorithm(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// KeyPair is the guest's TEE key pair: the private half stays in the guest,
// the public half travels in the attestation request, and the KBS encrypts
// released resources to it. A KeyPair is immutable and safe for concurrent
// use.
type KeyPair struct {
	alg   KeyAlgorithm
	curve curveInfo        // EC only
	ec    *ecdh.PrivateKey // EC only
	rsa   *rsa.PrivateKey  // RSA only
	pub   TeePubKey        // cached export
}

// GenerateKeyPair creates a new key pair. rand (nil means crypto/rand) is
// the source of the EC private scalar; RSA keys always draw from the system
// source, because since Go 1.26 crypto/rsa ignores caller-supplied readers.
func GenerateKeyPair(alg KeyAlgorithm, rand io.Reader) (*KeyPair, error) {
	switch alg {
	case KeyEC256, KeyEC521:
		c := curveP256
		if alg == KeyEC521 {
			c = curveP521
		}
		priv, err := newECDHKey(c, rand)
		if err != nil {
			return nil, fmt.Errorf("generating %s key: %w", c.name, err)
		}
		return newECKeyPair(c, priv), nil
	case KeyRSA2048:
		r := rand
		if r == nil {
			r = crand.Reader
		}
		priv, err := rsa.GenerateKey(r, 2048)
		if err != nil {
			return nil, fmt.Errorf("generating RSA key: %w", err)
		}
		return newRSAKeyPair(priv), nil
	}
	return nil, fmt.Errorf("%w: key algorithm %d", ErrUnsupportedKey, int(alg))
}

func newECKeyPair(c curveInfo, priv *ecdh.PrivateKey) *KeyPair {
	x, y := ecdhCoordinates(c, priv.PublicKey())
	alg := KeyEC256
	if c.name == CurveP521 {
		alg = KeyEC521
	}
	return &KeyPair{
		alg:   alg,
		curve: c,
		ec:    priv,
		pub: TeePubKey{
			Kty: KtyEC,
			Crv: c.name,
			Alg: AlgECDHESA256KW,
			X:   b64.EncodeToString(x),
			Y:   b64.EncodeToString(y),
		},
	}
}

func newRSAKeyPair(priv *rsa.PrivateKey) *KeyPair {
	return &KeyPair{
		alg: KeyRSA2048,
		rsa: priv,
		pub: TeePubKey{
			Kty: KtyRSA,
			Alg: AlgRSAOAEP256,
			N:   b64.EncodeToString(priv.N.Bytes()),
			E:   b64.EncodeToString(big.NewInt(int64(priv.E)).Bytes()),
		},
	}
}

// Algorithm reports which kind of key this is.
func (k *KeyPair) Algorithm() KeyAlgorithm { return k.alg }

// PublicKey returns the typed JWK the guest sends as "tee-pubkey": for EC
// {kty, crv, alg "ECDH-ES+A256KW", x, y} with fixed-length coordinates, for
// RSA {kty, alg "RSA-OAEP-256", n, e} with minimal big-endian integers.
func (k *KeyPair) PublicKey() TeePubKey { return k.pub }

// Decrypt opens a resource response sealed to this key pair: key
// management ECDH-ES+A256KW (the "epk" must be a valid point on this key's
// curve), RSA-OAEP-256 or RSA1_5; content encryption A256GCM with the ASCII
// of the received "protected" member as additional data (RFC 7516; when an
// "aad" member is present it is appended after a '.').
//
// Every failure matches ErrDecrypt. A failed CEK unwrap and a failed tag
// check are reported identically, and an RSA1_5 padding failure continues
// with a random CEK (Bleichenbacher countermeasure), so the error reveals
// nothing about the key.
func (k *KeyPair) Decrypt(r *Response) ([]byte, error) {
	d, err := decodeResponse(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	cek, err := k.unwrapCEK(d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	defer clear(cek)
	pt, err := openGCM(cek, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return pt, nil
}

// errUnwrap is the single error of a failed CEK unwrap.
var errUnwrap = errors.New("message authentication failed")

func (k *KeyPair) unwrapCEK(d *decodedResponse) ([]byte, error) {
	switch alg := d.header.Alg; alg {
	case AlgECDHESA256KW:
		if k.ec == nil {
			return nil, fmt.Errorf("%w: %s needs an EC key, this key pair is %s", ErrInvalidResponse, alg, k.alg)
		}
		epk, err := k.parseEPK(d.header.Other["epk"])
		if err != nil {
			return nil, err
		}
		if len(d.encryptedKey) != wrappedCEKSize {
			return nil, fmt.Errorf("%w: encrypted_key is %d bytes, want %d", ErrInvalidResponse, len(d.encryptedKey), wrappedCEKSize)
		}
		z, err := k.ec.ECDH(epk)
		if err != nil {
			return nil, fmt.Errorf("%w: ECDH: %v", ErrInvalidResponse, err)
		}
		kek := concatKDF(z)
		clear(z)
		cek, err := aesKeyUnwrap(kek, d.encryptedKey)
		clear(kek)
		if err != nil {
			return nil, errUnwrap
		}
		return cek, nil
	case AlgRSAOAEP256, AlgRSA15:
		if k.rsa == nil {
			return nil, fmt.Errorf("%w: %s needs an RSA key, this key pair is %s", ErrInvalidResponse, alg, k.alg)
		}
		if len(d.encryptedKey) != k.rsa.Size() {
			return nil, fmt.Errorf("%w: encrypted_key is %d bytes, want %d", ErrInvalidResponse, len(d.encryptedKey), k.rsa.Size())
		}
		if alg == AlgRSAOAEP256 {
			cek, err := rsa.DecryptOAEP(sha256.New(), nil, k.rsa, d.encryptedKey, nil)
			if err != nil || len(cek) != cekSize {
				clear(cek)
				return nil, errUnwrap
			}
			return cek, nil
		}
		// RSA1_5: start from a random CEK which DecryptPKCS1v15SessionKey
		// overwrites, in constant time, only when the padding is valid and
		// the message is exactly 32 bytes. A bad padding then fails at the
		// GCM tag like any other forgery.
		cek := make([]byte, cekSize)
		if _, err := io.ReadFull(crand.Reader, cek); err != nil {
			return nil, fmt.Errorf("generating decoy CEK: %w", err)
		}
		//lint:ignore SA1019 RSA1_5 is part of the wire protocol.
		if err := rsa.DecryptPKCS1v15SessionKey(nil, k.rsa, d.encryptedKey, cek); err != nil { //nolint:staticcheck // RSA1_5 is part of the wire protocol.
			clear(cek)
			return nil, errUnwrap
		}
		return cek, nil
	default:
		return nil, fmt.Errorf("%w: key management %q", ErrUnsupportedAlgorithm, alg)
	}
}

// parseEPK validates the "epk" header member: an EC JWK on this key's curve
// with fixed-length coordinates that encode a valid point.
func (k *KeyPair) parseEPK(v any) (*ecdh.PublicKey, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: protected header: `epk` is missing or not an object", ErrInvalidResponse)
	}
	str := func(name string) (string, error) {
		s, ok := m[name].(string)
		if !ok {
			return "", fmt.Errorf("%w: protected header: `epk.%s` is missing or not a string", ErrInvalidResponse, name)
		}
		return s, nil
	}
	var vals [4]string
	for i, name := range []string{"kty", "crv", "x", "y"} {
		s, err := str(name)
		if err != nil {
			return nil, err
		}
		vals[i] = s
	}
	if vals[0] != KtyEC {
		return nil, fmt.Errorf("%w: protected header: `epk.kty` is %q", ErrInvalidResponse, vals[0])
	}
	if vals[1] != k.curve.name {
		return nil, fmt.Errorf("%w: protected header: `epk` curve %q does not match the key's %s", ErrInvalidResponse, vals[1], k.curve.name)
	}
	pub, err := ecdhPublicKey(k.curve, vals[2], vals[3])
	if err != nil {
		return nil, fmt.Errorf("%w: protected header: `epk`: %w", ErrInvalidResponse, err)
	}
	return pub, nil
}

// MarshalPEM encodes the private key as upstream's TEE key pair does: PKCS#1
// "RSA PRIVATE KEY" for RSA, PKCS#8 "PRIVATE KEY" for EC. The result is
// secret.
func (k *KeyPair) MarshalPEM() ([]byte, error) {
	if k.rsa != nil {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		return nil, fmt.Errorf("marshaling EC key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// KeyPairFromPEM loads a key pair from the first PEM block of pemBytes
// (bounded by limits.MaxConfigBytes): PKCS#1 "RSA PRIVATE KEY" first, then
// PKCS#8 "PRIVATE KEY" holding an EC P-256, EC P-521 or RSA key. RSA keys
// must be 2048 to 4096 bits with a sane public exponent.
func KeyPairFromPEM(pemBytes []byte) (*KeyPair, error) {
	if len(pemBytes) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: PEM exceeds %d bytes", ErrUnsupportedKey, limits.MaxConfigBytes)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrUnsupportedKey)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: encrypted or annotated PEM blocks are not supported", ErrUnsupportedKey)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing PKCS#1 key: %v", ErrUnsupportedKey, err)
		}
		return rsaKeyPairFromPrivate(priv)
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing PKCS#8 key: %v", ErrUnsupportedKey, err)
		}
		switch key := key.(type) {
		case *rsa.PrivateKey:
			return rsaKeyPairFromPrivate(key)
		case *ecdsa.PrivateKey:
			var c curveInfo
			switch key.Curve {
			case elliptic.P256():
				c = curveP256
			case elliptic.P521():
				c = curveP521
			default:
				return nil, fmt.Errorf("%w: EC curve %s", ErrUnsupportedKey, key.Curve.Params().Name)
			}
			priv, err := key.ECDH()
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
			}
			return newECKeyPair(c, priv), nil
		default:
			return nil, fmt.Errorf("%w: PKCS#8 key of type %T", ErrUnsupportedKey, key)
		}
	}
	return nil, fmt.Errorf("%w: PEM block %q is neither PKCS#1 RSA nor PKCS#8", ErrUnsupportedKey, block.Type)
}

func rsaKeyPairFromPrivate(priv *rsa.PrivateKey) (*KeyPair, error) {
	if err := checkRSAPublic(&priv.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	if err := priv.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	return newRSAKeyPair(priv), nil
}

// RSA public key bounds. The upper bound is upstream's (rsa crate
// RsaPublicKey::new): a guest key Trustee would refuse is refused here too.
const (
	minRSABits = 2048
)

func checkRSAPublic(pub *rsa.PublicKey) error {
	if bits := pub.N.BitLen(); bits < minRSABits || bits > limits.MaxTeeKeyRSABits {
		return fmt.Errorf("RSA modulus is %d bits, want %d to %d", bits, minRSABits, limits.MaxTeeKeyRSABits)
	}
	if pub.N.Bit(0) == 0 {
		return errors.New("RSA modulus is even")
	}
	if pub.E < 3 || pub.E > limits.MaxTeeKeyRSAExponent || pub.E%2 == 0 {
		return fmt.Errorf("RSA public exponent %d is not an odd integer in [3, 2^31-1]", pub.E)
	}
	return nil
}

// PublicKeyFromTeePubKey converts the typed JWK into a crypto public key:
// *ecdsa.PublicKey for EC P-256 and P-521 (use its ECDH method for key
// agreement) and *rsa.PublicKey for RSA. The "alg" member is not looked at.
// The EC point must be on the curve with fixed-length coordinates; the RSA
// modulus must be 2048 to 4096 bits and odd, the exponent odd and in
// [3, 2^31-1]. A malformed key is ErrInvalidTeePubKey; an unsupported kty or
// curve is ErrUnsupportedKey.
func PublicKeyFromTeePubKey(k TeePubKey) (crypto.PublicKey, error) {
	switch k.Kty {
	case KtyEC:
		c, ok := curveByName(k.Crv)
		if !ok {
			return nil, fmt.Errorf("%w: curve %q", ErrUnsupportedKey, k.Crv)
		}
		pub, err := ecdhPublicKey(c, k.X, k.Y)
		if err != nil {
			return nil, err
		}
		epub, err := ecdsa.ParseUncompressedPublicKey(c.elliptic, pub.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidTeePubKey, err)
		}
		return epub, nil
	case KtyRSA:
		return rsaPublicKey(k.N, k.E)
	}
	return nil, fmt.Errorf("%w: key type %q", ErrUnsupportedKey, k.Kty)
}

// curveInfo describes one supported curve.
type curveInfo struct {
	name     string
	curve    ecdh.Curve
	elliptic elliptic.Curve
	size     int // bytes per coordinate and per scalar
	topMask  byte
}

var (
	curveP256 = curveInfo{name: CurveP256, curve: ecdh.P256(), elliptic: elliptic.P256(), size: 32, topMask: 0xff}
	curveP521 = curveInfo{name: CurveP521, curve: ecdh.P521(), elliptic: elliptic.P521(), size: 66, topMask: 0x01}
)

func curveByName(crv string) (curveInfo, bool) {
	switch crv {
	case CurveP256:
		return curveP256, true
	case CurveP521:
		return curveP521, true
	}
	return curveInfo{}, false
}

// ecdhPublicKey decodes fixed-length base64url coordinates into a public key,
// which crypto/ecdh checks is a valid point on the curve.
func ecdhPublicKey(c curveInfo, x, y string) (*ecdh.PublicKey, error) {
	maxEnc := b64.EncodedLen(c.size)
	if len(x) != maxEnc || len(y) != maxEnc {
		return nil, fmt.Errorf("%w: %s coordinates must be %d bytes", ErrInvalidTeePubKey, c.name, c.size)
	}
	xb, err := decodeB64(x)
	if err != nil {
		return nil, fmt.Errorf("%w: x: %v", ErrInvalidTeePubKey, err)
	}
	yb, err := decodeB64(y)
	if err != nil {
		return nil, fmt.Errorf("%w: y: %v", ErrInvalidTeePubKey, err)
	}
	if len(xb) != c.size || len(yb) != c.size {
		return nil, fmt.Errorf("%w: %s coordinates must be %d bytes", ErrInvalidTeePubKey, c.name, c.size)
	}
	point := make([]byte, 0, 1+2*c.size)
	point = append(point, 4)
	point = append(point, xb...)
	point = append(point, yb...)
	pub, err := c.curve.NewPublicKey(point)
	if err != nil {
		return nil, fmt.Errorf("%w: %s point: %v", ErrInvalidTeePubKey, c.name, err)
	}
	return pub, nil
}

// ecdhCoordinates splits an uncompressed point into its fixed-length
// coordinates.
func ecdhCoordinates(c curveInfo, pub *ecdh.PublicKey) (x, y []byte) {
	b := pub.Bytes() // 0x04 || X || Y
	return b[1 : 1+c.size], b[1+c.size:]
}

// newECDHKey returns a private key on c. With rand nil it uses crypto/ecdh's
// own generation from the system source. Otherwise it samples the scalar
// from rand by rejection (FIPS 186-5 A.4.2): crypto/ecdh ignores custom
// readers since Go 1.26, and an injected reader must really be used for
// reproducible tests.
func newECDHKey(c curveInfo, rand io.Reader) (*ecdh.PrivateKey, error) {
	if rand == nil {
		return c.curve.GenerateKey(crand.Reader)
	}
	b := make([]byte, c.size)
	defer clear(b)
	// Each attempt fails with probability < 2^-32 for P-256 and far less
	// for P-521, so 64 failures mean a broken reader.
	for range 64 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, err
		}
		b[0] &= c.topMask
		if priv, err := c.curve.NewPrivateKey(b); err == nil {
			return priv, nil
		}
	}
	return nil, errors.New("random source keeps producing invalid scalars")
}

// rsaPublicKey decodes a JWK RSA modulus and exponent and checks them.
func rsaPublicKey(n, e string) (*rsa.PublicKey, error) {
	if len(n) > b64.EncodedLen(limits.MaxTeeKeyRSABits/8+1) {
		return nil, fmt.Errorf("%w: RSA modulus is longer than %d bits", ErrInvalidTeePubKey, limits.MaxTeeKeyRSABits)
	}
	if len(e) > b64.EncodedLen(8) {
		return nil, fmt.Errorf("%w: RSA exponent is too long", ErrInvalidTeePubKey)
	}
	nb, err := decodeB64(n)
	if err != nil {
		return nil, fmt.Errorf("%w: n: %v", ErrInvalidTeePubKey, err)
	}
	eb, err := decodeB64(e)
	if err != nil {
		return nil, fmt.Errorf("%w: e: %v", ErrInvalidTeePubKey, err)
	}
	ev := new(big.Int).SetBytes(eb)
	if !ev.IsInt64() || ev.Int64() > limits.MaxTeeKeyRSAExponent {
		return nil, fmt.Errorf("%w: RSA exponent is too large", ErrInvalidTeePubKey)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(ev.Int64())}
	if err := checkRSAPublic(pub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidTeePubKey, err)
	}
	return pub, nil
}
