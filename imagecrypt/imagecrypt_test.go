package imagecrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/containers/ocicrypt/blockcipher"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/go-trustee/go-trustee/client"
)

const testKID = "kbs:///default/image-kek/test"

// mapKeys is a fake KeySource over a map; a missing URI is "not found".
type mapKeys map[string][]byte

func (m mapKeys) Key(_ context.Context, uri string) ([]byte, error) {
	k, ok := m[uri]
	if !ok {
		return nil, fmt.Errorf("fake kbs: %s: %w", uri, client.ErrResourceNotFound)
	}
	return bytes.Clone(k), nil
}

func seeded(seed uint64) io.Reader { return rand.NewChaCha8([32]byte{byte(seed), 1, 2, 3}) }

func testKEK(t testing.TB, wrapType string) *KEK {
	t.Helper()
	k, err := NewKEK(testKID, seeded(7))
	if err != nil {
		t.Fatal(err)
	}
	k.WrapType = wrapType
	return k
}

// encrypt encrypts plain and returns the encrypted descriptor and blob.
func encrypt(t testing.TB, wrap WrapFunc, plain []byte) (ocispec.Descriptor, []byte) {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(plain), Size: int64(len(plain))}
	return encryptDesc(t, wrap, desc, plain)
}

func plainDesc() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("stream")}
}

func encryptDesc(t testing.TB, wrap WrapFunc, desc ocispec.Descriptor, plain []byte) (ocispec.Descriptor, []byte) {
	r, fin, err := EncryptLayer(wrap, desc, bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	return EncryptedDescriptor(desc, digest.FromBytes(enc), int64(len(enc)), ann), enc
}

func plaintext(n int) []byte {
	b := make([]byte, n)
	io.ReadFull(seeded(uint64(n)), b)
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, wt := range []string{WrapA256GCM, WrapA256CTR} {
		for _, n := range []int{0, 1, 10*1024 - 1, 10*1024 + 1, 3<<20 + 17} {
			t.Run(fmt.Sprintf("%s/%d", wt, n), func(t *testing.T) {
				kek := testKEK(t, wt)
				plain := plaintext(n)
				desc, enc := encrypt(t, kek.Wrap, plain)
				if desc.MediaType != ocispec.MediaTypeImageLayerGzip+"+encrypted" {
					t.Fatalf("media type %q", desc.MediaType)
				}
				if n > 0 && bytes.Contains(enc, plain[:min(n, 64)]) && n >= 16 {
					t.Fatal("ciphertext contains the plaintext")
				}
				d := NewLayerDecrypter(mapKeys{testKID: kek.Key})
				rc, err := d.Decrypt(context.Background(), desc, bytes.NewReader(enc))
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				if err := rc.Close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("plaintext differs: %d vs %d bytes", len(got), len(plain))
				}
				if dg := rc.(*LayerReader).Digest(); dg != digest.FromBytes(plain) {
					t.Fatalf("digest %s", dg)
				}
			})
		}
	}
}

// TestV1Packet decrypts a layer whose packet has only the four v1 fields,
// as coco_keyprovider writes it.
func TestV1Packet(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	v1 := func(opts []byte) ([]byte, error) {
		iv, wrapped, err := WrapKey(kek.Key, opts, WrapA256GCM, nil)
		if err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"kid": testKID, "wrapped_data": base64.StdEncoding.EncodeToString(wrapped),
			"iv": base64.StdEncoding.EncodeToString(iv), "wrap_type": WrapA256GCM})
	}
	plain := plaintext(4096)
	desc, enc := encrypt(t, v1, plain)
	rc, err := NewLayerDecrypter(mapKeys{testKID: kek.Key}).Decrypt(context.Background(), desc, bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, plain))
	}
}

