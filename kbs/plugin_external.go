package kbs

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/go-trustee/go-trustee/kbs/extplugin"
)

// externalPlugin mounts package extplugin at /kbs/v0/external/<backend>/...
// Whether a request is an admin one and whether its answer is sealed are
// the backend's answers, asked by prepare before anything else; until
// prepare succeeded both default to the safe side (admin, sealed).
type externalPlugin struct{ p *extplugin.Plugin }

// preparer is a plugin that must look at a request (here: ask its backend)
// before the KBS authenticates the caller.
type preparer interface {
	prepare(ctx context.Context, r *pluginRequest) error
}

// closer is a plugin that holds connections.
type closer interface{ close() error }

// collector is a plugin with metrics of its own.
type collector interface{ collectors() []prometheus.Collector }

func newExternalPlugin(c PluginConfig, checkOnly bool) (plugin, error) {
	if checkOnly {
		if err := extplugin.Check(c.Backends); err != nil {
			return nil, errors.Join(ErrInvalidConfig, err)
		}
		return &externalPlugin{}, nil
	}
	p, err := extplugin.New(c.Backends, nil)
	if err != nil {
		return nil, errors.Join(ErrInvalidConfig, err)
	}
	return &externalPlugin{p: p}, nil
}

func (e *externalPlugin) request(r *pluginRequest) extplugin.Request {
	q := map[string]string{}
	for k, v := range r.query {
		if len(v) > 0 {
			q[k] = v[0]
		}
	}
	return extplugin.Request{Method: r.method, Path: r.path, Query: q, Body: r.body}
}

func (e *externalPlugin) prepare(ctx context.Context, r *pluginRequest) error {
	req := e.request(r)
	admin, err := e.p.ValidateAuth(ctx, req)
	if err != nil {
		return newError(KindPluginInternalError, err, "Plugin internal error")
	}
	r.ext = &extDecision{admin: admin, encrypt: true}
	if !admin {
		enc, err := e.p.NeedsEncryption(ctx, req)
		if err != nil {
			return newError(KindPluginInternalError, err, "Plugin internal error")
		}
		r.ext.encrypt = enc
	}
	return nil
}

// extDecision is what the backend answered for one request.
type extDecision struct{ admin, encrypt bool }

func (e *externalPlugin) adminOnly(r *pluginRequest) bool { return r.ext == nil || r.ext.admin }
func (e *externalPlugin) encrypted(r *pluginRequest) bool { return r.ext == nil || r.ext.encrypt }
func (e *externalPlugin) countWrites() bool               { return false }
func (e *externalPlugin) validatePath(r *pluginRequest) error {
	if !e.p.Known(r.path) {
		name := ""
		if len(r.path) > 0 {
			name = r.path[0]
		}
		return newError(KindPluginNotFound, nil, "Plugin external/%s not found: external plugin '%s' not registered", strings.ToValidUTF8(name, "?"), strings.ToValidUTF8(name, "?"))
	}
	return nil
}

func (e *externalPlugin) handle(ctx context.Context, r *pluginRequest) ([]byte, error) {
	out, err := e.p.Handle(ctx, e.request(r))
	if err != nil {
		return nil, newError(KindPluginInternalError, err, "Plugin internal error")
	}
	return out, nil
}

func (e *externalPlugin) close() error { return e.p.Close() }

func (e *externalPlugin) collectors() []prometheus.Collector { return e.p.Collectors() }
