package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeploymentType selects how the KBS and its services are laid out in the
// pod.
// +enum
type DeploymentType string

const (
	// DeploymentTypeAllInOne runs KBS, Attestation Service and RVPS in the
	// one kbs container (the default).
	DeploymentTypeAllInOne DeploymentType = "AllInOneDeployment"
	// DeploymentTypeMicroservices runs the Attestation Service (grpc-as) and
	// the RVPS (rvps) as containers of their own beside the kbs container.
	DeploymentTypeMicroservices DeploymentType = "MicroservicesDeployment"
)

// IbmSEConfigSpec configures IBM Secure Execution.
type IbmSEConfigSpec struct {
	// CertStorePvc names the PersistentVolumeClaim holding the IBM SE
	// certificates and keys, mounted at /run/confidential-containers/ibmse/.
	// +optional
	CertStorePvc string `json:"certStorePvc,omitempty"`
}

// KbsLocalCertCacheEntry mounts one Secret of cached certificates.
type KbsLocalCertCacheEntry struct {
	// SecretName names the Secret whose keys become files.
	SecretName string `json:"secretName"`
	// MountPath is where the files appear in the kbs container; empty means
	// /opt/confidential-containers/attestation-service/kds-store/vcek.
	// +optional
	MountPath string `json:"mountPath"`
}

// KbsLocalCertCacheSpec mounts certificates (for example AMD VCEKs for
// disconnected clusters) into the kbs container.
type KbsLocalCertCacheSpec struct {
	// Secrets lists the Secrets to mount.
	// +optional
	Secrets []KbsLocalCertCacheEntry `json:"secrets,omitempty"`
}

