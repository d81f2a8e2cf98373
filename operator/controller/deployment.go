package controller

import (
	"path"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

// desired holds what the Trustee Deployment is built from: the KbsConfig
// and what the reconciler read and checked before building.
type desired struct {
	kc     *v1alpha1.KbsConfig
	images Images
	// proxy is the cluster proxy environment (HTTP_PROXY, ...), if any.
	proxy map[string]string
	// configMapVersions and secretVersions are the values of the pod
	// annotations that roll the pods when a mounted object changes.
	configMapVersions string
	secretVersions    string
	// kube is set in the kubernetes resource backend mode (kubernetes.go).
	kube *kubeMode
}

// deploymentType is the KbsConfig's type; empty means AllInOneDeployment.
// (Upstream builds the microservice containers for an empty type but
// mounts no configuration into them, a pod that cannot start; the CRD's
// documentation says AllInOneDeployment is the default, and so it is here.)
func deploymentType(kc *v1alpha1.KbsConfig) v1alpha1.DeploymentType {
	if kc.Spec.KbsDeploymentType == "" {
		return v1alpha1.DeploymentTypeAllInOne
	}
	return kc.Spec.KbsDeploymentType
}

func httpsConfigured(kc *v1alpha1.KbsConfig) bool {
	return kc.Spec.KbsHttpsKeySecretName != "" && kc.Spec.KbsHttpsCertSecretName != ""
}

func tokenConfigured(kc *v1alpha1.KbsConfig) bool {
	return kc.Spec.KbsAttestationKeySecretName != "" && kc.Spec.KbsAttestationCertSecretName != ""
}

func replicas(kc *v1alpha1.KbsConfig) int32 {
	if r := kc.Spec.KbsDeploymentSpec.Replicas; r != nil {
		return *r
	}
	return 1
}

// volumeSet collects the pod's volumes and each container's mounts.
type volumeSet struct {
	volumes                      []corev1.Volume
	kbs, as, rvps, converterOnly []corev1.VolumeMount
}

func (v *volumeSet) add(vol corev1.Volume, mounts *[]corev1.VolumeMount, mountPath, subPath string) {
	v.volumes = append(v.volumes, vol)
	*mounts = append(*mounts, corev1.VolumeMount{Name: vol.Name, MountPath: mountPath, SubPath: subPath})
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}
}

func configMapVolume(name, cm string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}}
}

func secretVolume(name, secret string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}
}

