package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-trustee/go-trustee/kbs"
	"github.com/go-trustee/go-trustee/kbs/k8ssecrets"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

// The kubernetes resource backend (go-trustee; package kbs/k8ssecrets).
// When kbs-config.toml serves resources from storage_backend_type =
// "kubernetes", the KBS reads the Secrets through the API and follows
// them with a watch, instead of the secret-converter init container
// copying kbsSecretResources once at pod start. The operator then:
//   - creates the ServiceAccount KBSServiceAccountName, a Role allowing
//     list and watch on secrets in its namespace (only the secret_names,
//     when the configuration names them) and a RoleBinding, all owned by
//     the KbsConfig, and runs the pods under that ServiceAccount;
//   - leaves out the init container and the Secret volumes, and does not
//     roll the pods when a kbsSecretResources Secret changes: a rotated
//     Secret is served within seconds by the running pods;
//   - refuses (Degraded, InvalidReference) a configuration the Role could
//     not serve: another kubernetes_namespace, a kubeconfig, or a
//     kbsSecretResources Secret that secret_names or label_selector leaves
//     out, which the KBS would never serve.
//
// Outside that mode the pods get no service account token at all (the KBS
// does not talk to the apiserver), and the three objects are deleted if
// the KbsConfig owns them.
const (
	KBSServiceAccountName = "trustee-kbs"
	KBSSecretsRoleName    = "trustee-kbs-secrets"
)

// kubeMode is the kubernetes resource backend's part of kbs-config.toml.
type kubeMode struct {
	// names are secret_names (nil: label_selector mode).
	names    []string
	selector labels.Selector
}

// kubernetesBackend returns the kubernetes resource plugin entry of cfg,
// if any.
func kubernetesBackend(cfg *kbs.Config) (kbs.PluginConfig, bool) {
	for _, p := range cfg.Plugins {
		if (p.Name == "resource" || p.Name == "") && strings.EqualFold(p.StorageBackendType, "kubernetes") {
			return p, true
		}
	}
	return kbs.PluginConfig{}, false
}

// checkKubernetes checks the kubernetes backend entry against what the
// operator grants, and every kbsSecretResources Secret against what the
// entry serves.
func (r *KbsConfigReconciler) checkKubernetes(ctx context.Context, kc *v1alpha1.KbsConfig, p kbs.PluginConfig) (*kubeMode, error) {
	ns := kc.Namespace
	where := fmt.Sprintf("ConfigMap %s/%s: %s", ns, kc.Spec.KbsConfigMapName, KbsConfigKey)
	if p.Kubeconfig != "" {
		return nil, refErr(ReasonInvalidReference, "%s: the kubernetes resource backend sets kubeconfig; under the operator the KBS uses the service account %s the operator grants: remove kubeconfig",
			where, KBSServiceAccountName)
	}
	if p.KubernetesNamespace != "" && p.KubernetesNamespace != ns {
		return nil, refErr(ReasonInvalidReference, "%s: kubernetes_namespace is %q, but the operator grants access to the Secrets of namespace %q only: remove kubernetes_namespace or set it to %q",
			where, p.KubernetesNamespace, ns, ns)
	}
	m := &kubeMode{names: p.SecretNames}
	if len(p.SecretNames) == 0 {
		sel := p.LabelSelector
		if sel == "" {
			sel = k8ssecrets.DefaultLabelSelector
		}
		var err error
		if m.selector, err = labels.Parse(sel); err != nil {
			// CheckConfig refused it already; kept for safety.
			return nil, refErr(ReasonInvalidReference, "%s: label_selector: %v", where, err)
		}
	}
	for _, name := range kc.Spec.KbsSecretResources {
		if m.names != nil {
			if !slices.Contains(m.names, name) {
				return nil, refErr(ReasonInvalidReference, "kbsSecretResources lists Secret %s, which secret_names in %s leaves out: the KBS would not serve it; add it to secret_names",
					name, where)
			}
			continue
		}
		var s corev1.Secret
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, refErr(ReasonMissingReference, "Secret %s/%s (kbsSecretResources) does not exist", ns, name)
			}
			return nil, err
		}
		if !m.selector.Matches(labels.Set(s.Labels)) {
			return nil, refErr(ReasonInvalidReference, "kbsSecretResources lists Secret %s, which does not match label_selector %q of %s: the KBS would not serve it; label the Secret or name it in secret_names",
				name, m.selector.String(), where)
		}
	}
	return m, nil
}

// serviceAccount, role and roleBinding are the KBS's identity in the
// kubernetes backend mode and its grant: list and watch on secrets, in the
// KbsConfig's namespace only.
func (d *desired) serviceAccount(ns string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: KBSServiceAccountName, Namespace: ns, Labels: managedLabels(d.kc.Name, "kbs")}}
}

func (d *desired) role(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: KBSSecretsRoleName, Namespace: ns, Labels: managedLabels(d.kc.Name, "kbs")},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"},
			ResourceNames: slices.Clone(d.kube.names)}},
	}
}

func (d *desired) roleBinding(ns string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: KBSSecretsRoleName, Namespace: ns, Labels: managedLabels(d.kc.Name, "kbs")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: KBSSecretsRoleName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: KBSServiceAccountName, Namespace: ns}},
	}
}

// applyKubernetesAccess creates or updates the ServiceAccount, Role and
// RoleBinding in the kubernetes backend mode, and deletes the ones the
// KbsConfig owns otherwise (a grant no pod uses is not left behind).
func (r *KbsConfigReconciler) applyKubernetesAccess(ctx context.Context, kc *v1alpha1.KbsConfig, d *desired) error {
	ns := kc.Namespace
	if d.kube != nil {
		if err := r.apply(ctx, kc, d.serviceAccount(ns), &corev1.ServiceAccount{}); err != nil {
			return err
		}
		if err := r.apply(ctx, kc, d.role(ns), &rbacv1.Role{}); err != nil {
			return err
		}
		return r.apply(ctx, kc, d.roleBinding(ns), &rbacv1.RoleBinding{})
	}
	for _, o := range []client.Object{&rbacv1.RoleBinding{}, &rbacv1.Role{}, &corev1.ServiceAccount{}} {
		name := KBSSecretsRoleName
		if _, ok := o.(*corev1.ServiceAccount); ok {
			name = KBSServiceAccountName
		}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, o); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if !metav1.IsControlledBy(o, kc) {
			continue
		}
		if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return err
		}
		r.event(kc, corev1.EventTypeNormal, kindOf(o)+"Deleted", fmt.Sprintf("%s %s deleted: kbs-config.toml no longer uses the kubernetes resource backend", kindOf(o), name))
	}
	return nil
}
