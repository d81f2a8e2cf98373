// Package k8stest runs a real Kubernetes control plane for tests of the
// kubernetes resource backend: kube-apiserver and etcd from the folder
// named by $KUBEBUILDER_ASSETS (built and cached by scripts/kube-peers.sh),
// started by controller-runtime's envtest with RBAC authorization on.
// Without KUBEBUILDER_ASSETS a test is skipped, or fails when CI is set (no
// suite may be skipped in CI), as the operator's tests. Only tests import
// this package.
package k8stest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// EnvAssets names the variable holding the folder with kube-apiserver and
// etcd.
const EnvAssets = "KUBEBUILDER_ASSETS"

// Assets returns the folder with kube-apiserver and etcd, skipping the test
// without one (failing in CI).
func Assets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvAssets)
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set: scripts/test.sh builds kube-apiserver and etcd with scripts/kube-peers.sh")
		}
		t.Skip("KUBEBUILDER_ASSETS not set (export KUBEBUILDER_ASSETS=$(scripts/kube-peers.sh))")
	}
	return dir
}

// Cluster is a running control plane. It is stopped when the test that
// started it ends.
type Cluster struct {
	// Admin is the REST configuration of a system:masters user.
	Admin *rest.Config
	// Client is a clientset of Admin.
	Client kubernetes.Interface

	env *envtest.Environment
}

var quietLogger sync.Once

// Start starts kube-apiserver and etcd and waits until they serve.
func Start(t testing.TB) *Cluster {
	t.Helper()
	Assets(t)
	// envtest logs through controller-runtime's logger, which complains
	// when it is never set.
	quietLogger.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Admin: cfg, Client: cs, env: env}
}

// Namespace creates a namespace.
func (c *Cluster) Namespace(t testing.TB, name string) {
	t.Helper()
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// User provisions a user authenticated by a client certificate, bound to
// nothing (RBAC grants it no permission), and returns its configuration.
func (c *Cluster) User(t testing.TB, name string) *rest.Config {
	t.Helper()
	u, err := c.env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	return rest.CopyConfig(u.Config())
}

// Kubeconfig provisions a user as User does and writes its kubeconfig to a
// file of the test's temporary folder, returning the path.
func (c *Cluster) Kubeconfig(t testing.TB, name string) string {
	t.Helper()
	u, err := c.env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// GrantSecrets creates a Role in namespace ns allowing verbs on secrets
// (only those named, when names is not empty) and binds it to user.
func (c *Cluster) GrantSecrets(t testing.TB, ns, user string, verbs, names []string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-secrets", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: verbs, ResourceNames: names}},
	}
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating role: %v", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-secrets", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating role binding: %v", err)
	}
}
