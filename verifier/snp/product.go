package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"

	"github.com/google/go-sev-guest/verify/trust"

	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"
)

// product is an AMD EPYC processor generation with its bundled roots.
type product struct {
	name string // KDS product name: Milan, Genoa, Turin
	ark  *x509.Certificate
	ask  *x509.Certificate // signs VCEKs
	asvk *x509.Certificate // signs VLEKs
}

func (p *product) layout() snpev.TCBLayout {
	if p.name == "Turin" {
		return snpev.LayoutTurin
	}
	return snpev.LayoutLegacy
}

// kdsHWID is the hardware ID the KDS names a chip by: the whole CHIP_ID,
// or its first 8 bytes on Turin.
func (p *product) kdsHWID(chipID *[64]byte) []byte {
	if p.name == "Turin" {
		return chipID[:8]
	}
	return chipID[:]
}

// bundledRoots parses, once, the AMD ARK/ASK/ASVK certificates that
// go-sev-guest embeds (the same certificates upstream bundles as
// snp/<gen>_ask_ark_asvk.pem), and checks that each ARK is self-signed and
// signs its ASK and ASVK.
var bundledRoots = sync.OnceValues(func() (map[string]*product, error) {
	bundles := []struct {
		name       string
		vcek, vlek []byte
	}{
		{"Milan", trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{"Genoa", trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{"Turin", trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	out := make(map[string]*product, len(bundles))
	for _, b := range bundles {
		ask, ark, err := parseProductChain(b.vcek)
		if err != nil {
			return nil, fmt.Errorf("%s VCEK chain: %w", b.name, err)
		}
		asvk, ark2, err := parseProductChain(b.vlek)
		if err != nil {
			return nil, fmt.Errorf("%s VLEK chain: %w", b.name, err)
		}
		if !ark.Equal(ark2) {
			return nil, fmt.Errorf("%s: the VCEK and VLEK chains have different ARKs", b.name)
		}
		if err := ark.CheckSignatureFrom(ark); err != nil {
			return nil, fmt.Errorf("%s ARK is not self-signed: %w", b.name, err)
		}
		if err := ask.CheckSignatureFrom(ark); err != nil {
			return nil, fmt.Errorf("%s ASK is not signed by the ARK: %w", b.name, err)
		}
		if err := asvk.CheckSignatureFrom(ark); err != nil {
			return nil, fmt.Errorf("%s ASVK is not signed by the ARK: %w", b.name, err)
		}
		out[b.name] = &product{name: b.name, ark: ark, ask: ask, asvk: asvk}
	}
	return out, nil
})

// parseProductChain parses a KDS cert_chain: the ASK (or ASVK) then the
// ARK, as two PEM CERTIFICATE blocks (trailing white space allowed).
func parseProductChain(pems []byte) (ask, ark *x509.Certificate, err error) {
	var certs []*x509.Certificate
	rest := pems
	for len(bytes.TrimSpace(rest)) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("not a chain of PEM certificates")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		return nil, nil, fmt.Errorf("%d certificates, want the AS(V)K and the ARK", len(certs))
	}
	return certs[0], certs[1], nil
}

// productOf returns the processor generation of a version 3+ report from
// its CPUID family and model, with upstream's ranges: family 0x19 models
// 0x00-0x0F Milan, 0x10-0x1F and 0xA0-0xAE Genoa; family 0x1A models
// 0x00-0x11 Turin.
func productOf(r *snpev.Report) (*product, error) {
	if r.CPUIDFamID == nil {
		return nil, fmt.Errorf("%w: attestation report version 3+ is missing the CPU family ID", ErrUnsupportedReport)
	}
	if r.CPUIDModID == nil {
		return nil, fmt.Errorf("%w: attestation report version 3+ is missing the CPU model ID", ErrUnsupportedReport)
	}
	fam, mod := *r.CPUIDFamID, *r.CPUIDModID
	var name string
	switch fam {
	case 0x19:
		switch {
		case mod <= 0x0F:
			name = "Milan"
		case mod >= 0x10 && mod <= 0x1F, mod >= 0xA0 && mod < 0xAF:
			name = "Genoa"
		default:
			return nil, fmt.Errorf("%w: processor model 0x%x of family 0x19 not supported", ErrUnsupportedReport, mod)
		}
	case 0x1A:
		if mod > 0x11 {
			return nil, fmt.Errorf("%w: processor model 0x%x of family 0x1a not supported", ErrUnsupportedReport, mod)
		}
		name = "Turin"
	default:
		return nil, fmt.Errorf("%w: processor family 0x%x not supported", ErrUnsupportedReport, fam)
	}
	roots, err := bundledRoots()
	if err != nil {
		return nil, fmt.Errorf("%w: bundled AMD roots: %w", ErrCertChain, err)
	}
	return roots[name], nil
}
