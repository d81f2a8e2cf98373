package protocol

import (
	"testing"
)

var benchAlgs = []struct {
	name string
	alg  KeyAlgorithm
}{
	{"P256", KeyEC256},
	{"P521", KeyEC521},
	{"RSA2048", KeyRSA2048},
}

// benchPayload is the size of a typical resource (a key or a small secret).
var benchPayload = make([]byte, 1024)

func BenchmarkEncrypt(b *testing.B) {
	for _, bc := range benchAlgs {
		b.Run(bc.name, func(b *testing.B) {
			pub := testKeyPair(b, bc.alg).PublicKey()
			b.SetBytes(int64(len(benchPayload)))
			for b.Loop() {
				if _, err := Encrypt(pub, benchPayload, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, bc := range benchAlgs {
		b.Run(bc.name, func(b *testing.B) {
			kp := testKeyPair(b, bc.alg)
			resp, err := Encrypt(kp.PublicKey(), benchPayload, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(benchPayload)))
			for b.Loop() {
				if _, err := kp.Decrypt(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGenerateKeyPair(b *testing.B) {
	for _, bc := range benchAlgs {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := GenerateKeyPair(bc.alg, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
