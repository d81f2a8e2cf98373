package kbs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
)

func provisionerConfig(extra string) string {
	return testConfig + "\n[[plugins]]\nname = \"resource\"\n\n[[plugins]]\nname = \"provisioner\"\n" + extra
}

const provisionerPolicy = "package policy\ndefault allow = false\nallow if { data.plugin == \"provisioner\" }\n"

// attestWithInitData runs RCAR with an init-data document whose [data]
// binds the guest to resource (omitted when empty).
func (g *guest) attestWithInitData(resource string) {
	g.e.t.Helper()
	if code, b := g.auth("0.4.0", "sample"); code != 200 {
		g.e.t.Fatalf("auth: %d %s", code, b)
	}
	var att protocol.Attestation
	if err := json.Unmarshal(g.attestationBody(g.nonce, g.nonce), &att); err != nil {
		g.e.t.Fatal(err)
	}
	doc := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"note.txt\" = \"x\"\n"
	if resource != "" {
		doc += fmt.Sprintf("%q = %q\n", provisionerBinding, resource)
	}
	att.InitData = &protocol.InitData{Format: "toml", Body: doc}
	body, _ := json.Marshal(att)
	code, b := g.do("POST", "/kbs/v0/attest", body, nil)
	if code != 200 {
		g.e.t.Fatalf("attest: %d %s", code, b)
	}
	var r protocol.AttestationResponse
	json.Unmarshal(b, &r)
	g.token = r.Token
}

func TestProvisionerUUIDNamespaceIsUpstreams(t *testing.T) {
	// Upstream: Uuid::new_v5(&Uuid::NAMESPACE_URL, b"provisioner_plugin").
	if got := uuid.NewSHA1(uuid.NameSpaceURL, []byte("provisioner_plugin")); got != provisionerUUIDSpace {
		t.Fatalf("namespace = %s, want %s", provisionerUUIDSpace, got)
	}
}

func TestProvisionerPlugin(t *testing.T) {
	e := newEnv(t, provisionerConfig(""), nil, nil)
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(provisionerPolicy))))

	code, b := e.adminDo("POST", "/kbs/v0/provisioner/provision", []byte(`{"vm_name":"vm-1","namespace":"tenant-a"}`))
	if code != 200 {
		t.Fatalf("provision: %d %s", code, b)
	}
	var resp provisionResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	wantID := uuid.NewSHA1(provisionerUUIDSpace, []byte("tenant-a/vm-1")).String()
	if resp.UUID != wantID || resp.ResourcePath != "default/"+wantID+"/root" {
		t.Fatalf("provision = %+v, want uuid %s", resp, wantID)
	}
	stored, err := e.store.Get(context.Background(), provisionerNamespace, resp.ResourcePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version string            `toml:"version"`
		Data    map[string]string `toml:"data"`
	}
	if _, err := toml.Decode(string(stored), &doc); err != nil {
		t.Fatalf("stored resource is not confdata TOML: %v", err)
	}
	key := doc.Data["io.cryptsetup.key.text.root"]
	if doc.Version != "0.1.0" || !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).MatchString(key) {
		t.Fatalf("confdata = version %q, key of %d bytes", doc.Version, len(key))
	}
	if strings.Contains(e.logs.String(), key) {
		t.Fatal("the key is in the logs")
	}

	// Provisioning again, also concurrently, keeps the key.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b := e.adminDo("POST", "/kbs/v0/provisioner/provision", []byte(`{"vm_name":"vm-1","namespace":"tenant-a"}`))
			if code != 200 || !strings.Contains(string(b), wantID) {
				t.Errorf("provision again: %d %s", code, b)
			}
		}()
	}
	wg.Wait()
	if again, _ := e.store.Get(context.Background(), provisionerNamespace, resp.ResourcePath); string(again) != string(stored) {
		t.Fatal("a second provision replaced the key")
	}
	// The namespace defaults to "default".
	_, b = e.adminDo("POST", "/kbs/v0/provisioner/provision", []byte(`{"vm_name":"vm-1"}`))
	if !strings.Contains(string(b), uuid.NewSHA1(provisionerUUIDSpace, []byte("default/vm-1")).String()) {
		t.Fatalf("default namespace: %s", b)
	}

	path := "/kbs/v0/provisioner/" + resp.ResourcePath
	// The bound guest gets the confdata, sealed to its TEE key.
	g := e.guest(protocol.KeyEC256)
	g.attestWithInitData(provisionerBindingScheme + resp.ResourcePath)
	code, b = g.do("GET", path, nil, nil)
	if code != 200 {
		t.Fatalf("bound guest: %d %s", code, b)
	}
	if strings.Contains(string(b), key) {
		t.Fatal("the key travelled in clear")
	}
	if got := g.decrypt(b); string(got) != string(stored) {
		t.Fatalf("bound guest got %q", got)
	}

	// Another attested VM, bound elsewhere or not at all, gets nothing.
	other := e.guest(protocol.KeyEC256)
	other.attestWithInitData(provisionerBindingScheme + "default/" + uuid.NewString() + "/root")
	code, b = other.do("GET", path, nil, nil)
	info := wantError(t, code, b, 401, "PluginInternalError")
	if !strings.Contains(info.Detail, "init_data resource mismatch: expected kbs+provisioner:///"+resp.ResourcePath) {
		t.Fatalf("mismatch detail = %q", info.Detail)
	}
	unbound := e.guest(protocol.KeyEC256)
	unbound.attestWithInitData("")
	code, b = unbound.do("GET", path, nil, nil)
	if info := wantError(t, code, b, 401, "PluginInternalError"); !strings.Contains(info.Detail, "init_data missing trustee.kbs.resource") {
		t.Fatalf("unbound detail = %q", info.Detail)
	}
	noInit := e.guest(protocol.KeyEC256)
	noInit.rcar()
	code, b = noInit.do("GET", path, nil, nil)
	if info := wantError(t, code, b, 401, "PluginInternalError"); !strings.Contains(info.Detail, "requires init_data") {
		t.Fatalf("no init-data detail = %q", info.Detail)
	}

	// Deprovision; again is not an error; the guest then finds nothing.
	for range 2 {
		code, b = e.adminDo("DELETE", "/kbs/v0/provisioner/provision/"+resp.UUID, nil)
		if code != 200 || string(b) != `{"status":"deleted"}` {
			t.Fatalf("deprovision: %d %s", code, b)
		}
	}
	if _, err := e.store.Get(context.Background(), provisionerNamespace, resp.ResourcePath); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after deprovision: %v", err)
	}
	code, b = g.do("GET", path, nil, nil)
	if info := wantError(t, code, b, 401, "PluginInternalError"); !strings.Contains(info.Detail, "provisioner resource not found") {
		t.Fatalf("deprovisioned detail = %q", info.Detail)
	}
}

