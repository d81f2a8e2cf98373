// Package sampleplugin is a small external KBS plugin
// (kbs.plugin.v1.KbsPlugin) with the behaviour of upstream's
// external_plugin_test_server: POST is admin-gated and GET
// attestation-gated; with StoreData a POST stores its body under the
// request path and a GET returns it, otherwise both echo the request;
// EncryptGet asks the KBS to seal GET answers to the TEE key. It is the
// reference a plugin author starts from, and the peer of the KBS's plugin
// tests and of cmd/kbs-external-plugin-sample.
//
// It keeps what it stores in memory, bounded by MaxStoredBytes in all.
package sampleplugin

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/kbs/extplugin/pluginproto"
)

// MaxStoredBytes bounds the total of stored bodies.
const MaxStoredBytes = 64 << 20

// Options select the plugin's behaviour.
type Options struct {
	StoreData  bool
	EncryptGet bool
}

// Plugin implements pluginproto.KbsPluginServer.
type Plugin struct {
	pluginproto.UnimplementedKbsPluginServer
	opts  Options
	mu    sync.RWMutex
	store map[string][]byte
	size  int
}

// New returns a plugin.
func New(o Options) *Plugin { return &Plugin{opts: o, store: map[string][]byte{}} }

func echo(method string, path []string, query map[string]string, body []byte) []byte {
	return fmt.Appendf(nil, "Echo: method=%s, path=%q, query=%v, body_len=%d", method, path, query, len(body))
}

// Handle implements the gRPC method.
func (p *Plugin) Handle(_ context.Context, r *pluginproto.PluginRequest) (*pluginproto.PluginResponse, error) {
	key := strings.Join(r.GetPath(), "/")
	switch r.GetMethod() {
	case "POST":
		if !p.opts.StoreData {
			return &pluginproto.PluginResponse{Body: echo(r.Method, r.Path, r.Query, r.Body), StatusCode: 200, ContentType: "text/plain"}, nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.size-len(p.store[key])+len(r.Body) > MaxStoredBytes {
			return &pluginproto.PluginResponse{Body: []byte("store full"), StatusCode: 507}, nil
		}
		p.size += len(r.Body) - len(p.store[key])
		p.store[key] = append([]byte(nil), r.Body...)
		return &pluginproto.PluginResponse{StatusCode: 200}, nil
	case "GET":
		p.mu.RLock()
		data, ok := p.store[key]
		p.mu.RUnlock()
		if ok {
			return &pluginproto.PluginResponse{Body: data, StatusCode: 200, ContentType: "application/octet-stream"}, nil
		}
		if p.opts.StoreData {
			return &pluginproto.PluginResponse{Body: []byte("not found: " + key), StatusCode: 404}, nil
		}
		return &pluginproto.PluginResponse{Body: echo(r.Method, r.Path, r.Query, r.Body), StatusCode: 200, ContentType: "text/plain"}, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "method not supported: %s", r.GetMethod())
}

// ValidateAuth implements the gRPC method: POST needs the admin.
func (p *Plugin) ValidateAuth(_ context.Context, r *pluginproto.ValidateAuthRequest) (*pluginproto.ValidateAuthResponse, error) {
	return &pluginproto.ValidateAuthResponse{RequiresAdminAuth: r.GetMethod() == "POST"}, nil
}

// NeedsEncryption implements the gRPC method.
func (p *Plugin) NeedsEncryption(_ context.Context, r *pluginproto.NeedsEncryptionRequest) (*pluginproto.NeedsEncryptionResponse, error) {
	return &pluginproto.NeedsEncryptionResponse{RequiresPayloadEncryption: p.opts.EncryptGet && r.GetMethod() == "GET"}, nil
}
