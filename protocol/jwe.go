package protocol

// The resource response is a flattened JWE (RFC 7516 §7.2.2) built by hand
// here rather than with a JOSE library, on purpose: the Rust guest
// (kbs_protocol's decrypt_response) does not use the received "protected"
// string as the GCM AAD. It parses the header into kbs-types'
// ProtectedHeader and re-serializes it with serde_json ("alg", "enc", then
// the other members in sorted order, compact) before base64url-encoding it.
// The exact bytes of the header are therefore part of the wire contract, and
// no Go JOSE library guarantees that member order (go-jose, for instance,
// writes "kty" first inside "epk"). Owning the few primitives involved
// (Concat KDF, AES key wrap, AES-GCM with a detached tag) keeps the output
// byte-exact and lets us make every check constant-time where it matters.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Response is the flattened JWE of a released resource (kbs_types::Response).
// All fields are base64url without padding; AAD, when present, is a raw
// string (not base64) as kbs-types (de)serializes it. Trustee never sets it,
// and it is omitted when nil.
type Response struct {
	Protected    string  `json:"protected"`
	EncryptedKey string  `json:"encrypted_key"`
	IV           string  `json:"iv"`
	Ciphertext   string  `json:"ciphertext"`
	Tag          string  `json:"tag"`
	AAD          *string `json:"aad,omitempty"`
}

// Key-management and content-encryption algorithm names (RFC 7518).
const (
	// AlgECDHESA256KW is ECDH-ES with Concat KDF and A256KW, for EC keys.
	AlgECDHESA256KW = "ECDH-ES+A256KW"
	// AlgRSAOAEP256 is RSAES-OAEP with SHA-256 and MGF1-SHA-256.
	AlgRSAOAEP256 = "RSA-OAEP-256"
	// AlgRSA15 is RSAES-PKCS1-v1_5. Deprecated upstream; kept for the wire.
	AlgRSA15 = "RSA1_5"
	// EncA256GCM is the only content encryption of the protocol.
	EncA256GCM = "A256GCM"
)

// EC curve names of the TEE key.
const (
	CurveP256 = "P-256"
	CurveP521 = "P-521"
)

var (
	// ErrUnsupportedKey is returned when a TEE key has a type, curve or
	// algorithm the protocol does not encrypt to (or a key pair cannot be
	// generated or loaded for it).
	ErrUnsupportedKey = errors.New("protocol: unsupported TEE key")
	// ErrDecrypt is returned by KeyPair.Decrypt for every failure:
	// malformed members, unsupported algorithms, a key of the wrong type and
	// failed authentication alike. Errors that have a more specific cause
	// also match ErrInvalidResponse or ErrUnsupportedAlgorithm.
	ErrDecrypt = errors.New("protocol: decrypting resource response")
	// ErrInvalidResponse is returned when a JWE body or one of its members
	// is malformed (bad JSON, bad base64url, wrong lengths, bad header).
	ErrInvalidResponse = errors.New("protocol: invalid resource response")
	// ErrUnsupportedAlgorithm is returned when a JWE names a key management
	// or content encryption algorithm that is not supported.
	ErrUnsupportedAlgorithm = errors.New("protocol: unsupported JWE algorithm")
)

const (
	cekSize = 32 // A256GCM key
	ivSize  = 12 // GCM nonce
	tagSize = 16 // GCM tag
	// wrappedCEKSize is the A256KW output for a 32-byte CEK.
	wrappedCEKSize = cekSize + 8
)

// b64 is the strict base64url-without-padding encoding of the wire. Go's
// decoder silently skips CR and LF, which the Rust side rejects; decodeB64
// rejects them too.
var b64 = base64.RawURLEncoding.Strict()

func decodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("base64url contains a line break")
	}
	return b64.DecodeString(s)
}

