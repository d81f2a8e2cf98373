package controller

// Names, paths and ports of the objects the operator manages: upstream
// trustee-operator's (internal/controller at dec08ea), so that manifests,
// kbs-config.toml files and probes written for it keep working.
const (
	// DefaultNamespace is where the operator works when POD_NAMESPACE is
	// unset.
	DefaultNamespace = "trustee-operator-system"

	// KbsFinalizer guards the Deployment's deletion.
	KbsFinalizer = "kbsconfig.confidentialcontainers.org/finalizer"
	// DeploymentName and ServiceName are the fixed names of the Trustee
	// Deployment and Service (one KbsConfig per namespace, as upstream).
	DeploymentName = "trustee-deployment"
	ServiceName    = "kbs-service"
	// AppLabel selects the Trustee pods.
	AppLabel = "app"
	AppValue = "kbs"
	// ConfigMapVersionsAnnotation lists "<configmap>:<resourceVersion>" of
	// every mounted ConfigMap; a change rolls the pods.
	ConfigMapVersionsAnnotation = "kbs.confidentialcontainers.org/configmap-versions"
	// SecretVersionsAnnotation does the same for the mounted Secrets whose
	// content the KBS reads only at start (go-trustee).
	SecretVersionsAnnotation = "kbs.confidentialcontainers.org/secret-versions"

	// KBSPort is the KBS listener port; ASPort and RVPSPort are the gRPC
	// ports of the microservices.
	KBSPort  = 8080
	ASPort   = 50004
	RVPSPort = 50003

	storagePath           = "/opt/confidential-containers/storage"
	RepositoryPath        = storagePath + "/repository"
	kbsStoragePath        = storagePath + "/kbs"
	attestationPolicyPath = storagePath + "/attestation_service_policy"
	referenceValuesPath   = storagePath + "/local_json"
	// SecretsMountPath is where the secret-converter init container finds
	// the kbsSecretResources Secrets, one directory per Secret.
	SecretsMountPath   = "/tmp/kbs-secrets"
	ibmSEPath          = "/run/confidential-containers/ibmse/"
	defaultCertCache   = "/opt/confidential-containers/attestation-service/kds-store/vcek"
	etcDir             = "/etc"
	resourcePolicyFile = "resource-policy.rego"
	cpuPolicyFile      = "default_cpu.rego"
	gpuPolicyFile      = "default_gpu.rego"
	referenceValueFile = "reference_value"

	// Keys the KBS reads from the referenced ConfigMaps and Secrets.
	KbsConfigKey    = "kbs-config.toml"
	ASConfigKey     = "as-config.json"
	RVPSConfigKey   = "rvps-config.json"
	HTTPSKeyKey     = "privateKey"
	HTTPSCertKey    = "certificate"
	TokenKeyKey     = "token.key"
	TokenCertKey    = "token.crt"
	SharedStoreKey  = "url"
	kbsCommand      = "/usr/local/bin/kbs"
	asCommand       = "/usr/local/bin/grpc-as"
	rvpsCommand     = "/usr/local/bin/rvps"
	converterBinary = "/secret-converter"
)

// Images names the container images, read from the operator's environment
// as upstream: KBS_IMAGE_NAME, KBS_IMAGE_NAME_MICROSERVICES, AS_IMAGE_NAME,
// RVPS_IMAGE_NAME and OPERATOR_IMAGE_NAME (the secret-converter init
// container, required).
type Images struct {
	KBS              string
	KBSMicroservices string
	AS               string
	RVPS             string
	Operator         string
	// AllowRootImages leaves runAsNonRoot off the Trustee containers, for
	// images that run as root (upstream's published KBS, AS and RVPS
	// images do). Env KBS_ALLOW_ROOT_IMAGES=true; ours run as 65532.
	AllowRootImages bool
}

// ImagesFromEnv reads Images with getenv (os.Getenv in production).
// Unset names fall back to upstream's published images, except the
// operator image, which has no default.
func ImagesFromEnv(getenv func(string) string) Images {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	return Images{
		KBS:              or("KBS_IMAGE_NAME", "ghcr.io/confidential-containers/key-broker-service:latest"),
		KBSMicroservices: or("KBS_IMAGE_NAME_MICROSERVICES", "ghcr.io/confidential-containers/key-broker-service:latest"),
		AS:               or("AS_IMAGE_NAME", "ghcr.io/confidential-containers/attestation-service:latest"),
		RVPS:             or("RVPS_IMAGE_NAME", "ghcr.io/confidential-containers/reference-value-provider-service:latest"),
		Operator:         getenv("OPERATOR_IMAGE_NAME"),
		AllowRootImages:  getenv("KBS_ALLOW_ROOT_IMAGES") == "true",
	}
}