func TestProvisionerBadInput(t *testing.T) {
	e := newEnv(t, provisionerConfig("key_length = 64\n"), nil, nil)
	for _, tc := range []struct {
		method, path, body string
		code               int
		kind               string
	}{
		{"POST", "provision", `{"vm_name":""}`, 401, "PluginInternalError"},
		{"POST", "provision", `{"vm_name":` + strings.Repeat("a", 300) + `}`, 401, "PluginInternalError"},
		{"POST", "provision", `not json`, 401, "PluginInternalError"},
		{"POST", "provision", `{"vm_name":"a"} {"vm_name":"b"}`, 401, "PluginInternalError"},
		{"POST", "provision", `{"vm_name":"` + strings.Repeat("a", maxProvisionBody) + `"}`, 413, "PayloadTooLarge"},
		{"POST", "provision/x", `{"vm_name":"a"}`, 404, "InvalidRequestPath"},
		{"POST", "other", `{"vm_name":"a"}`, 404, "InvalidRequestPath"},
		{"DELETE", "provision/not-a-uuid", ``, 404, "InvalidRequestPath"},
		{"DELETE", "provision", ``, 404, "InvalidRequestPath"},
		{"PUT", "provision", `{"vm_name":"a"}`, 404, "InvalidRequestPath"},
		{"GET", "default/../x/root", ``, 404, "InvalidRequestPath"},
	} {
		code, b := e.adminDo(tc.method, "/kbs/v0/provisioner/"+tc.path, []byte(tc.body))
		if code == tc.code && tc.code == 413 {
			continue // the body limit may answer before the plugin
		}
		wantError(t, code, b, tc.code, tc.kind)
	}
	keys, _ := e.store.List(context.Background(), provisionerNamespace)
	if len(keys) != 0 {
		t.Fatalf("bad requests stored %v", keys)
	}
	// Provisioning is an admin operation: with admin denied, an attested
	// guest's token does not make it one.
	denied := newEnv(t, strings.Replace(provisionerConfig(""), `authorization_mode = "InsecureAllowAll"`, `authorization_mode = "DenyAll"`, 1), nil, nil)
	g := denied.guest(protocol.KeyEC256)
	g.rcar()
	for _, m := range []string{"POST /kbs/v0/provisioner/provision", "DELETE /kbs/v0/provisioner/provision/" + uuid.NewString()} {
		method, path, _ := strings.Cut(m, " ")
		code, b := g.do(method, path, []byte(`{"vm_name":"x"}`), map[string]string{"Authorization": "Bearer " + g.token})
		wantError(t, code, b, 401, "AdminAuthAccess")
	}
	if keys, _ := denied.store.List(context.Background(), provisionerNamespace); len(keys) != 0 {
		t.Fatalf("a denied provision stored %v", keys)
	}
	// key_length is honoured.
	code, b := e.adminDo("POST", "/kbs/v0/provisioner/provision", []byte(`{"vm_name":"vm"}`))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var resp provisionResponse
	json.Unmarshal(b, &resp)
	stored, _ := e.store.Get(context.Background(), provisionerNamespace, resp.ResourcePath)
	if !regexp.MustCompile(`"io.cryptsetup.key.text.root" = "[A-Za-z0-9]{64}"\n$`).Match(stored) {
		t.Fatalf("key_length 64 not honoured")
	}

	for _, bad := range []string{"key_length = -1\n", "key_length = 5000\n"} {
		cfg, _, err := ParseConfig([]byte(provisionerConfig(bad)))
		if err == nil {
			err = CheckConfig(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), "key_length must be between 1 and 4096") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// The key alphabet is used uniformly (no modulo bias toward the first
// characters): over many draws every character appears.
func TestProvisionerKeyAlphabet(t *testing.T) {
	p := &provisionerPlugin{keyLength: 62 * 200, rand: rand.Reader}
	k, err := p.newKey()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[byte]int{}
	for _, c := range k {
		seen[c]++
	}
	if len(seen) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(seen))
	}
}
