package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-trustee/go-trustee/internal/testwait"
	"github.com/go-trustee/go-trustee/kbs/vaultkv/vaulttest"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
	"github.com/go-trustee/go-trustee/operator/controller"
)

// esoDir is the folder scripts/eso-peer.sh builds: the External Secrets
// Operator controller and its CRDs.
func esoDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ESO_DIR")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ESO_DIR is not set: scripts/test.sh builds the External Secrets Operator with scripts/eso-peer.sh")
		}
		t.Skip("ESO_DIR not set (export ESO_DIR=$(scripts/eso-peer.sh))")
	}
	return dir
}

// writeKubeconfig writes a kubeconfig for the apiserver of cfg with the
// given credentials and returns its path.
func writeKubeconfig(t *testing.T, path string, cfg *rest.Config, auth *clientcmdapi.AuthInfo) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = auth
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// esoObject is an External Secrets Operator object (external-secrets.io/v1)
// as unstructured data: go-trustee does not depend on ESO's Go types.
func esoObject(kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "external-secrets.io/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": controller.DefaultNamespace},
		"spec":     spec,
	}}
	return u
}

// TestVaultThroughExternalSecrets is the key-manager picture of a
// Kubernetes deployment, every part real: a secret kept in a Vault dev
// server is synced by the External Secrets Operator's controller into a
// Kubernetes Secret; our operator, given a KbsConfig whose kbs-config.toml
// serves resources from Secrets, grants the KBS's ServiceAccount list and
// watch on that Secret; our KBS, authenticated with a token of that
// ServiceAccount (what a pod is given), serves it; our attestation-agent
// and data hub fetch it after attestation, and the workload reads it from
// api-server-rest. A new version written in Vault reaches the workload
// through ESO's refresh and the KBS's watch, with no restart anywhere.
//
// The KBS runs as a process here, not in a pod (the podman e2e runs the
// operator's pods): so its configuration adds kubeconfig and
// kubernetes_namespace, which a pod takes from its service account.
func TestVaultThroughExternalSecrets(t *testing.T) {
	eso := esoDir(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set: scripts/test.sh builds kube-apiserver and etcd with scripts/kube-peers.sh")
		}
		t.Skip("KUBEBUILDER_ASSETS not set (export KUBEBUILDER_ASSETS=$(scripts/kube-peers.sh))")
	}
	ctx := context.Background()
	ns := controller.DefaultNamespace
	dir := socketDir(t, "eso-")
	write := fileWriter(t, dir)

	// Vault, with the model key in KV v2.
	v := vaulttest.Start(t, vaulttest.Options{})
	v.EnableKV("kv", 2)
	const key1, key2 = "model key from vault, v1", "model key from vault, v2"
	putVault := func(val string) {
		v.Must(http.MethodPost, "kv/data/llm", map[string]any{"data": map[string]string{"decryption-key": val}})
	}
	putVault(key1)

	// The control plane with our CRDs and ESO's, and our operator.
	k, cfg := startOperatorWith(t, controller.Images{Operator: "localhost/go-trustee/operator:e2e", KBS: "localhost/go-trustee/kbs:e2e"},
		filepath.Join(eso, "crds"))
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// ESO's controller, as a process, with cluster-admin credentials.
	adminKC := writeKubeconfig(t, filepath.Join(dir, "admin.kubeconfig"), cfg,
		&clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData})
	t.Setenv("KUBECONFIG", adminKC)
	esoProc := startDaemon(t, dir, func() bool { return true }, filepath.Join(eso, "external-secrets"),
		"--metrics-addr", "0", "--namespace", ns, "--enable-cluster-store-reconciler=false",
		"--enable-cluster-external-secret-reconciler=false", "--enable-cluster-push-secret-reconciler=false",
		"--enable-push-secret-reconciler=false", "--loglevel", "info")
	os.Unsetenv("KUBECONFIG")

	// The Vault SecretStore and the ExternalSecret producing Secret llm.
	tokenSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vault-token", Namespace: ns}, StringData: map[string]string{"token": v.Token}}
	if err := k.Create(ctx, tokenSecret); err != nil {
		t.Fatal(err)
	}
	store := esoObject("SecretStore", "vault", map[string]any{"provider": map[string]any{"vault": map[string]any{
		"server": v.Addr, "path": "kv", "version": "v2",
		"auth": map[string]any{"tokenSecretRef": map[string]any{"name": "vault-token", "key": "token"}},
	}}})
	es := esoObject("ExternalSecret", "llm", map[string]any{
		"refreshInterval": "1s",
		"secretStoreRef":  map[string]any{"name": "vault", "kind": "SecretStore"},
		"target":          map[string]any{"name": "llm"},
		"data": []any{map[string]any{"secretKey": "decryption-key",
			"remoteRef": map[string]any{"key": "llm", "property": "decryption-key"}}},
	})
	for _, o := range []client.Object{store, es} {
		if err := k.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetObjectKind().GroupVersionKind().Kind, err)
		}
	}
	var synced corev1.Secret
	testwait.Until(t, "ESO's Secret llm", func() bool {
		return k.Get(ctx, types.NamespacedName{Namespace: ns, Name: "llm"}, &synced) == nil && string(synced.Data["decryption-key"]) == key1
	})
	if len(synced.OwnerReferences) != 1 || synced.OwnerReferences[0].Kind != "ExternalSecret" {
		t.Fatalf("Secret llm is not ESO's: owners %+v\nESO log:\n%s", synced.OwnerReferences, esoProc.Logs())
	}

	// Our operator: a KbsConfig serving resources from the Secrets.
	podConfig := `[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = true
[admin]
authorization_mode = "DenyAll"
[attestation_service]
type = "coco_as_builtin"
[[plugins]]
name = "resource"
storage_backend_type = "kubernetes"
secret_names = ["llm"]
`
	authKey := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kbs-auth-public-key", Namespace: ns},
		StringData: map[string]string{"publicKey": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA7Mz8b8uSmOXmrLgo9w0TOAyIVd9Ie/Fvx2BSfI0cyvg=\n-----END PUBLIC KEY-----\n"}}
	kcm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kbs-config", Namespace: ns}, Data: map[string]string{controller.KbsConfigKey: podConfig}}
	kbsConfig := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kbsconfig", Namespace: ns}, Spec: v1alpha1.KbsConfigSpec{
		KbsConfigMapName: "kbs-config", KbsAuthSecretName: "kbs-auth-public-key", KbsSecretResources: []string{"llm"},
	}}
	for _, o := range []client.Object{authKey, kcm, kbsConfig} {
		if err := k.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var role rbacv1.Role
	testwait.Until(t, "the operator's Role for the KBS", func() bool {
		return k.Get(ctx, types.NamespacedName{Namespace: ns, Name: controller.KBSSecretsRoleName}, &role) == nil &&
			k.Get(ctx, types.NamespacedName{Namespace: ns, Name: controller.KBSSecretsRoleName}, &rbacv1.RoleBinding{}) == nil
	})
	dep := waitDeployment(t, k, func(*appsv1.Deployment) bool { return true })
	if dep.Spec.Template.Spec.ServiceAccountName != controller.KBSServiceAccountName {
		t.Fatalf("the Deployment does not run as %s", controller.KBSServiceAccountName)
	}

	// The KBS's credential: a token of the operator's ServiceAccount.
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, controller.KBSServiceAccountName,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", controller.KBSServiceAccountName, err)
	}
	kbsKC := writeKubeconfig(t, filepath.Join(dir, "kbs.kubeconfig"), cfg, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
	kbsCfg := write("kbs.toml", []byte(fmt.Sprintf(`[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
type = "coco_as_builtin"
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = %q
[[plugins]]
name = "resource"
storage_backend_type = "kubernetes"
secret_names = ["llm"]
kubernetes_namespace = %q
kubeconfig = %q
`, filepath.Join(dir, "kbs-store"), ns, kbsKC)))
	kbsProc, addr := startProc(t, dir, bin.kbs, "--config-file", kbsCfg)
	kbsURL := "http://" + addr
	mustRun(t, dir, bin.kbsClient, "--url", kbsURL, "config", "set-resource-policy", "--policy-file", write("policy.rego", []byte(guestPolicy)))

	// The guest: attestation-agent, data hub, api-server-rest.
	g := startGuestStack(t, dir, kbsURL, "")
	restAddr := freeAddr(t)
	startDaemon(t, dir, tcpReady(restAddr), bin.apiServerRest, "--bind", restAddr, "--features", "resource",
		"--cdh_addr", "unix://"+g.cdhSock, "--aa_addr", "unix://"+g.aaSock)
	workloadGet := func() (int, string) {
		resp, err := http.Get("http://" + restAddr + "/cdh/resource/default/llm/decryption-key")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := workloadGet(); code != 200 || body != key1 {
		t.Fatalf("workload GET: %d %q\nkbs log:\n%s", code, body, kbsProc.Logs())
	}

	// Rotation in Vault: ESO refreshes the Secret, the KBS's watch serves
	// the new value, the workload reads it; nothing restarts.
	putVault(key2)
	testwait.Until(t, "the rotated key at the workload", func() bool {
		code, body := workloadGet()
		return code == 200 && body == key2
	})
	for name, logs := range map[string]string{"kbs": kbsProc.Logs(), "data hub": g.cdh.Logs()} {
		for _, s := range []string{key1, key2, v.Token, tr.Status.Token} {
			if strings.Contains(logs, s) {
				t.Fatalf("the %s log carries a secret or token", name)
			}
		}
	}
}
