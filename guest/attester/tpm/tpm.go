// Package tpm is the attester of a plain TPM 2.0 ("tpm" TEE) and the TPM
// layer the Azure vTPM attesters share: quotes of the 24 SHA-256 PCRs with
// a persistent attestation key, PCR reads and extensions, NV index reads and
// writes, over go-tpm. All TPM access is serialized and each operation opens
// the device anew, so /dev/tpm0 is held only while a command runs.
//
// Evidence, exactly as upstream's tpm attester emits it:
//
//	{"tpm_quote":{"signature":"<b64 TPMT_SIGNATURE>","message":"<b64 TPMS_ATTEST>",
//	              "pcrs":["<hex SHA-256 PCR 0>", ... 24]},
//	 "ak_public":"<b64 DER SubjectPublicKeyInfo>"}
//
// The report data is the quote nonce, zero-padded or TRUNCATED to 32 bytes
// (upstream's rule: a SHA-384 report data loses its last 16 bytes; the
// verifier applies the same rule). The AK must be an RSA key at
// AA_TPM_AK_HANDLE (default 0x81010002); the quote uses RSASSA-SHA256.
//
// A TPM is not bound to any TEE: evidence from this attester proves the
// state of the TPM, nothing about memory confidentiality.
package tpm

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// Upstream's environment variables and defaults.
const (
	EnvDevice       = "AA_TPM_DEVICE"
	EnvAKHandle     = "AA_TPM_AK_HANDLE"
	DefaultAKHandle = 0x81010002
	ReportDataSize  = 32
	InitDataPCR     = 8
)

// Options configure New. Zero values take the documented defaults.
type Options struct {
	// Open opens the TPM; nil opens the device FindDevice selects.
	Open Opener
	// AKHandle is the persistent handle of the attestation key; 0 means
	// $AA_TPM_AK_HANDLE (hex, optional 0x) or DefaultAKHandle.
	AKHandle uint32
	// Root prefixes device paths ("" is "/"); tests use a fake tree.
	Root string
	// Getenv reads the environment; nil is os.Getenv.
	Getenv func(string) string
}

// AKHandleFromEnv parses $AA_TPM_AK_HANDLE as upstream does (hex, an
// optional 0x prefix); unset gives DefaultAKHandle.
func AKHandleFromEnv(getenv func(string) string) (uint32, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv(EnvAKHandle)
	if v == "" {
		return DefaultAKHandle, nil
	}
	h, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("tpm: invalid %s %q: %w", EnvAKHandle, v, err)
	}
	return uint32(h), nil
}

// Detect reports whether upstream would pick the tpm attester: a TPM
// device exists and the AK handle setting parses.
func Detect(opts Options) bool {
	if _, ok := FindDevice(opts.Root, opts.Getenv); !ok && opts.Open == nil {
		return false
	}
	_, err := AKHandleFromEnv(opts.Getenv)
	return err == nil
}

// Attester is the tpm attester. It also extends and reads PCRs (runtime
// measurement) and binds init-data by extending PCR 8.
type Attester struct {
	tpm *TPM
	ak  uint32
}

var _ attester.Attester = (*Attester)(nil)

// New returns the attester for opts.
func New(opts Options) (*Attester, error) {
	ak := opts.AKHandle
	if ak == 0 {
		var err error
		if ak, err = AKHandleFromEnv(opts.Getenv); err != nil {
			return nil, err
		}
	}
	open := opts.Open
	if open == nil {
		dev, ok := FindDevice(opts.Root, opts.Getenv)
		if !ok {
			return nil, ErrNoDevice
		}
		open = DeviceOpener(dev)
	}
	return &Attester{tpm: NewTPM(open), ak: ak}, nil
}

// Tee returns protocol.TeeTpm.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeTpm }

// QuoteJSON is the tpm_quote member of tpm evidence.
type QuoteJSON struct {
	Signature string   `json:"signature"`
	Message   string   `json:"message"`
	PCRs      []string `json:"pcrs"`
}

// Evidence is tpm evidence.
type Evidence struct {
	TPMQuote QuoteJSON `json:"tpm_quote"`
	AKPublic string    `json:"ak_public"`
}

// Evidence quotes the PCRs with the report data, resized to 32 bytes, as
// the nonce.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	if len(reportData) > limits.MaxTPMQuoteNonceBytes {
		return nil, fmt.Errorf("tpm: report data of %d bytes exceeds %d", len(reportData), limits.MaxTPMQuoteNonceBytes)
	}
	nonce := make([]byte, ReportDataSize)
	copy(nonce, reportData)
	akDER, err := a.tpm.PublicKeyDER(ctx, a.ak)
	if err != nil {
		return nil, err
	}
	scheme := tpm2.TPMTSigScheme{
		Scheme:  tpm2.TPMAlgRSASSA,
		Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
	}
	q, err := a.tpm.Quote(ctx, a.ak, nonce, scheme)
	if err != nil {
		return nil, err
	}
	if q.Signature.SigAlg != tpm2.TPMAlgRSASSA {
		return nil, fmt.Errorf("tpm: quote signed with algorithm %#x, want RSASSA", q.Signature.SigAlg)
	}
	ev := Evidence{
		TPMQuote: QuoteJSON{
			Signature: base64.StdEncoding.EncodeToString(tpm2.Marshal(q.Signature)),
			Message:   base64.StdEncoding.EncodeToString(q.Attest),
			PCRs:      HexPCRs(q.PCRs),
		},
		AKPublic: base64.StdEncoding.EncodeToString(akDER),
	}
	return json.Marshal(ev)
}

// HexPCRs returns lowercase hex strings of pcrs.
func HexPCRs(pcrs [][]byte) []string {
	out := make([]string, len(pcrs))
	for i, p := range pcrs {
		out[i] = hex.EncodeToString(p)
	}
	return out
}

// EventLogHash returns crypto.SHA256: AAEL records on a TPM use the PCR
// bank's algorithm.
func (a *Attester) EventLogHash() crypto.Hash { return crypto.SHA256 }

// MRIndex returns pcr: the event log names PCRs directly. (Upstream's plain
// tpm attester has no mapping and aborts when the event log is enabled.)
func (a *Attester) MRIndex(pcr uint64) uint32 { return uint32(pcr) }

// RuntimeMeasurement returns SHA-256 PCR pcr.
func (a *Attester) RuntimeMeasurement(ctx context.Context, pcr uint64) ([]byte, error) {
	return a.tpm.PCR(ctx, pcr)
}

// ExtendRuntimeMeasurement extends SHA-256 PCR pcr with a 32-byte digest.
func (a *Attester) ExtendRuntimeMeasurement(ctx context.Context, digest []byte, pcr uint64) error {
	return a.tpm.Extend(ctx, pcr, digest)
}

// BindInitData extends PCR 8 with the init-data digest, which must be 32
// bytes (init-data algorithm sha256).
func (a *Attester) BindInitData(ctx context.Context, digest []byte) error {
	return a.tpm.Extend(ctx, InitDataPCR, digest)
}
