//go:build !linux

package tdx

import "errors"

func ioctlTDReport(string, [64]byte) ([]byte, error) {
	return nil, errors.New("the TDX guest device needs Linux")
}