// TestPacketShape checks the packet JSON a KEK writes field by field.
func TestPacketShape(t *testing.T) {
	kek := testKEK(t, WrapA256CTR)
	p, err := kek.Wrap([]byte(`{"symkey":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"version": "0.1.0", "kid": testKID, "provider": "kbs", "wrap_type": "A256CTR",
		"provider_settings": map[string]any{}, "annotations": map[string]any{}}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	iv, _ := base64.StdEncoding.DecodeString(m["iv"].(string))
	if len(iv) != 16 {
		t.Errorf("A256CTR iv of %d bytes", len(iv))
	}
	parsed, err := ParseAnnotationPacket(p)
	if err != nil || parsed.Kid != testKID {
		t.Fatalf("parse: %v", err)
	}
}

type errKeys struct{ err error }

func (e errKeys) Key(context.Context, string) ([]byte, error) { return nil, e.err }

func TestDecryptFailsClosed(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	plain := plaintext(64 << 10)
	desc, enc := encrypt(t, kek.Wrap, plain)
	ctrKEK := testKEK(t, WrapA256CTR)
	ctrDesc, ctrEnc := encrypt(t, ctrKEK.Wrap, plain)
	other := bytes.Repeat([]byte{9}, 32)

	withAnn := func(d ocispec.Descriptor, k, v string) ocispec.Descriptor {
		d.Annotations = map[string]string{AnnotationKeys: d.Annotations[AnnotationKeys], AnnotationPubOpts: d.Annotations[AnnotationPubOpts]}
		if v == "" {
			delete(d.Annotations, k)
		} else {
			d.Annotations[k] = v
		}
		return d
	}
	// A pubopts annotation with a different (well-formed) HMAC.
	var pub PubOpts
	raw, _ := base64.StdEncoding.DecodeString(desc.Annotations[AnnotationPubOpts])
	json.Unmarshal(raw, &pub)
	pub.HMAC = bytes.Repeat([]byte{1}, 32)
	badHMAC, _ := json.Marshal(pub)

	cases := []struct {
		name    string
		keys    KeySource
		desc    ocispec.Descriptor
		enc     []byte
		openErr error // from Decrypt
		readErr error // from reading the stream
	}{
		{name: "wrong key GCM", keys: mapKeys{testKID: other}, desc: desc, enc: enc, openErr: ErrUnwrap},
		{name: "wrong key CTR", keys: mapKeys{testKID: other}, desc: ctrDesc, enc: ctrEnc, openErr: ErrUnwrap},
		{name: "short key", keys: mapKeys{testKID: other[:16]}, desc: desc, enc: enc, openErr: ErrUnwrap},
		{name: "missing key", keys: mapKeys{}, desc: desc, enc: enc, openErr: client.ErrResourceNotFound},
		{name: "policy deny", keys: errKeys{fmt.Errorf("get resource: %w", client.ErrPolicyDeny)}, desc: desc, enc: enc, openErr: client.ErrPolicyDeny},
		{name: "nil key source", keys: nil, desc: desc, enc: enc, openErr: ErrKeyUnavailable},
		{name: "not encrypted", keys: mapKeys{testKID: kek.Key}, desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip}, enc: enc, openErr: ErrNotEncrypted},
		{name: "no key annotation", keys: mapKeys{testKID: kek.Key}, desc: withAnn(desc, AnnotationKeys, ""), enc: enc, openErr: ErrNoKeyAnnotation},
		{name: "no pubopts", keys: mapKeys{testKID: kek.Key}, desc: withAnn(desc, AnnotationPubOpts, ""), enc: enc, openErr: ErrInvalidAnnotation},
		{name: "garbage packet", keys: mapKeys{testKID: kek.Key}, desc: withAnn(desc, AnnotationKeys, base64.StdEncoding.EncodeToString([]byte("{"))), enc: enc, openErr: ErrInvalidAnnotation},
		{name: "tampered wrapped key", keys: mapKeys{testKID: kek.Key}, desc: withAnn(desc, AnnotationKeys, tamperPacket(t, desc.Annotations[AnnotationKeys])), enc: enc, openErr: ErrUnwrap},
		{name: "hmac mismatch", keys: mapKeys{testKID: kek.Key}, desc: withAnn(desc, AnnotationPubOpts, base64.StdEncoding.EncodeToString(badHMAC)), enc: enc, readErr: ErrIntegrity},
		{name: "truncated", keys: mapKeys{testKID: kek.Key}, desc: desc, enc: enc[:len(enc)-1], readErr: ErrIntegrity},
		{name: "truncated to zero", keys: mapKeys{testKID: kek.Key}, desc: desc, enc: nil, readErr: ErrIntegrity},
		{name: "extended", keys: mapKeys{testKID: kek.Key}, desc: desc, enc: append(bytes.Clone(enc), 0), readErr: ErrIntegrity},
		{name: "corrupted first byte", keys: mapKeys{testKID: kek.Key}, desc: desc, enc: flip(enc, 0), readErr: ErrIntegrity},
		{name: "corrupted last byte", keys: mapKeys{testKID: kek.Key}, desc: desc, enc: flip(enc, len(enc)-1), readErr: ErrIntegrity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := NewLayerDecrypter(tc.keys).Decrypt(context.Background(), tc.desc, bytes.NewReader(tc.enc))
			if tc.openErr != nil {
				if !errors.Is(err, tc.openErr) {
					t.Fatalf("Decrypt error %v, want %v", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			_, err = io.ReadAll(rc)
			if !errors.Is(err, tc.readErr) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("read error %v, want %v and io.ErrUnexpectedEOF", err, tc.readErr)
			}
			// The error sticks.
			if _, err2 := rc.Read(make([]byte, 1)); !errors.Is(err2, tc.readErr) {
				t.Fatalf("second read: %v", err2)
			}
		})
	}
}

// TestMissingKeyIsUnavailable: both the cause and ErrKeyUnavailable match.
func TestMissingKeyIsUnavailable(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	desc, enc := encrypt(t, kek.Wrap, plaintext(10))
	_, err := NewLayerDecrypter(errKeys{client.ErrPolicyDeny}).Decrypt(context.Background(), desc, bytes.NewReader(enc))
	if !errors.Is(err, ErrKeyUnavailable) || !errors.Is(err, client.ErrPolicyDeny) {
		t.Fatalf("got %v", err)
	}
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestSourceError: an I/O error of the source is reported as such, never
// as EOF and never as an integrity failure.
func TestSourceError(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	desc, enc := encrypt(t, kek.Wrap, plaintext(100<<10))
	boom := errors.New("connection reset")
	rc, err := NewLayerDecrypter(mapKeys{testKID: kek.Key}).Decrypt(context.Background(), desc, &failingReader{r: bytes.NewReader(enc), n: 50 << 10, err: boom})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	if !errors.Is(err, boom) || errors.Is(err, ErrIntegrity) {
		t.Fatalf("got %v", err)
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestCloseClosesSource(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	desc, enc := encrypt(t, kek.Wrap, plaintext(10))
	src := &closeRecorder{Reader: bytes.NewReader(enc)}
	rc, err := NewLayerDecrypter(mapKeys{testKID: kek.Key}).Decrypt(context.Background(), desc, src)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if !src.closed {
		t.Fatal("source not closed")
	}
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after close succeeded")
	}
}

func TestUnwrapOptions(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	plain := plaintext(10)
	desc, _ := encrypt(t, kek.Wrap, plain)
	opts, err := NewLayerDecrypter(mapKeys{testKID: kek.Key}).UnwrapOptions(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		SymKey []byte        `json:"symkey"`
		Digest digest.Digest `json:"digest"`
		Opts   struct {
			Nonce []byte `json:"nonce"`
		} `json:"cipheroptions"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		t.Fatal(err)
	}
	if len(o.SymKey) != 32 || len(o.Opts.Nonce) != 16 || o.Digest != digest.FromBytes(plain) {
		t.Fatalf("options %d-byte key, %d-byte nonce, digest %s", len(o.SymKey), len(o.Opts.Nonce), o.Digest)
	}
}

func TestKEKValidation(t *testing.T) {
	cases := []struct {
		name string
		kek  KEK
	}{
		{"short key", KEK{Key: make([]byte, 16), ID: testKID}},
		{"no kbs uri", KEK{Key: make([]byte, 32), ID: "/default/a/b"}},
		{"bad wrap type", KEK{Key: make([]byte, 32), ID: testKID, WrapType: "A128GCM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.kek.Wrap([]byte("{}")); !errors.Is(err, ErrInvalidKEK) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestEncryptRefusesEncryptedLayer(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	desc, enc := encrypt(t, kek.Wrap, plaintext(10))
	if _, _, err := EncryptLayer(kek.Wrap, desc, bytes.NewReader(enc)); err == nil {
		t.Fatal("re-encryption accepted")
	}
}

func TestWrapFailurePropagates(t *testing.T) {
	boom := errors.New("kbs registration failed")
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(nil)}
	r, fin, err := EncryptLayer(func([]byte) ([]byte, error) { return nil, boom }, desc, bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	if _, err := fin(); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestMediaTypes(t *testing.T) {
	cases := []struct {
		in   string
		enc  bool
		dec  string
		encd string
	}{
		{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted", true, "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"},
		{"application/vnd.oci.image.layer.v1.tar+zstd", false, "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar+zstd+encrypted"},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", false, "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if IsEncrypted(tc.in) != tc.enc || DecryptedMediaType(tc.in) != tc.dec || EncryptedMediaType(tc.in) != tc.encd {
				t.Fatalf("IsEncrypted %v, Decrypted %q, Encrypted %q", IsEncrypted(tc.in), DecryptedMediaType(tc.in), EncryptedMediaType(tc.in))
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x80
	return c
}

// tamperPacket flips a bit of wrapped_data in a base64 keys annotation.
func tamperPacket(t testing.TB, b64 string) string {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	w, _ := base64.StdEncoding.DecodeString(m["wrapped_data"].(string))
	w[0] ^= 1
	m["wrapped_data"] = base64.StdEncoding.EncodeToString(w)
	out, _ := json.Marshal(m)
	return base64.StdEncoding.EncodeToString(out)
}

// ocicryptDecrypt decrypts with ocicrypt's own block cipher reader, the
// reference the fast stream must match, given the options UnwrapOptions
// opened.
func ocicryptDecrypt(t testing.TB, keys KeySource, desc ocispec.Descriptor, enc []byte) ([]byte, error) {
	priv, err := NewLayerDecrypter(keys).UnwrapOptions(context.Background(), desc)
	if err != nil {
		return nil, err
	}
	var opts blockcipher.LayerBlockCipherOptions
	if err := json.Unmarshal(priv, &opts.Private); err != nil {
		t.Fatal(err)
	}
	pub, err := base64.StdEncoding.DecodeString(desc.Annotations[AnnotationPubOpts])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pub, &opts.Public); err != nil {
		t.Fatal(err)
	}
	lbch, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := lbch.Decrypt(bytes.NewReader(enc), opts)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// TestStreamMatchesOcicrypt: the stream and ocicrypt's reader agree on the
// plaintext of genuine layers and on rejecting damaged ones.
func TestStreamMatchesOcicrypt(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	keys := mapKeys{testKID: kek.Key}
	for _, n := range []int{0, 5, holdback - 1, holdback, holdback + 1, streamChunk + holdback + 3, 1 << 20} {
		plain := plaintext(n)
		desc, enc := encrypt(t, kek.Wrap, plain)
		variants := map[string][]byte{"genuine": enc, "truncated": enc[:len(enc)/2], "extended": append(bytes.Clone(enc), 1)}
		if n > 0 {
			variants["flipped"] = flip(enc, n/2)
		}
		for name, v := range variants {
			t.Run(fmt.Sprintf("%d/%s", n, name), func(t *testing.T) {
				want, werr := ocicryptDecrypt(t, keys, desc, v)
				rc, err := NewLayerDecrypter(keys).Decrypt(context.Background(), desc, bytes.NewReader(v))
				if err != nil {
					t.Fatal(err)
				}
				got, gerr := io.ReadAll(rc)
				if (werr == nil) != (gerr == nil) {
					t.Fatalf("ocicrypt err %v, stream err %v", werr, gerr)
				}
				if werr == nil && !bytes.Equal(got, want) {
					t.Fatal("plaintexts differ")
				}
				if name == "genuine" && (gerr != nil || !bytes.Equal(got, plain)) {
					t.Fatalf("genuine layer: %v", gerr)
				}
			})
		}
	}
}

// TestHoldback: a forged layer never releases its last holdback bytes.
func TestHoldback(t *testing.T) {
	kek := testKEK(t, WrapA256GCM)
	plain := plaintext(3 * holdback)
	desc, enc := encrypt(t, kek.Wrap, plain)
	rc, err := NewLayerDecrypter(mapKeys{testKID: kek.Key}).Decrypt(context.Background(), desc, bytes.NewReader(flip(enc, 0)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("got %v", err)
	}
	if len(got) > len(plain)-holdback {
		t.Fatalf("released %d of %d bytes of a forged layer", len(got), len(plain))
	}
}
