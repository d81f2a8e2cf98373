package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
	"github.com/go-trustee/go-trustee/resourcepolicy"
)

// AttestationStatusSecret is the fixed-name Secret every TrusteeConfig
// creates (resource default/attestation-status/status = "success"), as
// upstream.
const AttestationStatusSecret = "attestation-status"

// TrusteeConfigReconciler derives, from a TrusteeConfig named N, the
// KbsConfig N-kbs-config and the objects it references (operator.md,
// "TrusteeConfig controller"). Generated objects are owned by the
// TrusteeConfig and come back when deleted. In the generated KbsConfig,
// the fields upstream lets an admin edit by hand (replicas, KbsEnvVars,
// kbsSecretResources, the certificate cache, IBM SE, and our shared store)
// are kept; the generated names are reset.
type TrusteeConfigReconciler struct {
	client.Client
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Namespace string
	// Rand is the entropy of generated keys (crypto/rand when nil).
	Rand interface{ Read([]byte) (int, error) }
	// APIReader reads cluster-scoped objects (the IBM SE PersistentVolume)
	// uncached, so the operator needs only "get" on them; nil uses Client.
	APIReader client.Reader
}

// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=trusteeconfigs,verbs=get;list;watch;update;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=trusteeconfigs/status,verbs=get;update;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups=confidentialcontainers.org,resources=kbsconfigs,verbs=create;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=configmaps;secrets,verbs=create;update;patch;delete,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;update;patch,namespace=trustee-operator-system
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get

// Reconcile generates the objects of one TrusteeConfig.
func (r *TrusteeConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var tc v1alpha1.TrusteeConfig
	if err := r.Get(ctx, req.NamespacedName, &tc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !tc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owned objects go with it (garbage collection)
	}
	kc, err := r.generate(ctx, &tc)
	if err != nil {
		reason, msg := ReasonInvalidSpec, err.Error()
		if re, ok := asRefError(err); ok {
			reason, msg = re.Reason, re.Message
		}
		r.event(&tc, corev1.EventTypeWarning, reason, msg)
		if serr := r.setStatus(ctx, &tc, nil, false, reason, msg); serr != nil {
			return ctrl.Result{}, serr
		}
		return ctrl.Result{}, err
	}
	var cur v1alpha1.KbsConfig
	if err := r.Get(ctx, client.ObjectKeyFromObject(kc), &cur); err != nil {
		return ctrl.Result{}, err
	}
	desc := "KbsConfig " + kc.Name + " generated; waiting for the Trustee deployment"
	if cur.Status.IsReady {
		desc = "KbsConfig " + kc.Name + " generated; Trustee is ready"
	}
	return ctrl.Result{}, r.setStatus(ctx, &tc, &cur, cur.Status.IsReady, ReasonReconciled, desc)
}

func (r *TrusteeConfigReconciler) names(tc *v1alpha1.TrusteeConfig) map[string]string {
	n := tc.Name
	return map[string]string{
		"kbs": n + "-kbs-config", "auth": n + "-auth-secret", "rp": n + "-resource-policy", "rv": n + "-rvps-reference-values",
		"cpu": n + "-attestation-policy-cpu", "gpu": n + "-attestation-policy-gpu",
		"hk": n + "-https-key-secret", "hc": n + "-https-cert-secret", "ak": n + "-attestation-key-secret", "ac": n + "-attestation-cert-secret",
	}
}

