// Package v1alpha1 holds the confidentialcontainers.org/v1alpha1 API of the
// operator: KbsConfig (how one Trustee is deployed) and TrusteeConfig (a
// profile from which the operator derives a KbsConfig and everything it
// references).
//
// The JSON names, enums, defaults and validation rules are those of
// upstream trustee-operator (api/v1alpha1 at dec08ea), so its manifests and
// samples apply unchanged. Two capital-K names are upstream's spelling and
// must stay: KbsEnvVars and KbsDeploymentSpec. What we add is optional and
// ignored by upstream: status conditions, and the shared store that lets a
// KbsConfig run more than one replica without sticky sessions.
//
// +kubebuilder:object:generate=true
// +groupName=confidentialcontainers.org
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of the operator's resources.
var GroupVersion = schema.GroupVersion{Group: "confidentialcontainers.org", Version: "v1alpha1"}

// AddToScheme registers the operator's kinds in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &KbsConfig{}, &KbsConfigList{}, &TrusteeConfig{}, &TrusteeConfigList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