// KbsDeploymentSpec holds the Deployment options.
type KbsDeploymentSpec struct {
	// Replicas is the number of KBS pods; nil means 1. More than one needs
	// kbsSharedStore (no sticky sessions are relied on).
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// TLSConfig selects the TLS versions, cipher suites and groups of the KBS
// HTTPS listener. Profiles: old (TLS 1.0+), intermediate (TLS 1.2+, the
// default), modern (TLS 1.3 only) and custom (the fields below; any left
// out keep the KBS's defaults).
//
// +kubebuilder:validation:XValidation:rule="!has(self.minVersion) || !has(self.maxVersion) || self.minVersion <= self.maxVersion",message="minVersion must not be greater than maxVersion"
type TLSConfig struct {
	// Profile is old, intermediate, modern or custom.
	// +kubebuilder:validation:Enum=old;intermediate;modern;custom
	// +kubebuilder:default=intermediate
	// +optional
	Profile string `json:"profile,omitempty"`
	// MinVersion is the lowest TLS version, "1.0" to "1.3" (custom only).
	// +kubebuilder:validation:Pattern=`^1\.[0-3]$`
	// +optional
	MinVersion string `json:"minVersion,omitempty"`
	// MaxVersion is the highest TLS version, "1.0" to "1.3" (custom only).
	// +kubebuilder:validation:Pattern=`^1\.[0-3]$`
	// +optional
	MaxVersion string `json:"maxVersion,omitempty"`
	// Ciphers lists cipher suites by IANA or OpenSSL name (custom only).
	// +optional
	Ciphers []string `json:"ciphers,omitempty"`
	// Groups lists key exchange groups, e.g. x25519 (custom only).
	// +optional
	Groups []string `json:"groups,omitempty"`
}

// SharedStoreType names the database that replicas share.
// +enum
type SharedStoreType string

const (
	// SharedStoreRedis is a Redis server (storage_type = "Redis").
	SharedStoreRedis SharedStoreType = "Redis"
	// SharedStorePostgres is a PostgreSQL server (storage_type = "Postgres").
	SharedStorePostgres SharedStoreType = "Postgres"
)

// KbsSharedStoreSpec names a database that every KBS replica uses for its
// sessions, resources and policies, so that any replica can answer any
// request of a KBS protocol exchange. (go-trustee; not in upstream.)
type KbsSharedStoreSpec struct {
	// Type is Redis or Postgres.
	// +kubebuilder:validation:Enum=Redis;Postgres
	Type SharedStoreType `json:"type"`
	// SecretName names a Secret in the KbsConfig's namespace whose key
	// "url" is the connection URL (redis://... or postgres://...). It
	// reaches the pods as REDIS_URL or POSTGRES_URL, never a ConfigMap;
	// kbs-config.toml must set storage_backend.storage_type to Type.
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
}

// KbsConfigSpec is the desired state of one Trustee deployment.
type KbsConfigSpec struct {
	// KbsConfigMapName names the ConfigMap holding kbs-config.toml.
	KbsConfigMapName string `json:"kbsConfigMapName,omitempty"`
	// KbsAsConfigMapName names the ConfigMap holding as-config.json
	// (MicroservicesDeployment only).
	// +optional
	KbsAsConfigMapName string `json:"kbsAsConfigMapName,omitempty"`
	// KbsRvpsConfigMapName names the ConfigMap holding rvps-config.json
	// (MicroservicesDeployment only).
	// +optional
	KbsRvpsConfigMapName string `json:"kbsRvpsConfigMapName,omitempty"`
	// KbsRvpsRefValuesConfigMapName names the ConfigMap whose key
	// reference_value holds the RVPS reference values.
	KbsRvpsRefValuesConfigMapName string `json:"kbsRvpsRefValuesConfigMapName,omitempty"`
	// KbsAuthSecretName names the Secret holding the admin public key.
	KbsAuthSecretName string `json:"kbsAuthSecretName,omitempty"`
	// KbsServiceType is the type of kbs-service (default ClusterIP).
	// +optional
	KbsServiceType corev1.ServiceType `json:"kbsServiceType,omitempty"`
	// KbsDeploymentType is AllInOneDeployment (default) or
	// MicroservicesDeployment.
	// +kubebuilder:validation:Enum=AllInOneDeployment;MicroservicesDeployment
	// +optional
	KbsDeploymentType DeploymentType `json:"kbsDeploymentType,omitempty"`
	// KbsHttpsKeySecretName names the Secret whose key privateKey is the
	// HTTPS private key (PEM).
	KbsHttpsKeySecretName string `json:"kbsHttpsKeySecretName,omitempty"`
	// KbsHttpsCertSecretName names the Secret whose key certificate is the
	// HTTPS certificate (PEM).
	KbsHttpsCertSecretName string `json:"kbsHttpsCertSecretName,omitempty"`
	// KbsAttestationKeySecretName names the Secret whose key token.key signs
	// attestation tokens.
	// +optional
	KbsAttestationKeySecretName string `json:"kbsAttestationKeySecretName,omitempty"`
	// KbsAttestationCertSecretName names the Secret whose key token.crt is
	// the attestation token certificate.
	// +optional
	KbsAttestationCertSecretName string `json:"kbsAttestationCertSecretName,omitempty"`
	// KbsSecretResources lists Secrets whose keys become KBS resources
	// default/<secret>/<key>.
	// +optional
	KbsSecretResources []string `json:"kbsSecretResources,omitempty"`
	// KbsAttestationPolicyConfigMapName names the ConfigMap whose key
	// default_cpu.rego is the CPU attestation policy.
	// +optional
	KbsAttestationPolicyConfigMapName string `json:"kbsAttestationPolicyConfigMapName,omitempty"`
	// KbsGpuAttestationPolicyConfigMapName names the ConfigMap whose key
	// default_gpu.rego is the GPU attestation policy.
	// +optional
	KbsGpuAttestationPolicyConfigMapName string `json:"kbsGpuAttestationPolicyConfigMapName,omitempty"`
	// KbsResourcePolicyConfigMapName names the ConfigMap whose key
	// resource-policy.rego is the resource policy.
	// +optional
	KbsResourcePolicyConfigMapName string `json:"kbsResourcePolicyConfigMapName,omitempty"`
	// IbmSEConfigSpec configures IBM Secure Execution.
	// +optional
	IbmSEConfigSpec IbmSEConfigSpec `json:"ibmSEConfigSpec,omitempty"`
	// KbsEnvVars are set in the environment of the Trustee containers
	// (after the cluster proxy settings, which they override).
	// +optional
	KbsEnvVars map[string]string `json:"KbsEnvVars,omitempty"`
	// KbsLocalCertCacheSpec mounts certificate caches.
	KbsLocalCertCacheSpec KbsLocalCertCacheSpec `json:"kbsLocalCertCacheSpec,omitempty"`
	// KbsDeploymentSpec holds the Deployment options.
	KbsDeploymentSpec KbsDeploymentSpec `json:"KbsDeploymentSpec,omitempty"`
	// KbsSharedStore, when set, is the database shared by all replicas
	// (go-trustee).
	// +optional
	KbsSharedStore *KbsSharedStoreSpec `json:"kbsSharedStore,omitempty"`
}

// KbsConfigStatus is the observed state of a KbsConfig.
type KbsConfigStatus struct {
	// IsReady is true when every desired KBS pod is ready.
	IsReady bool `json:"isReady"`
	// Conditions are Ready, Progressing and Degraded (go-trustee), with
	// the reason for a missing or malformed referenced object.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// KbsConfig describes one Trustee deployment.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
type KbsConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   KbsConfigSpec   `json:"spec,omitempty"`
	Status KbsConfigStatus `json:"status,omitempty"`
}

// KbsConfigList is a list of KbsConfigs.
//
// +kubebuilder:object:root=true
type KbsConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KbsConfig `json:"items"`
}
