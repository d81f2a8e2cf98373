package imagecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// Stream buffer geometry. The last holdback bytes of plaintext are only
// released once the HMAC matched, as ocicrypt's reader does: a gzip
// stream's trailer (and a tar's end blocks) therefore never reach the
// consumer of a forged layer.
const (
	holdback    = 10 << 10
	streamChunk = 256 << 10
)

// layerOptions are the parts of ocicrypt's PrivateLayerBlockCipherOptions
// the stream needs.
type layerOptions struct {
	SymKey        []byte            `json:"symkey"`
	Digest        digest.Digest     `json:"digest"`
	CipherOptions map[string][]byte `json:"cipheroptions"`
}

func parseLayerOptions(b []byte) (*layerOptions, error) {
	var o layerOptions
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("%w: layer key options: %v", ErrUnwrap, err)
	}
	if len(o.SymKey) != 32 {
		return nil, fmt.Errorf("%w: layer key of %d bytes, want 32", ErrUnwrap, len(o.SymKey))
	}
	if n := len(o.CipherOptions["nonce"]); n != aes.BlockSize {
		return nil, fmt.Errorf("%w: layer nonce of %d bytes, want %d", ErrUnwrap, n, aes.BlockSize)
	}
	return &o, nil
}

// ctrHMACReader decrypts ocicrypt's AES_256_CTR_HMAC_SHA256: AES-256-CTR
// under symkey and the 16-byte nonce, HMAC-SHA256(symkey) over the
// ciphertext compared at EOF. It is byte-compatible with ocicrypt's
// blockcipher (see TestStreamMatchesOcicrypt) without its per-Read
// allocations and copies.
type ctrHMACReader struct {
	src    io.Reader
	stream cipher.Stream
	mac    hash.Hash
	want   []byte
	buf    []byte // plaintext not yet released is buf[off:end]
	off    int
	end    int
	eof    bool // the source ended and the HMAC matched
	srcErr error
	err    error
}

func newCTRHMACReader(src io.Reader, o *layerOptions, wantHMAC []byte) (*ctrHMACReader, error) {
	block, err := aes.NewCipher(o.SymKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	return &ctrHMACReader{
		src:    src,
		stream: cipher.NewCTR(block, o.CipherOptions["nonce"]),
		mac:    hmac.New(sha256.New, o.SymKey),
		want:   append([]byte(nil), wantHMAC...),
		buf:    make([]byte, holdback+streamChunk),
	}, nil
}

func (c *ctrHMACReader) Read(p []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		avail := c.end - c.off
		if !c.eof {
			avail -= holdback
		}
		if avail > 0 {
			n := copy(p, c.buf[c.off:c.off+avail])
			c.off += n
			return n, nil
		}
		if c.eof {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		// Keep the held-back tail at the front and refill behind it.
		if c.off > 0 {
			c.end = copy(c.buf, c.buf[c.off:c.end])
			c.off = 0
		}
		n, err := c.src.Read(c.buf[c.end:])
		if n > 0 {
			chunk := c.buf[c.end : c.end+n]
			c.mac.Write(chunk)
			c.stream.XORKeyStream(chunk, chunk)
			c.end += n
		}
		switch {
		case err == io.EOF:
			if !hmac.Equal(c.mac.Sum(nil), c.want) {
				clear(c.buf)
				c.off, c.end = 0, 0
				c.err = fmt.Errorf("%w: %w: HMAC mismatch", ErrIntegrity, io.ErrUnexpectedEOF)
				return 0, c.err
			}
			c.eof = true
		case err != nil:
			clear(c.buf)
			c.srcErr = err
			c.err = fmt.Errorf("reading the encrypted layer: %w", err)
			return 0, c.err
		}
	}
}

var errClosed = errors.New("read from a closed layer reader")