// volumes lays out every volume at upstream's mount path (operator.md,
// "Mounts"). In MicroservicesDeployment the attestation policies go to the
// as container and the reference values to the rvps container.
func (d *desired) volumes() volumeSet {
	s := d.kc.Spec
	micro := deploymentType(d.kc) == v1alpha1.DeploymentTypeMicroservices
	var v volumeSet
	asMounts, rvpsMounts := &v.kbs, &v.kbs
	if micro {
		asMounts, rvpsMounts = &v.as, &v.rvps
	}
	v.add(configMapVolume("kbs-config", s.KbsConfigMapName), &v.kbs, path.Join(etcDir, "kbs-config"), "")
	v.add(emptyDir("base-storage-dir"), &v.kbs, storagePath, "")
	v.add(emptyDir("attestation-policy-dir"), asMounts, attestationPolicyPath, "")
	if s.KbsAttestationPolicyConfigMapName != "" {
		v.add(configMapVolume("attestation-policy", s.KbsAttestationPolicyConfigMapName), asMounts, path.Join(attestationPolicyPath, cpuPolicyFile), cpuPolicyFile)
	}
	if s.KbsGpuAttestationPolicyConfigMapName != "" {
		v.add(configMapVolume("attestation-policy-gpu", s.KbsGpuAttestationPolicyConfigMapName), asMounts, path.Join(attestationPolicyPath, gpuPolicyFile), gpuPolicyFile)
	}
	v.add(emptyDir("resource-policy-dir"), &v.kbs, kbsStoragePath, "")
	if s.KbsResourcePolicyConfigMapName != "" {
		v.add(configMapVolume("resource-policy", s.KbsResourcePolicyConfigMapName), &v.kbs, path.Join(kbsStoragePath, resourcePolicyFile), resourcePolicyFile)
	}
	if pvc := s.IbmSEConfigSpec.CertStorePvc; pvc != "" {
		v.add(corev1.Volume{Name: pvc, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc}}}, &v.kbs, ibmSEPath, "")
	}
	v.add(secretVolume("auth-secret", s.KbsAuthSecretName), &v.kbs, path.Join(etcDir, "auth-secret"), "")
	for _, e := range s.KbsLocalCertCacheSpec.Secrets {
		mp := e.MountPath
		if mp == "" {
			mp = defaultCertCache
		}
		v.add(secretVolume(e.SecretName, e.SecretName), &v.kbs, mp, "")
	}
	if httpsConfigured(d.kc) {
		v.add(secretVolume("https-key", s.KbsHttpsKeySecretName), &v.kbs, path.Join(etcDir, "https-key"), "")
		v.add(secretVolume("https-cert", s.KbsHttpsCertSecretName), &v.kbs, path.Join(etcDir, "https-cert"), "")
	}
	if tokenConfigured(d.kc) {
		v.add(secretVolume("attestation-key", s.KbsAttestationKeySecretName), &v.kbs, path.Join(etcDir, "attestation-key"), "")
		v.add(secretVolume("attestation-cert", s.KbsAttestationCertSecretName), &v.kbs, path.Join(etcDir, "attestation-cert"), "")
	}
	v.add(emptyDir("repository-dir"), &v.kbs, RepositoryPath, "")
	if d.kube == nil {
		for _, name := range s.KbsSecretResources {
			v.add(secretVolume(name, name), &v.converterOnly, path.Join(SecretsMountPath, name), "")
		}
	}
	v.add(emptyDir("rvps-dir"), rvpsMounts, referenceValuesPath, "")
	if s.KbsRvpsRefValuesConfigMapName != "" {
		v.add(configMapVolume("reference-values", s.KbsRvpsRefValuesConfigMapName), rvpsMounts, path.Join(referenceValuesPath, referenceValueFile), referenceValueFile)
	}
	if micro {
		v.add(configMapVolume("as-config", s.KbsAsConfigMapName), &v.as, path.Join(etcDir, "as-config"), "")
		v.add(configMapVolume("rvps-config", s.KbsRvpsConfigMapName), &v.rvps, path.Join(etcDir, "rvps-config"), "")
	}
	return v
}

// env is the containers' environment: the cluster proxy settings, then
// KbsEnvVars (which override them), then the shared store URL from its
// Secret; sorted by name so the Deployment is stable.
func (d *desired) env() []corev1.EnvVar {
	m := map[string]string{}
	for k, v := range d.proxy {
		m[k] = v
	}
	for k, v := range d.kc.Spec.KbsEnvVars {
		m[k] = v
	}
	env := make([]corev1.EnvVar, 0, len(m)+1)
	for k, v := range m {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	if ss := d.kc.Spec.KbsSharedStore; ss != nil {
		env = append(env, corev1.EnvVar{Name: sharedStoreEnv(ss.Type), ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ss.SecretName}, Key: SharedStoreKey}}})
	}
	return env
}

// sharedStoreEnv is the variable through which the KBS's Redis or
// PostgreSQL backend takes its connection URL (storage/backends: REDIS_URL
// and POSTGRES_URL override the configured connection), so the URL and its
// password stay in the Secret and never reach a ConfigMap.
func sharedStoreEnv(t v1alpha1.SharedStoreType) string {
	if t == v1alpha1.SharedStorePostgres {
		return "POSTGRES_URL"
	}
	return "REDIS_URL"
}

// restricted is the containers' security context: no privilege
// escalation, no capabilities, the runtime's default seccomp profile, and a
// non-root user (every image of ours runs as 65532).
func restricted(nonRoot bool) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if nonRoot {
		sc.RunAsNonRoot = ptr(true)
	}
	return sc
}

func healthProbe(https bool, delay, period int32) *corev1.Probe {
	scheme := corev1.URISchemeHTTP
	if https {
		scheme = corev1.URISchemeHTTPS
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz", Port: intstr.FromInt32(KBSPort), Scheme: scheme}},
		InitialDelaySeconds: delay, PeriodSeconds: period, TimeoutSeconds: 5, FailureThreshold: 3,
	}
}

