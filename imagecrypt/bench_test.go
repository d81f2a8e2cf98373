package imagecrypt

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"io"
	"testing"
)

const benchSize = 8 << 20

func benchLayer(b *testing.B) (*LayerDecrypter, []byte, []byte) {
	kek := testKEK(b, WrapA256GCM)
	desc, enc := encrypt(b, kek.Wrap, plaintext(benchSize))
	d := NewLayerDecrypter(mapKeys{testKID: kek.Key})
	opts, err := d.UnwrapOptions(context.Background(), desc)
	if err != nil {
		b.Fatal(err)
	}
	return d, enc, opts
}

// BenchmarkDecryptLayer decrypts an 8 MiB layer through Decrypt (key
// unwrap included); compare with BenchmarkRawAESCTRHMAC.
func BenchmarkDecryptLayer(b *testing.B) {
	kek := testKEK(b, WrapA256GCM)
	desc, enc := encrypt(b, kek.Wrap, plaintext(benchSize))
	d := NewLayerDecrypter(mapKeys{testKID: kek.Key})
	buf := make([]byte, 32<<10)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		rc, err := d.Decrypt(context.Background(), desc, bytes.NewReader(enc))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawAESCTRHMAC is the floor: AES-256-CTR plus HMAC-SHA256 over
// the same bytes with the standard library and no framing.
func BenchmarkRawAESCTRHMAC(b *testing.B) {
	_, enc, opts := benchLayer(b)
	var o struct {
		SymKey []byte `json:"symkey"`
		Opts   struct {
			Nonce []byte `json:"nonce"`
		} `json:"cipheroptions"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		b.Fatal(err)
	}
	block, _ := aes.NewCipher(o.SymKey)
	buf := make([]byte, 32<<10)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for b.Loop() {
		// The same streaming shape as Decrypt: ciphertext read from an
		// io.Reader into a buffer, MACed and decrypted in place.
		src := bytes.NewReader(enc)
		ctr := cipher.NewCTR(block, o.Opts.Nonce)
		mac := hmac.New(sha256.New, o.SymKey)
		for {
			n, err := io.ReadFull(src, buf)
			mac.Write(buf[:n])
			ctr.XORKeyStream(buf[:n], buf[:n])
			if err != nil {
				break
			}
		}
		mac.Sum(nil)
	}
}

// ciphertextStream produces a layer's ciphertext on the fly: the plaintext
// is a counter pattern, encrypted as it is read, so no layer is stored.
func encryptedStream(t testing.TB, kek *KEK, size int64) (io.Reader, func() map[string]string) {
	desc := plainDesc()
	r, fin, err := EncryptLayer(kek.Wrap, desc, io.LimitReader(zeroReader{}, size))
	if err != nil {
		t.Fatal(err)
	}
	return r, func() map[string]string {
		a, err := fin()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type cipherReader struct {
	r io.Reader
	s cipher.Stream
}

func (c *cipherReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.s.XORKeyStream(p[:n], p[:n])
	return n, err
}
