package snp

import (
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
)

// Device issues SEV guest requests: the sev-guest driver's ioctl.
type Device interface {
	// Ioctl issues command with req, filling its response and FwErr, and
	// returns the ioctl result.
	Ioctl(command uintptr, req *labi.SnpUserGuestRequest) (uintptr, error)
	// Close releases the device.
	Close() error
}

func message(d Device, command uintptr, req *labi.SnpUserGuestRequest) error {
	res, err := d.Ioctl(command, req)
	if err != nil {
		if req.FwErr != 0 {
			return &abi.SevFirmwareErr{Status: abi.SevFirmwareStatus(req.FwErr)}
		}
		return err
	}
	if res != uintptr(labi.EsOk) {
		return &labi.SevEsErr{Result: labi.EsResult(res)}
	}
	return nil
}

// GetReport returns an attestation report at VMPL 0 binding rd.
func GetReport(d Device, rd [64]byte) ([]byte, error) {
	var resp labi.SnpReportRespABI
	req := labi.SnpUserGuestRequest{ReqData: &labi.SnpReportReqABI{ReportData: rd}, RespData: &resp}
	if err := message(d, labi.IocSnpGetReport, &req); err != nil {
		return nil, fmt.Errorf("snp: SNP_GET_REPORT: %w", err)
	}
	return reportOf(&resp)
}

func reportOf(resp *labi.SnpReportRespABI) ([]byte, error) {
	if resp.Status != 0 {
		return nil, fmt.Errorf("snp: firmware status %#x", resp.Status)
	}
	if resp.ReportSize < ReportSize || int(resp.ReportSize) > len(resp.Data) {
		return nil, fmt.Errorf("snp: report size %d", resp.ReportSize)
	}
	return append([]byte(nil), resp.Data[:resp.ReportSize]...), nil
}

// GetExtendedReport returns an attestation report at VMPL 0 binding rd and
// the host's certificate table (nil when the host has none). It asks for
// the table's size first, as the driver requires.
func GetExtendedReport(d Device, rd [64]byte) (report, certs []byte, err error) {
	var buf []byte
	for attempt := 0; attempt < 2; attempt++ {
		var resp labi.SnpReportRespABI
		ext := labi.SnpExtendedReportReq{Data: labi.SnpReportReqABI{ReportData: rd}, Certs: buf, CertsLength: uint32(len(buf))}
		req := labi.SnpUserGuestRequest{ReqData: &ext, RespData: &resp}
		err := message(d, labi.IocSnpGetExtendedReport, &req)
		var fw *abi.SevFirmwareErr
		if errors.As(err, &fw) && fw.Status == abi.GuestRequestInvalidLength && buf == nil {
			if ext.CertsLength == 0 || ext.CertsLength > MaxCertTableBytes {
				return nil, nil, fmt.Errorf("%w: host asks for %d bytes (limit %d)", ErrCertTable, ext.CertsLength, MaxCertTableBytes)
			}
			buf = make([]byte, ext.CertsLength)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("snp: SNP_GET_EXT_REPORT: %w", err)
		}
		rep, err := reportOf(&resp)
		if err != nil {
			return nil, nil, err
		}
		if ext.CertsLength == 0 {
			return rep, nil, nil
		}
		if int(ext.CertsLength) > len(buf) {
			return nil, nil, fmt.Errorf("%w: host reports %d bytes in a %d-byte buffer", ErrCertTable, ext.CertsLength, len(buf))
		}
		return rep, buf[:ext.CertsLength], nil
	}
	return nil, nil, fmt.Errorf("%w: the host changed the table size between requests", ErrCertTable)
}
