//go:build cgo

package kbs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-trustee/go-trustee/kbs/pkcs11plugin"
	"github.com/go-trustee/go-trustee/kbs/pkcs11plugin/softhsmtest"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
)

const (
	pkcs11TestPin   = "kbs-pin-0815"
	pkcs11WrapLabel = "trustee-test"
	pkcs11Policy    = "package policy\ndefault allow = false\nallow if { data.plugin == \"pkcs11\" }\n"
)

func pkcs11PluginConfig(module, pin string, extra string) string {
	return testConfig + fmt.Sprintf(`
[[plugins]]
name = "pkcs11"
module = %q
slot_index = 0
pin = %q
rsa_mechanism = "RsaPkcsTest"
%s
`, module, pin, extra)
}

// TestPkcs11Plugin drives upstream's pkcs11 plugin through the KBS
// handler on a SoftHSM token the test creates: an admin POST of a
// resource lands in the token as a persistent secret-key object (not in
// the KBS store); an attested GET returns it as a JWE sealed to the TEE
// key; wrap-key POST (admin) wraps to the token's RSA key and an attested
// GET with the wrapped bytes as body returns the plaintext as a JWE; the
// resource survives a KBS restart; DELETE removes it and a GET then is
// upstream's "Could not find object with label"; an oversized POST is
// 413 and the token unchanged; an unknown sub-path is a 404 and PUT is
// upstream's "invalid method"; a guest without a token, or denied by
// the policy, gets nothing; the PIN and the secrets are not in the logs.
func TestPkcs11Plugin(t *testing.T) {
	tk := softhsmtest.New(t, "kbs-test", pkcs11TestPin)
	tk.GenerateRSA(t, pkcs11WrapLabel, 2048)
	cfg := pkcs11PluginConfig(tk.Module, pkcs11TestPin, fmt.Sprintf("lookup_label = %q", pkcs11WrapLabel))
	e := newEnv(t, cfg, nil, nil)
	const secret = "hsm-held-s3cret"
	binary := string([]byte{0, 0xff, 0x10, 0x80})
	e.admin("POST", "/kbs/v0/pkcs11/resource/default/hsm/secret", []byte(secret))
	e.admin("POST", "/kbs/v0/pkcs11/resource/default/hsm/binary", []byte(binary))
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(pkcs11Policy))))

	objs := tk.SecretObjects(t, "default/hsm/secret")
	if len(objs) != 1 || string(objs[0].Value) != secret || !objs[0].Token || !objs[0].Private {
		t.Fatalf("token objects %+v", objs)
	}
	if _, err := e.store.Get(context.Background(), storage.NamespaceRepository, "default/hsm/secret"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the resource is also in the KBS store: %v", err)
	}

	g := e.guest(protocol.KeyEC256)
	if code, b := g.do("GET", "/kbs/v0/pkcs11/resource/default/hsm/secret", nil, nil); code != 401 || !strings.Contains(string(b), "TokenNotFound") {
		t.Fatalf("GET before attestation: %d %s", code, b)
	}
	g.rcar()
	for path, want := range map[string]string{"default/hsm/secret": secret, "default/hsm/binary": binary} {
		code, b := g.do("GET", "/kbs/v0/pkcs11/resource/"+path, nil, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		if strings.Contains(string(b), secret) {
			t.Fatal("the resource travelled in clear")
		}
		if got := string(g.decrypt(b)); got != want {
			t.Fatalf("GET %s = %q, want %q", path, got, want)
		}
	}

	// wrap-key: POST (admin) wraps, an attested GET unwraps.
	const key = "a-data-encryption-key-32-bytes!!"
	code, wrapped := e.adminDo("POST", "/kbs/v0/pkcs11/wrap-key", []byte(key))
	if code != 200 || len(wrapped) != 256 || bytes.Contains(wrapped, []byte(key)) {
		t.Fatalf("wrap: %d %q", code, wrapped)
	}
	code, b := g.do("GET", "/kbs/v0/pkcs11/wrap-key", wrapped, nil)
	if code != 200 {
		t.Fatalf("unwrap: %d %s", code, b)
	}
	if got := string(g.decrypt(b)); got != key {
		t.Fatalf("unwrapped %q", got)
	}
	code, b = g.do("GET", "/kbs/v0/pkcs11/wrap-key", wrapped[:100], nil)
	if info := wantError(t, code, b, 401, "PluginInternalError"); !strings.HasPrefix(info.Detail, "Plugin internal error: unable to decrypt HTTP body with private wrap key") {
		t.Fatalf("unwrap of a short body: %q", info.Detail)
	}

	// Bad paths and methods.
	for _, path := range []string{"/kbs/v0/pkcs11/other", "/kbs/v0/pkcs11/resource/a/b", "/kbs/v0/pkcs11/wrap-key/x", "/kbs/v0/pkcs11/resource/a/b/c/d"} {
		code, b := g.do("GET", path, nil, nil)
		wantError(t, code, b, 404, "InvalidRequestPath")
	}
	code, b = e.adminDo("PUT", "/kbs/v0/pkcs11/resource/default/hsm/secret", []byte("x"))
	if info := wantError(t, code, b, 401, "PluginInternalError"); info.Detail != "Plugin internal error: invalid method" {
		t.Fatalf("PUT: %q", info.Detail)
	}
	code, b = e.adminDo("DELETE", "/kbs/v0/pkcs11/wrap-key", nil)
	wantError(t, code, b, 401, "PluginInternalError")

	// Oversized: refused before the token.
	code, b = e.adminDo("POST", "/kbs/v0/pkcs11/resource/default/hsm/secret", make([]byte, pkcs11plugin.MaxResourceBytes+1))
	wantError(t, code, b, 413, "PayloadTooLarge")
	if objs := tk.SecretObjects(t, "default/hsm/secret"); len(objs) != 1 || string(objs[0].Value) != secret {
		t.Fatal("an oversized POST changed the token")
	}

	// A policy that does not name pkcs11 denies.
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(allowAllPolicy))))
	code, b = g.do("GET", "/kbs/v0/pkcs11/resource/default/hsm/secret", nil, nil)
	wantError(t, code, b, 401, "PolicyDeny")

	if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, pkcs11TestPin) || strings.Contains(logs, key) {
		t.Fatal("a secret or the PIN is in the logs")
	}

	// A restarted KBS reads the token; DELETE removes the object.
	e.ts.Close()
	e.srv.Close()
	e = newEnv(t, cfg, nil, nil)
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(pkcs11Policy))))
	g = e.guest(protocol.KeyRSA2048)
	g.rcar()
	code, b = g.do("GET", "/kbs/v0/pkcs11/resource/default/hsm/secret", nil, nil)
	if code != 200 || string(g.decrypt(b)) != secret {
		t.Fatalf("after a restart: %d %s", code, b)
	}
	e.admin("DELETE", "/kbs/v0/pkcs11/resource/default/hsm/secret", nil)
	if objs := tk.SecretObjects(t, "default/hsm/secret"); len(objs) != 0 {
		t.Fatalf("%d objects left after DELETE", len(objs))
	}
	code, b = g.do("GET", "/kbs/v0/pkcs11/resource/default/hsm/secret", nil, nil)
	if info := wantError(t, code, b, 401, "PluginInternalError"); info.Detail != "Plugin internal error: Could not find object with label default/hsm/secret" {
		t.Fatalf("detail = %q", info.Detail)
	}
}

