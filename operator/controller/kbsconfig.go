// Package controller holds the operator's reconcilers: KbsConfig into a
// running Trustee (Deployment trustee-deployment, Service kbs-service), and
// TrusteeConfig into a KbsConfig with the ConfigMaps and Secrets a profile
// needs.
//
// Invariants:
//   - Every referenced object is read and checked (check.go) before
//     anything is written; a missing or malformed one becomes a Degraded
//     condition and an Event, is retried with back-off, and leaves the
//     running Deployment as it was.
//   - The reconcilers modify only objects they own (controller reference
//     to the KbsConfig or TrusteeConfig); an object of the same name owned
//     by someone else is reported (NotOwned), never overwritten or deleted.
//   - The operator works in one namespace (POD_NAMESPACE, as upstream).
package controller

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

// Condition types of KbsConfig and TrusteeConfig status.
const (
	ConditionReady    = "Ready"
	ConditionDegraded = "Degraded"
)

// KbsConfigReconciler reconciles KbsConfig objects.
type KbsConfigReconciler struct {
	client.Client
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Namespace string
	Images    Images
	// ClusterProxy returns the cluster-wide proxy environment (OpenShift's
	// Proxy "cluster"); nil means none.
	ClusterProxy func(context.Context) map[string]string
}

// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=kbsconfigs,verbs=get;list;watch;update;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=kbsconfigs/status,verbs=get;update;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=kbsconfigs/finalizers,verbs=update,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=configmaps;secrets,verbs=get;list;watch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;update;patch;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch,namespace=trustee-operator-system

// Reconcile brings the Trustee of one KbsConfig to its desired state.
func (r *KbsConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	var kc v1alpha1.KbsConfig
	if err := r.Get(ctx, req.NamespacedName, &kc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !kc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &kc)
	}
	if controllerutil.AddFinalizer(&kc, KbsFinalizer) {
		if err := r.Update(ctx, &kc); err != nil {
			return ctrl.Result{}, err
		}
	}

	chk, err := r.check(ctx, &kc)
	if err != nil {
		if re, ok := asRefError(err); ok {
			log.Info("KbsConfig not applied", "reason", re.Reason, "message", re.Message)
			r.event(&kc, corev1.EventTypeWarning, re.Reason, re.Message)
			if serr := r.setStatus(ctx, &kc, false, re.Reason, re.Message); serr != nil {
				return ctrl.Result{}, serr
			}
		}
		// Returning the error retries with the controller's exponential
		// back-off; a watched reference appearing retries at once.
		return ctrl.Result{}, err
	}
	proxy := map[string]string(nil)
	if r.ClusterProxy != nil {
		proxy = r.ClusterProxy(ctx)
	}
	d := &desired{kc: &kc, images: r.Images, proxy: proxy,
		configMapVersions: versions(chk.configMapVersions), secretVersions: versions(chk.secretVersions), kube: chk.kube}

	if err := r.applyKubernetesAccess(ctx, &kc, d); err != nil {
		return r.applyFailed(ctx, &kc, err)
	}
	if err := r.apply(ctx, &kc, d.deployment(kc.Namespace), &appsv1.Deployment{}); err != nil {
		return r.applyFailed(ctx, &kc, err)
	}
	if err := r.apply(ctx, &kc, d.service(kc.Namespace), &corev1.Service{}); err != nil {
		return r.applyFailed(ctx, &kc, err)
	}

	var dep appsv1.Deployment
	if err := r.Get(ctx, types.NamespacedName{Namespace: kc.Namespace, Name: DeploymentName}, &dep); err != nil {
		return ctrl.Result{}, err
	}
	ready := dep.Status.ReadyReplicas >= 1 && dep.Status.ReadyReplicas == dep.Status.Replicas &&
		dep.Status.ObservedGeneration >= dep.Generation
	reason, msg := ReasonDeploymentReady, fmt.Sprintf("%d of %d Trustee pods ready", dep.Status.ReadyReplicas, replicas(&kc))
	if !ready {
		reason = ReasonDeploymentNotReady
	}
	if ready != kc.Status.IsReady {
		if ready {
			r.event(&kc, corev1.EventTypeNormal, "Ready", "Trustee deployment is ready")
		} else if kc.Status.IsReady {
			r.event(&kc, corev1.EventTypeWarning, "NotReady", "Trustee deployment is no longer ready")
		}
	}
	if err := r.setStatus(ctx, &kc, ready, reason, msg); err != nil {
		return ctrl.Result{}, err
	}
	if !ready {
		// Deployment status changes arrive through the Owns watch; the
		// periodic check covers a missed one.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	return ctrl.Result{}, nil
}

