//go:build !cgo

package pkcs11plugin

import "context"

// Plugin is the pkcs11 plugin; without cgo it cannot be opened.
type Plugin struct{}

// Open fails: PKCS#11 modules are C libraries, loaded through cgo.
func Open(cfg Config, opts Options) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Close does nothing.
func (p *Plugin) Close() error { return nil }

// ReadResource fails with ErrNoCgo.
func (p *Plugin) ReadResource(context.Context, string) ([]byte, error) { return nil, ErrNoCgo }

// WriteResource fails with ErrNoCgo.
func (p *Plugin) WriteResource(context.Context, string, []byte) error { return ErrNoCgo }

// DeleteResource fails with ErrNoCgo.
func (p *Plugin) DeleteResource(context.Context, string) error { return ErrNoCgo }

// Wrap fails with ErrNoCgo.
func (p *Plugin) Wrap(context.Context, []byte) ([]byte, error) { return nil, ErrNoCgo }

// Unwrap fails with ErrNoCgo.
func (p *Plugin) Unwrap(context.Context, []byte) ([]byte, error) { return nil, ErrNoCgo }