// generate creates or repairs every generated object and returns the
// KbsConfig.
func (r *TrusteeConfigReconciler) generate(ctx context.Context, tc *v1alpha1.TrusteeConfig) (*v1alpha1.KbsConfig, error) {
	ns := tc.Namespace
	names := r.names(tc)
	restricted := tc.Spec.Profile == v1alpha1.ProfileRestricted
	if restricted && tc.Spec.HTTPSSpec.TLSSecretName == "" {
		return nil, refErr(ReasonInvalidSpec, "profile Restricted needs httpsSpec.tlsSecretName")
	}
	if restricted && tc.Spec.AttestationTokenVerificationSpec.TLSSecretName == "" {
		return nil, refErr(ReasonInvalidSpec, "profile Restricted needs attestationTokenVerificationSpec.tlsSecretName")
	}
	// Read the TLS Secrets first: nothing is written for a TrusteeConfig
	// whose inputs are missing.
	var https, token *corev1.Secret
	var err error
	if n := tc.Spec.HTTPSSpec.TLSSecretName; n != "" {
		if https, err = r.tlsSecret(ctx, ns, n, "httpsSpec.tlsSecretName"); err != nil {
			return nil, err
		}
	}
	if n := tc.Spec.AttestationTokenVerificationSpec.TLSSecretName; n != "" {
		if token, err = r.tlsSecret(ctx, ns, n, "attestationTokenVerificationSpec.tlsSecretName"); err != nil {
			return nil, err
		}
	}
	cfg, err := renderKbsConfig(tc)
	if err != nil {
		return nil, refErr(ReasonInvalidSpec, "%v", err)
	}
	pvc := ""
	if tc.Spec.IbmSE != nil {
		if pvc, err = r.ensureIBMSEClaim(ctx, tc); err != nil {
			return nil, err
		}
	}

	// kbs-config.toml: created from the template; on update only the TLS
	// settings are merged in, so hand edits to the rest survive.
	if err := r.ensureConfigMap(ctx, tc, names["kbs"], func(cm *corev1.ConfigMap, created bool) {
		if created || cm.Data[KbsConfigKey] == "" {
			cm.Data[KbsConfigKey] = cfg
			return
		}
		cm.Data[KbsConfigKey] = mergeTLS(cm.Data[KbsConfigKey], cfg)
	}); err != nil {
		return nil, err
	}
	policy := resourcepolicy.AllowAllPolicy()
	if restricted {
		policy = resourcepolicy.AffirmingPolicy()
	}
	if err := r.ensureConfigMap(ctx, tc, names["rp"], initKey(resourcePolicyFile, string(policy))); err != nil {
		return nil, err
	}
	if err := r.ensureConfigMap(ctx, tc, names["rv"], initKey(referenceValueFile, "{}")); err != nil {
		return nil, err
	}
	if tc.Spec.IbmSE == nil {
		p := as.DefaultPolicies()
		if err := r.ensureConfigMap(ctx, tc, names["cpu"], initKey(cpuPolicyFile, string(p["default_cpu"]))); err != nil {
			return nil, err
		}
		if err := r.ensureConfigMap(ctx, tc, names["gpu"], initKey(gpuPolicyFile, string(p["default_gpu"]))); err != nil {
			return nil, err
		}
	}
	if err := r.ensureSecret(ctx, tc, names["auth"], func(s *corev1.Secret) error {
		if len(s.Data["publicKey"]) > 0 && len(s.Data["privateKey"]) > 0 {
			return nil // generated once; never rotated behind the admin's back
		}
		pub, priv, err := r.adminKeyPair()
		if err != nil {
			return err
		}
		s.Data["publicKey"], s.Data["privateKey"] = pub, priv
		return nil
	}); err != nil {
		return nil, err
	}
	// attestation-status has a fixed name, so several TrusteeConfigs (or an
	// admin, as upstream's samples do) may provide it: one owned by someone
	// else is used as it is, never taken over.
	if err := r.ensureSecret(ctx, tc, AttestationStatusSecret, func(s *corev1.Secret) error {
		s.Data["status"] = []byte("success")
		return nil
	}); err != nil {
		if re, ok := asRefError(err); !ok || re.Reason != ReasonNotOwned {
			return nil, err
		}
	}
	copyKey := func(src *corev1.Secret, from, to string) func(*corev1.Secret) error {
		return func(s *corev1.Secret) error {
			s.Data = map[string][]byte{to: src.Data[from]}
			return nil
		}
	}
	if https != nil {
		if err := r.ensureSecret(ctx, tc, names["hk"], copyKey(https, corev1.TLSPrivateKeyKey, HTTPSKeyKey)); err != nil {
			return nil, err
		}
		if err := r.ensureSecret(ctx, tc, names["hc"], copyKey(https, corev1.TLSCertKey, HTTPSCertKey)); err != nil {
			return nil, err
		}
	}
	if token != nil {
		if err := r.ensureSecret(ctx, tc, names["ak"], copyKey(token, corev1.TLSPrivateKeyKey, TokenKeyKey)); err != nil {
			return nil, err
		}
		if err := r.ensureSecret(ctx, tc, names["ac"], copyKey(token, corev1.TLSCertKey, TokenCertKey)); err != nil {
			return nil, err
		}
	}

	kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: names["kbs"], Namespace: ns}}
	_, err = r.createOrUpdateOwned(ctx, tc, kc, func(created bool) error {
		s := &kc.Spec
		s.KbsConfigMapName = names["kbs"]
		s.KbsAuthSecretName = names["auth"]
		s.KbsDeploymentType = v1alpha1.DeploymentTypeAllInOne
		s.KbsResourcePolicyConfigMapName = names["rp"]
		s.KbsRvpsRefValuesConfigMapName = names["rv"]
		s.KbsServiceType = tc.Spec.KbsServiceType
		s.KbsAttestationPolicyConfigMapName, s.KbsGpuAttestationPolicyConfigMapName = "", ""
		if tc.Spec.IbmSE == nil {
			s.KbsAttestationPolicyConfigMapName = names["cpu"]
			s.KbsGpuAttestationPolicyConfigMapName = names["gpu"]
		}
		s.KbsHttpsKeySecretName, s.KbsHttpsCertSecretName = "", ""
		if https != nil {
			s.KbsHttpsKeySecretName, s.KbsHttpsCertSecretName = names["hk"], names["hc"]
		}
		s.KbsAttestationKeySecretName, s.KbsAttestationCertSecretName = "", ""
		if token != nil {
			s.KbsAttestationKeySecretName, s.KbsAttestationCertSecretName = names["ak"], names["ac"]
		}
		if pvc != "" {
			s.IbmSEConfigSpec.CertStorePvc = pvc
		}
		if !slices.Contains(s.KbsSecretResources, AttestationStatusSecret) {
			s.KbsSecretResources = append(s.KbsSecretResources, AttestationStatusSecret)
		}
		if created {
			one := int32(1)
			s.KbsDeploymentSpec.Replicas = &one
			if tc.Spec.Profile != v1alpha1.ProfileRestricted {
				s.KbsEnvVars = map[string]string{"RUST_LOG": "debug"}
			}
		}
		return nil
	})
	return kc, err
}

