package kbs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/kbs/k8ssecrets"
	"github.com/go-trustee/go-trustee/kbs/vaultkv"
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
	// ext is the external plugin backend's answer (plugin_external.go).
	ext *extDecision
	// initData is the attested guest's init-data claims (the token's
	// submods.cpu0 annotated-evidence init_data_claims, as upstream hands
	// plugins), nil for admin requests or when the token has none.
	initData map[string]any
}

func newPlugins(ctx context.Context, cfgs []PluginConfig, store storage.Store, log *slog.Logger) (map[string]plugin, error) {
	out := map[string]plugin{}
	for _, c := range cfgs {
		name := c.Name
		if name == "" {
			name = "resource" // pre-v0.19 [[plugins]] type = "LocalFs"
		}
		switch name {
		case "resource":
			backend, err := newResourceBackend(ctx, c, store, log)
			if err != nil {
				return nil, err
			}
			out[name] = &resourcePlugin{backend: backend}
		case "external":
			ep, err := newExternalPlugin(c, store == nil)
			if err != nil {
				return nil, err
			}
			out[name] = ep
		case "pkcs11":
			pp, err := newPkcs11Plugin(c, store == nil)
			if err != nil {
				return nil, err
			}
			out[name] = pp
		case "provisioner":
			pp, err := newProvisionerPlugin(c, store)
			if err != nil {
				return nil, err
			}
			out[name] = pp
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
			out["resource"] = &resourcePlugin{backend: kvBackend{store}}
		}
	}
	return out, nil
}