func (r *KbsConfigReconciler) applyFailed(ctx context.Context, kc *v1alpha1.KbsConfig, err error) (ctrl.Result, error) {
	if re, ok := asRefError(err); ok {
		r.event(kc, corev1.EventTypeWarning, re.Reason, re.Message)
		if serr := r.setStatus(ctx, kc, false, re.Reason, re.Message); serr != nil {
			return ctrl.Result{}, serr
		}
	}
	return ctrl.Result{}, err
}

// apply creates want or updates the existing object of its name, which
// must be controlled by kc. Only the fields the operator sets are
// replaced: labels and annotations are merged, the spec is taken whole.
func (r *KbsConfigReconciler) apply(ctx context.Context, kc *v1alpha1.KbsConfig, want client.Object, existing client.Object) error {
	key := client.ObjectKeyFromObject(want)
	err := r.Get(ctx, key, existing)
	switch {
	case apierrors.IsNotFound(err):
		if err := controllerutil.SetControllerReference(kc, want, r.Scheme); err != nil {
			return err
		}
		if err := r.Create(ctx, want); err != nil {
			return err
		}
		r.event(kc, corev1.EventTypeNormal, kindOf(want)+"Created", fmt.Sprintf("%s %s created", kindOf(want), key.Name))
		return nil
	case err != nil:
		return err
	}
	if !metav1.IsControlledBy(existing, kc) {
		return refErr(ReasonNotOwned, "%s %s exists and is not controlled by KbsConfig %s; it is left alone", kindOf(want), key, kc.Name)
	}
	before := existing.DeepCopyObject().(client.Object)
	mergeMeta(existing, want)
	switch e := existing.(type) {
	case *appsv1.Deployment:
		e.Spec = want.(*appsv1.Deployment).Spec
	case *corev1.Service:
		w := want.(*corev1.Service).Spec
		// The apiserver allocates the cluster IPs and node ports; keep them.
		w.ClusterIP, w.ClusterIPs = e.Spec.ClusterIP, e.Spec.ClusterIPs
		for i := range w.Ports {
			for _, p := range e.Spec.Ports {
				if p.Name == w.Ports[i].Name && w.Type == e.Spec.Type {
					w.Ports[i].NodePort = p.NodePort
				}
			}
		}
		w.IPFamilies, w.IPFamilyPolicy, w.InternalTrafficPolicy = e.Spec.IPFamilies, e.Spec.IPFamilyPolicy, e.Spec.InternalTrafficPolicy
		w.SessionAffinity = e.Spec.SessionAffinity
		e.Spec = w
	case *rbacv1.Role:
		e.Rules = want.(*rbacv1.Role).Rules
	case *rbacv1.RoleBinding:
		// roleRef cannot change, and ours never does.
		e.Subjects = want.(*rbacv1.RoleBinding).Subjects
	case *corev1.ServiceAccount:
		// Nothing of ours besides the labels.
	}
	if err := r.Update(ctx, existing); err != nil {
		return err
	}
	if existing.GetResourceVersion() != before.GetResourceVersion() {
		r.event(kc, corev1.EventTypeNormal, kindOf(want)+"Updated", fmt.Sprintf("%s %s updated", kindOf(want), key.Name))
	}
	return nil
}

func mergeMeta(dst, src client.Object) {
	l := dst.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	for k, v := range src.GetLabels() {
		l[k] = v
	}
	dst.SetLabels(l)
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *appsv1.Deployment:
		return "Deployment"
	case *corev1.Service:
		return "Service"
	case *corev1.ConfigMap:
		return "ConfigMap"
	case *corev1.Secret:
		return "Secret"
	case *v1alpha1.KbsConfig:
		return "KbsConfig"
	case *corev1.ServiceAccount:
		return "ServiceAccount"
	case *rbacv1.Role:
		return "Role"
	case *rbacv1.RoleBinding:
		return "RoleBinding"
	}
	return fmt.Sprintf("%T", o)
}

// finalize deletes the Deployment the KbsConfig controls (the Service
// goes with the KbsConfig through its owner reference) and releases the
// finalizer.
func (r *KbsConfigReconciler) finalize(ctx context.Context, kc *v1alpha1.KbsConfig) error {
	if !controllerutil.ContainsFinalizer(kc, KbsFinalizer) {
		return nil
	}
	var dep appsv1.Deployment
	err := r.Get(ctx, types.NamespacedName{Namespace: kc.Namespace, Name: DeploymentName}, &dep)
	switch {
	case err == nil && metav1.IsControlledBy(&dep, kc):
		if err := r.Delete(ctx, &dep, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return err
		}
		r.event(kc, corev1.EventTypeNormal, "DeploymentDeleted", "Trustee deployment deleted")
	case err != nil && !apierrors.IsNotFound(err):
		return err
	}
	controllerutil.RemoveFinalizer(kc, KbsFinalizer)
	return r.Update(ctx, kc)
}