// TestPkcs11PluginConcurrentGets: attested GETs of resources and unwraps
// from many guests at once (run under -race) all get their value.
func TestPkcs11PluginConcurrentGets(t *testing.T) {
	tk := softhsmtest.New(t, "kbs-test", pkcs11TestPin)
	tk.GenerateRSA(t, pkcs11WrapLabel, 2048)
	e := newEnv(t, pkcs11PluginConfig(tk.Module, pkcs11TestPin, fmt.Sprintf("lookup_label = %q", pkcs11WrapLabel)), nil, nil)
	for i := range 4 {
		e.admin("POST", fmt.Sprintf("/kbs/v0/pkcs11/resource/default/c/%d", i), fmt.Appendf(nil, "value-%d", i))
	}
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(pkcs11Policy))))
	code, wrapped := e.adminDo("POST", "/kbs/v0/pkcs11/wrap-key", []byte("wrapped-key"))
	if code != 200 {
		t.Fatalf("wrap: %d %s", code, wrapped)
	}
	var guests []*guest
	for range 6 {
		g := e.guest(protocol.KeyEC256)
		g.rcar()
		guests = append(guests, g)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for gi, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				var code int
				var b []byte
				var want string
				if i%4 == 3 {
					code, b = g.doNoFatal("GET", "/kbs/v0/pkcs11/wrap-key", wrapped)
					want = "wrapped-key"
				} else {
					n := (gi + i) % 4
					code, b = g.doNoFatal("GET", fmt.Sprintf("/kbs/v0/pkcs11/resource/default/c/%d", n), nil)
					want = fmt.Sprintf("value-%d", n)
				}
				var got string
				if code == 200 {
					if r, err := protocol.ParseResponse(b); err == nil {
						pt, err := g.kp.Decrypt(r)
						if err == nil {
							got = string(pt)
						}
					}
				}
				if got != want {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("guest %d #%d: %d %q, want %q", gi, i, code, got, want))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}

