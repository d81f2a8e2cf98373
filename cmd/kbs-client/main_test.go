package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/protocol"
)

const adminToken = "the-admin-token"

type cli struct {
	t   *testing.T
	kbs *fakekbs.KBS
	url string
	dir string
}

func newCLI(t *testing.T, opts fakekbs.Options) *cli {
	kbs := fakekbs.New(opts)
	srv := httptest.NewServer(kbs)
	t.Cleanup(srv.Close)
	// Run where no fallback admin token exists.
	t.Chdir(t.TempDir())
	t.Setenv("HOME", t.TempDir())
	return &cli{t: t, kbs: kbs, url: srv.URL, dir: t.TempDir()}
}

func (c *cli) file(name, content string) string {
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// run executes kbs-client with --url set and returns stdout and stderr.
func (c *cli) run(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, append([]string{"--url", c.url}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("kbs-client %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestBackgroundCheckFlow(t *testing.T) {
	c := newCLI(t, fakekbs.Options{AdminToken: adminToken})
	tokenFile := c.file("admin-token", adminToken+"\n")
	secret := "\x00secret\xff"
	resFile := c.file("secret", secret)

	out := c.mustRun("config", "--admin-token-file", tokenFile, "set-resource", "--path", "default/key/1", "--resource-file", resFile)
	if out != "Set resource success \n resource: 8 bytes\n" {
		t.Errorf("set-resource output %q", out)
	}
	if strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(secret))) {
		t.Error("set-resource echoed the secret")
	}
	out = c.mustRun("get-resource", "--path", "default/key/1")
	if out != base64.StdEncoding.EncodeToString([]byte(secret))+"\n" {
		t.Errorf("get-resource output %q", out)
	}
	out = c.mustRun("config", "--admin-token-file", tokenFile, "delete-resource", "--path", "default/key/1")
	if out != "Delete resource success\n" {
		t.Errorf("delete-resource output %q", out)
	}
	if _, ok := c.kbs.Resource("default/key/1"); ok {
		t.Error("resource not deleted")
	}
}

func TestPassportFlow(t *testing.T) {
	c := newCLI(t, fakekbs.Options{})
	c.kbs.SetResource("default/key/1", []byte("s3cret"))
	kp, err := protocol.GenerateKeyPair(protocol.KeyRSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := kp.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := c.file("tee.pem", string(pemBytes))
	token := strings.TrimSpace(c.mustRun("attest", "--tee-key-file", keyFile))
	if strings.Count(token, ".") != 2 {
		t.Fatalf("attest printed %q, want a JWT", token)
	}
	tokenFile := c.file("token", token+"\n")
	before := c.kbs.Count("POST", "/kbs/v0/auth")
	out := c.mustRun("get-resource", "--path", "default/key/1", "--tee-key-file", keyFile, "--attestation-token", tokenFile)
	if out != base64.StdEncoding.EncodeToString([]byte("s3cret"))+"\n" {
		t.Errorf("get-resource output %q", out)
	}
	if n := c.kbs.Count("POST", "/kbs/v0/auth"); n != before {
		t.Errorf("passport read attested again (%d handshakes)", n-before)
	}
	reqs := c.kbs.Requests()
	if last := reqs[len(reqs)-1]; last.Bearer != token {
		t.Error("passport read did not send the token as Bearer")
	}
	if _, errOut, err := c.run("get-resource", "--path", "default/key/1", "--attestation-token", tokenFile); err == nil || !strings.Contains(err.Error(), "--tee-key-file") {
		t.Errorf("token without key: %v %s", err, errOut)
	}
}

func TestInitData(t *testing.T) {
	c := newCLI(t, fakekbs.Options{})
	toml := "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n"
	c.mustRun("attest", toml)
	f := c.file("initdata.toml", toml)
	c.mustRun("attest", "--init-data", f)
	var n int
	for _, r := range c.kbs.Requests() {
		if r.Path != "/kbs/v0/attest" {
			continue
		}
		var att protocol.Attestation
		if err := json.Unmarshal(r.Body, &att); err != nil {
			t.Fatal(err)
		}
		if att.InitData == nil || att.InitData.Body != toml || att.InitData.Format != "toml" {
			t.Errorf("init-data sent = %+v", att.InitData)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d attestations", n)
	}
	if _, _, err := c.run("attest", "--init-data", f, toml); err == nil {
		t.Error("both inline and file init-data accepted")
	}
}

func TestPolicyDenyReportsDetail(t *testing.T) {
	c := newCLI(t, fakekbs.Options{Deny: func(string, []string) bool { return true }})
	c.kbs.SetResource("default/key/1", []byte("x"))
	out, _, err := c.run("get-resource", "--path", "default/key/1")
	if err == nil || !strings.Contains(err.Error(), "Access denied by policy") || out != "" {
		t.Fatalf("err = %v, stdout %q", err, out)
	}
	if n := c.kbs.Count("GET", "/kbs/v0/resource"); n != 1 {
		t.Errorf("%d resource requests, want 1", n)
	}
}

func TestConfigCommands(t *testing.T) {
	c := newCLI(t, fakekbs.Options{AdminToken: adminToken})
	tok := c.file("admin-token", adminToken)
	policy := "package policy\ndefault allow = true\n"
	pf := c.file("p.rego", policy)
	b64 := base64.StdEncoding.EncodeToString([]byte(policy))

	if out := c.mustRun("config", "--admin-token-file", tok, "set-attestation-policy", "--policy-file", pf, "--id", "my_cpu"); out != "Set attestation policy success \n policy: "+b64+"\n" {
		t.Errorf("set-attestation-policy output %q", out)
	}
	if got, ok := c.kbs.AttestationPolicy("my_cpu"); !ok || string(got) != policy {
		t.Errorf("attestation policy stored %q", got)
	}
	c.mustRun("config", "--admin-token-file", tok, "set-attestation-policy", "--policy-file", pf)
	if _, ok := c.kbs.AttestationPolicy("default_cpu"); !ok {
		t.Error("default policy id is not default_cpu")
	}
	for _, tt := range []struct{ flag, want string }{
		{"--allow-all", "allow_all"}, {"--deny-all", "deny_all"}, {"--affirming", "affirming"}, {"--default", "default"},
	} {
		out := c.mustRun("config", "--admin-token-file", tok, "set-resource-policy", tt.flag)
		want := builtinPolicy(tt.want)
		if !bytes.Equal(c.kbs.ResourcePolicy(), want) || out != "Set resource policy success \n policy: "+base64.StdEncoding.EncodeToString(want)+"\n" {
			t.Errorf("%s: stored %q, output %q", tt.flag, c.kbs.ResourcePolicy(), out)
		}
	}
	c.mustRun("config", "--admin-token-file", tok, "set-resource-policy", "--policy-file", pf)
	if string(c.kbs.ResourcePolicy()) != policy {
		t.Errorf("policy file not stored: %q", c.kbs.ResourcePolicy())
	}
	if out := c.mustRun("config", "--admin-token-file", tok, "get-resource-policy"); out != "[\"resource-policy\"]\n" {
		t.Errorf("get-resource-policy output %q", out)
	}
	if _, _, err := c.run("config", "--admin-token-file", tok, "set-resource-policy", "--allow-all", "--deny-all"); err == nil {
		t.Error("two policies accepted")
	}
	if _, _, err := c.run("config", "--admin-token-file", tok, "set-resource-policy"); err == nil || !strings.Contains(err.Error(), "no policy specified") {
		t.Errorf("no policy: %v", err)
	}

	if out := c.mustRun("config", "--admin-token-file", tok, "set-sample-reference-value", "svn", "1", "--as-integer"); out != "Reference Values Updated\n" {
		t.Errorf("set-sample-reference-value output %q", out)
	}
	if out := c.mustRun("config", "--admin-token-file", tok, "get-reference-value", "--id", "svn"); out != "[1]\n" {
		t.Errorf("get-reference-value output %q", out)
	}

	// Without a token the request is anonymous and the server's detail is
	// reported.
	_, errOut, err := c.run("config", "set-resource-policy", "--deny-all")
	if err == nil || !strings.Contains(err.Error(), "AdminAuthAccess") || !strings.Contains(errOut, "No admin token configured") {
		t.Errorf("anonymous: %v; stderr %q", err, errOut)
	}
}

func TestAdminTokenFallbacks(t *testing.T) {
	c := newCLI(t, fakekbs.Options{AdminToken: adminToken})
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".trustee"), 0o700)
	os.WriteFile(filepath.Join(home, ".trustee", "admin-token"), []byte(adminToken+"\n"), 0o600)
	c.mustRun("config", "set-resource-policy", "--deny-all")

	// The docker-compose path wins over ~/.trustee.
	os.MkdirAll("kbs/config/docker-compose", 0o700)
	os.WriteFile(dockerComposeAdminTokenPath, []byte("compose-token"), 0o600)
	if _, _, err := c.run("config", "set-resource-policy", "--deny-all"); err == nil {
		t.Fatal("docker-compose token not used")
	}
	reqs := c.kbs.Requests()
	if got := reqs[len(reqs)-1].Bearer; got != "compose-token" {
		t.Errorf("bearer = %q, want compose-token", got)
	}
}

func TestLegacyAdminToken(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	now := time.Unix(1_700_000_000, 0)
	tok, err := signLegacyAdminToken(pemBytes, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Error("signature does not verify")
	}
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cl, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if string(h) != `{"typ":"JWT","alg":"EdDSA"}` || string(cl) != `{"exp":1700007200,"iat":1700000000}` {
		t.Errorf("header %s claims %s", h, cl)
	}
	ecKey, _ := protocol.GenerateKeyPair(protocol.KeyEC256, nil)
	ecPEM, _ := ecKey.MarshalPEM()
	if _, err := signLegacyAdminToken(ecPEM, now); err == nil {
		t.Error("accepted an EC key")
	}

	c := newCLI(t, fakekbs.Options{})
	kf := c.file("admin.pem", string(pemBytes))
	c.mustRun("config", "--auth-private-key", kf, "set-resource-policy", "--deny-all")
	reqs := c.kbs.Requests()
	if b := reqs[len(reqs)-1].Bearer; strings.Count(b, ".") != 2 {
		t.Errorf("bearer %q is not a JWT", b)
	}
	tf := c.file("tok", "x")
	if _, _, err := c.run("config", "--auth-private-key", kf, "--admin-token-file", tf, "set-resource-policy", "--deny-all"); err == nil {
		t.Error("both admin credentials accepted")
	}
}

func TestSampleReferenceValueMessage(t *testing.T) {
	tests := []struct {
		name, value           string
		asInt, asBool, single bool
		wantPayload           string
		wantErr               bool
	}{
		{"svn", "1", false, false, false, `{"svn":["1"]}`, false},
		{"svn", "1", true, false, false, `{"svn":[1]}`, false},
		{"debug", "false", false, true, true, `{"debug":false}`, false},
		{"m<&>", "a<b", false, false, true, `{"m<&>":"a<b"}`, false},
		{"svn", "x", true, false, false, "", true},
		{"svn", "99999999999", true, false, false, "", true},
		{"b", "True", false, true, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			msg, err := sampleReferenceValueMessage(tt.name, tt.value, tt.asInt, tt.asBool, tt.single)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted: %s", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := `{"payload":"` + base64.StdEncoding.EncodeToString([]byte(tt.wantPayload)) + `","type":"sample","version":"0.1.0"}`
			if string(msg) != want {
				t.Errorf("message %s, want %s", msg, want)
			}
		})
	}
}