// setStatus writes isReady and the Ready and Degraded conditions.
func (r *KbsConfigReconciler) setStatus(ctx context.Context, kc *v1alpha1.KbsConfig, ready bool, reason, msg string) error {
	before := kc.Status.DeepCopy()
	kc.Status.IsReady = ready
	kc.Status.ObservedGeneration = kc.Generation
	degraded := reason != ReasonDeploymentReady && reason != ReasonDeploymentNotReady
	readyStatus := metav1.ConditionFalse
	if ready {
		readyStatus = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&kc.Status.Conditions, metav1.Condition{Type: ConditionReady, Status: readyStatus,
		Reason: reason, Message: msg, ObservedGeneration: kc.Generation})
	if degraded {
		meta.SetStatusCondition(&kc.Status.Conditions, metav1.Condition{Type: ConditionDegraded, Status: metav1.ConditionTrue,
			Reason: reason, Message: msg, ObservedGeneration: kc.Generation})
	} else {
		meta.SetStatusCondition(&kc.Status.Conditions, metav1.Condition{Type: ConditionDegraded, Status: metav1.ConditionFalse,
			Reason: ReasonReconciled, Message: "every referenced object is present and valid", ObservedGeneration: kc.Generation})
	}
	if statusEqual(before, &kc.Status) {
		return nil
	}
	return r.Status().Update(ctx, kc)
}

func statusEqual(a, b *v1alpha1.KbsConfigStatus) bool {
	if a.IsReady != b.IsReady || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

func (r *KbsConfigReconciler) event(kc *v1alpha1.KbsConfig, typ, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(kc, nil, typ, reason, reason, "%s", msg)
	}
}

// references reports whether kc names the ConfigMap or Secret name.
func references(kc *v1alpha1.KbsConfig, name string, secret bool) bool {
	s := kc.Spec
	var names []string
	if secret {
		names = append(names, s.KbsAuthSecretName, s.KbsHttpsKeySecretName, s.KbsHttpsCertSecretName,
			s.KbsAttestationKeySecretName, s.KbsAttestationCertSecretName)
		names = append(names, s.KbsSecretResources...)
		for _, e := range s.KbsLocalCertCacheSpec.Secrets {
			names = append(names, e.SecretName)
		}
		if s.KbsSharedStore != nil {
			names = append(names, s.KbsSharedStore.SecretName)
		}
	} else {
		names = append(names, s.KbsConfigMapName, s.KbsAsConfigMapName, s.KbsRvpsConfigMapName, s.KbsRvpsRefValuesConfigMapName,
			s.KbsAttestationPolicyConfigMapName, s.KbsGpuAttestationPolicyConfigMapName, s.KbsResourcePolicyConfigMapName)
	}
	for _, n := range names {
		if n != "" && n == name {
			return true
		}
	}
	return false
}

// SetupWithManager registers the reconciler: it watches KbsConfigs, the
// Deployments and Services they own, and the ConfigMaps and Secrets they
// reference.
func (r *KbsConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	mapRefs := func(secret bool) handler.MapFunc {
		return func(ctx context.Context, o client.Object) []reconcile.Request {
			var list v1alpha1.KbsConfigList
			if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
				return nil
			}
			var reqs []reconcile.Request
			for i := range list.Items {
				if references(&list.Items[i], o.GetName(), secret) {
					reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
				}
			}
			return reqs
		}
	}
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == r.Namespace })
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.KbsConfig{}, builder.WithPredicates(inNamespace)).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(mapRefs(false)), builder.WithPredicates(inNamespace)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(mapRefs(true)), builder.WithPredicates(inNamespace)).
		Complete(r)
}

// NewScheme returns a scheme with the Kubernetes built-in kinds and the
// operator's: what the manager, its tests and the e2e suite all use.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Setup registers both reconcilers with mgr for namespace ns.
func Setup(mgr ctrl.Manager, ns string, images Images) error {
	kr := &KbsConfigReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("kbsconfig-controller"), Namespace: ns, Images: images}
	if err := kr.SetupWithManager(mgr); err != nil {
		return err
	}
	tr := &TrusteeConfigReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("trusteeconfig-controller"), Namespace: ns, APIReader: mgr.GetAPIReader()}
	return tr.SetupWithManager(mgr)
}

// Leader election (manager --leader-elect) uses a Lease in the operator's
// namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete,namespace=trustee-operator-system
