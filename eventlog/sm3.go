package eventlog

import (
	"encoding/binary"
	"hash"
	"math/bits"
)

// SM3 (GB/T 32905-2016) is the digest Hygon CSV firmware records in its
// event logs. The standard library has no SM3, so this small, allocation-free
// implementation backs Algorithm SM3 for digest checks and replay.

const (
	sm3Size      = 32
	sm3BlockSize = 64
)

var sm3IV = [8]uint32{
	0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600,
	0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e,
}

type sm3Digest struct {
	h   [8]uint32
	buf [sm3BlockSize]byte
	n   int    // bytes in buf
	len uint64 // total bytes written
}

// newSM3 returns a new SM3 hash.Hash.
func newSM3() hash.Hash {
	d := &sm3Digest{}
	d.Reset()
	return d
}

func (d *sm3Digest) Reset() {
	d.h = sm3IV
	d.n = 0
	d.len = 0
}

func (d *sm3Digest) Size() int      { return sm3Size }
func (d *sm3Digest) BlockSize() int { return sm3BlockSize }

func (d *sm3Digest) Write(p []byte) (int, error) {
	n := len(p)
	d.len += uint64(n)
	if d.n > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == sm3BlockSize {
			d.block(d.buf[:])
			d.n = 0
		}
	}
	for len(p) >= sm3BlockSize {
		d.block(p[:sm3BlockSize])
		p = p[sm3BlockSize:]
	}
	if len(p) > 0 {
		d.n = copy(d.buf[:], p)
	}
	return n, nil
}

func (d *sm3Digest) Sum(in []byte) []byte {
	c := *d // Sum must not change the running state.
	bitLen := c.len * 8
	var pad [sm3BlockSize + 8]byte
	pad[0] = 0x80
	padLen := sm3BlockSize - (c.n+8)%sm3BlockSize
	if padLen == 0 {
		padLen = sm3BlockSize
	}
	binary.BigEndian.PutUint64(pad[padLen:], bitLen)
	c.Write(pad[:padLen+8])
	var out [sm3Size]byte
	for i, v := range c.h {
		binary.BigEndian.PutUint32(out[i*4:], v)
	}
	return append(in, out[:]...)
}

func sm3P0(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 9) ^ bits.RotateLeft32(x, 17) }
func sm3P1(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 15) ^ bits.RotateLeft32(x, 23) }

func (d *sm3Digest) block(p []byte) {
	var w [68]uint32
	for i := 0; i < 16; i++ {
		w[i] = binary.BigEndian.Uint32(p[i*4:])
	}
	for j := 16; j < 68; j++ {
		w[j] = sm3P1(w[j-16]^w[j-9]^bits.RotateLeft32(w[j-3], 15)) ^ bits.RotateLeft32(w[j-13], 7) ^ w[j-6]
	}
	a, b, c, dd, e, f, g, h := d.h[0], d.h[1], d.h[2], d.h[3], d.h[4], d.h[5], d.h[6], d.h[7]
	for j := 0; j < 64; j++ {
		var t, ff, gg uint32
		if j < 16 {
			t = 0x79cc4519
			ff = a ^ b ^ c
			gg = e ^ f ^ g
		} else {
			t = 0x7a879d8a
			ff = (a & b) | (a & c) | (b & c)
			gg = (e & f) | (^e & g)
		}
		a12 := bits.RotateLeft32(a, 12)
		ss1 := bits.RotateLeft32(a12+e+bits.RotateLeft32(t, j%32), 7)
		ss2 := ss1 ^ a12
		tt1 := ff + dd + ss2 + (w[j] ^ w[j+4])
		tt2 := gg + h + ss1 + w[j]
		dd = c
		c = bits.RotateLeft32(b, 9)
		b = a
		a = tt1
		h = g
		g = bits.RotateLeft32(f, 19)
		f = e
		e = sm3P0(tt2)
	}
	d.h[0] ^= a
	d.h[1] ^= b
	d.h[2] ^= c
	d.h[3] ^= dd
	d.h[4] ^= e
	d.h[5] ^= f
	d.h[6] ^= g
	d.h[7] ^= h
}
