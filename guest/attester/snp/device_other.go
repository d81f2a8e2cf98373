//go:build !linux

package snp

import "errors"

// OpenDevice fails: the sev-guest device needs Linux.
func OpenDevice(string) (Device, error) { return nil, errors.New("the sev-guest device needs Linux") }
