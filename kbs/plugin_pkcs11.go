package kbs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-trustee/go-trustee/kbs/pkcs11plugin"
)

// SecretString is a configuration string that %v, %+v, %#v and String
// print as <redacted> (the pkcs11 plugin's pin).
type SecretString string

func (s SecretString) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString is String.
func (s SecretString) GoString() string { return s.String() }

// pkcs11Plugin mounts package pkcs11plugin at /kbs/v0/pkcs11/...: upstream's
// pkcs11 plugin (resources in an HSM token, and an RSA wrap key).
type pkcs11Plugin struct{ p *pkcs11plugin.Plugin }

// newPkcs11Plugin opens the token. With checkOnly (CheckConfig) it only
// checks the entry: no library is loaded.
func newPkcs11Plugin(c PluginConfig, checkOnly bool) (plugin, error) {
	cfg := pkcs11plugin.Config{
		Module: c.Module, SlotIndex: c.SlotIndex, Pin: string(c.Pin),
		RsaMechanism: c.RsaMechanism, LookupLabel: c.LookupLabel,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: pkcs11 plugin: %v", ErrInvalidConfig, err)
	}
	if checkOnly {
		return &pkcs11Plugin{}, nil
	}
	p, err := pkcs11plugin.Open(cfg, pkcs11plugin.Options{Logger: slog.Default().With("component", "pkcs11")})
	if err != nil {
		return nil, fmt.Errorf("%w: Initialize 'pkcs11' plugin failed: %v", ErrInvalidConfig, err)
	}
	return &pkcs11Plugin{p: p}, nil
}

// route is pkcs11plugin.Route with the KBS's error kinds: a bad path is a
// 404 (InvalidRequestPath) whoever asks; a bad method is upstream's
// PluginInternalError "invalid method".
func (k *pkcs11Plugin) route(r *pluginRequest) (pkcs11plugin.Request, error) {
	req, err := pkcs11plugin.Route(r.method, r.path)
	switch {
	case err == nil:
		return req, nil
	case errors.Is(err, pkcs11plugin.ErrInvalidPath):
		return req, newError(KindInvalidRequestPath, err, "Invalid request path")
	}
	return req, newError(KindPluginInternalError, err, "Plugin internal error")
}

func (k *pkcs11Plugin) validatePath(r *pluginRequest) error {
	_, err := k.route(r)
	return err
}

func (k *pkcs11Plugin) adminOnly(r *pluginRequest) bool {
	req, err := k.route(r)
	return err != nil || req.Op.Admin()
}

func (k *pkcs11Plugin) encrypted(*pluginRequest) bool { return true }
func (k *pkcs11Plugin) countWrites() bool             { return false }

func (k *pkcs11Plugin) handle(ctx context.Context, r *pluginRequest) ([]byte, error) {
	req, err := k.route(r)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch req.Op {
	case pkcs11plugin.OpReadResource:
		out, err = k.p.ReadResource(ctx, req.Resource)
	case pkcs11plugin.OpWriteResource:
		err = k.p.WriteResource(ctx, req.Resource, r.body)
	case pkcs11plugin.OpDeleteResource:
		err = k.p.DeleteResource(ctx, req.Resource)
	case pkcs11plugin.OpWrap:
		out, err = k.p.Wrap(ctx, r.body)
	case pkcs11plugin.OpUnwrap:
		out, err = k.p.Unwrap(ctx, r.body)
	}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, pkcs11plugin.ErrTooLarge):
		return nil, newError(KindPayloadTooLarge, err, "pkcs11 plugin")
	case errors.Is(err, pkcs11plugin.ErrNotFound), errors.Is(err, pkcs11plugin.ErrNotReadable),
		errors.Is(err, pkcs11plugin.ErrInvalidInput), errors.Is(err, pkcs11plugin.ErrNoWrapKey):
		// The request's fault, or upstream's answer: 401.
		return nil, newError(KindPluginInternalError, err, "Plugin internal error")
	}
	// The token's (session, device, closed): 500.
	return nil, newError(KindInternal, err, "pkcs11 plugin")
}

// close logs out and releases the module (Server.Close).
func (k *pkcs11Plugin) close() error {
	if k.p == nil {
		return nil
	}
	return k.p.Close()
}