// doNoFatal is guest.do for other goroutines (no t.Fatal there).
func (g *guest) doNoFatal(method, path string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, g.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestPkcs11PluginStartup: the [[plugins]] keys decode with nothing
// ignored and print without the PIN; CheckConfig loads no library; a
// wrong PIN, a slot_index without a token and a lookup_label the token
// lacks make New fail with a clear ErrInvalidConfig error without the
// PIN, and no panic.
func TestPkcs11PluginStartup(t *testing.T) {
	cfg, ignored, err := ParseConfig([]byte(pkcs11PluginConfig("/nonexistent/libpkcs11.so", pkcs11TestPin, `lookup_label = "wrap"`)))
	if err != nil || len(ignored) != 0 {
		t.Fatalf("%v, ignored %v", err, ignored)
	}
	p := cfg.Plugins[0]
	if p.Module != "/nonexistent/libpkcs11.so" || string(p.Pin) != pkcs11TestPin || p.RsaMechanism != "RsaPkcsTest" || p.LookupLabel != "wrap" || p.SlotIndex != 0 {
		t.Fatalf("decoded %+v", p)
	}
	for _, s := range []string{fmt.Sprintf("%v", cfg.Plugins), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), p.String()} {
		if strings.Contains(s, pkcs11TestPin) || !strings.Contains(s, "redacted") {
			t.Fatalf("printed: %s", s)
		}
	}
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("CheckConfig opened the module: %v", err)
	}
	for _, bad := range []string{
		`pin = "1234"`,
		`module = "/x.so"`,
		`module = "/x.so"` + "\n" + `pin = "1234"` + "\n" + `slot_index = 256`,
		`module = "/x.so"` + "\n" + `pin = "1234"` + "\n" + `rsa_mechanism = "RsaPkcs"`,
	} {
		cfg, _, err := ParseConfig([]byte(testConfig + "\n[[plugins]]\nname = \"pkcs11\"\n" + bad + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckConfig(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: CheckConfig = %v", bad, err)
		}
	}

	tk := softhsmtest.New(t, "kbs-test", pkcs11TestPin)
	const wrongPin = "not-the-pin-42"
	for _, tc := range []struct{ name, pin, extra, want string }{
		{"wrong pin", wrongPin, "", "the pin is wrong"},
		{"no token", pkcs11TestPin, "", "Slot index out of range"},
		{"no wrap key", pkcs11TestPin, `lookup_label = "absent"`, `unable to find public wrap key in PKCS11 module: no key pair labelled "absent"`},
		{"missing module", pkcs11TestPin, "", "unable to open pkcs11 module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			module := tk.Module
			conf := pkcs11PluginConfig(module, tc.pin, tc.extra)
			switch tc.name {
			case "no token":
				conf = strings.Replace(conf, "slot_index = 0", "slot_index = 7", 1)
			case "missing module":
				conf = pkcs11PluginConfig("/nonexistent/libpkcs11.so", tc.pin, tc.extra)
			}
			cfg, _, err := ParseConfig([]byte(conf))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(context.Background(), cfg, Options{})
			if err == nil {
				srv.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Initialize 'pkcs11' plugin failed") ||
				!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.pin) {
				t.Fatalf("New: %v", err)
			}
		})
	}
}
