package kbs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/storage"
)

// The provisioner plugin (/kbs/v0/provisioner/...) is upstream's per-VM
// disk-key provisioner. An operator (admin-authenticated) asks for the key
// of a VM before it boots; the guest of that VM fetches it after
// attestation, sealed to its TEE key.
//
//	POST   /kbs/v0/provisioner/provision          {"vm_name": n, "namespace": ns}
//	       -> {"uuid": u, "resource_path": "default/<u>/root"}
//	DELETE /kbs/v0/provisioner/provision/<u>      -> {"status": "deleted"}
//	GET    /kbs/v0/provisioner/default/<u>/root   (attested) -> confdata TOML
//
// Invariants:
//   - The UUID is version 5 of "<namespace>/<vm_name>" under upstream's
//     namespace, so a VM keeps its UUID across provision calls and across
//     KBS implementations.
//   - A key is generated once and stored with insert-only semantics: a
//     second provision, concurrent or later, returns the same path and
//     never replaces the stored key.
//   - A guest gets a key only when the init-data its TEE attested binds it
//     to that exact resource (init-data claim trustee.kbs.resource =
//     kbs+provisioner:///<path>), on top of the resource policy: another
//     attested VM cannot read a key it was not provisioned for.
//   - The key never appears in a log line or an error.
const (
	// provisionerNamespace is upstream's storage namespace.
	provisionerNamespace = "provisioner"
	// provisionerKeyLength is upstream's default key_length.
	provisionerKeyLength = 32
	// maxProvisionerKeyLength bounds key_length.
	maxProvisionerKeyLength = 4096
	// maxProvisionBody bounds a provision request.
	maxProvisionBody = 64 << 10
	// provisionerBinding is the init-data claim that binds a guest to its
	// resource, and the scheme of its value.
	provisionerBinding       = "trustee.kbs.resource"
	provisionerBindingScheme = "kbs+provisioner:///"
)

// provisionerUUIDSpace is upstream's UUID v5 namespace,
// Uuid::new_v5(NAMESPACE_URL, "provisioner_plugin").
var provisionerUUIDSpace = uuid.MustParse("feab5599-6854-52bc-95f0-0241c03e620a")

// alphanumeric is the alphabet of generated keys (upstream's Alphanumeric).
const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

type provisionerPlugin struct {
	store     storage.Store
	keyLength int
	rand      io.Reader
}

// newProvisionerPlugin checks the entry; with a nil store (CheckConfig) it
// opens nothing.
func newProvisionerPlugin(c PluginConfig, store storage.Store) (plugin, error) {
	n := c.KeyLength
	if n == 0 {
		n = provisionerKeyLength
	}
	if n < 0 || n > maxProvisionerKeyLength {
		return nil, fmt.Errorf("%w: provisioner plugin key_length must be between 1 and %d (default %d)", ErrInvalidConfig, maxProvisionerKeyLength, provisionerKeyLength)
	}
	return &provisionerPlugin{store: store, keyLength: n, rand: rand.Reader}, nil
}

func (p *provisionerPlugin) adminOnly(r *pluginRequest) bool { return r.method != http.MethodGet }
func (p *provisionerPlugin) encrypted(r *pluginRequest) bool { return r.method == http.MethodGet }
func (p *provisionerPlugin) countWrites() bool               { return false }

func (p *provisionerPlugin) validatePath(r *pluginRequest) error {
	bad := func(format string, a ...any) error {
		return newError(KindInvalidRequestPath, nil, "Invalid request path: "+format, a...)
	}
	switch r.method {
	case http.MethodGet:
		if err := storage.ValidateKey(provisionerNamespace, strings.Join(r.path, "/")); err != nil {
			return bad("provisioner resource path %q", strings.Join(r.path, "/"))
		}
	case http.MethodPost:
		if len(r.path) != 1 || r.path[0] != "provision" {
			return bad("want POST /kbs/v0/provisioner/provision")
		}
	case http.MethodDelete:
		if len(r.path) != 2 || r.path[0] != "provision" {
			return bad("want DELETE /kbs/v0/provisioner/provision/<uuid>")
		}
		if _, err := uuid.Parse(r.path[1]); err != nil || len(r.path[1]) != 36 {
			return bad("%q is not a UUID", r.path[1])
		}
	default:
		return newError(KindInvalidRequestPath, nil, "method %s not supported by the provisioner plugin", r.method)
	}
	return nil
}

func (p *provisionerPlugin) handle(ctx context.Context, r *pluginRequest) ([]byte, error) {
	switch r.method {
	case http.MethodGet:
		return p.get(ctx, r)
	case http.MethodPost:
		return p.provision(ctx, r.body)
	case http.MethodDelete:
		return p.deprovision(ctx, r.path[1])
	}
	return nil, newError(KindInvalidRequestPath, nil, "method %s not supported by the provisioner plugin", r.method)
}