// ensureIBMSEClaim creates N-ibmse-certstore-pvc, bound to the
// administrator's PersistentVolume ibmSE.pvName (which must exist), and
// returns its name. An existing claim bound elsewhere is reported.
func (r *TrusteeConfigReconciler) ensureIBMSEClaim(ctx context.Context, tc *v1alpha1.TrusteeConfig) (string, error) {
	pvName := tc.Spec.IbmSE.PVName
	if pvName == "" {
		return "", refErr(ReasonInvalidSpec, "ibmSE.pvName must name the PersistentVolume with the IBM SE certificates and keys")
	}
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	if err := reader.Get(ctx, client.ObjectKey{Name: pvName}, &corev1.PersistentVolume{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "", refErr(ReasonMissingReference, "PersistentVolume %s (ibmSE.pvName) does not exist; the administrator creates it before the TrusteeConfig", pvName)
		}
		return "", err
	}
	name := tc.Name + "-ibmse-certstore-pvc"
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.Namespace}}
	_, err := r.createOrUpdateOwned(ctx, tc, claim, func(created bool) error {
		if !created {
			if claim.Spec.VolumeName != pvName {
				return refErr(ReasonInvalidReference, "PersistentVolumeClaim %s is bound to %q, not ibmSE.pvName %q", name, claim.Spec.VolumeName, pvName)
			}
			return nil // a claim's spec is immutable once bound
		}
		empty := ""
		claim.Spec = corev1.PersistentVolumeClaimSpec{
			StorageClassName: &empty,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Mi")}},
			VolumeName:       pvName,
		}
		return nil
	})
	return name, err
}

func (r *TrusteeConfigReconciler) tlsSecret(ctx context.Context, ns, name, what string) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, refErr(ReasonMissingReference, "Secret %s/%s (%s) does not exist", ns, name, what)
		}
		return nil, err
	}
	if len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return nil, refErr(ReasonInvalidReference, "Secret %s/%s (%s) has no %s and %s", ns, name, what, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return &s, nil
}

// adminKeyPair generates the admin Ed25519 key pair as PEM (PKIX public
// key, PKCS #8 private key).
func (r *TrusteeConfigReconciler) adminKeyPair() (pub, priv []byte, err error) {
	rnd := r.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	pk, sk, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, nil, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), nil
}

func initKey(key, value string) func(*corev1.ConfigMap, bool) {
	return func(cm *corev1.ConfigMap, created bool) {
		if _, ok := cm.Data[key]; !ok {
			cm.Data[key] = value // an admin's edit is kept
		}
	}
}

// ensureConfigMap creates the ConfigMap or lets mutate update it; a
// ConfigMap of that name that the TrusteeConfig does not own is reported.
func (r *TrusteeConfigReconciler) ensureConfigMap(ctx context.Context, tc *v1alpha1.TrusteeConfig, name string, mutate func(*corev1.ConfigMap, bool)) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.Namespace}}
	_, err := r.createOrUpdateOwned(ctx, tc, cm, func(created bool) error {
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		mutate(cm, created)
		return nil
	})
	return err
}

