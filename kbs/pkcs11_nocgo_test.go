//go:build !cgo

package kbs

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestPkcs11PluginNeedsCgo: without cgo a pkcs11 entry passes CheckConfig
// (the KBS that runs it may have cgo) and New fails with a clear error.
func TestPkcs11PluginNeedsCgo(t *testing.T) {
	cfg, _, err := ParseConfig([]byte(testConfig + `
[[plugins]]
name = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
pin = "12345678"
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("CheckConfig: %v", err)
	}
	_, err = New(context.Background(), cfg, Options{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "the pkcs11 plugin needs a build with cgo (CGO_ENABLED=1)") || strings.Contains(err.Error(), "12345678") {
		t.Fatalf("New: %v", err)
	}
}
