package tdx

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tdxCmdGetReport0 is _IOWR('T', 1, struct tdx_report_req), the request
// being 64 bytes of report data and a 1024-byte TDREPORT.
const tdxCmdGetReport0 = 3<<30 | (64+TDReportSize)<<16 | 'T'<<8 | 1

type tdxReportReq struct {
	reportData [64]byte
	tdReport   [TDReportSize]byte
}

// ioctlTDReport issues TDX_CMD_GET_REPORT0 on the TDX guest device.
func ioctlTDReport(dev string, rd [64]byte) ([]byte, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	req := tdxReportReq{reportData: rd}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), tdxCmdGetReport0, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return nil, fmt.Errorf("TDX_CMD_GET_REPORT0: %w", errno)
	}
	return req.tdReport[:], nil
}
