package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/go-trustee/go-trustee/internal/testwait"
	"github.com/go-trustee/go-trustee/kbs/k8ssecrets"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
	"github.com/go-trustee/go-trustee/resourcepolicy"
)

const testNS = DefaultNamespace

// cluster is a real kube-apiserver and etcd (scripts/kube-peers.sh builds
// them; KUBEBUILDER_ASSETS names their folder) with the CRDs of
// config/crd/bases installed and the operator's manager running.
type cluster struct {
	c      client.Client
	cfg    *rest.Config // system:masters
	images Images
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set: scripts/test.sh builds kube-apiserver and etcd with scripts/kube-peers.sh")
		}
		t.Skip("KUBEBUILDER_ASSETS not set (export KUBEBUILDER_ASSETS=$(scripts/kube-peers.sh))")
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(&testLogWriter{t}), zap.UseDevMode(true)))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{testNS: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	images := Images{KBS: "localhost/go-trustee/kbs:test", KBSMicroservices: "localhost/go-trustee/kbs:test",
		AS: "localhost/go-trustee/grpc-as:test", RVPS: "localhost/go-trustee/rvps:test", Operator: "localhost/go-trustee/operator:test"}
	if err := Setup(mgr, testNS, images); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return &cluster{c: c, cfg: cfg, images: images}
}

type testLogWriter struct{ t *testing.T }

func (w *testLogWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in 30 s (last: %s)", what, last)
}

func (k *cluster) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k.c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %s %s: %v", kindOf(o), o.GetName(), err)
		}
	}
}

func (k *cluster) condition(t *testing.T, name, typ string) func() (*metav1.Condition, *v1alpha1.KbsConfig) {
	return func() (*metav1.Condition, *v1alpha1.KbsConfig) {
		var kc v1alpha1.KbsConfig
		if err := k.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &kc); err != nil {
			return nil, nil
		}
		return meta.FindStatusCondition(kc.Status.Conditions, typ), &kc
	}
}

func (k *cluster) waitDegraded(t *testing.T, name, reason, contains string) {
	t.Helper()
	get := k.condition(t, name, ConditionDegraded)
	eventually(t, "Degraded "+reason, func() (bool, string) {
		c, _ := get()
		if c == nil {
			return false, "no condition"
		}
		return c.Status == metav1.ConditionTrue && c.Reason == reason && strings.Contains(c.Message, contains), c.Reason + ": " + c.Message
	})
}

func (k *cluster) deployment(t *testing.T) (*appsv1.Deployment, bool) {
	var d appsv1.Deployment
	err := k.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: DeploymentName}, &d)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return &d, true
}

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}, StringData: data}
	return s
}

