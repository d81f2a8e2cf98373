// Package detect picks the attesters of the guest it runs in, in upstream
// guest-components' order (attester/src/lib.rs), first match wins:
//
//	tdx          configfs-tsm provider tdx_guest, or /dev/tdx_guest
//	az-tdx-vtpm  a vTPM whose HCL report is a TD report
//	az-snp-vtpm  a vTPM whose HCL report is an SNP report
//	snp          /sys/devices/platform/sev-guest
//	tpm          a TPM device (AA_TPM_DEVICE, /dev/tpm0..2) and a valid AK handle setting
//	sample       anything else (logged as a warning: it proves nothing)
//
// Upstream also probes sgx (after tdx), csv, cca and se (after snp); this
// module has no attester for them, so such a guest falls through to the
// next entries (typically sample), with a warning naming the device seen.
//
// Devices (additional evidence): sampledevice when ENABLE_SAMPLE_DEVICE is
// set. Upstream adds a plain TPM as a device only in builds without the
// tdx and Azure attesters; this build has them, so it never does.
//
// Every probe looks under Options.Root and through the injected configfs
// and TPM, so detection runs against fake device trees in tests.
package detect

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/azsnpvtpm"
	"github.com/go-trustee/go-trustee/guest/attester/aztdxvtpm"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/guest/attester/snp"
	"github.com/go-trustee/go-trustee/guest/attester/tdx"
	"github.com/go-trustee/go-trustee/guest/attester/tpm"
)

// Options configure Detect. Zero values take the documented defaults.
type Options struct {
	// Root prefixes every device and sysfs path ("" is "/").
	Root string
	// TSM is the configfs-tsm client; nil uses the kernel's when present.
	TSM configfsi.Client
	// TPM opens the TPM; nil opens the device tpm.FindDevice selects.
	TPM tpm.Opener
	// SEVDevice issues sev-guest ioctls; nil opens /dev/sev-guest.
	SEVDevice snp.Device
	// TDReport returns a TDREPORT; nil uses /dev/tdx_guest.
	TDReport func([64]byte) ([]byte, error)
	// LookupEnv reads the environment; nil is os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// HTTPClient and IMDSURL reach the Azure IMDS (defaults: see azsnpvtpm).
	HTTPClient *http.Client
	IMDSURL    string
	// AzureSettle: see tpm.AzureVTPM (0 is the Azure tools' 3 s).
	AzureSettle time.Duration
	// AAELPath is the AAEL file put into TDX evidence ("" is $AAEL_PATH or
	// the default).
	AAELPath string
	// Logger receives the detection warnings; nil discards.
	Logger *slog.Logger
}

// Result is what Detect found.
type Result struct {
	// Primary is the CPU TEE attester.
	Primary attester.Attester
	// Devices are the additional (device) attesters, in a stable order.
	Devices []attester.Attester
}

// Detect probes the guest and returns its attesters.
func Detect(ctx context.Context, o Options) (Result, error) {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := primary(ctx, o)
	if err != nil {
		return Result{}, err
	}
	r := Result{Primary: p}
	if _, ok := o.LookupEnv(sample.EnvEnableSampleDevice); ok {
		r.Devices = append(r.Devices, &sample.Device{})
	}
	return r, nil
}

func (o Options) path(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

func (o Options) exists(p string) bool {
	_, err := os.Stat(o.path(p))
	return err == nil
}

func (o Options) getenv(k string) string {
	v, _ := o.LookupEnv(k)
	return v
}

func primary(ctx context.Context, o Options) (attester.Attester, error) {
	tdxOpts := tdx.Options{TSM: o.TSM, Root: o.Root, AAELPath: o.AAELPath, Getenv: o.getenv, TDReport: o.TDReport}
	if tdx.Detect(tdxOpts) {
		return tdx.New(tdxOpts)
	}
	if o.getenv("OCCLUM") != "" || o.exists("/dev/attestation/attestation_type") {
		o.Logger.Warn("an SGX enclave runtime (Occlum or Gramine) was detected, but this attestation agent has no sgx attester")
	}
	azOpts := azsnpvtpm.Options{Open: o.TPM, Root: o.Root, Getenv: o.getenv, HTTPClient: o.HTTPClient, IMDSURL: o.IMDSURL, Settle: o.AzureSettle}
	if aztdxvtpm.Detect(ctx, azOpts) {
		return aztdxvtpm.New(azOpts)
	}
	if azsnpvtpm.Detect(ctx, azOpts) {
		return azsnpvtpm.New(azOpts)
	}
	snpOpts := snp.Options{TSM: o.TSM, Device: o.SEVDevice, Root: o.Root}
	if snp.Detect(snpOpts) {
		return snp.New(snpOpts)
	}
	for _, d := range []struct{ path, tee string }{{"/dev/csv-guest", "csv"}, {"/dev/uv", "se"}} {
		if o.exists(d.path) {
			o.Logger.Warn("a TEE device was found, but this attestation agent has no attester for it", "device", d.path, "tee", d.tee)
		}
	}
	tpmOpts := tpm.Options{Open: o.TPM, Root: o.Root, Getenv: o.getenv}
	if tpm.Detect(tpmOpts) {
		o.Logger.Warn("a TPM was detected; it is not bound to a TEE, so its evidence proves nothing about memory confidentiality")
		a, err := tpm.New(tpmOpts)
		if err != nil {
			return nil, fmt.Errorf("detect: tpm: %w", err)
		}
		return a, nil
	}
	o.Logger.Warn("no TEE platform detected: the sample attester will be used, whose evidence PROVES NOTHING; " +
		"inside a confidential guest this means the guest is misconfigured")
	return &sample.Attester{}, nil
}
