package cdh

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/keyprovider"
	"github.com/go-trustee/go-trustee/sealedsecret"
)

func ccConfig(url string) *Config {
	return &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: "info",
		KBC: KBCConfig{Name: KBCCC, URL: url}}
}

func newHub(t testing.TB, env *kbsEnv, cfg *Config, mutate func(*Options)) *Hub {
	t.Helper()
	if cfg == nil {
		cfg = ccConfig(env.srv.URL)
	}
	o := Options{Tokens: env.tokens, CredentialDir: t.TempDir(), SealedSecretKeyDir: t.TempDir()}
	if mutate != nil {
		mutate(&o)
	}
	h, err := New(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serve runs the hub's ttRPC services on a fresh unix socket and returns
// a client of it.
func serve(t testing.TB, h *Hub) (*Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cdh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := "unix://" + filepath.Join(dir, "cdh.sock")
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	NewService(h, 5*time.Second, nil).Register(srv)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	c, err := NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, addr
}

func TestRealSealedSecretEndToEnd(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	jwk, err := os.ReadFile(kataTestdata + "sealed-secret-signing-key.pub.jwk")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := os.ReadFile(kataTestdata + "sealed-secret.txt")
	if err != nil {
		t.Fatal(err)
	}
	sealed = bytes.TrimSpace(sealed)
	env.kbs.SetResource("default/signing-key/sealed-secret", jwk)
	env.kbs.SetResource("default/sealed-secret/test", []byte("unsealed_secret"))
	c, _ := serve(t, newHub(t, env, nil, nil))

	got, err := c.UnsealSecret(context.Background(), sealed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "unsealed_secret" {
		t.Fatalf("UnsealSecret = %q", got)
	}
	// Two resources, one attestation.
	if n := env.kbs.Count(http.MethodPost, "/kbs/v0/attest"); n != 1 {
		t.Fatalf("%d attestations, want 1", n)
	}

	// Tampered: one payload character changed.
	bad := bytes.Clone(sealed)
	bad[150] ^= 1
	_, err = c.UnsealSecret(context.Background(), bad)
	if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || !strings.HasPrefix(s.Message(), rpcErrorPrefix) {
		t.Fatalf("tampered secret: %v", err)
	}
	// A different key at the kid: the signature does not verify.
	other, _ := os.ReadFile(secretTests + "test-key.json")
	env.kbs.SetResource("default/signing-key/sealed-secret", other)
	_, err = c.UnsealSecret(context.Background(), sealed)
	if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), sealedsecret.ErrBadSignature.Error()) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestGetResourceOverTTRPC(t *testing.T) {
	env := newKBS(t, fakekbs.Options{Deny: func(_ string, p []string) bool { return p[1] == "denied" }})
	env.kbs.SetResource("default/key/1", []byte("k1"))
	c, _ := serve(t, newHub(t, env, nil, nil))
	tests := []struct {
		name string
		uri  string
		want codes.Code
		text string
	}{
		{"ok", "kbs:///default/key/1", codes.OK, ""},
		{"policy deny", "kbs:///default/denied/1", codes.PermissionDenied, ErrPolicyDeny.Error()},
		{"missing", "kbs:///default/key/2", codes.NotFound, ErrNotFound.Error()},
		{"bare path", "default/key/1", codes.InvalidArgument, ErrInvalidRequest.Error()},
		{"escape", "kbs:///default/../1", codes.InvalidArgument, ErrInvalidRequest.Error()},
		{"other scheme", "file:///etc/passwd", codes.InvalidArgument, ErrInvalidRequest.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := c.GetResource(context.Background(), tt.uri)
			s, _ := status.FromError(err)
			if s.Code() != tt.want {
				t.Fatalf("GetResource: %v, want code %v", err, tt.want)
			}
			if err == nil && string(b) != "k1" {
				t.Fatalf("GetResource = %q", b)
			}
			if err != nil && (!strings.HasPrefix(s.Message(), rpcErrorPrefix) || !strings.Contains(s.Message(), tt.text)) {
				t.Fatalf("message %q, want %q", s.Message(), tt.text)
			}
		})
	}
}

func TestRPCErrorMapping(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		text string
	}{
		{"wrapped policy deny", fmt.Errorf("reading: %w", fmt.Errorf("%w: kbs:///a/b/c", ErrPolicyDeny)), codes.PermissionDenied, "access denied by the KBS resource policy"},
		{"unreachable names the URL", &unreachableError{url: "http://kbs:8080", attempts: 3, err: errors.New("dial tcp: refused")}, codes.Unavailable, "KBS unreachable http://kbs:8080"},
		{"not found", fmt.Errorf("x: %w", ErrNotFound), codes.NotFound, "resource not found"},
		{"attestation", fmt.Errorf("%w: aa down", ErrAttestation), codes.Unavailable, ErrAttestation.Error()},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded"},
		{"bad signature", fmt.Errorf("x: %w", sealedsecret.ErrBadSignature), codes.InvalidArgument, sealedsecret.ErrBadSignature.Error()},
		{"key unavailable", fmt.Errorf("x: %w", sealedsecret.ErrVerificationKey), codes.FailedPrecondition, sealedsecret.ErrVerificationKey.Error()},
		{"anything else", errors.New("secret detail 42"), codes.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := status.FromError(rpcError("op", tt.err))
			if s.Code() != tt.code || !strings.Contains(s.Message(), tt.text) || !strings.HasPrefix(s.Message(), "[CDH] [ERROR]: op failed: ") {
				t.Fatalf("rpcError = %v %q, want %v %q", s.Code(), s.Message(), tt.code, tt.text)
			}
			if strings.Contains(s.Message(), "42") || strings.Contains(s.Message(), "refused") {
				t.Fatalf("details leaked: %q", s.Message())
			}
		})
	}
}

