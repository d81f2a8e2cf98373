package attester_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

type fixed struct {
	tee protocol.Tee
	ev  json.RawMessage
	err error
}

func (f fixed) Tee() protocol.Tee { return f.tee }
func (f fixed) Evidence(context.Context, []byte) (json.RawMessage, error) {
	return f.ev, f.err
}

func TestAdditionalEvidence(t *testing.T) {
	boom := errors.New("device busy")
	tests := []struct {
		name    string
		devices []attester.Attester
		want    string
		wantErr error
	}{
		{"none", nil, "", nil},
		{"sorted keys, compact, no HTML escaping", []attester.Attester{
			fixed{protocol.TeeSampleDevice, json.RawMessage(`{ "a" : "<&>" }`), nil},
			fixed{protocol.TeeNvidia, json.RawMessage(`{"x":1}`), nil},
		}, `{"nvidia":{"x":1},"sampledevice":{"a":"<&>"}}`, nil},
		{"duplicate", []attester.Attester{&sample.Device{}, &sample.Device{}}, "", attester.ErrDuplicateDevice},
		{"device fails", []attester.Attester{fixed{protocol.TeeNvidia, nil, boom}}, "", boom},
		{"not JSON", []attester.Attester{fixed{protocol.TeeNvidia, json.RawMessage(`{`), nil}}, "", attester.ErrInvalidEvidence},
		{"too large", []attester.Attester{fixed{protocol.TeeNvidia, json.RawMessage(`"` + strings.Repeat("a", limits.MaxEvidenceBytes) + `"`), nil}}, "", attester.ErrInvalidEvidence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := attester.AdditionalEvidence(context.Background(), tt.devices, []byte("rd"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("= %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWithDevicesCopies(t *testing.T) {
	devs := []attester.Attester{&sample.Device{}}
	da := attester.WithDevices(&sample.Attester{}, devs...)
	devs[0] = nil
	got := da.Devices()
	got[0] = nil
	if da.Devices()[0] == nil {
		t.Fatal("WithDevices shares its slice with callers")
	}
}
