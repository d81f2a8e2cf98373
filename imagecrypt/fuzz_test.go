package imagecrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"testing"
)

func FuzzParseAnnotationPacket(f *testing.F) {
	f.Add([]byte(`{"kid":"kbs:///a/b/c","wrapped_data":"AA==","iv":"AA==","wrap_type":"A256GCM"}`))
	f.Add([]byte(`{"version":"0.1.0","kid":"kbs:///a/b/c","wrapped_data":"","provider":"kbs","iv":"","wrap_type":"A256CTR","provider_settings":{},"annotations":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseAnnotationPacket(b)
		if err == nil && p == nil {
			t.Fatal("nil packet without error")
		}
		// Unwrapping never panics and never succeeds with a wrong key.
		keys := KeySourceFunc(func(context.Context, string) ([]byte, error) { return make([]byte, 32), nil })
		UnwrapPacket(context.Background(), keys, b)
	})
}

func FuzzParseWrapRequest(f *testing.F) {
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":["a2V5aWQ9a2JzOi8vL2EvYi9j"]},"DecryptConfig":{"Parameters":{}}},"optsdata":"e30="},"keyunwrapparams":{"dc":null,"annotation":null}}`))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":[[107,61]]}},"optsdata":[123,125]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseWrapRequest(b)
		if err == nil && (len(r.Params) == 0 || len(r.OptsData) == 0) {
			t.Fatal("accepted a request without params or optsdata")
		}
		if err == nil {
			ParseWrapParams(string(r.Params[0]))
		}
	})
}

func FuzzParsePubOpts(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","cipheroptions":{}}`)))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePubOpts(s)
		if err == nil && len(p.HMAC) != 32 {
			t.Fatal("accepted a short HMAC")
		}
	})
}

// FuzzDecryptStream feeds arbitrary ciphertext to a valid layer key: the
// stream must never end in a clean EOF unless it is the real ciphertext.
func FuzzDecryptStream(f *testing.F) {
	kek := testKEK(f, WrapA256GCM)
	plain := plaintext(3000)
	desc, enc := encrypt(f, kek.Wrap, plain)
	d := NewLayerDecrypter(mapKeys{testKID: kek.Key})
	f.Add(enc)
	f.Add(enc[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rc, err := d.Decrypt(context.Background(), desc, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err == nil && (!bytes.Equal(b, enc) || !bytes.Equal(got, plain)) {
			t.Fatal("forged ciphertext accepted")
		}
	})
}
