package detect

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-trustee/go-trustee/guest/attester/tdx"
	"github.com/go-trustee/go-trustee/protocol"
)

func quote(in []byte) ([]byte, error) { return in, nil }

func TestDetectOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		dirs    []string
		tsm     string
		env     map[string]string
		want    protocol.Tee
		devices int
	}{
		{name: "nothing", want: protocol.TeeSample},
		{name: "sample device", env: map[string]string{"ENABLE_SAMPLE_DEVICE": ""}, want: protocol.TeeSample, devices: 1},
		{name: "tdx via configfs", tsm: tdx.Provider, want: protocol.TeeTdx},
		{name: "tdx via device", files: []string{"/dev/tdx_guest"}, want: protocol.TeeTdx},
		{name: "tdx wins over snp", files: []string{"/dev/tdx_guest"}, dirs: []string{"/sys/devices/platform/sev-guest"}, want: protocol.TeeTdx},
		{name: "snp", dirs: []string{"/sys/devices/platform/sev-guest"}, tsm: "sev_guest\n", want: protocol.TeeSnp},
		{name: "snp wins over tpm", dirs: []string{"/sys/devices/platform/sev-guest"}, files: []string{"/dev/tpm0"}, want: protocol.TeeSnp},
		{name: "plain tpm", files: []string{"/dev/tpm0"}, want: protocol.TeeTpm},
		{name: "tpm with a bad AK handle", files: []string{"/dev/tpm0"}, env: map[string]string{"AA_TPM_AK_HANDLE": "xyz"}, want: protocol.TeeSample},
		{name: "csv has no attester", files: []string{"/dev/csv-guest"}, want: protocol.TeeSample},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range tc.dirs {
				os.MkdirAll(filepath.Join(root, d), 0o755)
			}
			for _, f := range tc.files {
				os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
				os.WriteFile(filepath.Join(root, f), nil, 0o600)
			}
			o := Options{Root: root, LookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			if tc.tsm != "" {
				o.TSM = tdx.FakeTSM(tc.tsm, quote, nil)
			} else {
				o.TSM = tdx.FakeTSM("none\n", quote, nil)
			}
			r, err := Detect(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Primary.Tee(); got != tc.want {
				t.Errorf("primary = %s, want %s", got, tc.want)
			}
			if len(r.Devices) != tc.devices {
				t.Errorf("%d devices, want %d", len(r.Devices), tc.devices)
			}
		})
	}
}