// packet builds an annotation packet wrapping optsdata under kek.
func packet(t *testing.T, kek, optsdata []byte, kid string) []byte {
	t.Helper()
	iv, ct, err := sealedsecret.Encrypt(kek, optsdata, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"kid": kid, "wrapped_data": base64.StdEncoding.EncodeToString(ct),
		"iv": base64.StdEncoding.EncodeToString(iv), "wrap_type": "A256GCM"})
	return b
}

func TestUnwrapKeyOverTTRPC(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	kek := bytes.Repeat([]byte{0x42}, 32)
	env.kbs.SetResource("default/image_key/nginx", kek)
	optsdata := []byte(`{"symkey":"AAAA","digest":"sha256:00","cipheroptions":{"nonce":"BBBB"}}`)
	pkt := packet(t, kek, optsdata, "kbs:///default/image_key/nginx")
	goInput, _ := json.Marshal(map[string]any{
		"op":              "keyunwrap",
		"keywrapparams":   map[string]any{"ec": nil, "optsdata": nil},
		"keyunwrapparams": map[string]any{"dc": map[string]any{"Parameters": map[string][]string{"attestation-agent": {"YQ=="}}}, "annotation": base64.StdEncoding.EncodeToString(pkt)},
	})
	ints := make([]int, len(pkt))
	for i, b := range pkt {
		ints[i] = int(b)
	}
	rustArrayInput, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keywrapparams": map[string]any{}, "keyunwrapparams": map[string]any{"dc": nil, "annotation": ints}})

	for _, shape := range []ReplyShape{ReplyRust, ReplyGo} {
		c, _ := serve(t, newHub(t, env, nil, func(o *Options) { o.ReplyShape = shape }))
		for name, in := range map[string][]byte{"go request": goInput, "integer-array annotation": rustArrayInput} {
			t.Run(fmt.Sprintf("%s/reply %d", name, shape), func(t *testing.T) {
				out, err := c.UnWrapKey(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				if shape == ReplyGo {
					var r struct {
						KeyWrapResults   map[string]any `json:"keywrapresults"`
						KeyUnwrapResults struct {
							OptsData []byte `json:"optsdata"`
						} `json:"keyunwrapresults"`
					}
					if err := json.Unmarshal(out, &r); err != nil {
						t.Fatalf("Go ocicrypt cannot decode %s: %v", out, err)
					}
					got = r.KeyUnwrapResults.OptsData
				} else {
					if !bytes.HasPrefix(out, []byte(`{"keyunwrapresults":{"optsdata":[123,34,`)) {
						t.Fatalf("Rust reply %s", out)
					}
					var r struct {
						KeyUnwrapResults struct {
							OptsData []int `json:"optsdata"`
						} `json:"keyunwrapresults"`
					}
					if err := json.Unmarshal(out, &r); err != nil {
						t.Fatal(err)
					}
					for _, v := range r.KeyUnwrapResults.OptsData {
						got = append(got, byte(v))
					}
				}
				if !bytes.Equal(got, optsdata) {
					t.Fatalf("optsdata %q, want %q", got, optsdata)
				}
			})
		}
	}

	c, _ := serve(t, newHub(t, env, nil, nil))
	bad := func(p []byte) []byte {
		b, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{"annotation": base64.StdEncoding.EncodeToString(p)}})
		return b
	}
	wrongKEK := packet(t, bytes.Repeat([]byte{1}, 32), optsdata, "kbs:///default/image_key/nginx")
	tests := []struct {
		name string
		in   []byte
		code codes.Code
	}{
		{"not JSON", []byte("{"), codes.InvalidArgument},
		{"keywrap", []byte(`{"op":"keywrap","keyunwrapparams":{"annotation":"e30="}}`), codes.InvalidArgument},
		{"no annotation", []byte(`{"op":"keyunwrap","keyunwrapparams":{}}`), codes.InvalidArgument},
		{"annotation not base64", []byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":"!!"}}`), codes.InvalidArgument},
		{"annotation byte out of range", []byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":[256]}}`), codes.InvalidArgument},
		{"packet without kid", bad([]byte(`{"wrapped_data":"","iv":"","wrap_type":"A256GCM"}`)), codes.InvalidArgument},
		{"packet kid not a URI", bad(packet(t, kek, optsdata, "default/image_key/nginx")), codes.InvalidArgument},
		{"packet without iv", bad([]byte(`{"kid":"kbs:///default/image_key/nginx","wrapped_data":"","wrap_type":"A256GCM"}`)), codes.InvalidArgument},
		{"packet version 0.2.0", bad([]byte(`{"version":"0.2.0","kid":"kbs:///default/image_key/nginx","wrapped_data":"","iv":"","wrap_type":"A256GCM"}`)), codes.InvalidArgument},
		{"unknown KMS", bad([]byte(`{"provider":"aliyun","kid":"k","wrapped_data":""}`)), codes.InvalidArgument},
		{"wrong KEK", bad(wrongKEK), codes.InvalidArgument},
		{"missing KEK", bad(packet(t, kek, optsdata, "kbs:///default/image_key/none")), codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.UnWrapKey(context.Background(), tt.in)
			if s, _ := status.FromError(err); s.Code() != tt.code {
				t.Fatalf("UnWrapKey: %v, want %v", err, tt.code)
			}
		})
	}
	// WrapKey is the host's job.
	err := c.conn.Call(context.Background(), func(cl *ttrpc.Client) error {
		_, err := keyprovider.NewKeyProviderServiceClient(cl).WrapKey(context.Background(), &keyprovider.KeyProviderKeyWrapProtocolInput{})
		return err
	})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("WrapKey: %v", err)
	}
}