func (p *provisionerPlugin) get(ctx context.Context, r *pluginRequest) ([]byte, error) {
	key := strings.Join(r.path, "/")
	if r.initData == nil {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: provisioner requires init_data for resource access")
	}
	bound, _ := r.initData[provisionerBinding].(string)
	if bound == "" {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: init_data missing %s", provisionerBinding)
	}
	if want := provisionerBindingScheme + key; bound != want {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: init_data resource mismatch: expected %s, got %s", want, bound)
	}
	b, err := p.store.Get(ctx, provisionerNamespace, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: provisioner resource not found: %s", key)
	}
	if err != nil {
		return nil, newError(KindInternal, err, "reading provisioner resource")
	}
	return b, nil
}

type provisionRequest struct {
	VMName    string `json:"vm_name"`
	Namespace string `json:"namespace"`
}

type provisionResponse struct {
	UUID         string `json:"uuid"`
	ResourcePath string `json:"resource_path"`
}

func (p *provisionerPlugin) provision(ctx context.Context, body []byte) ([]byte, error) {
	if len(body) > maxProvisionBody {
		return nil, newError(KindPayloadTooLarge, nil, "provision request larger than %d bytes", maxProvisionBody)
	}
	var req provisionRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, newError(KindPluginInternalError, err, "Plugin internal error: invalid JSON body")
	}
	if dec.More() {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: invalid JSON body: data after the object")
	}
	if req.Namespace == "" {
		req.Namespace = "default"
	}
	if req.VMName == "" || len(req.VMName) > 253 || len(req.Namespace) > 253 {
		return nil, newError(KindPluginInternalError, nil, "Plugin internal error: vm_name must be 1 to 253 bytes and namespace at most 253")
	}
	id := uuid.NewSHA1(provisionerUUIDSpace, []byte(req.Namespace+"/"+req.VMName)).String()
	resp := provisionResponse{UUID: id, ResourcePath: "default/" + id + "/root"}
	key, err := p.newKey()
	if err != nil {
		return nil, newError(KindInternal, err, "generating a provisioner key")
	}
	doc := confdata(key)
	clear(key)
	// Insert-only: when the VM was provisioned before (or is being
	// provisioned concurrently), the stored key stays and this one is
	// dropped.
	if _, err := p.store.Set(ctx, provisionerNamespace, resp.ResourcePath, doc, false); err != nil {
		clear(doc)
		return nil, newError(KindInternal, err, "Plugin internal error: failed to write resource")
	}
	clear(doc)
	return json.Marshal(resp)
}

func (p *provisionerPlugin) deprovision(ctx context.Context, id string) ([]byte, error) {
	err := p.store.Delete(ctx, provisionerNamespace, "default/"+strings.ToLower(id)+"/root")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		// Upstream ignores every error here; only "already gone" is
		// success for us, a storage fault is reported.
		return nil, newError(KindInternal, err, "deleting provisioner resource")
	}
	return []byte(`{"status":"deleted"}`), nil
}

// newKey draws keyLength characters of alphanumeric, uniformly (rejection
// sampling: bytes of 248 and above are redrawn, 248 = 4*62).
func (p *provisionerPlugin) newKey() ([]byte, error) {
	out := make([]byte, 0, p.keyLength)
	buf := make([]byte, 64)
	for len(out) < p.keyLength {
		if _, err := io.ReadFull(p.rand, buf); err != nil {
			return nil, err
		}
		for _, b := range buf {
			if b < 248 && len(out) < p.keyLength {
				out = append(out, alphanumeric[b%62])
			}
		}
	}
	clear(buf)
	return out, nil
}

// confdata is the resource upstream stores: the confdata TOML that
// trustee-attester reads, with the key as io.cryptsetup.key.text.root.
// The key is alphanumeric, so it needs no TOML escaping.
func confdata(key []byte) []byte {
	var b bytes.Buffer
	b.WriteString("version = \"0.1.0\"\n\n[data]\n\"io.cryptsetup.key.text.root\" = \"")
	b.Write(key)
	b.WriteString("\"\n")
	return b.Bytes()
}

// initDataClaims is the token's init-data claims, where upstream's KBS
// reads them for plugins: /submods/cpu0/ear.veraison.annotated-evidence/
// init_data_claims.
func initDataClaims(claims map[string]any) map[string]any {
	sub, _ := claims["submods"].(map[string]any)
	cpu, _ := sub["cpu0"].(map[string]any)
	ae, _ := cpu["ear.veraison.annotated-evidence"].(map[string]any)
	id, _ := ae["init_data_claims"].(map[string]any)
	return id
}