// deployment builds the Trustee Deployment.
func (d *desired) deployment(namespace string) *appsv1.Deployment {
	v := d.volumes()
	env := d.env()
	sc := restricted(!d.images.AllowRootImages)
	micro := deploymentType(d.kc) == v1alpha1.DeploymentTypeMicroservices
	image := d.images.KBS
	if micro {
		image = d.images.KBSMicroservices
	}
	containers := []corev1.Container{{
		Name:            "kbs",
		Image:           image,
		Command:         []string{kbsCommand, "--config-file", path.Join(etcDir, "kbs-config", KbsConfigKey)},
		Ports:           []corev1.ContainerPort{{Name: "kbs", ContainerPort: KBSPort}},
		Env:             env,
		VolumeMounts:    v.kbs,
		SecurityContext: sc,
		ReadinessProbe:  healthProbe(httpsConfigured(d.kc), 5, 10),
		LivenessProbe:   healthProbe(httpsConfigured(d.kc), 15, 30),
	}}
	if micro {
		containers = append(containers, corev1.Container{
			Name:            "as",
			Image:           d.images.AS,
			Command:         []string{asCommand, "--socket", "0.0.0.0:50004", "--config-file", path.Join(etcDir, "as-config", ASConfigKey)},
			Ports:           []corev1.ContainerPort{{Name: "as", ContainerPort: ASPort}},
			Env:             env,
			VolumeMounts:    v.as,
			SecurityContext: sc,
		}, corev1.Container{
			Name:            "rvps",
			Image:           d.images.RVPS,
			Command:         []string{rvpsCommand, "-c", path.Join(etcDir, "rvps-config", RVPSConfigKey)},
			Ports:           []corev1.ContainerPort{{Name: "rvps", ContainerPort: RVPSPort}},
			Env:             env,
			VolumeMounts:    v.rvps,
			SecurityContext: sc,
		})
	}
	// The init container sees everything the kbs container sees (it
	// writes into the repository volume) plus the Secret directories.
	converterMounts := append(append([]corev1.VolumeMount{}, v.kbs...), v.converterOnly...)
	labels := map[string]string{AppLabel: AppValue}
	annotations := map[string]string{}
	if d.configMapVersions != "" {
		annotations[ConfigMapVersionsAnnotation] = d.configMapVersions
	}
	if d.secretVersions != "" {
		annotations[SecretVersionsAnnotation] = d.secretVersions
	}
	// The secret-converter copies kbsSecretResources into the repository
	// volume; the kubernetes backend reads the Secrets through the API, as
	// the pod's ServiceAccount, and needs neither the copy nor the Secret
	// volumes. Otherwise the pods carry no API token.
	pod := corev1.PodSpec{Containers: containers, Volumes: v.volumes, AutomountServiceAccountToken: ptr(false)}
	if d.kube != nil {
		pod.ServiceAccountName = KBSServiceAccountName
		pod.AutomountServiceAccountToken = ptr(true)
	} else {
		pod.InitContainers = []corev1.Container{{
			Name:            "secret-converter",
			Image:           d.images.Operator,
			Command:         []string{converterBinary},
			VolumeMounts:    converterMounts,
			SecurityContext: restricted(true), // the operator image, always ours
		}}
	}
	n := replicas(d.kc)
	maxUnavailable := intstr.FromInt32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: DeploymentName, Namespace: namespace, Labels: managedLabels(d.kc.Name, "kbs")},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       pod,
			},
		},
	}
}

// service builds kbs-service.
func (d *desired) service(namespace string) *corev1.Service {
	t := d.kc.Spec.KbsServiceType
	if t == "" {
		t = corev1.ServiceTypeClusterIP
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: namespace, Labels: managedLabels(d.kc.Name, "kbs")},
		Spec: corev1.ServiceSpec{
			Type:     t,
			Selector: map[string]string{AppLabel: AppValue},
			Ports: []corev1.ServicePort{{Name: "kbs-port", Port: KBSPort, TargetPort: intstr.FromInt32(KBSPort),
				Protocol: corev1.ProtocolTCP}},
		},
	}
}

// managedLabels are the recommended labels on every object the operator
// creates, as upstream sets them.
func managedLabels(instance, component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/managed-by": "trustee-operator",
		"app.kubernetes.io/part-of":    "trustee",
		"app.kubernetes.io/instance":   instance,
		"app.kubernetes.io/component":  component,
	}
}

// versions renders "name:resourceVersion" pairs, comma-separated, in the
// order given (upstream's annotation format).
func versions(pairs [][2]string) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, p[0]+":"+p[1])
	}
	return strings.Join(parts, ",")
}

func ptr[T any](v T) *T { return &v }