// TestBuiltinPolicies evaluates each embedded policy with the policy engine
// the KBS uses, on the inputs that tell them apart.
func TestBuiltinPolicies(t *testing.T) {
	claims := func(status string, tees ...string) map[string]any {
		ev := map[string]any{}
		for _, tee := range tees {
			ev[tee] = map[string]any{"svn": "1"}
		}
		return map[string]any{"submods": map[string]any{"cpu0": map[string]any{"ear.status": status, "ear.veraison.annotated-evidence": ev}}}
	}
	resource := map[string]any{"plugin": "resource", "resource-path": []any{"a", "b", "c"}, "query": map[string]any{}}
	other := map[string]any{"plugin": "pkcs11", "resource-path": []any{"x"}, "query": map[string]any{}}
	tests := []struct {
		policy string
		input  map[string]any
		data   map[string]any
		want   bool
	}{
		{"allow_all", claims("contraindicated", "sample"), resource, true},
		{"allow_all", claims("affirming", "tdx"), other, false},
		{"deny_all", claims("affirming", "tdx"), resource, false},
		{"affirming", claims("affirming", "tdx"), resource, true},
		{"affirming", claims("warning", "tdx"), resource, false},
		{"affirming", map[string]any{"submods": map[string]any{}}, resource, false},
		{"default", claims("affirming", "tdx"), resource, true},
		{"default", claims("affirming", "sample"), resource, false},
		{"default", claims("affirming", "tdx"), other, false},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			rs, err := rego.New(
				rego.Query("data.policy.allow"),
				rego.Module(tt.policy+".rego", string(builtinPolicy(tt.policy))),
				rego.Input(tt.input),
				rego.Store(inmemStore(tt.data)),
			).Eval(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := len(rs) == 1 && rs[0].Expressions[0].Value == true
			if got != tt.want {
				t.Errorf("allow = %v, want %v (result %v)", got, tt.want, rs)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t, fakekbs.Options{})
	for _, args := range [][]string{
		{"get-resource"},
		{"get-resource", "--path", "a/b"},
		{"nosuch"},
		{"config"},
		{"config", "set-sample-reference-value", "only-name"},
		{"--cert-file", "/nonexistent", "attest"},
	} {
		if out, _, err := c.run(args...); err == nil {
			t.Errorf("kbs-client %v succeeded: %q", args, out)
		}
	}
}
