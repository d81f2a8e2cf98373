package snp

import (
	"fmt"
	"os"

	labi "github.com/google/go-sev-guest/client/linuxabi"
	"golang.org/x/sys/unix"
)

type linuxDevice struct{ f *os.File }

// OpenDevice opens the sev-guest character device at path.
func OpenDevice(path string) (Device, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &linuxDevice{f: f}, nil
}

func (d *linuxDevice) Close() error { return d.f.Close() }

func (d *linuxDevice) Ioctl(command uintptr, req *labi.SnpUserGuestRequest) (uintptr, error) {
	conv := req.ABI()
	res, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), command, uintptr(conv.Pointer()))
	if err := conv.Finish(req); err != nil {
		return 0, fmt.Errorf("finishing the guest request: %w", err)
	}
	// The driver copies FwErr back only on EIO; elsewhere it may be stale.
	if errno != unix.EIO {
		req.FwErr = 0
	}
	if errno != 0 {
		return 0, errno
	}
	return res, nil
}