func TestAnnotationPacketV1(t *testing.T) {
	b, err := os.ReadFile(gcTestdata + "confidential-data-hub/hub/src/image/test/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseAnnotationPacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != "0.1.0" || p.Provider != "kbs" || p.IV == nil || *p.WrapType != "A256GCM" {
		t.Fatalf("v1 packet = %+v", p)
	}
}

func TestCredentialsPrefetch(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	env.kbs.SetResource("default/aliyun/ecs_ram_role", []byte(`{"ecs_ram_role_name":"r"}`))
	env.kbs.SetResource("default/test/file", []byte("file"))
	t.Run("written", func(t *testing.T) {
		dir := t.TempDir()
		cfg := ccConfig(env.srv.URL)
		cfg.Credentials = []Credential{
			{"kbs:///default/aliyun/ecs_ram_role", dir + "/kms-credential/aliyun/ecsRamRole.json"},
			{"kbs:///default/test/file", dir + "/test/file"},
		}
		newHub(t, env, cfg, func(o *Options) { o.CredentialDir = dir })
		for _, c := range cfg.Credentials {
			fi, err := os.Stat(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v", c.Path, fi.Mode())
			}
		}
		b, _ := os.ReadFile(dir + "/test/file")
		if string(b) != "file" {
			t.Fatalf("credential content %q", b)
		}
	})
	tests := []struct {
		name  string
		creds func(dir string) []Credential
		want  error
	}{
		{"path escape", func(dir string) []Credential {
			return []Credential{{"kbs:///default/test/file", dir + "/../escaped"}}
		}, ErrInvalidConfig},
		{"outside the directory", func(dir string) []Credential {
			return []Credential{{"kbs:///default/test/file", "/etc/cdh-test"}}
		}, ErrInvalidConfig},
		{"dot segment", func(dir string) []Credential {
			return []Credential{{"kbs:///default/test/file", dir + "/./x"}}
		}, ErrInvalidConfig},
		{"bad URI", func(dir string) []Credential {
			return []Credential{{"default/test/file", dir + "/x"}}
		}, ErrInvalidConfig},
		{"second resource missing: nothing written", func(dir string) []Credential {
			return []Credential{{"kbs:///default/test/file", dir + "/a"}, {"kbs:///default/test/none", dir + "/b"}}
		}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := ccConfig(env.srv.URL)
			cfg.Credentials = tt.creds(dir)
			_, err := New(context.Background(), cfg, Options{Tokens: env.tokens, CredentialDir: dir})
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
			var files []string
			filepath.WalkDir(filepath.Dir(dir), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) != 0 {
				t.Fatalf("files written: %v", files)
			}
		})
	}
	t.Run("symlink out of the directory", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		cfg := ccConfig(env.srv.URL)
		cfg.Credentials = []Credential{{"kbs:///default/test/file", dir + "/link/x"}}
		if _, err := New(context.Background(), cfg, Options{Tokens: env.tokens, CredentialDir: dir}); err == nil {
			t.Fatal("credential written through a symlink out of the directory")
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("written outside: %v", ents)
		}
	})
}

