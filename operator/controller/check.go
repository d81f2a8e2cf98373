package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/kbs"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
	"github.com/go-trustee/go-trustee/resourcepolicy"
	"github.com/go-trustee/go-trustee/storage/backends"
)

// refError is a referenced object that is missing or unusable: the
// reconciler reports it as a condition (Reason, Message) and retries with
// back-off, leaving the running Deployment as it was.
type refError struct {
	Reason  string
	Message string
}

func (e *refError) Error() string { return e.Message }

func refErr(reason, format string, args ...any) error {
	return &refError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Condition reasons.
const (
	ReasonMissingReference   = "MissingReference"
	ReasonInvalidReference   = "InvalidReference"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonNotOwned           = "NotOwned"
	ReasonReconciled         = "Reconciled"
	ReasonDeploymentReady    = "DeploymentReady"
	ReasonDeploymentNotReady = "DeploymentNotReady"
)

// checked is what checking the references produced.
type checked struct {
	configMapVersions [][2]string
	secretVersions    [][2]string
	// kube is set when the KBS serves resources from Kubernetes Secrets
	// (kubernetes.go).
	kube *kubeMode
}

// check reads every object the KbsConfig references and checks what the
// KBS would check at start: the ConfigMaps and Secrets exist and hold
// their keys, kbs-config.toml is a configuration the KBS accepts, the
// policies compile, and more than one replica has a shared store and one
// token-signing key. It never changes anything.
func (r *KbsConfigReconciler) check(ctx context.Context, kc *v1alpha1.KbsConfig) (*checked, error) {
	s := kc.Spec
	ns := kc.Namespace
	var out checked
	cm := func(name, key, what string, required bool) (string, error) {
		if name == "" {
			if required {
				return "", refErr(ReasonInvalidSpec, "%s is required", what)
			}
			return "", nil
		}
		var c corev1.ConfigMap
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
			if apierrors.IsNotFound(err) {
				return "", refErr(ReasonMissingReference, "ConfigMap %s/%s (%s) does not exist", ns, name, what)
			}
			return "", err
		}
		v, ok := c.Data[key]
		if !ok && key != "" {
			return "", refErr(ReasonInvalidReference, "ConfigMap %s/%s (%s) has no key %q", ns, name, what, key)
		}
		out.configMapVersions = append(out.configMapVersions, [2]string{name, c.ResourceVersion})
		return v, nil
	}
	secret := func(name, what string, keys ...string) error {
		if name == "" {
			return nil
		}
		var sec corev1.Secret
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sec); err != nil {
			if apierrors.IsNotFound(err) {
				return refErr(ReasonMissingReference, "Secret %s/%s (%s) does not exist", ns, name, what)
			}
			return err
		}
		for _, k := range keys {
			if len(sec.Data[k]) == 0 {
				return refErr(ReasonInvalidReference, "Secret %s/%s (%s) has no key %q", ns, name, what, k)
			}
		}
		out.secretVersions = append(out.secretVersions, [2]string{name, sec.ResourceVersion})
		return nil
	}

	if r.Images.Operator == "" {
		return nil, refErr(ReasonInvalidSpec, "OPERATOR_IMAGE_NAME is not set in the operator's environment (the secret-converter init container needs it)")
	}
	if (s.KbsHttpsKeySecretName == "") != (s.KbsHttpsCertSecretName == "") {
		return nil, refErr(ReasonInvalidSpec, "kbsHttpsKeySecretName and kbsHttpsCertSecretName must be set together")
	}
	if (s.KbsAttestationKeySecretName == "") != (s.KbsAttestationCertSecretName == "") {
		return nil, refErr(ReasonInvalidSpec, "kbsAttestationKeySecretName and kbsAttestationCertSecretName must be set together")
	}
	if n := replicas(kc); n > 1 {
		if s.KbsSharedStore == nil {
			return nil, refErr(ReasonInvalidSpec, "%d replicas need kbsSharedStore: without a store shared by all replicas, a client's /auth and /attest can reach different pods and fail (no sticky sessions are assumed)", n)
		}
		if !tokenConfigured(kc) {
			return nil, refErr(ReasonInvalidSpec, "%d replicas need kbsAttestationKeySecretName and kbsAttestationCertSecretName: with a per-pod ephemeral signer a token issued by one replica is refused by the others", n)
		}
	}
	micro := deploymentType(kc) == v1alpha1.DeploymentTypeMicroservices

	cfg, err := cm(s.KbsConfigMapName, KbsConfigKey, "kbsConfigMapName", true)
	if err != nil {
		return nil, err
	}
	parsed, _, err := kbs.ParseConfig([]byte(cfg))
	if err == nil {
		err = kbs.CheckConfig(parsed)
	}
	if err != nil {
		return nil, refErr(ReasonInvalidReference, "ConfigMap %s/%s: %s is refused by the KBS: %v", ns, s.KbsConfigMapName, KbsConfigKey, err)
	}
	if p, ok := kubernetesBackend(parsed); ok {
		if out.kube, err = r.checkKubernetes(ctx, kc, p); err != nil {
			return nil, err
		}
	}
	if ss := s.KbsSharedStore; ss != nil {
		// The replicas share what the KBS stores only if its storage is
		// the shared database the spec names.
		if t, _ := backends.NormalizeType(parsed.StorageBackend.StorageType); t != string(ss.Type) {
			return nil, refErr(ReasonInvalidReference, "kbsSharedStore is %s, but %s in ConfigMap %s/%s has storage_backend.storage_type %q: set it to %q (the connection URL comes from Secret %s)",
				ss.Type, KbsConfigKey, ns, s.KbsConfigMapName, parsed.StorageBackend.StorageType, ss.Type, ss.SecretName)
		}
	}
	if _, err := cm(s.KbsRvpsRefValuesConfigMapName, referenceValueFile, "kbsRvpsRefValuesConfigMapName", false); err != nil {
		return nil, err
	}
	for _, p := range []struct{ name, key, what string }{
		{s.KbsAttestationPolicyConfigMapName, cpuPolicyFile, "kbsAttestationPolicyConfigMapName"},
		{s.KbsGpuAttestationPolicyConfigMapName, gpuPolicyFile, "kbsGpuAttestationPolicyConfigMapName"},
	} {
		src, err := cm(p.name, p.key, p.what, false)
		if err != nil {
			return nil, err
		}
		if p.name != "" {
			if err := as.CheckPolicy(ctx, []byte(src)); err != nil {
				return nil, refErr(ReasonInvalidReference, "ConfigMap %s/%s: %s does not compile: %v", ns, p.name, p.key, err)
			}
		}
	}
	src, err := cm(s.KbsResourcePolicyConfigMapName, resourcePolicyFile, "kbsResourcePolicyConfigMapName", false)
	if err != nil {
		return nil, err
	}
	if s.KbsResourcePolicyConfigMapName != "" {
		if err := resourcepolicy.Check(ctx, []byte(src)); err != nil {
			return nil, refErr(ReasonInvalidReference, "ConfigMap %s/%s: %s does not compile: %v", ns, s.KbsResourcePolicyConfigMapName, resourcePolicyFile, err)
		}
	}
	if micro {
		if _, err := cm(s.KbsAsConfigMapName, ASConfigKey, "kbsAsConfigMapName", true); err != nil {
			return nil, err
		}
		if _, err := cm(s.KbsRvpsConfigMapName, RVPSConfigKey, "kbsRvpsConfigMapName", true); err != nil {
			return nil, err
		}
	}

	if s.KbsAuthSecretName == "" {
		return nil, refErr(ReasonInvalidSpec, "kbsAuthSecretName is required")
	}
	if err := secret(s.KbsAuthSecretName, "kbsAuthSecretName"); err != nil {
		return nil, err
	}
	if err := secret(s.KbsHttpsKeySecretName, "kbsHttpsKeySecretName", HTTPSKeyKey); err != nil {
		return nil, err
	}
	if err := secret(s.KbsHttpsCertSecretName, "kbsHttpsCertSecretName", HTTPSCertKey); err != nil {
		return nil, err
	}
	if err := secret(s.KbsAttestationKeySecretName, "kbsAttestationKeySecretName", TokenKeyKey); err != nil {
		return nil, err
	}
	if err := secret(s.KbsAttestationCertSecretName, "kbsAttestationCertSecretName", TokenCertKey); err != nil {
		return nil, err
	}
	for _, e := range s.KbsLocalCertCacheSpec.Secrets {
		if err := secret(e.SecretName, "kbsLocalCertCacheSpec"); err != nil {
			return nil, err
		}
	}
	// The kbsSecretResources Secrets are copied by the init container at
	// pod start; their versions roll the pods so a rotated value is served.
	// The kubernetes backend follows them itself: no roll.
	for _, name := range s.KbsSecretResources {
		n := len(out.secretVersions)
		if err := secret(name, "kbsSecretResources"); err != nil {
			return nil, err
		}
		if out.kube != nil {
			out.secretVersions = out.secretVersions[:n]
		}
	}
	if ss := s.KbsSharedStore; ss != nil {
		if err := secret(ss.SecretName, "kbsSharedStore", SharedStoreKey); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// asRefError returns the refError in err's chain, if any.
func asRefError(err error) (*refError, bool) {
	var re *refError
	ok := errors.As(err, &re)
	return re, ok
}
