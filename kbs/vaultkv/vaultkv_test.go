package vaultkv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/kbs/vaultkv/vaulttest"
)

func ptr[T any](v T) *T { return &v }

// logBuffer collects a Backend's log records.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newBackend(t *testing.T, cfg Config) (*Backend, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	b, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return b, logs
}

// noLeak fails when err's text holds the token or a value.
func noLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q holds a secret", err)
		}
	}
}

func wantClass(t *testing.T, err, class error, contains string) {
	t.Helper()
	t.Logf("error: %v", err)
	if !errors.Is(err, class) {
		t.Fatalf("error %v, want class %v", err, class)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not contain %q", err, contains)
	}
}

// rawSecret reads the secret as Vault stores it (the field "data").
func rawSecret(t *testing.T, v *vaulttest.Server, path string, version int) json.RawMessage {
	t.Helper()
	var r struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(v.Must(http.MethodGet, path, nil), &r); err != nil {
		t.Fatal(err)
	}
	if version == 2 {
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(r.Data["data"], &inner); err != nil {
			t.Fatal(err)
		}
		return inner["data"]
	}
	return r.Data["data"]
}

// TestVaultKV runs the backend against a real dev server: set, get,
// overwrite and delete on KV v1 and v2 mounts, the stored format, values
// written by other tools, and the error cases that need no second server.
func TestVaultKV(t *testing.T) {
	v := vaulttest.Start(t, vaulttest.Options{})
	v.EnableKV("kv1", 1)
	v.EnableKV("kv2", 2)
	ctx := context.Background()
	binary := []byte{0, 0xff, 0x80, 'a', 0xc3}

	for _, version := range []int{1, 2} {
		mount := map[int]string{1: "kv1", 2: "kv2"}[version]
		t.Run(mount, func(t *testing.T) {
			b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: mount, KVVersion: version})
			for _, tc := range []struct {
				key   string
				value []byte
			}{
				{"default/text/one", []byte("s3cret-text")},
				{"default/bin/one", binary},
				{"default/empty/one", []byte{}},
				{"default/json/one", []byte(`{"user":"test","pass":"secret"}`)},
			} {
				if err := b.Set(ctx, tc.key, tc.value); err != nil {
					t.Fatalf("set %s: %v", tc.key, err)
				}
				got, err := b.Get(ctx, tc.key)
				if err != nil || !bytes.Equal(got, tc.value) {
					t.Fatalf("get %s = %q, %v; want %q", tc.key, got, err, tc.value)
				}
			}
			// The stored form: a string for text, upstream's byte array
			// otherwise.
			dataPath := func(key string) string {
				if version == 2 {
					return mount + "/data/" + key
				}
				return mount + "/" + key
			}
			if raw := string(rawSecret(t, v, dataPath("default/text/one"), version)); raw != `"s3cret-text"` {
				t.Fatalf("stored text = %s", raw)
			}
			if raw := string(rawSecret(t, v, dataPath("default/bin/one"), version)); raw != `[0,255,128,97,195]` {
				t.Fatalf("stored binary = %s", raw)
			}
			// Overwrite.
			if err := b.Set(ctx, "default/text/one", []byte("second")); err != nil {
				t.Fatal(err)
			}
			if got, err := b.Get(ctx, "default/text/one"); err != nil || string(got) != "second" {
				t.Fatalf("after overwrite: %q, %v", got, err)
			}
			// Delete, then not found; deleting again is not an error.
			if err := b.Delete(ctx, "default/text/one"); err != nil {
				t.Fatal(err)
			}
			_, err := b.Get(ctx, "default/text/one")
			wantClass(t, err, ErrNotFound, "Secret not found at path 'default/text/one'")
			if err := b.Delete(ctx, "default/text/one"); err != nil {
				t.Fatalf("second delete: %v", err)
			}
			_, err = b.Get(ctx, "default/never/written")
			wantClass(t, err, ErrNotFound, "Secret not found at path 'default/never/written'")
			if version == 2 {
				// Every version and the metadata are gone.
				if code, body := v.Do(http.MethodGet, "kv2/metadata/default/text/one", nil); code != http.StatusNotFound {
					t.Fatalf("metadata after delete: %d %s", code, body)
				}
				// A latest version soft-deleted outside the KBS reads as
				// not found.
				if err := b.Set(ctx, "default/soft/one", []byte("x")); err != nil {
					t.Fatal(err)
				}
				v.Must(http.MethodDelete, "kv2/data/default/soft/one", nil)
				_, err = b.Get(ctx, "default/soft/one")
				wantClass(t, err, ErrNotFound, "Secret not found")
			}
		})
	}

	t.Run("values written by other tools", func(t *testing.T) {
		b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1"})
		for _, tc := range []struct {
			name   string
			secret any
			want   string
			class  error
			msg    string
		}{
			{name: "cli string", secret: map[string]any{"data": "こんにちは世界"}, want: "こんにちは世界"},
			{name: "upstream array", secret: map[string]any{"data": []int{116, 101, 115, 116}}, want: "test"},
			{name: "json object", secret: map[string]any{"data": map[string]any{"port": 5432}}, want: `{"port":5432}`},
			{name: "no data key", secret: map[string]any{"value": "s3cret", "user": "u"}, class: ErrMalformed,
				msg: `Secret exists at path 'default/other/no-data-key' but missing required 'data' key. Available keys: ["user", "value"]`},
			{name: "bad array", secret: map[string]any{"data": []int{1, 300}}, class: ErrMalformed, msg: "invalid byte array in data"},
		} {
			key := "default/other/" + strings.ReplaceAll(tc.name, " ", "-")
			v.Must(http.MethodPut, "kv1/"+key, tc.secret)
			got, err := b.Get(ctx, key)
			if tc.class != nil {
				wantClass(t, err, tc.class, tc.msg)
				noLeak(t, err, "s3cret")
				continue
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("%s: %q, %v", tc.name, got, err)
			}
		}
	})

	t.Run("403 wrong token", func(t *testing.T) {
		const bad = "hvs.not-a-valid-token-0123456789"
		b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: bad, MountPath: "kv1"})
		_, err := b.Get(ctx, "default/text/one")
		wantClass(t, err, ErrPermissionDenied, "permission denied (HTTP 403)")
		noLeak(t, err, bad, v.Token)
		err = b.Set(ctx, "default/text/one", []byte("s3cret"))
		wantClass(t, err, ErrPermissionDenied, "Failed to write secret to Vault at path 'default/text/one'")
		noLeak(t, err, bad, "s3cret")
		err = b.Delete(ctx, "default/text/one")
		wantClass(t, err, ErrPermissionDenied, "Failed to delete secret from Vault")
		noLeak(t, err, bad)
	})

	t.Run("no such mount", func(t *testing.T) {
		b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "nonexistent-mount"})
		_, err := b.Get(ctx, "default/text/one")
		if errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nonexistent-mount") {
			t.Fatalf("a missing mount must not read as a missing secret: %v", err)
		}
	})

	t.Run("KV version mismatch", func(t *testing.T) {
		// kv_version 1 against the v2 mount: Vault's warning, not "not found".
		b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv2", KVVersion: 1})
		_, err := b.Get(ctx, "default/bin/one")
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "kv_version") {
			t.Fatalf("version mismatch: %v", err)
		}
	})

	t.Run("namespace", func(t *testing.T) {
		// A proxy in front of Vault records X-Vault-Namespace and, when
		// enterprise is set, answers sys/health as Vault Enterprise would.
		target, _ := url.Parse(v.Addr)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var mu sync.Mutex
		var seen []string
		enterprise := false
		ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.URL.Path+" "+r.Header.Get("X-Vault-Namespace"))
			ent := enterprise
			mu.Unlock()
			if ent && r.URL.Path == "/v1/sys/health" {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"initialized":true,"sealed":false,"standby":false,"enterprise":true,"version":"1.21.0+ent"}`))
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		defer ps.Close()
		seenNow := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
		v.Must(http.MethodPut, "kv1/default/ns/bin", map[string]any{"data": []int{0, 255, 128, 97, 195}})

		// The real OSS dev server ignores X-Vault-Namespace: the backend
		// refuses to use a namespace with it, clearly, for every operation.
		b, logs := newBackend(t, Config{VaultURL: ps.URL, Token: v.Token, MountPath: "kv1", Namespace: "team-a/"})
		_, err := b.Get(ctx, "default/ns/bin")
		wantClass(t, err, ErrVault, `Vault API error for path 'default/ns/bin': namespace "team-a" is configured, but the Vault server at `+ps.URL+` is not Vault Enterprise`)
		noLeak(t, err, v.Token)
		err = b.Set(ctx, "default/ns/one", []byte("s3cret"))
		wantClass(t, err, ErrVault, "Failed to write secret to Vault at path 'default/ns/one': namespace")
		err = b.Delete(ctx, "default/ns/bin")
		wantClass(t, err, ErrVault, "Failed to delete secret from Vault at path 'default/ns/bin': namespace")
		if got := seenNow(); len(got) != 1 || got[0] != "/v1/sys/health " {
			t.Fatalf("requests: %q (want one sys/health probe, without the namespace)", got)
		}
		if !strings.Contains(logs.String(), "namespace refused") || strings.Contains(logs.String(), v.Token) {
			t.Fatalf("logs: %s", logs)
		}

		// A server with namespaces: the header reaches Vault on every request.
		mu.Lock()
		enterprise, seen = true, nil
		mu.Unlock()
		b, _ = newBackend(t, Config{VaultURL: ps.URL, Token: v.Token, MountPath: "kv1", Namespace: "team-a/"})
		if got, err := b.Get(ctx, "default/ns/bin"); err != nil || !bytes.Equal(got, binary) {
			t.Fatalf("get in a namespace: %q, %v", got, err)
		}
		if err := b.Set(ctx, "default/ns/one", []byte("x")); err != nil {
			t.Fatal(err)
		}
		want := []string{"/v1/sys/health ", "/v1/kv1/default/ns/bin team-a", "/v1/kv1/default/ns/one team-a"}
		if got := seenNow(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("requests: %q, want %q", got, want)
		}

		// Without a namespace no header is sent and no probe is made,
		// whatever VAULT_NAMESPACE, VAULT_TOKEN and VAULT_WRAP_TTL (response
		// wrapping) say.
		t.Setenv("VAULT_NAMESPACE", "from-env")
		t.Setenv("VAULT_TOKEN", "from-env")
		t.Setenv("VAULT_WRAP_TTL", "5m")
		mu.Lock()
		seen = nil
		mu.Unlock()
		b, _ = newBackend(t, Config{VaultURL: ps.URL, Token: v.Token, MountPath: "kv1"})
		if _, err := b.Get(ctx, "default/ns/bin"); err != nil {
			t.Fatal(err)
		}
		if got := seenNow(); len(got) != 1 || got[0] != "/v1/kv1/default/ns/bin " {
			t.Fatalf("requests without a namespace: %q", got)
		}
	})

	t.Run("oversize value refused", func(t *testing.T) {
		b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1"})
		big := bytes.Repeat([]byte("s"), limits.MaxResourceBytes+1)
		err := b.Set(ctx, "default/big/one", big)
		wantClass(t, err, ErrTooLarge, "larger than the limit")
		if _, err := b.Get(ctx, "default/big/one"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an oversize write reached Vault: %v", err)
		}
		// A stored value over the bound is refused on read, in both forms.
		b.maxValue = 16
		v.Must(http.MethodPut, "kv1/default/big/string", map[string]any{"data": strings.Repeat("s3cret", 3)})
		_, err = b.Get(ctx, "default/big/string")
		wantClass(t, err, ErrTooLarge, "larger than the limit of 16")
		noLeak(t, err, "s3cret")
		v.Must(http.MethodPut, "kv1/default/big/array", map[string]any{"data": make([]int, 17)})
		_, err = b.Get(ctx, "default/big/array")
		wantClass(t, err, ErrTooLarge, "larger than the limit of 16")
		// Vault's listener JSON limits (defaults): a binary resource is an
		// array of at most 10000 elements, a text one a string of at most
		// 1 MiB. Up to them a resource goes through, above them the error
		// says which limit refused it.
		b.maxValue = limits.MaxResourceBytes
		for _, tc := range []struct {
			key   string
			value []byte
			msg   string
		}{
			{"default/big/binary-ok", bytes.Repeat([]byte{0xff}, 10000), ""},
			{"default/big/binary", bytes.Repeat([]byte{0xff}, 10001), "JSON array exceeds allowed element count"},
			{"default/big/text-ok", bytes.Repeat([]byte("t"), 1<<20), ""},
			{"default/big/text", bytes.Repeat([]byte("t"), 1<<20+1), "JSON string value exceeds allowed length"},
		} {
			err := b.Set(ctx, tc.key, tc.value)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("%s: %v", tc.key, err)
				}
				if got, err := b.Get(ctx, tc.key); err != nil || !bytes.Equal(got, tc.value) {
					t.Fatalf("%s: read back %d bytes, %v", tc.key, len(got), err)
				}
				continue
			}
			wantClass(t, err, ErrTooLarge, tc.msg)
		}
	})
}

// TestVaultTLS runs against a -dev-tls server: verified with the CA from
// ca_certs, refused without it, and served with verify_ssl = false, which
// logs a warning.
func TestVaultTLS(t *testing.T) {
	v := vaulttest.Start(t, vaulttest.Options{TLS: true})
	v.EnableKV("kv1", 1)
	ctx := context.Background()

	b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1", CACerts: []string{v.CAFile}, VerifySSL: ptr(true)})
	if err := b.Set(ctx, "default/tls/one", []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "default/tls/one"); err != nil || string(got) != "over TLS" {
		t.Fatalf("get over TLS: %q, %v", got, err)
	}

	// Verification is the default: without the CA the server is refused.
	b, logs := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1"})
	_, err := b.Get(ctx, "default/tls/one")
	wantClass(t, err, ErrUnreachable, "add Vault's CA to ca_certs")
	noLeak(t, err, v.Token)
	if strings.Contains(logs.String(), "INSECURE") {
		t.Fatal("a verifying backend logged an insecure warning")
	}

	b, logs = newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1", VerifySSL: ptr(false)})
	if got, err := b.Get(ctx, "default/tls/one"); err != nil || string(got) != "over TLS" {
		t.Fatalf("get without verification: %q, %v", got, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "verify_ssl = false") {
		t.Fatalf("no warning for verify_ssl = false: %s", logs)
	}
	if strings.Contains(logs.String(), v.Token) {
		t.Fatal("the token is in the logs")
	}
}

// TestVaultSealed seals the server: reads and writes fail with a clear
// "sealed" error.
func TestVaultSealed(t *testing.T) {
	v := vaulttest.Start(t, vaulttest.Options{})
	v.EnableKV("kv1", 1)
	ctx := context.Background()
	b, _ := newBackend(t, Config{VaultURL: v.Addr, Token: v.Token, MountPath: "kv1"})
	if err := b.Set(ctx, "default/sealed/one", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	v.Seal()
	_, err := b.Get(ctx, "default/sealed/one")
	wantClass(t, err, ErrSealed, "Vault is sealed (HTTP 503)")
	noLeak(t, err, v.Token, "s3cret")
	err = b.Set(ctx, "default/sealed/one", []byte("s3cret"))
	wantClass(t, err, ErrSealed, "Failed to write secret to Vault")
	err = b.Delete(ctx, "default/sealed/one")
	wantClass(t, err, ErrSealed, "Failed to delete secret from Vault")
}

// TestUnreachable needs no Vault: a closed port fails at once, a server
// that never answers fails at the deadline.
func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	const tok = "hvs.secret-token-value"
	b, _ := newBackend(t, Config{VaultURL: closed, Token: tok, Timeout: 2 * time.Second})
	start := time.Now()
	_, err = b.Get(ctx, "default/a/b")
	wantClass(t, err, ErrUnreachable, "is unreachable")
	noLeak(t, err, tok)
	if time.Since(start) > 2*time.Second {
		t.Fatalf("a closed port took %s", time.Since(start))
	}

	// Accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	b, _ = newBackend(t, Config{VaultURL: "http://" + silent.Addr().String(), Token: tok, Timeout: 500 * time.Millisecond})
	for _, op := range []func() error{
		func() error { _, err := b.Get(ctx, "default/a/b"); return err },
		func() error { return b.Set(ctx, "default/a/b", []byte("s3cret")) },
		func() error { return b.Delete(ctx, "default/a/b") },
	} {
		start = time.Now()
		err = op()
		wantClass(t, err, ErrUnreachable, "no answer from Vault at http://"+silent.Addr().String()+" within 500ms")
		noLeak(t, err, tok, "s3cret")
		if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
			t.Fatalf("deadline of 500ms took %s", d)
		}
	}

	// The caller's own cancellation is reported as such.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.Get(cctx, "default/a/b")
	wantClass(t, err, ErrUnreachable, "request abandoned")
}

// TestReplyBound: a reply over the bound is refused while it is read,
// whatever its status.
func TestReplyBound(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, status := range []int{http.StatusOK, http.StatusInternalServerError} {
		for _, announced := range []bool{false, true} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if announced {
					w.Header().Set("Content-Length", "209715200")
				}
				w.WriteHeader(status)
				for i := 0; i < 200; i++ { // 200 MiB
					if _, err := w.Write([]byte(huge)); err != nil {
						return
					}
				}
			}))
			b, _ := newBackend(t, Config{VaultURL: srv.URL, Token: "t"})
			b.replies.max = 64 << 10
			_, err := b.Get(context.Background(), "default/a/b")
			wantClass(t, err, ErrTooLarge, "Vault reply larger than 65536 bytes")
			srv.Close()
		}
	}
}

func TestConfig(t *testing.T) {
	good := Config{VaultURL: "https://vault.example:8200", Token: "hvs.tok"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{"no url", func(c *Config) { c.VaultURL = "" }, "vault_url is required"},
		{"bad scheme", func(c *Config) { c.VaultURL = "ftp://x" }, "http:// or https://"},
		{"user info", func(c *Config) { c.VaultURL = "https://u:p@x" }, "user info"},
		{"query", func(c *Config) { c.VaultURL = "https://x/?a=b" }, "query"},
		{"no token", func(c *Config) { c.Token = "" }, "token is required"},
		{"token newline", func(c *Config) { c.Token = "hvs.a\n" }, "token has whitespace"},
		{"mount dotdot", func(c *Config) { c.MountPath = "a/../sys" }, "mount_path"},
		{"mount space", func(c *Config) { c.MountPath = "a b" }, "mount_path"},
		{"kv 3", func(c *Config) { c.KVVersion = 3 }, "kv_version must be 1 or 2"},
		{"namespace", func(c *Config) { c.Namespace = "a?b" }, "namespace"},
		{"timeout", func(c *Config) { c.Timeout = time.Hour }, "timeout"},
		{"empty ca", func(c *Config) { c.CACerts = []string{""} }, "ca_certs"},
	} {
		c := good
		tc.mod(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "hvs.") {
			t.Errorf("%s: the token is in %q", tc.name, err)
		}
	}
	if _, err := New(Config{VaultURL: "https://x", Token: "t", CACerts: []string{"/nonexistent.pem"}}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing CA file: %v", err)
	}
	// The token is in no printed form of the configuration.
	c := Config{VaultURL: "https://x", Token: "hvs.very-secret", VerifySSL: ptr(false)}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "config", c)
	for _, s := range []string{c.String(), c.GoString(), logs.String()} {
		if strings.Contains(s, "hvs.very-secret") || !strings.Contains(s, "redacted") {
			t.Fatalf("printed config: %s", s)
		}
	}
	// Plain http to a remote host is warned about; to loopback it is not.
	_, remote := newBackend(t, Config{VaultURL: "http://vault.example:8200", Token: "t"})
	_, local := newBackend(t, Config{VaultURL: "http://127.0.0.1:8200", Token: "t"})
	if !strings.Contains(remote.String(), "INSECURE") || strings.Contains(local.String(), "INSECURE") {
		t.Fatalf("plain http warnings: remote %q, local %q", remote, local)
	}
	if _, err := secretPath("a/b"); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("two segments accepted")
	}
	if _, err := secretPath("a/.b/c"); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("a leading dot accepted")
	}
}