func TestResourceCache(t *testing.T) {
	env := newKBS(t, fakekbs.Options{})
	env.kbs.SetResource("default/key/1", []byte("v1"))
	clk := newClock()
	h := newHub(t, env, nil, func(o *Options) { o.ResourceCacheTTL = time.Minute; o.Now = clk.Now })
	get := func() string {
		b, err := h.GetResource(context.Background(), "kbs:///default/key/1")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	get()
	env.kbs.SetResource("default/key/1", []byte("v2"))
	if v := get(); v != "v1" {
		t.Fatalf("cached read = %q, want v1", v)
	}
	if n := env.kbs.Count(http.MethodGet, "/kbs/v0/resource/"); n != 1 {
		t.Fatalf("%d KBS reads, want 1", n)
	}
	clk.Add(time.Minute)
	if v := get(); v != "v2" {
		t.Fatalf("read after the TTL = %q, want v2", v)
	}
	c := newResourceCache(time.Hour, 10, clk.Now)
	c.put("a", []byte("12345"))
	clk.Add(time.Second)
	c.put("b", []byte("12345"))
	clk.Add(time.Second)
	c.put("c", []byte("1"))
	if _, ok := c.get("a"); ok {
		t.Fatal("oldest entry kept over the byte bound")
	}
	if _, ok := c.get("c"); !ok || c.size > 10 {
		t.Fatalf("cache size %d", c.size)
	}
	c.put("big", make([]byte, 11))
	if _, ok := c.get("big"); ok {
		t.Fatal("entry larger than the cache kept")
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "cdh")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep"), 0o600)
	tests := []struct {
		name string
		addr string
	}{
		{"no scheme", filepath.Join(dir, "a.sock")},
		{"tcp", "127.0.0.1:50000"},
		{"relative", "unix://a.sock"},
		{"unclean", "unix://" + dir + "/../a.sock"},
		{"regular file in the way", "unix://" + regular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := Listen(tt.addr); err == nil {
				l.Close()
				t.Fatal("Listen accepted it")
			}
		})
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Fatal("Listen removed a regular file")
	}
	// A stale socket is replaced.
	addr := "unix://" + filepath.Join(dir, "s.sock")
	l1, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	l1.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l1.Close()
	l2, err := Listen(addr)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()
	// A client of a missing socket fails clearly.
	c, err := NewClient("unix://" + filepath.Join(dir, "missing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetResource(context.Background(), "kbs:///a/b/c"); err == nil || !strings.Contains(err.Error(), "missing.sock") {
		t.Fatalf("missing socket: %v", err)
	}
	if _, err := NewClient("/no/scheme.sock"); err == nil {
		t.Fatal("NewClient accepted an address without unix://")
	}
}
