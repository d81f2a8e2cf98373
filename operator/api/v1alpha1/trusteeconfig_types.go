package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HTTPSSpec names the TLS Secret of the KBS HTTPS listener.
type HTTPSSpec struct {
	// TLSSecretName names a kubernetes.io/tls Secret (tls.crt, tls.key).
	TLSSecretName string `json:"tlsSecretName,omitempty"`
}

// AttestationTokenVerificationSpec names the TLS Secret whose key signs,
// and whose certificate verifies, attestation tokens.
type AttestationTokenVerificationSpec struct {
	// TLSSecretName names a kubernetes.io/tls Secret (tls.crt, tls.key).
	TLSSecretName string `json:"tlsSecretName,omitempty"`
}

// ProfileType selects the generated configuration.
// +enum
type ProfileType string

const (
	// ProfilePermissive: plain HTTP allowed, header JWKs accepted, a
	// permissive resource policy and debug logging.
	ProfilePermissive ProfileType = "Permissive"
	// ProfileRestricted: HTTPS required, tokens verified against the
	// configured certificate, a restrictive resource policy.
	ProfileRestricted ProfileType = "Restricted"
)

// IbmSETeeConfig enables IBM Secure Execution.
type IbmSETeeConfig struct {
	// PVName names the pre-existing PersistentVolume with the IBM SE
	// certificates and keys; the operator binds a claim to it.
	PVName string `json:"pvName"`
}

// TrusteeConfigSpec is the desired profile of a Trustee.
type TrusteeConfigSpec struct {
	// HTTPSSpec configures HTTPS.
	// +optional
	HTTPSSpec HTTPSSpec `json:"httpsSpec,omitempty"`
	// AttestationTokenVerificationSpec configures token signing and
	// verification.
	// +optional
	AttestationTokenVerificationSpec AttestationTokenVerificationSpec `json:"attestationTokenVerificationSpec,omitempty"`
	// Profile is Permissive (default) or Restricted.
	// +kubebuilder:validation:Enum=Permissive;Restricted
	// +kubebuilder:default=Permissive
	// +optional
	Profile ProfileType `json:"profileType,omitempty"`
	// IbmSE enables IBM Secure Execution; the CPU and GPU attestation
	// policy ConfigMaps are then not generated.
	// +optional
	IbmSE *IbmSETeeConfig `json:"ibmSE,omitempty"`
	// KbsServiceType is the type of kbs-service (default ClusterIP).
	// +optional
	KbsServiceType corev1.ServiceType `json:"kbsServiceType,omitempty"`
	// TLSConfig selects TLS versions and ciphers; nil means intermediate.
	// +optional
	TLSConfig *TLSConfig `json:"tlsConfig,omitempty"`
}

// TrusteeConfigStatus is the observed state of a TrusteeConfig.
type TrusteeConfigStatus struct {
	// IsReady is true when the generated KbsConfig is ready.
	IsReady bool `json:"isReady,omitempty"`
	// KbsConfigRef references the generated KbsConfig.
	// +optional
	KbsConfigRef *corev1.ObjectReference `json:"kbsConfigRef,omitempty"`
	// StatusDescription says, in a sentence, what the operator did last.
	// +optional
	StatusDescription string `json:"statusDescription,omitempty"`
	// Conditions are Ready and Degraded (go-trustee).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrusteeConfig is a Trustee profile from which the operator generates a
// KbsConfig and the objects it references.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
type TrusteeConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrusteeConfigSpec   `json:"spec,omitempty"`
	Status TrusteeConfigStatus `json:"status,omitempty"`
}

// TrusteeConfigList is a list of TrusteeConfigs.
//
// +kubebuilder:object:root=true
type TrusteeConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrusteeConfig `json:"items"`
}
