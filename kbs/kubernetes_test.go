package kbs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/go-trustee/go-trustee/internal/testwait"
	"github.com/go-trustee/go-trustee/kbs/k8ssecrets/k8stest"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
)

func kubernetesPluginConfig(extra string) string {
	return testConfig + `
[[plugins]]
name = "resource"
storage_backend_type = "kubernetes"
` + extra
}

// TestKubernetesResourceBackend runs the KBS with the resource plugin on
// the Secrets of a real kube-apiserver (RBAC on, the KBS's identity a
// kubeconfig user granted list and watch in one namespace): an attested
// GET of default/<secret>/<key> returns the Secret's value sealed to the
// TEE key; a rotated value is served without a restart, a deleted Secret
// is the usual not-found error, admin writes are refused with what to do,
// and no value reaches the logs.
func TestKubernetesResourceBackend(t *testing.T) {
	c := k8stest.Start(t)
	const ns = "trustee-operator-system"
	c.Namespace(t, ns)
	kc := c.Kubeconfig(t, "kbs")
	c.GrantSecrets(t, ns, "kbs", []string{"list", "watch"}, nil)
	secrets := c.Client.CoreV1().Secrets(ns)
	ctx := context.Background()
	const v1, v2 = "llm-model-key-v1", "llm-model-key-v2"
	if _, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "llm", Labels: map[string]string{"kbs.confidentialcontainers.org/resource": "true"}},
		Data:       map[string][]byte{"decryption-key": []byte(v1)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, kubernetesPluginConfig(fmt.Sprintf("kubernetes_namespace = %q\nkubeconfig = %q\n", ns, kc)), nil, nil)
	e.admin("POST", "/kbs/v0/resource-policy", []byte(fmt.Sprintf(`{"policy":%q}`, b64url(allowAllPolicy))))
	g := e.guest(protocol.KeyEC256)
	g.rcar()
	read := func() (int, []byte) { return g.do("GET", "/kbs/v0/resource/default/llm/decryption-key", nil, nil) }
	code, b := read()
	if code != 200 {
		t.Fatalf("GET: %d %s", code, b)
	}
	if strings.Contains(string(b), v1) {
		t.Fatal("the resource travelled in clear")
	}
	if got := string(g.decrypt(b)); got != v1 {
		t.Fatalf("GET = %q", got)
	}
	if _, err := e.store.Get(ctx, storage.NamespaceRepository, "default/llm/decryption-key"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the Secret was copied into the KBS store: %v", err)
	}

	// Rotation: the next GET after the watch delivers it serves v2.
	s, err := secrets.Get(ctx, "llm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["decryption-key"] = []byte(v2)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the rotated value served", func() bool {
		code, b := read()
		return code == 200 && string(g.decrypt(b)) == v2
	})

	// Admin writes go to the Secret, not through the KBS.
	for _, m := range []string{"POST", "DELETE"} {
		code, b := e.adminDo(m, "/kbs/v0/resource/default/llm/decryption-key", []byte("x"))
		info := wantError(t, code, b, 401, "PluginInternalError")
		if info.Detail != "Plugin internal error: the kubernetes resource backend is read-only: write the Secret instead" {
			t.Fatalf("%s detail = %q", m, info.Detail)
		}
	}

	if err := secrets.Delete(ctx, "llm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the deleted Secret no longer served", func() bool {
		code, b := read()
		if code != 401 {
			return false
		}
		info := wantError(t, code, b, 401, "PluginInternalError")
		return info.Detail == "Plugin internal error: resource default/llm/decryption-key not found"
	})
	logs := e.logs.String()
	if strings.Contains(logs, v1) || strings.Contains(logs, v2) {
		t.Fatal("a Secret value is in the logs")
	}
	if !strings.Contains(logs, "Kubernetes resource backend synced") {
		t.Fatalf("no start-up record:\n%s", logs)
	}
}

// TestKubernetesResourceBackendStart: a KBS whose identity may not list the
// Secrets does not start, and says which grant is missing; CheckConfig
// validates the keys without connecting.
func TestKubernetesResourceBackendStart(t *testing.T) {
	for _, tc := range []struct{ extra, want string }{
		{`kubernetes_namespace = "Bad_NS"`, `kubernetes_namespace "Bad_NS" is not a namespace name`},
		{`kubeconfig = "/k"`, "kubernetes_namespace is required with kubeconfig"},
		{"label_selector = \"a=b\"\nsecret_names = [\"x\"]", "label_selector and secret_names exclude each other"},
		{`label_selector = "a!=b"`, "requires no label"},
		{`vault_url = "http://127.0.0.1:8200"`, "not Vault's vault_url"},
		{`timeout_secs = 100000`, "timeout_secs must be between 1 and 300"},
	} {
		cfg, _, err := ParseConfig([]byte(kubernetesPluginConfig(tc.extra)))
		if err == nil {
			err = CheckConfig(cfg)
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %q", tc.extra, err, tc.want)
		}
	}
	cfg, _, err := ParseConfig([]byte(kubernetesPluginConfig("kubernetes_namespace = \"trustee\"\nsecret_names = [\"llm\", \"attestation-status\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("CheckConfig: %v", err)
	}

	c := k8stest.Start(t)
	c.Namespace(t, "trustee")
	kc := c.Kubeconfig(t, "no-grant")
	cfg, _, err = ParseConfig([]byte(kubernetesPluginConfig(fmt.Sprintf("kubernetes_namespace = \"trustee\"\nkubeconfig = %q\n", kc))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), cfg, Options{Store: nil})
	if err == nil || !strings.Contains(err.Error(), "forbidden (HTTP 403)") ||
		!strings.Contains(err.Error(), `grant list and watch on secrets in namespace "trustee"`) {
		t.Fatalf("New = %v", err)
	}
}