// ProtectedHeader is a JWE protected header as kbs-types models it: the
// required "alg" and "enc" members and any others. Values of Other are JSON
// values as decoded with json.Decoder.UseNumber: string, bool, nil,
// json.Number, []any and map[string]any (int, int64 and uint64 are also
// accepted when marshaling).
type ProtectedHeader struct {
	Alg   string
	Enc   string
	Other map[string]any
}

// MarshalCanonical returns the compact JSON form serde_json gives a
// kbs_types::ProtectedHeader, which is what the Rust guest hashes into the
// GCM AAD: "alg" first, "enc" second, then the other members with every
// object's keys in sorted order, no whitespace, and serde_json's string
// escaping (only '"', '\\' and control characters are escaped).
// Non-integer numbers are refused: their serde_json form cannot be
// reproduced reliably.
func (h ProtectedHeader) MarshalCanonical() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"alg":`)
	if err := writeCanonicalString(&buf, h.Alg); err != nil {
		return nil, err
	}
	buf.WriteString(`,"enc":`)
	if err := writeCanonicalString(&buf, h.Enc); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(h.Other))
	for k := range h.Other {
		if k == "alg" || k == "enc" {
			return nil, fmt.Errorf("protected header: member %q duplicates a required member", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		buf.WriteByte(',')
		if err := writeCanonicalString(&buf, k); err != nil {
			return nil, err
		}
		buf.WriteByte(':')
		if err := writeCanonicalValue(&buf, h.Other[k], 1); err != nil {
			return nil, fmt.Errorf("protected header member %q: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// AAD returns base64url(MarshalCanonical()), the value the Rust guest uses
// as GCM additional data and Encrypt emits as the "protected" member.
func (h ProtectedHeader) AAD() (string, error) {
	c, err := h.MarshalCanonical()
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(c), nil
}

func writeCanonicalString(buf *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("string is not valid UTF-8")
	}
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			buf.WriteString(`\"`)
		case c == '\\':
			buf.WriteString(`\\`)
		case c == '\b':
			buf.WriteString(`\b`)
		case c == '\f':
			buf.WriteString(`\f`)
		case c == '\n':
			buf.WriteString(`\n`)
		case c == '\r':
			buf.WriteString(`\r`)
		case c == '\t':
			buf.WriteString(`\t`)
		case c < 0x20:
			buf.WriteString(`\u00`)
			buf.WriteByte(hex[c>>4])
			buf.WriteByte(hex[c&0xf])
		default:
			buf.WriteByte(c)
		}
	}
	buf.WriteByte('"')
	return nil
}

