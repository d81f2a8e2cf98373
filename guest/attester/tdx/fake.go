package tdx

import (
	"crypto/rand"
	"fmt"
	"os"
	"syscall"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
)

// FakeTSM returns a configfs-tsm client whose report subsystem behaves as
// the kernel's for provider (e.g. Provider, "sev_guest\n"): each entry
// takes a 64-byte inblob and an optional privlevel, and answers outblob
// with outblob(inblob) and auxblob with aux. It is a test double for the
// attesters built on configfs-tsm (this package and attester/snp); it
// proves nothing.
func FakeTSM(provider string, outblob func(inblob []byte) ([]byte, error), aux []byte) configfsi.Client {
	sub := &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			return &faketsm.ReportEntry{
				InAttrs: map[string]*faketsm.ReportAttributeState{
					"inblob":    {},
					"privlevel": {Value: []byte("0\n")},
				},
				// The provider is readable before any write, as in the kernel.
				ROAttrs: map[string][]byte{"provider": []byte(provider)},
			}
		},
		CheckInAttr: func(_ *faketsm.ReportEntry, attr string, contents []byte) error {
			switch attr {
			case "inblob":
				if len(contents) > 64 {
					return syscall.EINVAL
				}
			case "privlevel":
				if provider == Provider {
					return fmt.Errorf("%s has no privlevel", provider)
				}
			default:
				return fmt.Errorf("unwritable attribute %q", attr)
			}
			return nil
		},
		ReadAttr: func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
			switch attr {
			case "provider":
				return []byte(provider), nil
			case "outblob":
				in := e.InAttrs["inblob"].Value
				if len(in) == 0 {
					return nil, syscall.EINVAL
				}
				return outblob(in)
			case "auxblob":
				return aux, nil
			}
			return nil, os.ErrNotExist
		},
		Random: rand.Reader,
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}
