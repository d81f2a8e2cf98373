package kbs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
)

// plugin is a KBS plugin mounted at /kbs/v0/<name>/...
type plugin interface {
	// adminOnly reports whether the request is an admin operation (true) or
	// a read by an attested guest (false), as upstream's validate_auth.
	adminOnly(r *pluginRequest) bool
	handle(ctx context.Context, r *pluginRequest) ([]byte, error)
	// encrypted reports whether a guest read is sealed to the TEE key.
	encrypted(r *pluginRequest) bool
	// validatePath rejects a malformed path before any authentication, so
	// that a bad path is a 404 whoever asks.
	validatePath(r *pluginRequest) error
	countWrites() bool
}

type pluginRequest struct {
	method string
	path   []string
	query  url.Values
	body   []byte
}

func newPlugins(cfgs []PluginConfig, store storage.Store) (map[string]plugin, error) {
	out := map[string]plugin{}
	for _, c := range cfgs {
		name := c.Name
		if name == "" {
			name = "resource" // pre-v0.19 [[plugins]] type = "LocalFs"
		}
		switch name {
		case "resource":
			switch strings.ToLower(c.StorageBackendType) {
			case "", "kvstorage":
			default:
				return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q is not supported by this build", ErrInvalidConfig, c.StorageBackendType)
			}
			out[name] = &resourcePlugin{store: store}
		case "sample":
			if c.Item == "" {
				return nil, fmt.Errorf("%w: sample plugin needs item", ErrInvalidConfig)
			}
			out[name] = samplePlugin{}
		default:
			return nil, fmt.Errorf("%w: plugin %q is not supported by this build", ErrInvalidConfig, name)
		}
	}
	if _, ok := out["resource"]; !ok {
		// The resource plugin is what every deployment uses; it is on unless
		// the configuration lists plugins and leaves it out.
		if len(cfgs) == 0 {
			out["resource"] = &resourcePlugin{store: store}
		}
	}
	return out, nil
}

// resourcePlugin serves resources from the "repository" namespace, keyed
// "<repo>/<type>/<tag>" as upstream's kvstorage backend.
type resourcePlugin struct{ store storage.Store }

func (p *resourcePlugin) adminOnly(r *pluginRequest) bool { return r.method != http.MethodGet }
func (p *resourcePlugin) encrypted(*pluginRequest) bool   { return true }
func (p *resourcePlugin) countWrites() bool               { return true }
func (p *resourcePlugin) validatePath(r *pluginRequest) error {
	_, err := resourceKey(r.path)
	return err
}

func resourceKey(path []string) (string, error) {
	if len(path) != 3 {
		return "", newError(KindInvalidRequestPath, nil, "Invalid request path: resource path must be <repository>/<type>/<tag>")
	}
	return strings.Join(path, "/"), nil
}

func (p *resourcePlugin) handle(ctx context.Context, r *pluginRequest) ([]byte, error) {
	key, err := resourceKey(r.path)
	if err != nil {
		return nil, err
	}
	switch r.method {
	case http.MethodGet:
		b, err := p.store.Get(ctx, storage.NamespaceRepository, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, newError(KindPluginInternalError, nil, "Plugin internal error: resource %s not found", key)
		}
		if err != nil {
			return nil, newError(KindInternal, err, "reading resource")
		}
		return b, nil
	case http.MethodPost, http.MethodPut:
		if len(r.body) > limits.MaxResourceBytes {
			return nil, newError(KindPayloadTooLarge, nil, "resource larger than %d bytes", limits.MaxResourceBytes)
		}
		if _, err := p.store.Set(ctx, storage.NamespaceRepository, key, r.body, true); err != nil {
			return nil, newError(KindInternal, err, "writing resource")
		}
		return nil, nil
	case http.MethodDelete:
		err := p.store.Delete(ctx, storage.NamespaceRepository, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, newError(KindPluginInternalError, nil, "Plugin internal error: resource %s not found", key)
		}
		if err != nil {
			return nil, newError(KindInternal, err, "deleting resource")
		}
		return nil, nil
	}
	return nil, newError(KindInvalidRequestPath, nil, "method %s not supported by the resource plugin", r.method)
}

// samplePlugin is upstream's demonstration plugin: admin-only, plain text.
type samplePlugin struct{}

func (samplePlugin) adminOnly(*pluginRequest) bool     { return true }
func (samplePlugin) encrypted(*pluginRequest) bool     { return false }
func (samplePlugin) countWrites() bool                 { return false }
func (samplePlugin) validatePath(*pluginRequest) error { return nil }
func (samplePlugin) handle(context.Context, *pluginRequest) ([]byte, error) {
	return []byte("sample plugin response"), nil
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
