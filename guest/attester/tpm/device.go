package tpm

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// NumPCRs is the number of SHA-256 PCRs quoted and read: 0..23.
const NumPCRs = 24

// nvChunk bounds one NV_Read/NV_Write: well under TPM_PT_NV_BUFFER_MAX
// (1024 on common TPMs), so it is accepted everywhere.
const nvChunk = 512

// MaxNVBytes bounds an NV index read (the Azure HCL report is ~2.6 KiB).
const MaxNVBytes = limits.MaxTPMNVBytes

// ErrNoDevice means no TPM device was found.
var ErrNoDevice = errors.New("tpm: no TPM device")

// Opener opens a TPM; each operation opens and closes it, so a character
// device such as /dev/tpm0 (one opener at a time) is held only briefly.
type Opener func() (transport.TPMCloser, error)

// DeviceOpener opens the Linux TPM character device at path.
func DeviceOpener(path string) Opener {
	return func() (transport.TPMCloser, error) { return linuxtpm.Open(path) }
}

// FindDevice returns the TPM device upstream's attester would use: the
// AA_TPM_DEVICE environment variable when it names an existing file (and
// nothing else when it is set), else the first existing /dev/tpm0..2,
// looked up under root ("" is "/").
func FindDevice(root string, getenv func(string) string) (string, bool) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if dev := getenv(EnvDevice); dev != "" {
		if _, err := os.Stat(filepath.Join(rootDir(root), dev)); err == nil {
			return filepath.Join(rootDir(root), dev), true
		}
		return "", false
	}
	for _, d := range []string{"/dev/tpm0", "/dev/tpm1", "/dev/tpm2"} {
		p := filepath.Join(rootDir(root), d)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

func rootDir(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// TPM runs TPM 2.0 commands, one at a time, each on a freshly opened
// connection. It is safe for concurrent use.
type TPM struct {
	mu   sync.Mutex
	open Opener
}

// NewTPM returns a TPM using open.
func NewTPM(open Opener) *TPM { return &TPM{open: open} }

// with runs f on an open connection, serialized with every other command.
func (t *TPM) with(ctx context.Context, f func(transport.TPM) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tp, err := t.open()
	if err != nil {
		return fmt.Errorf("tpm: opening device: %w", err)
	}
	defer tp.Close()
	return f(tp)
}

func pcrSelection(pcrs ...uint) tpm2.TPMLPCRSelection {
	sel := make([]byte, 3)
	for _, p := range pcrs {
		sel[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}}}
}

func allPCRs() []uint {
	p := make([]uint, NumPCRs)
	for i := range p {
		p[i] = uint(i)
	}
	return p
}

// readPCRs reads the SHA-256 PCRs idx (TPMs return at most 8 per call).
func readPCRs(tp transport.TPM, idx []uint) (map[uint][]byte, error) {
	out := make(map[uint][]byte, len(idx))
	want := append([]uint(nil), idx...)
	for len(want) > 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(want...)}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("tpm: PCR_Read: %w", err)
		}
		var got []uint
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for i, b := range s.PCRSelect {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) != 0 {
						got = append(got, uint(i*8+bit))
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, errors.New("tpm: PCR_Read returned no SHA-256 values")
		}
		for i, p := range got {
			out[p] = rsp.PCRValues.Digests[i].Buffer
		}
		var rest []uint
		for _, p := range want {
			if _, ok := out[p]; !ok {
				rest = append(rest, p)
			}
		}
		want = rest
	}
	return out, nil
}

// PCRs returns the 24 SHA-256 PCR values.
func (t *TPM) PCRs(ctx context.Context) ([][]byte, error) {
	var pcrs [][]byte
	err := t.with(ctx, func(tp transport.TPM) error {
		m, err := readPCRs(tp, allPCRs())
		if err != nil {
			return err
		}
		pcrs = make([][]byte, NumPCRs)
		for i := range pcrs {
			pcrs[i] = m[uint(i)]
		}
		return nil
	})
	return pcrs, err
}

// PCR returns the SHA-256 value of PCR idx.
func (t *TPM) PCR(ctx context.Context, idx uint64) ([]byte, error) {
	if idx >= NumPCRs {
		return nil, fmt.Errorf("tpm: PCR index %d out of range", idx)
	}
	var v []byte
	err := t.with(ctx, func(tp transport.TPM) error {
		m, err := readPCRs(tp, []uint{uint(idx)})
		v = m[uint(idx)]
		return err
	})
	return v, err
}

// Extend extends SHA-256 PCR idx with a 32-byte digest.
func (t *TPM) Extend(ctx context.Context, idx uint64, digest []byte) error {
	if idx >= NumPCRs {
		return fmt.Errorf("tpm: PCR index %d out of range", idx)
	}
	if len(digest) != 32 {
		return fmt.Errorf("tpm: PCR digest of %d bytes, want 32 (SHA-256)", len(digest))
	}
	return t.with(ctx, func(tp transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest}}},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: PCR_Extend %d: %w", idx, err)
		}
		return nil
	})
}

// Quote is a TPM2_Quote of the 24 SHA-256 PCRs with the PCR values read
// under the same lock.
type Quote struct {
	// Attest is the TPMS_ATTEST structure that was signed.
	Attest []byte
	// Signature is the TPMT_SIGNATURE.
	Signature tpm2.TPMTSignature
	// PCRs are the 24 SHA-256 PCR values.
	PCRs [][]byte
}

