// Package sample provides the sample TEEs of the KBS protocol: attesters
// that run anywhere and PROVE NOTHING. Their "evidence" is a JSON object
// any program can write; a KBS that accepts it has been told to trust
// whoever asks. They exist for tests, demos and load runs, never for
// production. Trustee's default resource policy refuses sample evidence,
// and so should every real policy.
//
// Evidence, exactly as upstream's sample attesters emit it (report data used
// as is, no padding):
//
//	sample:       {"svn":"1","report_data":"<base64 std of report data>"}
//	sampledevice: {"svn":"2","report_data":"<base64 std of report data>"}
package sample

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/protocol"
)

// DefaultSVN and DefaultDeviceSVN are the svn values upstream's sample and
// sampledevice attesters always report.
const (
	DefaultSVN       = "1"
	DefaultDeviceSVN = "2"
)

// EnvEnableSampleDevice is the environment variable whose presence makes
// upstream's attestation agent add the sampledevice as an additional device.
const EnvEnableSampleDevice = "ENABLE_SAMPLE_DEVICE"

// MaxReportData bounds the report data the sample attesters accept; real
// TEEs take at most 64 bytes, a SHA-512 digest.
const MaxReportData = 64

// Evidence is the JSON evidence of both sample TEEs.
type Evidence struct {
	SVN        string `json:"svn"`
	ReportData string `json:"report_data"`
}

// Attester is the INSECURE sample primary TEE (tee "sample"). The zero value
// reports DefaultSVN.
type Attester struct {
	// SVN overrides the reported security version; "" means DefaultSVN.
	SVN string
}

// Device is the INSECURE sample device TEE (tee "sampledevice"). The zero
// value reports DefaultDeviceSVN.
type Device struct {
	// SVN overrides the reported security version; "" means DefaultDeviceSVN.
	SVN string
}

var (
	_ attester.Attester = (*Attester)(nil)
	_ attester.Attester = (*Device)(nil)
)

// Tee returns protocol.TeeSample.
func (a *Attester) Tee() protocol.Tee { return protocol.TeeSample }

// Evidence returns {"svn":..,"report_data":"<b64 std>"}.
func (a *Attester) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	svn := a.SVN
	if svn == "" {
		svn = DefaultSVN
	}
	return evidence(ctx, svn, reportData)
}

// Tee returns protocol.TeeSampleDevice.
func (d *Device) Tee() protocol.Tee { return protocol.TeeSampleDevice }

// Evidence returns {"svn":..,"report_data":"<b64 std>"}.
func (d *Device) Evidence(ctx context.Context, reportData []byte) (json.RawMessage, error) {
	svn := d.SVN
	if svn == "" {
		svn = DefaultDeviceSVN
	}
	return evidence(ctx, svn, reportData)
}

func evidence(ctx context.Context, svn string, reportData []byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(reportData) > MaxReportData {
		return nil, fmt.Errorf("sample evidence: report data of %d bytes exceeds %d", len(reportData), MaxReportData)
	}
	b, err := json.Marshal(Evidence{SVN: svn, ReportData: base64.StdEncoding.EncodeToString(reportData)})
	if err != nil {
		return nil, fmt.Errorf("encoding sample evidence: %w", err)
	}
	return b, nil
}

// DeviceEnabled reports whether EnvEnableSampleDevice is set, as upstream's
// device detection checks it.
func DeviceEnabled() bool {
	_, ok := os.LookupEnv(EnvEnableSampleDevice)
	return ok
}

// New returns the INSECURE sample attester, with the sampledevice attached
// when withDevice is true (see DeviceEnabled).
func New(withDevice bool) attester.Attester {
	if withDevice {
		return attester.WithDevices(&Attester{}, &Device{})
	}
	return &Attester{}
}