func (r *TrusteeConfigReconciler) ensureSecret(ctx context.Context, tc *v1alpha1.TrusteeConfig, name string, mutate func(*corev1.Secret) error) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.Namespace}, Type: corev1.SecretTypeOpaque}
	_, err := r.createOrUpdateOwned(ctx, tc, s, func(bool) error {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		return mutate(s)
	})
	return err
}

// createOrUpdateOwned is controllerutil.CreateOrUpdate restricted to
// objects the TrusteeConfig controls: an existing object of the name owned
// by anyone else is left alone and reported.
func (r *TrusteeConfigReconciler) createOrUpdateOwned(ctx context.Context, tc *v1alpha1.TrusteeConfig, obj client.Object, mutate func(created bool) error) (controllerutil.OperationResult, error) {
	key := client.ObjectKeyFromObject(obj)
	if err := r.Get(ctx, key, obj); err != nil {
		if !apierrors.IsNotFound(err) {
			return controllerutil.OperationResultNone, err
		}
		if err := mutate(true); err != nil {
			return controllerutil.OperationResultNone, err
		}
		obj.SetLabels(mergeLabels(obj.GetLabels(), managedLabels(tc.Name, "trustee")))
		if err := controllerutil.SetControllerReference(tc, obj, r.Scheme); err != nil {
			return controllerutil.OperationResultNone, err
		}
		if err := r.Create(ctx, obj); err != nil {
			return controllerutil.OperationResultNone, err
		}
		r.event(tc, corev1.EventTypeNormal, "Created", fmt.Sprintf("%s %s created", kindOf(obj), key.Name))
		return controllerutil.OperationResultCreated, nil
	}
	if !metav1.IsControlledBy(obj, tc) {
		return controllerutil.OperationResultNone, refErr(ReasonNotOwned, "%s %s exists and is not controlled by TrusteeConfig %s; it is left alone", kindOf(obj), key, tc.Name)
	}
	before := obj.DeepCopyObject()
	if err := mutate(false); err != nil {
		return controllerutil.OperationResultNone, err
	}
	if equalObjects(before, obj) {
		return controllerutil.OperationResultNone, nil
	}
	if err := r.Update(ctx, obj); err != nil {
		return controllerutil.OperationResultNone, err
	}
	return controllerutil.OperationResultUpdated, nil
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func (r *TrusteeConfigReconciler) setStatus(ctx context.Context, tc *v1alpha1.TrusteeConfig, kc *v1alpha1.KbsConfig, ready bool, reason, msg string) error {
	before := tc.Status.DeepCopy()
	tc.Status.IsReady = ready
	tc.Status.StatusDescription = msg
	if kc != nil {
		tc.Status.KbsConfigRef = &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "KbsConfig",
			Namespace: kc.Namespace, Name: kc.Name, UID: kc.UID}
	}
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&tc.Status.Conditions, metav1.Condition{Type: ConditionReady, Status: st, Reason: reason, Message: msg, ObservedGeneration: tc.Generation})
	deg := metav1.ConditionFalse
	if reason != ReasonReconciled {
		deg = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&tc.Status.Conditions, metav1.Condition{Type: ConditionDegraded, Status: deg, Reason: reason, Message: msg, ObservedGeneration: tc.Generation})
	if equalObjects(before, &tc.Status) {
		return nil
	}
	return r.Status().Update(ctx, tc)
}

func (r *TrusteeConfigReconciler) event(tc *v1alpha1.TrusteeConfig, typ, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tc, nil, typ, reason, reason, "%s", msg)
	}
}

// SetupWithManager registers the reconciler: TrusteeConfigs, everything
// they own (so a deleted or edited generated object is repaired), and the
// TLS Secrets they name.
func (r *TrusteeConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == r.Namespace })
	tlsRefs := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list v1alpha1.TrusteeConfigList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, tc := range list.Items {
			if tc.Spec.HTTPSSpec.TLSSecretName == o.GetName() || tc.Spec.AttestationTokenVerificationSpec.TLSSecretName == o.GetName() {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&tc)})
			}
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.TrusteeConfig{}, builder.WithPredicates(inNamespace)).
		Owns(&v1alpha1.KbsConfig{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Secret{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Watches(&corev1.Secret{}, tlsRefs, builder.WithPredicates(inNamespace)).
		Complete(r)
}
