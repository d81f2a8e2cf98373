package sample

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/protocol"
)

func TestEvidence(t *testing.T) {
	rd48 := []byte(strings.Repeat("\x01", 48))
	tests := []struct {
		name string
		a    attester.Attester
		rd   []byte
		tee  protocol.Tee
		want string
	}{
		{"sample", &Attester{}, []byte("abc"), protocol.TeeSample, `{"svn":"1","report_data":"YWJj"}`},
		{"sample sha384, no padding", &Attester{}, rd48, protocol.TeeSample, `{"svn":"1","report_data":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"}`},
		{"sample empty", &Attester{}, nil, protocol.TeeSample, `{"svn":"1","report_data":""}`},
		{"sample svn override", &Attester{SVN: "7"}, []byte{0xff}, protocol.TeeSample, `{"svn":"7","report_data":"/w=="}`},
		{"sampledevice", &Device{}, []byte("abc"), protocol.TeeSampleDevice, `{"svn":"2","report_data":"YWJj"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.a.Evidence(context.Background(), tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("evidence = %s, want %s", got, tt.want)
			}
			if tt.a.Tee() != tt.tee {
				t.Errorf("tee = %s, want %s", tt.a.Tee(), tt.tee)
			}
		})
	}
	if _, err := (&Attester{}).Evidence(context.Background(), make([]byte, MaxReportData+1)); err == nil {
		t.Error("accepted oversized report data")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&Attester{}).Evidence(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func TestNewAndDevices(t *testing.T) {
	if _, ok := New(false).(attester.DeviceAttester); ok {
		t.Error("New(false) has devices")
	}
	da, ok := New(true).(attester.DeviceAttester)
	if !ok || len(da.Devices()) != 1 || da.Devices()[0].Tee() != protocol.TeeSampleDevice || da.Tee() != protocol.TeeSample {
		t.Fatalf("New(true) = %#v", da)
	}
	got, err := attester.AdditionalEvidence(context.Background(), da.Devices(), []byte("abc"))
	if err != nil || got != `{"sampledevice":{"svn":"2","report_data":"YWJj"}}` {
		t.Errorf("AdditionalEvidence = %s, %v", got, err)
	}
	t.Setenv(EnvEnableSampleDevice, "")
	if !DeviceEnabled() {
		t.Error("DeviceEnabled false with the variable set (even empty, as upstream)")
	}
}