// newResourceBackend opens the storage_backend_type of a resource plugin
// entry. With a nil store (CheckConfig) it only checks the entry: no file
// is read and nothing is opened.
func newResourceBackend(ctx context.Context, c PluginConfig, store storage.Store, log *slog.Logger) (resourceBackend, error) {
	switch strings.ToLower(c.StorageBackendType) {
	case "", "kvstorage":
		return kvBackend{store}, nil
	case "vault":
		if maxSecs := int(vaultkv.MaxTimeout / time.Second); c.TimeoutSecs < 0 || c.TimeoutSecs > maxSecs {
			return nil, fmt.Errorf("%w: resource plugin timeout_secs must be between 1 and %d (0: %s)", ErrInvalidConfig, maxSecs, vaultkv.DefaultTimeout)
		}
		vc := vaultkv.Config{
			VaultURL: c.VaultURL, Token: c.Token, MountPath: c.MountPath, VerifySSL: c.VerifySSL, CACerts: c.CACerts,
			KVVersion: c.KVVersion, Namespace: c.Namespace, Timeout: time.Duration(c.TimeoutSecs) * time.Second,
		}
		if store == nil {
			// Checked only (CheckConfig): the plugin is never served.
			if err := vc.Validate(); err != nil {
				return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q: %v", ErrInvalidConfig, c.StorageBackendType, err)
			}
			return nil, nil
		}
		b, err := vaultkv.New(vc, vaultkv.Options{Logger: log.With("component", "resource-vault")})
		if err != nil {
			return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q: %v", ErrInvalidConfig, c.StorageBackendType, err)
		}
		return b, nil
	case "kubernetes":
		kc, err := c.kubernetesConfig()
		if err != nil {
			return nil, err
		}
		if store == nil {
			if err := kc.Validate(); err != nil {
				return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q: %v", ErrInvalidConfig, c.StorageBackendType, err)
			}
			return nil, nil
		}
		b, err := k8ssecrets.New(ctx, kc, k8ssecrets.Options{Logger: log.With("component", "resource-kubernetes")})
		if errors.Is(err, k8ssecrets.ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q: %v", ErrInvalidConfig, c.StorageBackendType, err)
		}
		if err != nil {
			return nil, fmt.Errorf("starting the kubernetes resource backend: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: resource plugin storage_backend_type %q is not supported by this build", ErrInvalidConfig, c.StorageBackendType)
}

// kubernetesConfig is the entry's storage_backend_type = "kubernetes" part.
// Vault's keys mean nothing there and are refused rather than ignored.
func (c PluginConfig) kubernetesConfig() (k8ssecrets.Config, error) {
	if c.VaultURL != "" || c.Token != "" || c.MountPath != "" || c.KVVersion != 0 || c.Namespace != "" {
		return k8ssecrets.Config{}, fmt.Errorf("%w: resource plugin storage_backend_type \"kubernetes\" takes kubernetes_namespace, kubeconfig, label_selector, secret_names and timeout_secs, "+
			"not Vault's vault_url, token, mount_path, kv_version or namespace", ErrInvalidConfig)
	}
	maxSecs := int(k8ssecrets.MaxSyncTimeout / time.Second)
	if c.TimeoutSecs < 0 || c.TimeoutSecs > maxSecs {
		return k8ssecrets.Config{}, fmt.Errorf("%w: resource plugin timeout_secs must be between 1 and %d (0: %s)", ErrInvalidConfig, maxSecs, k8ssecrets.DefaultSyncTimeout)
	}
	return k8ssecrets.Config{
		Namespace: c.KubernetesNamespace, Kubeconfig: c.Kubeconfig, LabelSelector: c.LabelSelector,
		SecretNames: c.SecretNames, SyncTimeout: time.Duration(c.TimeoutSecs) * time.Second,
	}, nil
}

// String prints the entry without the Vault token (%v, %+v and %#v of a
// configuration must not reveal it).
func (c PluginConfig) String() string {
	type plain PluginConfig // no methods: no recursion
	p := plain(c)
	if p.Token != "" {
		p.Token = "<redacted>"
	}
	return fmt.Sprintf("%+v", p)
}

// GoString is String.
func (c PluginConfig) GoString() string { return c.String() }

// resourceBackend is where the resource plugin keeps resources, keyed
// "<repo>/<type>/<tag>": upstream's kvstorage (the "repository" namespace
// of the KBS store), Vault (package vaultkv) or Kubernetes Secrets
// (package k8ssecrets, read-only). Get and Delete report a missing
// resource with an error for which isNotFound is true. A backend that is
// an io.Closer is closed with the server.
type resourceBackend interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

func isNotFound(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, vaultkv.ErrNotFound) || errors.Is(err, k8ssecrets.ErrNotFound)
}

// kvBackend is upstream's kvstorage: the "repository" namespace, written
// with overwrite.
type kvBackend struct{ store storage.Store }

func (b kvBackend) Get(ctx context.Context, key string) ([]byte, error) {
	return b.store.Get(ctx, storage.NamespaceRepository, key)
}

func (b kvBackend) Set(ctx context.Context, key string, value []byte) error {
	_, err := b.store.Set(ctx, storage.NamespaceRepository, key, value, true)
	return err
}

func (b kvBackend) Delete(ctx context.Context, key string) error {
	return b.store.Delete(ctx, storage.NamespaceRepository, key)
}

// resourcePlugin serves resources from its backend, keyed
// "<repo>/<type>/<tag>".
type resourcePlugin struct{ backend resourceBackend }

// close closes the backend when it holds anything (the Kubernetes
// backend's informers).
func (p *resourcePlugin) close() error {
	if c, ok := p.backend.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

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
	// A key the store cannot hold (a LocalFs file name over 255 bytes) is
	// the client's error, not the server's.
	badKey := func() error {
		shown := key
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		return newError(KindInvalidRequestPath, nil, "Invalid request path: resource path %s (%d bytes) cannot be stored: too long for the storage backend", shown, len(key))
	}
	switch r.method {
	case http.MethodGet:
		b, err := p.backend.Get(ctx, key)
		if errors.Is(err, storage.ErrInvalidKey) {
			return nil, badKey()
		}
		if isNotFound(err) {
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
		if err := p.backend.Set(ctx, key, r.body); err != nil {
			if errors.Is(err, vaultkv.ErrTooLarge) {
				// Vault's own max_request_size.
				return nil, newError(KindPayloadTooLarge, err, "writing resource")
			}
			if errors.Is(err, k8ssecrets.ErrReadOnly) {
				return nil, newError(KindPluginInternalError, nil, "Plugin internal error: %v", err)
			}
			if errors.Is(err, storage.ErrInvalidKey) {
				return nil, badKey()
			}
			return nil, newError(KindInternal, err, "writing resource")
		}
		return nil, nil
	case http.MethodDelete:
		err := p.backend.Delete(ctx, key)
		if errors.Is(err, k8ssecrets.ErrReadOnly) {
			return nil, newError(KindPluginInternalError, nil, "Plugin internal error: %v", err)
		}
		if errors.Is(err, storage.ErrInvalidKey) {
			return nil, badKey()
		}
		if isNotFound(err) {
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
