// Package builtin assembles the registry of every TEE verifier this build
// carries, configured from the Attestation Service's verifier_config (the
// [attestation_service.verifier_config] table of kbs-config.toml, or the
// "verifier_config" member of the standalone AS JSON).
//
// It lives apart from package as so that verifier packages may test
// themselves through the Attestation Service without an import cycle.
//
// The TDX and az-tdx-vtpm verifiers share one collateral cache, as do all
// SNP-based verifiers their VCEK cache: a collateral fetch made for one
// attestation serves every later one.
package builtin

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/azsnpvtpm"
	"github.com/go-trustee/go-trustee/verifier/aztdxvtpm"
	"github.com/go-trustee/go-trustee/verifier/sample"
	"github.com/go-trustee/go-trustee/verifier/snp"
	"github.com/go-trustee/go-trustee/verifier/tdx"
	"github.com/go-trustee/go-trustee/verifier/tpm"
)

// CacheDirKey is our addition to verifier_config: a directory for the
// durable caches of AMD KDS certificates and Intel PCS collateral
// (subdirectories snp/ and tdx/). Without it the caches live in memory.
const CacheDirKey = "collateral_cache_dir"

// Options are what the verifiers take from their environment.
type Options struct {
	// HTTPClient fetches collateral (AMD KDS, Intel PCS/PCCS); nil: a
	// client with timeouts.
	HTTPClient *http.Client
	// CacheDir overrides verifier_config.collateral_cache_dir.
	CacheDir string
	// Now is the verification time (certificate and collateral validity).
	Now    func() time.Time
	Logger *slog.Logger
	// KDS and PCS replace the HTTP getters (tests: offline fakes).
	KDS snp.Getter
	PCS tdx.Getter
}

// New returns a registry with the sample, sampledevice, snp, tdx, tpm,
// az-snp-vtpm and az-tdx-vtpm verifiers.
func New(cfg map[string]any, opts Options) (*verifier.Registry, error) {
	if cfg == nil {
		cfg = map[string]any{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		if s, ok := cfg[CacheDirKey].(string); ok {
			cacheDir = s
		} else if v, present := cfg[CacheDirKey]; present && v != nil {
			return nil, fmt.Errorf("verifier_config.%s must be a string", CacheDirKey)
		}
	}
	sub := func(name string) string {
		if cacheDir == "" {
			return ""
		}
		return filepath.Join(cacheDir, name)
	}

	r := &verifier.Registry{}
	r.Register(protocol.TeeSample, sample.New())
	r.Register(protocol.TeeSampleDevice, sample.NewDevice())

	snpCfg, err := snp.ParseConfig(cfg)
	if err != nil {
		return nil, err
	}
	kds := opts.KDS
	if kds == nil {
		kds = snp.NewHTTPGetter(hc)
	}
	snpV, err := snp.New(snpCfg, snp.Options{Getter: kds, CacheDir: sub("snp"), Now: opts.Now, Logger: log.With("tee", "snp")})
	if err != nil {
		return nil, fmt.Errorf("snp verifier: %w", err)
	}
	r.Register(protocol.TeeSnp, snpV)

	tdxCfg, err := tdx.ParseConfig(cfg)
	if err != nil {
		return nil, err
	}
	pcs := opts.PCS
	if pcs == nil {
		pcs = tdx.NewHTTPGetter(hc)
	}
	tdxV, err := tdx.New(tdxCfg, tdx.Options{Getter: pcs, CacheDir: sub("tdx"), Now: opts.Now, Logger: log.With("tee", "tdx")})
	if err != nil {
		return nil, fmt.Errorf("tdx verifier: %w", err)
	}
	r.Register(protocol.TeeTdx, tdxV)

	tpmCfg, err := tpm.ParseConfig(cfg)
	if err != nil {
		return nil, err
	}
	tpmV, err := tpm.New(tpmCfg, tpm.Options{Now: opts.Now, Logger: log.With("tee", "tpm")})
	if err != nil {
		return nil, fmt.Errorf("tpm verifier: %w", err)
	}
	r.Register(protocol.TeeTpm, tpmV)

	azSNP, err := azsnpvtpm.New(azsnpvtpm.Config{}, azsnpvtpm.Options{Now: opts.Now, Logger: log.With("tee", "az-snp-vtpm")})
	if err != nil {
		return nil, fmt.Errorf("az-snp-vtpm verifier: %w", err)
	}
	r.Register(protocol.TeeAzSnpVtpm, azSNP)

	azTDXCfg, err := aztdxvtpm.ParseConfig(cfg)
	if err != nil {
		return nil, err
	}
	azTDX, err := aztdxvtpm.New(azTDXCfg, aztdxvtpm.Options{Quote: tdxV, Now: opts.Now, Logger: log.With("tee", "az-tdx-vtpm")})
	if err != nil {
		return nil, fmt.Errorf("az-tdx-vtpm verifier: %w", err)
	}
	r.Register(protocol.TeeAzTdxVtpm, azTDX)
	return r, nil
}