func writeCanonicalValue(buf *bytes.Buffer, v any, depth int) error {
	if depth > limits.MaxJSONDepth {
		return errors.New("nesting too deep")
	}
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case string:
		return writeCanonicalString(buf, v)
	case int:
		buf.WriteString(strconv.FormatInt(int64(v), 10))
	case int64:
		buf.WriteString(strconv.FormatInt(v, 10))
	case uint64:
		buf.WriteString(strconv.FormatUint(v, 10))
	case json.Number:
		s := string(v)
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			if _, err := strconv.ParseUint(s, 10, 64); err != nil {
				return fmt.Errorf("number %q is not a 64-bit integer", s)
			}
		}
		// ParseInt accepts "+1" and "-0"; serde_json prints neither.
		if s[0] == '+' || s == "-0" || (len(s) > 1 && s[0] == '0') || strings.HasPrefix(s, "-0") {
			return fmt.Errorf("number %q is not in canonical form", s)
		}
		buf.WriteString(s)
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonicalValue(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, s := range v {
			m[k] = s
		}
		return writeCanonicalValue(buf, m, depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonicalString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonicalValue(buf, v[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	return nil
}

// ParseProtectedHeader decodes the "protected" member of a JWE: strict
// base64url of a JSON object whose "alg" and "enc" are strings. As with
// serde, member names are case-sensitive, "alg" and "enc" may not repeat,
// and only whitespace may follow the object.
func ParseProtectedHeader(protected string) (*ProtectedHeader, error) {
	if len(protected) > limits.MaxJWEProtectedBytes {
		return nil, fmt.Errorf("%w: protected header exceeds %d bytes", ErrInvalidResponse, limits.MaxJWEProtectedBytes)
	}
	raw, err := decodeB64(protected)
	if err != nil {
		return nil, fmt.Errorf("%w: protected: %v", ErrInvalidResponse, err)
	}
	h := &ProtectedHeader{Other: map[string]any{}}
	var haveAlg, haveEnc bool
	err = decodeObject(raw, func(name string, v json.RawMessage) error {
		switch name {
		case "alg":
			if haveAlg {
				return errors.New("duplicate field `alg`")
			}
			haveAlg = true
			return decodeString(v, &h.Alg)
		case "enc":
			if haveEnc {
				return errors.New("duplicate field `enc`")
			}
			haveEnc = true
			return decodeString(v, &h.Enc)
		}
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		var val any
		if err := d.Decode(&val); err != nil {
			return err
		}
		h.Other[name] = val
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: protected header: %v", ErrInvalidResponse, err)
	}
	if !haveAlg {
		return nil, fmt.Errorf("%w: protected header: missing field `alg`", ErrInvalidResponse)
	}
	if !haveEnc {
		return nil, fmt.Errorf("%w: protected header: missing field `enc`", ErrInvalidResponse)
	}
	return h, nil
}

// decodeObject walks the members of one JSON object, calling fn with each
// member's name (exact, case-sensitive) and raw value. Anything but
// whitespace after the object is an error.
func decodeObject(b []byte, fn func(name string, v json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // a top-level number is refused below, not parsed (and echoed) as a float
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := tok.(string)
		if !ok {
			return errors.New("object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if err := fn(name, v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON object")
	}
	return nil
}

// decodeString decodes a JSON string; null and other types are refused
// (json.Unmarshal would leave the target untouched on null).
func decodeString(v json.RawMessage, dst *string) error {
	if len(v) == 0 || v[0] != '"' {
		return errors.New("expected a string")
	}
	return json.Unmarshal(v, dst)
}

// ParseResponse decodes a JWE JSON body as the guest receives it. The body is
// bounded by limits.MaxResponseBytes; member names are case-sensitive;
// "protected", "encrypted_key", "iv", "ciphertext" and "tag" are required,
// must not repeat and must be strict base64url without padding; the
// protected header must decode (see ParseProtectedHeader); "aad" is an
// optional string. Unknown members are ignored, as serde does.
// Cryptographic lengths are checked by Decrypt.
func ParseResponse(b []byte) (*Response, error) {
	if len(b) > limits.MaxResponseBytes {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrInvalidResponse, limits.MaxResponseBytes)
	}
	var r Response
	fields := map[string]*string{
		"protected":     &r.Protected,
		"encrypted_key": &r.EncryptedKey,
		"iv":            &r.IV,
		"ciphertext":    &r.Ciphertext,
		"tag":           &r.Tag,
	}
	seen := map[string]bool{}
	err := decodeObject(b, func(name string, v json.RawMessage) error {
		dst, known := fields[name]
		if name == "aad" {
			known = true
		}
		if !known {
			return nil
		}
		if seen[name] {
			return fmt.Errorf("duplicate field `%s`", name)
		}
		seen[name] = true
		if name == "aad" {
			var s string
			if err := decodeString(v, &s); err != nil {
				return fmt.Errorf("aad: %w", err)
			}
			r.AAD = &s
			return nil
		}
		if err := decodeString(v, dst); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := decodeB64(*dst); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidResponse, err)
	}
	for _, name := range []string{"protected", "encrypted_key", "iv", "ciphertext", "tag"} {
		if !seen[name] {
			return nil, fmt.Errorf("%w: missing field `%s`", ErrInvalidResponse, name)
		}
	}
	if _, err := ParseProtectedHeader(r.Protected); err != nil {
		return nil, err
	}
	return &r, nil
}

// Encrypt seals plaintext to the TEE key, as the KBS does for a released
// resource. EC P-256/P-521 keys whose alg is ECDH-ES+A256KW get
// ECDH-ES+A256KW; RSA keys get RSA-OAEP-256 or the legacy RSA1_5, as the
// key's alg says; anything else is ErrUnsupportedKey. A malformed key (bad
// base64url, point not on the curve, weak RSA parameters) is
// ErrInvalidTeePubKey. Content encryption is always A256GCM with a fresh
// 32-byte CEK and 12-byte IV, and the protected header is emitted in the
// canonical form of ProtectedHeader.MarshalCanonical.
//
// rand (nil means crypto/rand) supplies the CEK, the IV and the ephemeral EC
// scalar, so EC output is reproducible under a deterministic reader. RSA
// padding randomness always comes from the system source: since Go 1.26
// crypto/rsa ignores caller-supplied readers.
func Encrypt(key TeePubKey, plaintext []byte, rand io.Reader) (*Response, error) {
	r := rand
	if r == nil {
		r = crand.Reader
	}
	// mgmt wraps the CEK for the recipient and returns the header to emit.
	var mgmt func(cek []byte) (header ProtectedHeader, encryptedKey []byte, err error)
	switch key.Kty {
	case KtyEC:
		c, ok := curveByName(key.Crv)
		if !ok || key.Alg != AlgECDHESA256KW {
			return nil, fmt.Errorf("%w: curve %q with algorithm %q", ErrUnsupportedKey, key.Crv, key.Alg)
		}
		pub, err := ecdhPublicKey(c, key.X, key.Y)
		if err != nil {
			return nil, err
		}
		mgmt = func(cek []byte) (ProtectedHeader, []byte, error) {
			return wrapECDHES(c, pub, cek, rand)
		}
	case KtyRSA:
		if key.Alg != AlgRSAOAEP256 && key.Alg != AlgRSA15 {
			return nil, fmt.Errorf("%w: RSA with algorithm %q", ErrUnsupportedKey, key.Alg)
		}
		pub, err := rsaPublicKey(key.N, key.E)
		if err != nil {
			return nil, err
		}
		mgmt = func(cek []byte) (ProtectedHeader, []byte, error) {
			h := ProtectedHeader{Alg: key.Alg, Enc: EncA256GCM}
			var (
				ek  []byte
				err error
			)
			if key.Alg == AlgRSAOAEP256 {
				ek, err = rsa.EncryptOAEP(sha256.New(), crand.Reader, pub, cek, nil)
			} else {
				// RSA1_5 is what a legacy guest asks for; upstream warns
				// and complies, so do we.
				//lint:ignore SA1019 RSA1_5 is part of the wire protocol.
				ek, err = rsa.EncryptPKCS1v15(crand.Reader, pub, cek) //nolint:staticcheck // RSA1_5 is part of the wire protocol.
			}
			if err != nil {
				return ProtectedHeader{}, nil, fmt.Errorf("encrypting CEK with %s: %w", key.Alg, err)
			}
			return h, ek, nil
		}
	default:
		return nil, fmt.Errorf("%w: key type %q", ErrUnsupportedKey, key.Kty)
	}

	cek := make([]byte, cekSize)
	defer clear(cek)
	if _, err := io.ReadFull(r, cek); err != nil {
		return nil, fmt.Errorf("generating CEK: %w", err)
	}
	header, encryptedKey, err := mgmt(cek)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, ivSize)
	if _, err := io.ReadFull(r, iv); err != nil {
		return nil, fmt.Errorf("generating IV: %w", err)
	}
	protected, err := header.AAD()
	if err != nil {
		return nil, fmt.Errorf("serializing protected header: %w", err)
	}
	aead, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	sealed := aead.Seal(nil, iv, plaintext, []byte(protected))
	ct, tag := sealed[:len(sealed)-tagSize], sealed[len(sealed)-tagSize:]
	return &Response{
		Protected:    protected,
		EncryptedKey: b64.EncodeToString(encryptedKey),
		IV:           b64.EncodeToString(iv),
		Ciphertext:   b64.EncodeToString(ct),
		Tag:          b64.EncodeToString(tag),
	}, nil
}

// wrapECDHES generates the ephemeral key, derives the key-encryption key
// and wraps the CEK; it returns the header carrying "epk".
func wrapECDHES(c curveInfo, pub *ecdh.PublicKey, cek []byte, rand io.Reader) (ProtectedHeader, []byte, error) {
	eph, err := newECDHKey(c, rand)
	if err != nil {
		return ProtectedHeader{}, nil, fmt.Errorf("generating ephemeral key: %w", err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return ProtectedHeader{}, nil, fmt.Errorf("ECDH: %w", err)
	}
	kek := concatKDF(z)
	clear(z)
	ek, err := aesKeyWrap(kek, cek)
	clear(kek)
	if err != nil {
		return ProtectedHeader{}, nil, err
	}
	x, y := ecdhCoordinates(c, eph.PublicKey())
	h := ProtectedHeader{
		Alg: AlgECDHESA256KW,
		Enc: EncA256GCM,
		Other: map[string]any{"epk": map[string]any{
			"crv": c.name,
			"kty": KtyEC,
			"x":   b64.EncodeToString(x),
			"y":   b64.EncodeToString(y),
		}},
	}
	return h, ek, nil
}

func newGCM(cek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("AES: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %w", err)
	}
	return aead, nil
}

// concatKDF derives the 256-bit A256KW key-encryption key from the ECDH
// shared secret z (NIST SP 800-56A Concat KDF with SHA-256, RFC 7518
// §4.6.2): one round of SHA-256(u32be(1) || Z || OtherInfo) where
// OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo with
// AlgorithmID = u32be(14) || "ECDH-ES+A256KW", empty PartyUInfo and
// PartyVInfo (u32be(0) each) and SuppPubInfo = u32be(256).
func concatKDF(z []byte) []byte {
	return concatKDFWith(z, AlgECDHESA256KW, nil, nil, 256)
}

// concatKDFWith is the general form of concatKDF, for keys of up to
// 256 bits. It exists so that tests can check it against RFC 7518
// Appendix C.
func concatKDFWith(z []byte, alg string, apu, apv []byte, keyBits int) []byte {
	h := sha256.New()
	var u32 [4]byte
	put := func(v int) {
		binary.BigEndian.PutUint32(u32[:], uint32(v))
		h.Write(u32[:])
	}
	put(1) // round counter; a single SHA-256 block covers 256 bits
	h.Write(z)
	put(len(alg))
	h.Write([]byte(alg))
	put(len(apu))
	h.Write(apu)
	put(len(apv))
	h.Write(apv)
	put(keyBits)
	return h.Sum(nil)[:keyBits/8]
}

// kwIV is the RFC 3394 default initial value.
var kwIV = []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// aesKeyWrap wraps key (a multiple of 8 bytes, at least 16) with kek as
// RFC 3394 §2.2.1 describes.
func aesKeyWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, errors.New("AES key wrap: key length must be a multiple of 8, at least 16")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("AES key wrap: %w", err)
	}
	n := len(key) / 8
	out := make([]byte, 8+len(key))
	copy(out[:8], kwIV)
	copy(out[8:], key)
	var b [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(b[:8], out[:8])
			copy(b[8:], out[8*i:8*i+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:8*i+8], b[8:])
		}
	}
	clear(b[:])
	return out, nil
}