// Quote signs the 24 SHA-256 PCRs and nonce (at most 64 bytes) with the
// key at the persistent handle ak, with scheme (TPMAlgNull: the key's).
func (t *TPM) Quote(ctx context.Context, ak uint32, nonce []byte, scheme tpm2.TPMTSigScheme) (*Quote, error) {
	if len(nonce) > 64 {
		return nil, fmt.Errorf("tpm: quote nonce of %d bytes exceeds 64", len(nonce))
	}
	var q Quote
	err := t.with(ctx, func(tp transport.TPM) error {
		pub, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(ak)}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: reading attestation key %#x: %w", ak, err)
		}
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: tpm2.TPMHandle(ak), Name: pub.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       scheme,
			PCRSelect:      pcrSelection(allPCRs()...),
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: quote with key %#x: %w", ak, err)
		}
		q.Attest = rsp.Quoted.Bytes()
		q.Signature = rsp.Signature
		m, err := readPCRs(tp, allPCRs())
		if err != nil {
			return err
		}
		q.PCRs = make([][]byte, NumPCRs)
		for i := range q.PCRs {
			q.PCRs[i] = m[uint(i)]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &q, nil
}

// RSAPublicKey reads the RSA public key at the persistent handle h.
func (t *TPM) RSAPublicKey(ctx context.Context, h uint32) (*rsa.PublicKey, error) {
	var key *rsa.PublicKey
	err := t.with(ctx, func(tp transport.TPM) error {
		rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(h)}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: reading key %#x: %w", h, err)
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("tpm: key %#x: %w", h, err)
		}
		if pub.Type != tpm2.TPMAlgRSA {
			return fmt.Errorf("tpm: key %#x is not an RSA key", h)
		}
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return fmt.Errorf("tpm: key %#x: %w", h, err)
		}
		unique, err := pub.Unique.RSA()
		if err != nil {
			return fmt.Errorf("tpm: key %#x: %w", h, err)
		}
		key, err = tpm2.RSAPub(parms, unique)
		return err
	})
	return key, err
}

// PublicKeyDER returns the DER SubjectPublicKeyInfo of the RSA key at h.
func (t *TPM) PublicKeyDER(ctx context.Context, h uint32) ([]byte, error) {
	key, err := t.RSAPublicKey(ctx, h)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKIXPublicKey(key)
}

func ownerAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
}

// NVRead reads the whole NV index idx with owner authorization.
func (t *TPM) NVRead(ctx context.Context, idx uint32) ([]byte, error) {
	var out []byte
	err := t.with(ctx, func(tp transport.TPM) error {
		pub, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: NV index %#x: %w", idx, err)
		}
		info, err := pub.NVPublic.Contents()
		if err != nil {
			return fmt.Errorf("tpm: NV index %#x: %w", idx, err)
		}
		size := int(info.DataSize)
		if size > MaxNVBytes {
			return fmt.Errorf("tpm: NV index %#x of %d bytes exceeds %d", idx, size, MaxNVBytes)
		}
		out = make([]byte, 0, size)
		for len(out) < size {
			n := min(nvChunk, size-len(out))
			rsp, err := tpm2.NVRead{
				AuthHandle: ownerAuth(),
				NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: pub.NVName},
				Size:       uint16(n),
				Offset:     uint16(len(out)),
			}.Execute(tp)
			if err != nil {
				return fmt.Errorf("tpm: NV_Read %#x: %w", idx, err)
			}
			if len(rsp.Data.Buffer) != n {
				return fmt.Errorf("tpm: NV_Read %#x returned %d bytes, want %d", idx, len(rsp.Data.Buffer), n)
			}
			out = append(out, rsp.Data.Buffer...)
		}
		return nil
	})
	return out, err
}

// NVWrite writes data to NV index idx with owner authorization, first
// defining it (owner read/write, exactly len(data) bytes) when it is
// missing or of another size, as the Azure guest tools do.
func (t *TPM) NVWrite(ctx context.Context, idx uint32, data []byte) error {
	if len(data) == 0 || len(data) > nvChunk {
		return fmt.Errorf("tpm: NV write of %d bytes (want 1..%d)", len(data), nvChunk)
	}
	return t.with(ctx, func(tp transport.TPM) error {
		pub, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(tp)
		define := err != nil
		if err == nil {
			info, cerr := pub.NVPublic.Contents()
			if cerr != nil || int(info.DataSize) != len(data) {
				if _, err := (tpm2.NVUndefineSpace{AuthHandle: ownerAuth(), NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: pub.NVName}}).Execute(tp); err != nil {
					return fmt.Errorf("tpm: NV_UndefineSpace %#x: %w", idx, err)
				}
				define = true
			}
		}
		if define {
			_, err := tpm2.NVDefineSpace{
				AuthHandle: ownerAuth(),
				PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
					NVIndex:    tpm2.TPMHandle(idx),
					NameAlg:    tpm2.TPMAlgSHA256,
					Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NT: tpm2.TPMNTOrdinary},
					DataSize:   uint16(len(data)),
				}),
			}.Execute(tp)
			if err != nil {
				return fmt.Errorf("tpm: NV_DefineSpace %#x: %w", idx, err)
			}
			if pub, err = (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}).Execute(tp); err != nil {
				return fmt.Errorf("tpm: NV index %#x: %w", idx, err)
			}
		}
		_, err = tpm2.NVWrite{
			AuthHandle: ownerAuth(),
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: pub.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: NV_Write %#x: %w", idx, err)
		}
		return nil
	})
}