func permissiveConfig(t *testing.T) string {
	cfg, err := renderKbsConfig(&v1alpha1.TrusteeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestOperatorAgainstAPIServer(t *testing.T) {
	k := startCluster(t)
	ctx := context.Background()

	t.Run("validation", func(t *testing.T) {
		for name, tc := range map[string]struct {
			obj  client.Object
			want string
		}{
			"tls min > max": {&v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-tls", Namespace: testNS},
				Spec: v1alpha1.TrusteeConfigSpec{TLSConfig: &v1alpha1.TLSConfig{Profile: "custom", MinVersion: "1.3", MaxVersion: "1.2"}}},
				"minVersion must not be greater than maxVersion"},
			"tls version pattern": {&v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-ver", Namespace: testNS},
				Spec: v1alpha1.TrusteeConfigSpec{TLSConfig: &v1alpha1.TLSConfig{MinVersion: "1.4"}}}, "minVersion"},
			"tls profile enum": {&v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-prof", Namespace: testNS},
				Spec: v1alpha1.TrusteeConfigSpec{TLSConfig: &v1alpha1.TLSConfig{Profile: "legacy"}}}, "profile"},
			"profile enum": {&v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-type", Namespace: testNS},
				Spec: v1alpha1.TrusteeConfigSpec{Profile: "Open"}}, "profileType"},
			"deployment type enum": {&v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-dt", Namespace: testNS},
				Spec: v1alpha1.KbsConfigSpec{KbsDeploymentType: "Split"}}, "kbsDeploymentType"},
			"negative replicas": {&v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-rep", Namespace: testNS},
				Spec: v1alpha1.KbsConfigSpec{KbsDeploymentSpec: v1alpha1.KbsDeploymentSpec{Replicas: ptr(int32(-1))}}}, "replicas"},
			"shared store type": {&v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-ss", Namespace: testNS},
				Spec: v1alpha1.KbsConfigSpec{KbsSharedStore: &v1alpha1.KbsSharedStoreSpec{Type: "Memcached", SecretName: "s"}}}, "kbsSharedStore.type"},
		} {
			err := k.c.Create(ctx, tc.obj)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Create = %v; want an Invalid error naming %q", name, err, tc.want)
			}
		}
		// Defaults applied by the apiserver.
		tc := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "default"},
			Spec: v1alpha1.TrusteeConfigSpec{TLSConfig: &v1alpha1.TLSConfig{}}}
		k.create(t, tc)
		if tc.Spec.Profile != v1alpha1.ProfilePermissive || tc.Spec.TLSConfig.Profile != "intermediate" {
			t.Errorf("defaults: profileType %q, tlsConfig.profile %q", tc.Spec.Profile, tc.Spec.TLSConfig.Profile)
		}
	})

	t.Run("kbsconfig lifecycle", func(t *testing.T) {
		// A Deployment of the fixed name that the operator does not own
		// is reported and left alone.
		foreign := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: DeploymentName, Namespace: testNS, Labels: map[string]string{"owner": "someone"}},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"x": "y"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "foreign:1"}}}}}}
		k.create(t, foreign)

		kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kbsconfig", Namespace: testNS}, Spec: v1alpha1.KbsConfigSpec{
			KbsConfigMapName: "kbs-config", KbsAuthSecretName: "kbs-auth-public-key", KbsDeploymentType: v1alpha1.DeploymentTypeAllInOne,
			KbsResourcePolicyConfigMapName: "resource-policy", KbsSecretResources: []string{"llm"},
		}}
		k.create(t, kc)
		// Missing references: a condition, no Deployment of ours.
		k.waitDegraded(t, kc.Name, ReasonMissingReference, "ConfigMap "+testNS+"/kbs-config")
		k.create(t, cm("kbs-config", map[string]string{KbsConfigKey: permissiveConfig(t)}),
			secret("kbs-auth-public-key", map[string]string{"publicKey": "pem"}),
			cm("resource-policy", map[string]string{resourcePolicyFile: string(resourcepolicy.AllowAllPolicy())}))
		k.waitDegraded(t, kc.Name, ReasonMissingReference, "Secret "+testNS+"/llm")
		k.create(t, secret("llm", map[string]string{"decryption-key": "k1"}))
		k.waitDegraded(t, kc.Name, ReasonNotOwned, "not controlled by KbsConfig")
		if d, _ := k.deployment(t); d.Spec.Template.Spec.Containers[0].Image != "foreign:1" || d.Labels["owner"] != "someone" {
			t.Fatal("the operator modified a Deployment it does not own")
		}
		if err := k.c.Delete(ctx, foreign); err != nil {
			t.Fatal(err)
		}

		var dep *appsv1.Deployment
		eventually(t, "our Deployment", func() (bool, string) {
			d, ok := k.deployment(t)
			if !ok || !metav1.IsControlledBy(d, kc) {
				return false, "absent or not ours yet"
			}
			dep = d
			return true, ""
		})
		pod := dep.Spec.Template.Spec
		if pod.Containers[0].Image != k.images.KBS || pod.InitContainers[0].Image != k.images.Operator ||
			dep.Spec.Template.Annotations[ConfigMapVersionsAnnotation] == "" {
			t.Errorf("deployment: %+v", dep.Spec.Template)
		}
		eventually(t, "our Service", func() (bool, string) {
			var svc corev1.Service
			err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: ServiceName}, &svc)
			return err == nil && metav1.IsControlledBy(&svc, kc) && svc.Spec.Ports[0].Port == KBSPort, fmt.Sprint(err)
		})
		get := k.condition(t, kc.Name, ConditionReady)
		if c, cur := get(); c == nil || c.Status != metav1.ConditionFalse || cur.Status.IsReady || !controllerutil.ContainsFinalizer(cur, KbsFinalizer) {
			t.Errorf("before any pod is ready: %+v", c)
		}

		// Pods ready (the apiserver runs no controllers; the status the
		// Deployment controller would write is written here).
		dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
		if err := k.c.Status().Update(ctx, dep); err != nil {
			t.Fatal(err)
		}
		eventually(t, "isReady", func() (bool, string) {
			c, cur := get()
			return c != nil && c.Status == metav1.ConditionTrue && cur.Status.IsReady, "not ready"
		})

		// A ConfigMap change rolls the pods (the versions annotation).
		before := dep.Spec.Template.Annotations[ConfigMapVersionsAnnotation]
		var rp corev1.ConfigMap
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "resource-policy"}, &rp); err != nil {
			t.Fatal(err)
		}
		rp.Data[resourcePolicyFile] = string(resourcepolicy.AffirmingPolicy())
		if err := k.c.Update(ctx, &rp); err != nil {
			t.Fatal(err)
		}
		eventually(t, "configmap-versions updated", func() (bool, string) {
			d, _ := k.deployment(t)
			v := d.Spec.Template.Annotations[ConfigMapVersionsAnnotation]
			return v != before && strings.Contains(v, "resource-policy:"+rp.ResourceVersion), v
		})
		// A rotated resource Secret rolls them too.
		d0, _ := k.deployment(t)
		sv := d0.Spec.Template.Annotations[SecretVersionsAnnotation]
		var llm corev1.Secret
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "llm"}, &llm); err != nil {
			t.Fatal(err)
		}
		llm.Data["decryption-key"] = []byte("k2")
		if err := k.c.Update(ctx, &llm); err != nil {
			t.Fatal(err)
		}
		eventually(t, "secret-versions updated", func() (bool, string) {
			d, _ := k.deployment(t)
			v := d.Spec.Template.Annotations[SecretVersionsAnnotation]
			return v != sv && strings.Contains(v, "llm:"+llm.ResourceVersion), v
		})

		// A policy that does not compile: condition, Deployment unchanged.
		d1, _ := k.deployment(t)
		rp.Data[resourcePolicyFile] = "package policy\nallow if {"
		if err := k.c.Update(ctx, &rp); err != nil {
			t.Fatal(err)
		}
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, "resource-policy.rego does not compile")
		// A config the KBS refuses, likewise.
		var kcfg corev1.ConfigMap
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "kbs-config"}, &kcfg); err != nil {
			t.Fatal(err)
		}
		kcfg.Data[KbsConfigKey] += "\n[[plugins]]\nname = \"nonsense\"\n"
		if err := k.c.Update(ctx, &kcfg); err != nil {
			t.Fatal(err)
		}
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, "refused by the KBS")
		if d2, _ := k.deployment(t); d2.ResourceVersion != d1.ResourceVersion {
			t.Error("the Deployment changed while its references were invalid")
		}
		// Repaired: applied again.
		kcfg.Data[KbsConfigKey] = permissiveConfig(t)
		rp.Data[resourcePolicyFile] = string(resourcepolicy.AllowAllPolicy())
		if err := k.c.Update(ctx, &kcfg); err != nil {
			t.Fatal(err)
		}
		if err := k.c.Update(ctx, &rp); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Degraded cleared", func() (bool, string) {
			c, _ := k.condition(t, kc.Name, ConditionDegraded)()
			return c != nil && c.Status == metav1.ConditionFalse, "still degraded"
		})

		// Two replicas without a shared store are refused.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var cur v1alpha1.KbsConfig
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(kc), &cur); err != nil {
				return err
			}
			cur.Spec.KbsDeploymentSpec.Replicas = ptr(int32(2))
			return k.c.Update(ctx, &cur)
		}); err != nil {
			t.Fatal(err)
		}
		k.waitDegraded(t, kc.Name, ReasonInvalidSpec, "2 replicas need kbsSharedStore")
		if d, _ := k.deployment(t); *d.Spec.Replicas != 1 {
			t.Error("replicas applied without a shared store")
		}
		// A shared store while kbs-config.toml still stores on LocalFs:
		// refused, with what to change.
		k.create(t, secret("redis-url", map[string]string{SharedStoreKey: "redis://:pw@redis.example:6379/0"}))
		updateKC := func(mut func(*v1alpha1.KbsConfig)) {
			t.Helper()
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var cur v1alpha1.KbsConfig
				if err := k.c.Get(ctx, client.ObjectKeyFromObject(kc), &cur); err != nil {
					return err
				}
				mut(&cur)
				return k.c.Update(ctx, &cur)
			}); err != nil {
				t.Fatal(err)
			}
		}
		updateKC(func(c *v1alpha1.KbsConfig) {
			c.Spec.KbsSharedStore = &v1alpha1.KbsSharedStoreSpec{Type: v1alpha1.SharedStoreRedis, SecretName: "redis-url"}
		})
		k.waitDegraded(t, kc.Name, ReasonInvalidSpec, "need kbsAttestationKeySecretName")
		k.create(t, secret("token-key", map[string]string{TokenKeyKey: "k"}), secret("token-cert", map[string]string{TokenCertKey: "c"}))
		updateKC(func(c *v1alpha1.KbsConfig) {
			c.Spec.KbsAttestationKeySecretName, c.Spec.KbsAttestationCertSecretName = "token-key", "token-cert"
		})
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, `set it to "Redis"`)
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "kbs-config"}, &kcfg); err != nil {
			t.Fatal(err)
		}
		kcfg.Data[KbsConfigKey] = strings.Replace(permissiveConfig(t), `storage_type = "LocalFs"`, `storage_type = "Redis"`, 1)
		if err := k.c.Update(ctx, &kcfg); err != nil {
			t.Fatal(err)
		}
		eventually(t, "two replicas on the shared store", func() (bool, string) {
			d, _ := k.deployment(t)
			var url *corev1.EnvVarSource
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "REDIS_URL" {
					url = e.ValueFrom
				}
			}
			return *d.Spec.Replicas == 2 && url != nil && url.SecretKeyRef.Name == "redis-url" && url.SecretKeyRef.Key == SharedStoreKey,
				fmt.Sprintf("replicas %d", *d.Spec.Replicas)
		})

		// Deletion: the finalizer deletes the Deployment.
		if err := k.c.Delete(ctx, kc); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Deployment and KbsConfig deleted", func() (bool, string) {
			_, depExists := k.deployment(t)
			err := k.c.Get(ctx, client.ObjectKeyFromObject(kc), &v1alpha1.KbsConfig{})
			return !depExists && apierrors.IsNotFound(err), "still there"
		})
		// The referenced objects, which it does not own, are untouched.
		for _, n := range []string{"kbs-config", "resource-policy"} {
			if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: n}, &corev1.ConfigMap{}); err != nil {
				t.Errorf("ConfigMap %s: %v", n, err)
			}
		}
		// kbs-service was owned by the KbsConfig; with no garbage
		// collector in this control plane it is removed here.
		_ = k.c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: testNS}})
	})

	t.Run("kubernetes resource backend", func(t *testing.T) {
		// kbs-config.toml serving resources from the Secrets: the operator
		// grants the KBS's ServiceAccount list and watch on them, and the
		// grant it writes is exactly what the backend needs (proven by
		// running the backend as that ServiceAccount).
		kubeConfig := func(extra string) string {
			return strings.Replace(permissiveConfig(t), `storage_backend_type = "kvstorage"`, `storage_backend_type = "kubernetes"`+"\n"+extra, 1)
		}
		k.create(t, cm("kbs-config-k8s", map[string]string{KbsConfigKey: kubeConfig(`secret_names = ["model-key"]`)}),
			secret("model-key", map[string]string{"k": "model-v1"}))
		kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kbsconfig-k8s", Namespace: testNS}, Spec: v1alpha1.KbsConfigSpec{
			KbsConfigMapName: "kbs-config-k8s", KbsAuthSecretName: "kbs-auth-public-key", KbsSecretResources: []string{"model-key", "llm"},
		}}
		k.create(t, kc)
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, "kbsSecretResources lists Secret llm, which secret_names")
		if _, ok := k.deployment(t); ok {
			t.Fatal("deployed with a Secret the KBS would not serve")
		}
		updateKC := func(mut func(*v1alpha1.KbsConfig)) {
			t.Helper()
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var cur v1alpha1.KbsConfig
				if err := k.c.Get(ctx, client.ObjectKeyFromObject(kc), &cur); err != nil {
					return err
				}
				mut(&cur)
				return k.c.Update(ctx, &cur)
			}); err != nil {
				t.Fatal(err)
			}
		}
		updateKC(func(c *v1alpha1.KbsConfig) { c.Spec.KbsSecretResources = []string{"model-key"} })

		var dep *appsv1.Deployment
		eventually(t, "the Deployment", func() (bool, string) {
			d, ok := k.deployment(t)
			if !ok || !metav1.IsControlledBy(d, kc) {
				return false, "absent"
			}
			dep = d
			return true, ""
		})
		pod := dep.Spec.Template.Spec
		if pod.ServiceAccountName != KBSServiceAccountName || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken ||
			len(pod.InitContainers) != 0 || strings.Contains(dep.Spec.Template.Annotations[SecretVersionsAnnotation], "model-key") {
			t.Fatalf("pod template: %+v, annotations %v", pod, dep.Spec.Template.Annotations)
		}
		for _, v := range pod.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "model-key" {
				t.Fatal("the resource Secret is mounted")
			}
		}
		var role rbacv1.Role
		var rb rbacv1.RoleBinding
		var sa corev1.ServiceAccount
		eventually(t, "ServiceAccount, Role and RoleBinding", func() (bool, string) {
			e1 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSSecretsRoleName}, &role)
			e2 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSSecretsRoleName}, &rb)
			e3 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSServiceAccountName}, &sa)
			return e1 == nil && e2 == nil && e3 == nil, fmt.Sprint(e1, e2, e3)
		})
		if !metav1.IsControlledBy(&role, kc) || !metav1.IsControlledBy(&rb, kc) || !metav1.IsControlledBy(&sa, kc) {
			t.Fatal("not owned by the KbsConfig")
		}
		if r := role.Rules; len(r) != 1 || !slices.Equal(r[0].Verbs, []string{"list", "watch"}) || !slices.Equal(r[0].ResourceNames, []string{"model-key"}) {
			t.Fatalf("role rules %+v", r)
		}

		// The backend as the ServiceAccount, with the operator's grant only.
		asKBS := rest.CopyConfig(k.cfg)
		asKBS.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + testNS + ":" + KBSServiceAccountName}
		b, err := k8ssecrets.New(ctx, k8ssecrets.Config{Namespace: testNS, SecretNames: []string{"model-key"}}, k8ssecrets.Options{RESTConfig: asKBS})
		if err != nil {
			t.Fatalf("the backend as %s: %v", KBSServiceAccountName, err)
		}
		defer b.Close()
		if v, err := b.Get(ctx, "default/model-key/k"); err != nil || string(v) != "model-v1" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		// Another Secret is not readable with the grant.
		if _, err := k8ssecrets.New(ctx, k8ssecrets.Config{Namespace: testNS, SecretNames: []string{"llm"}}, k8ssecrets.Options{RESTConfig: asKBS}); err == nil ||
			!strings.Contains(err.Error(), "forbidden (HTTP 403)") {
			t.Fatalf("a Secret outside secret_names: %v", err)
		}
		// Rotation is served live; the pods are not rolled for it.
		var mk corev1.Secret
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "model-key"}, &mk); err != nil {
			t.Fatal(err)
		}
		mk.Data["k"] = []byte("model-v2")
		if err := k.c.Update(ctx, &mk); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, "the rotated value", func() bool {
			v, err := b.Get(ctx, "default/model-key/k")
			return err == nil && string(v) == "model-v2"
		})
		if d, _ := k.deployment(t); d.Spec.Template.Annotations[SecretVersionsAnnotation] != dep.Spec.Template.Annotations[SecretVersionsAnnotation] {
			t.Fatal("a rotated Secret rolled the pods")
		}

		// Label mode: a listed Secret without the label is refused; labelled,
		// applied, with a Role that names no Secret.
		var kcfg corev1.ConfigMap
		setConfig := func(toml string) {
			t.Helper()
			if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "kbs-config-k8s"}, &kcfg); err != nil {
				t.Fatal(err)
			}
			kcfg.Data[KbsConfigKey] = toml
			if err := k.c.Update(ctx, &kcfg); err != nil {
				t.Fatal(err)
			}
		}
		setConfig(kubeConfig(""))
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, `does not match label_selector "`+k8ssecrets.DefaultLabelSelector+`"`)
		mk.Labels = map[string]string{"kbs.confidentialcontainers.org/resource": "true"}
		if err := k.c.Update(ctx, &mk); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a Role for the label selector", func() (bool, string) {
			err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSSecretsRoleName}, &role)
			return err == nil && len(role.Rules) == 1 && len(role.Rules[0].ResourceNames) == 0, fmt.Sprint(err, role.Rules)
		})
		// Another namespace or a kubeconfig: refused.
		setConfig(kubeConfig(`kubernetes_namespace = "elsewhere"`))
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, `grants access to the Secrets of namespace "`+testNS+`" only`)
		setConfig(kubeConfig(`kubeconfig = "/etc/kubeconfig"` + "\n" + `kubernetes_namespace = "` + testNS + `"`))
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, "remove kubeconfig")

		// Back to kvstorage: the grant goes, the init container comes back.
		setConfig(permissiveConfig(t))
		eventually(t, "grant removed", func() (bool, string) {
			e1 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSSecretsRoleName}, &rbacv1.Role{})
			e2 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSSecretsRoleName}, &rbacv1.RoleBinding{})
			e3 := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: KBSServiceAccountName}, &corev1.ServiceAccount{})
			d, _ := k.deployment(t)
			return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3) && len(d.Spec.Template.Spec.InitContainers) == 1 &&
				d.Spec.Template.Spec.ServiceAccountName == "" && !*d.Spec.Template.Spec.AutomountServiceAccountToken, fmt.Sprint(e1, e2, e3)
		})

		if err := k.c.Delete(ctx, kc); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Deployment and KbsConfig deleted", func() (bool, string) {
			_, depExists := k.deployment(t)
			err := k.c.Get(ctx, client.ObjectKeyFromObject(kc), &v1alpha1.KbsConfig{})
			return !depExists && apierrors.IsNotFound(err), "still there"
		})
		_ = k.c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: testNS}})
	})

	t.Run("trusteeconfig", func(t *testing.T) {
		tc := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "trustee", Namespace: testNS},
			Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfilePermissive}}
		k.create(t, tc)
		names := (&TrusteeConfigReconciler{}).names(tc)
		var kc v1alpha1.KbsConfig
		eventually(t, "generated KbsConfig", func() (bool, string) {
			err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: names["kbs"]}, &kc)
			return err == nil, "absent"
		})
		if kc.Spec.KbsEnvVars["RUST_LOG"] != "debug" || kc.Spec.KbsConfigMapName != names["kbs"] || kc.Spec.KbsAuthSecretName != names["auth"] ||
			!slices.Contains(kc.Spec.KbsSecretResources, AttestationStatusSecret) || *kc.Spec.KbsDeploymentSpec.Replicas != 1 {
			t.Errorf("generated KbsConfig: %+v", kc.Spec)
		}
		for _, n := range []string{names["kbs"], names["rp"], names["rv"], names["cpu"], names["gpu"]} {
			var c corev1.ConfigMap
			if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: n}, &c); err != nil || !metav1.IsControlledBy(&c, tc) {
				t.Errorf("ConfigMap %s: %v", n, err)
			}
		}
		var auth corev1.Secret
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: names["auth"]}, &auth); err != nil ||
			!strings.Contains(string(auth.Data["publicKey"]), "BEGIN PUBLIC KEY") || !strings.Contains(string(auth.Data["privateKey"]), "BEGIN PRIVATE KEY") {
			t.Fatalf("auth secret: %v", err)
		}
		// The generated KbsConfig is reconciled into a Deployment.
		eventually(t, "Deployment from the TrusteeConfig", func() (bool, string) {
			d, ok := k.deployment(t)
			return ok && d.Spec.Template.Spec.Containers[0].Command[2] == "/etc/kbs-config/kbs-config.toml", "absent"
		})
		eventually(t, "status.kbsConfigRef", func() (bool, string) {
			var cur v1alpha1.TrusteeConfig
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(tc), &cur); err != nil {
				return false, err.Error()
			}
			return cur.Status.KbsConfigRef != nil && cur.Status.KbsConfigRef.Name == names["kbs"] && cur.Status.StatusDescription != "", cur.Status.StatusDescription
		})

		// Self-healing: a deleted generated ConfigMap comes back; the
		// generated admin key is kept, not regenerated.
		if err := k.c.Delete(ctx, cm(names["rp"], nil)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "resource policy restored", func() (bool, string) {
			var c corev1.ConfigMap
			err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: names["rp"]}, &c)
			return err == nil && c.DeletionTimestamp.IsZero() && c.Data[resourcePolicyFile] != "", "absent"
		})
		// Hand edits to the KbsConfig that upstream keeps are kept; the
		// generated names are reset.
		// (An admin's edit races the reconciler like any other writer:
		// retried on conflict, as kubectl edit would be.)
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(&kc), &kc); err != nil {
				return err
			}
			kc.Spec.KbsEnvVars = map[string]string{"RUST_LOG": "info"}
			kc.Spec.KbsConfigMapName = "hand-edited"
			return k.c.Update(ctx, &kc)
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "names reset, env kept", func() (bool, string) {
			var cur v1alpha1.KbsConfig
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(&kc), &cur); err != nil {
				return false, err.Error()
			}
			return cur.Spec.KbsConfigMapName == names["kbs"] && cur.Spec.KbsEnvVars["RUST_LOG"] == "info", cur.Spec.KbsConfigMapName
		})
		var auth2 corev1.Secret
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: names["auth"]}, &auth2); err != nil || string(auth2.Data["privateKey"]) != string(auth.Data["privateKey"]) {
			t.Error("the admin key pair changed")
		}

		// Restricted without its TLS Secrets: a condition, nothing made.
		rtc := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: testNS},
			Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfileRestricted, HTTPSSpec: v1alpha1.HTTPSSpec{TLSSecretName: "https-tls"},
				AttestationTokenVerificationSpec: v1alpha1.AttestationTokenVerificationSpec{TLSSecretName: "token-tls"}}}
		k.create(t, rtc)
		eventually(t, "Restricted waits for its TLS secret", func() (bool, string) {
			var cur v1alpha1.TrusteeConfig
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(rtc), &cur); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(cur.Status.Conditions, ConditionDegraded)
			return c != nil && c.Reason == ReasonMissingReference && strings.Contains(c.Message, "https-tls"), cur.Status.StatusDescription
		})
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "strict-kbs-config"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
			t.Errorf("objects generated before the TLS Secret exists: %v", err)
		}
	})

	t.Run("ibm se", func(t *testing.T) {
		tc := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "ibm", Namespace: testNS},
			Spec: v1alpha1.TrusteeConfigSpec{IbmSE: &v1alpha1.IbmSETeeConfig{PVName: "ibmse-pv"}}}
		k.create(t, tc)
		eventually(t, "missing PersistentVolume reported", func() (bool, string) {
			var cur v1alpha1.TrusteeConfig
			if err := k.c.Get(ctx, client.ObjectKeyFromObject(tc), &cur); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(cur.Status.Conditions, ConditionDegraded)
			return c != nil && c.Reason == ReasonMissingReference && strings.Contains(c.Message, "PersistentVolume ibmse-pv"), cur.Status.StatusDescription
		})
		k.create(t, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "ibmse-pv"}, Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Mi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/opt/confidential-containers/ibmse"}}}})
		// The PersistentVolume is not watched: the back-off retry finds it.
		var kc v1alpha1.KbsConfig
		eventually(t, "claim and KbsConfig", func() (bool, string) {
			var pvc corev1.PersistentVolumeClaim
			if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "ibm-ibmse-certstore-pvc"}, &pvc); err != nil {
				return false, err.Error()
			}
			if pvc.Spec.VolumeName != "ibmse-pv" || !metav1.IsControlledBy(&pvc, tc) {
				return false, "claim not bound to the PV"
			}
			err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "ibm-kbs-config"}, &kc)
			return err == nil && kc.Spec.IbmSEConfigSpec.CertStorePvc == pvc.Name, fmt.Sprint(err)
		})
		if kc.Spec.KbsAttestationPolicyConfigMapName != "" {
			t.Error("IBM SE: CPU attestation policy referenced")
		}
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: testNS, Name: "ibm-attestation-policy-cpu"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
			t.Errorf("IBM SE: CPU policy ConfigMap generated: %v", err)
		}
	})

	t.Run("our manifests are accepted", func(t *testing.T) {
		root := filepath.Join("..", "..", "config")
		for _, f := range []string{"rbac/service_account.yaml", "rbac/role.yaml", "rbac/role_binding.yaml", "rbac/cluster_role_binding.yaml", "manager/manager.yaml", "samples/trusteeconfig_sample.yaml"} {
			b, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			for i, doc := range strings.Split(string(b), "\n---\n") {
				var u unstructured.Unstructured
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil || len(u.Object) == 0 {
					t.Fatalf("%s document %d: %v", f, i, err)
				}
				// Validated and admitted by the apiserver, not persisted.
				err := k.c.Create(ctx, &u, client.DryRunAll)
				if err != nil && !(u.GetKind() == "Namespace" && apierrors.IsAlreadyExists(err)) {
					t.Errorf("%s %s/%s refused: %v", f, u.GetKind(), u.GetName(), err)
				}
			}
		}
	})

	t.Run("upstream samples apply unchanged", func(t *testing.T) {
		ns := "samples"
		k.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		for _, f := range []string{
			"samples/all-in-one/kbsconfig_sample.yaml", "samples/all-in-one/kbs-config.yaml", "samples/all-in-one/resource-policy.yaml",
			"samples/all-in-one/rvps-reference-values.yaml", "samples/all-in-one/attestation-policy.yaml",
			"samples/trusteeconfig_sample.yaml",
		} {
			b, err := os.ReadFile(filepath.Join("testdata", "upstream", f))
			if err != nil {
				t.Fatal(err)
			}
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(b, &u.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			u.SetNamespace(ns)
			if err := k.c.Create(ctx, &u); err != nil {
				t.Errorf("%s refused: %v", f, err)
			}
		}
		b, err := os.ReadFile("testdata/upstream/samples/microservices/kbsconfig_sample.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			t.Fatal(err)
		}
		u.SetNamespace(ns)
		u.SetName("kbsconfig-microservices")
		if err := k.c.Create(ctx, &u); err != nil {
			t.Errorf("microservices sample refused: %v", err)
		}
		var kc v1alpha1.KbsConfig
		if err := k.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "kbsconfig-sample"}, &kc); err != nil ||
			kc.Spec.KbsConfigMapName != "kbs-config" || kc.Spec.KbsAuthSecretName != "kbs-auth-public-key" {
			t.Errorf("sample read back: %+v, %v", kc.Spec, err)
		}
	})

	t.Run("upstream sample config is reported, not deployed", func(t *testing.T) {
		// In the operator's namespace: upstream's all-in-one sample with
		// its kbs-config, whose [admin] mixes two configuration
		// generations (the KBS refuses it).
		b, err := os.ReadFile("testdata/upstream/samples/all-in-one/kbs-config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var sampleCM corev1.ConfigMap
		if err := yaml.Unmarshal(b, &sampleCM); err != nil {
			t.Fatal(err)
		}
		sampleCM.Name = "sample-kbs-config"
		sampleCM.Namespace = testNS
		k.create(t, &sampleCM, secret("sample-auth", map[string]string{"kbs.pem": "pem"}))
		kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "sample", Namespace: testNS},
			Spec: v1alpha1.KbsConfigSpec{KbsConfigMapName: "sample-kbs-config", KbsAuthSecretName: "sample-auth", KbsDeploymentType: v1alpha1.DeploymentTypeAllInOne}}
		k.create(t, kc)
		k.waitDegraded(t, kc.Name, ReasonInvalidReference, "mixes keys of several configuration generations")
	})
}