// aesKeyUnwrap reverses aesKeyWrap (RFC 3394 §2.2.2). The integrity check
// compares the recovered initial value in constant time; on failure the
// recovered key material is wiped and a single undistinguished error is
// returned.
func aesKeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, errors.New("AES key unwrap: bad length")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("AES key unwrap: %w", err)
	}
	n := len(wrapped)/8 - 1
	var a [8]byte
	copy(a[:], wrapped[:8])
	r := make([]byte, 8*n)
	copy(r, wrapped[8:])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
			copy(b[8:], r[8*(i-1):8*i])
			block.Decrypt(b[:], b[:])
			copy(a[:], b[:8])
			copy(r[8*(i-1):8*i], b[8:])
		}
	}
	clear(b[:])
	if subtle.ConstantTimeCompare(a[:], kwIV) != 1 {
		clear(r)
		return nil, errors.New("AES key unwrap: integrity check failed")
	}
	return r, nil
}

// decodedResponse holds the decoded members of a Response.
type decodedResponse struct {
	header       *ProtectedHeader
	encryptedKey []byte
	iv           []byte
	ciphertext   []byte
	tag          []byte
	aad          []byte
}

// decodeResponse validates and decodes r for decryption.
func decodeResponse(r *Response) (*decodedResponse, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil response", ErrInvalidResponse)
	}
	total := len(r.Protected) + len(r.EncryptedKey) + len(r.IV) + len(r.Ciphertext) + len(r.Tag)
	if r.AAD != nil {
		total += len(*r.AAD)
	}
	if total > limits.MaxResponseBytes {
		return nil, fmt.Errorf("%w: response exceeds %d bytes", ErrInvalidResponse, limits.MaxResponseBytes)
	}
	h, err := ParseProtectedHeader(r.Protected)
	if err != nil {
		return nil, err
	}
	d := &decodedResponse{header: h}
	for _, f := range []struct {
		name string
		src  string
		dst  *[]byte
	}{
		{"encrypted_key", r.EncryptedKey, &d.encryptedKey},
		{"iv", r.IV, &d.iv},
		{"ciphertext", r.Ciphertext, &d.ciphertext},
		{"tag", r.Tag, &d.tag},
	} {
		if *f.dst, err = decodeB64(f.src); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidResponse, f.name, err)
		}
	}
	if h.Enc != EncA256GCM {
		return nil, fmt.Errorf("%w: content encryption %q", ErrUnsupportedAlgorithm, h.Enc)
	}
	if len(d.iv) != ivSize {
		return nil, fmt.Errorf("%w: iv is %d bytes, want %d", ErrInvalidResponse, len(d.iv), ivSize)
	}
	if len(d.tag) != tagSize {
		return nil, fmt.Errorf("%w: tag is %d bytes, want %d", ErrInvalidResponse, len(d.tag), tagSize)
	}
	// RFC 7516 §5.2 step 14: the AAD is the ASCII of the encoded protected
	// header exactly as received, followed by '.' and the "aad" member
	// when there is one. Trustee never sets "aad"; for its responses this is
	// byte-identical to the Rust guest's re-serialized header because
	// Encrypt emits the canonical form.
	aad := r.Protected
	if r.AAD != nil {
		aad += "." + *r.AAD
	}
	d.aad = []byte(aad)
	return d, nil
}

// openGCM authenticates and decrypts the payload with the CEK.
func openGCM(cek []byte, d *decodedResponse) ([]byte, error) {
	if len(cek) != cekSize {
		return nil, errors.New("content encryption key has the wrong length")
	}
	aead, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	if len(d.ciphertext) > math.MaxInt-tagSize {
		return nil, errors.New("ciphertext too long")
	}
	sealed := make([]byte, 0, len(d.ciphertext)+tagSize)
	sealed = append(sealed, d.ciphertext...)
	sealed = append(sealed, d.tag...)
	pt, err := aead.Open(sealed[:0], d.iv, sealed, d.aad)
	if err != nil {
		return nil, errors.New("message authentication failed")
	}
	return pt, nil
}
