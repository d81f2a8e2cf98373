package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// go-jose is the independent implementation: it must open everything
// Encrypt produces, and KeyPair.Decrypt must open what it produces.

var joseKeyAlgs = []jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256, jose.RSA1_5}

// josePrivateKey returns the key pair's private key in a form go-jose takes.
func josePrivateKey(t testing.TB, kp *KeyPair) any {
	t.Helper()
	if kp.rsa != nil {
		return kp.rsa
	}
	priv, err := ecdsa.ParseRawPrivateKey(kp.curve.elliptic, kp.ec.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// joseDecrypt opens a flattened JWE JSON body with go-jose.
func joseDecrypt(t testing.TB, body []byte, kp *KeyPair) []byte {
	t.Helper()
	obj, err := jose.ParseEncryptedJSON(string(body), joseKeyAlgs, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		t.Fatalf("go-jose ParseEncryptedJSON: %v", err)
	}
	pt, err := obj.Decrypt(josePrivateKey(t, kp))
	if err != nil {
		t.Fatalf("go-jose Decrypt: %v", err)
	}
	return pt
}

func TestInteropGoJoseDecryptsEncrypt(t *testing.T) {
	for _, kc := range keyCases(t) {
		t.Run(kc.name, func(t *testing.T) {
			pt := []byte("resource payload for go-jose")
			resp, err := Encrypt(kc.pub, pt, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := joseDecrypt(t, body, kc.kp); !bytes.Equal(got, pt) {
				t.Fatalf("go-jose decrypted %q, want %q", got, pt)
			}
			// The compact form carries the same bytes.
			compact := resp.Protected + "." + resp.EncryptedKey + "." + resp.IV + "." + resp.Ciphertext + "." + resp.Tag
			obj, err := jose.ParseEncryptedCompact(compact, joseKeyAlgs, []jose.ContentEncryption{jose.A256GCM})
			if err != nil {
				t.Fatal(err)
			}
			got, err := obj.Decrypt(josePrivateKey(t, kc.kp))
			if err != nil {
				t.Fatalf("go-jose compact Decrypt: %v", err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatalf("go-jose compact decrypted %q", got)
			}
		})
	}
}

func TestInteropDecryptGoJose(t *testing.T) {
	for _, kc := range keyCases(t) {
		t.Run(kc.name, func(t *testing.T) {
			pub, err := PublicKeyFromTeePubKey(kc.pub)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.KeyAlgorithm(kc.pub.Alg), Key: pub}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, withAAD := range []bool{false, true} {
				pt := []byte("a resource sealed by go-jose")
				var obj *jose.JSONWebEncryption
				if withAAD {
					obj, err = enc.EncryptWithAuthData(pt, []byte("extra authenticated data"))
				} else {
					obj, err = enc.Encrypt(pt)
				}
				if err != nil {
					t.Fatal(err)
				}
				body := obj.FullSerialize()
				resp, err := ParseResponse([]byte(body))
				if err != nil {
					t.Fatalf("ParseResponse(%s): %v", body, err)
				}
				if (resp.AAD != nil) != withAAD {
					t.Fatalf("aad = %v in %s", resp.AAD, body)
				}
				got, err := kc.kp.Decrypt(resp)
				if err != nil {
					t.Fatalf("Decrypt(go-jose %s, aad=%v): %v", body, withAAD, err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("Decrypt = %q, want %q", got, pt)
				}
				if withAAD {
					// The aad member is authenticated.
					bad := *resp
					other := b64.EncodeToString([]byte("other data"))
					bad.AAD = &other
					if _, err := kc.kp.Decrypt(&bad); err == nil {
						t.Fatal("Decrypt accepted a changed aad member")
					}
				}
			}
		})
	}
}

// TestInteropGoJoseECDHHeaderIsNotCanonical documents why the header is
// hand-built: go-jose's epk member order is not the one the Rust guest
// re-serializes, while ours is.
func TestInteropGoJoseECDHHeaderIsNotCanonical(t *testing.T) {
	kp := testKeyPair(t, KeyEC256)
	pub, _ := PublicKeyFromTeePubKey(kp.PublicKey())
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := enc.Encrypt([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ParseResponse([]byte(obj.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseProtectedHeader(resp.Protected)
	if err != nil {
		t.Fatal(err)
	}
	aad, err := h.AAD()
	if err != nil {
		t.Fatal(err)
	}
	if aad == resp.Protected {
		t.Skip("go-jose now emits the canonical header; the hand-built header is still required by contract")
	}
	// Ours always round-trips.
	ours, _ := Encrypt(kp.PublicKey(), []byte("x"), nil)
	h, _ = ParseProtectedHeader(ours.Protected)
	if aad, _ := h.AAD(); aad != ours.Protected {
		t.Fatalf("our header does not survive the Rust guest's re-serialization")
	}
}

// sealForTest builds an RSA-OAEP-256 response with an arbitrary protected
// string, as a non-canonical producer would.
func sealForTest(t *testing.T, pub crypto.PublicKey, protected string, cek, pt []byte) *Response {
	t.Helper()
	ek, err := rsa.EncryptOAEP(sha256.New(), crand.Reader, pub.(*rsa.PublicKey), cek, nil)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := newGCM(cek)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, ivSize)
	crand.Read(iv)
	sealed := aead.Seal(nil, iv, pt, []byte(protected))
	return &Response{
		Protected:    protected,
		EncryptedKey: b64.EncodeToString(ek),
		IV:           b64.EncodeToString(iv),
		Ciphertext:   b64.EncodeToString(sealed[:len(sealed)-tagSize]),
		Tag:          b64.EncodeToString(sealed[len(sealed)-tagSize:]),
	}
}
