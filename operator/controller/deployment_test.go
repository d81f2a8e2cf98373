package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

func mounts(c corev1.Container) map[string]corev1.VolumeMount {
	m := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		m[vm.Name] = vm
	}
	return m
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// The mount table of operator.md ("Mounts"), all-in-one.
func TestDeploymentAllInOne(t *testing.T) {
	kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kc", Namespace: "ns"}, Spec: v1alpha1.KbsConfigSpec{
		KbsConfigMapName: "kbs-config", KbsAuthSecretName: "auth", KbsDeploymentType: v1alpha1.DeploymentTypeAllInOne,
		KbsResourcePolicyConfigMapName: "rp", KbsAttestationPolicyConfigMapName: "cpu", KbsGpuAttestationPolicyConfigMapName: "gpu",
		KbsRvpsRefValuesConfigMapName: "rv", KbsHttpsKeySecretName: "hk", KbsHttpsCertSecretName: "hc",
		KbsAttestationKeySecretName: "ak", KbsAttestationCertSecretName: "ac", KbsSecretResources: []string{"llm"},
		KbsLocalCertCacheSpec: v1alpha1.KbsLocalCertCacheSpec{Secrets: []v1alpha1.KbsLocalCertCacheEntry{{SecretName: "vcek"}, {SecretName: "other", MountPath: "/x"}}},
		IbmSEConfigSpec:       v1alpha1.IbmSEConfigSpec{CertStorePvc: "pvc"},
		KbsEnvVars:            map[string]string{"RUST_LOG": "debug", "HTTPS_PROXY": "override"},
	}}
	d := &desired{kc: kc, images: Images{KBS: "kbs:1", Operator: "op:1"}, proxy: map[string]string{"HTTPS_PROXY": "p", "NO_PROXY": "n"},
		configMapVersions: "kbs-config:7,rp:9"}
	dep := d.deployment("ns")
	if dep.Name != "trustee-deployment" || dep.Spec.Selector.MatchLabels["app"] != "kbs" || dep.Spec.Template.Labels["app"] != "kbs" {
		t.Fatalf("name/labels: %v %v", dep.Name, dep.Spec.Selector)
	}
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Error("replicas or rolling update")
	}
	if dep.Spec.Template.Annotations[ConfigMapVersionsAnnotation] != "kbs-config:7,rp:9" {
		t.Error("configmap-versions annotation")
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers in all-in-one", len(pod.Containers))
	}
	kbs := container(t, pod.Containers, "kbs")
	if kbs.Image != "kbs:1" || kbs.Command[0] != "/usr/local/bin/kbs" || kbs.Command[2] != "/etc/kbs-config/kbs-config.toml" {
		t.Errorf("kbs container: %v %v", kbs.Image, kbs.Command)
	}
	if kbs.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS || kbs.ReadinessProbe.HTTPGet.Path != "/healthz" ||
		kbs.ReadinessProbe.InitialDelaySeconds != 5 || kbs.LivenessProbe.PeriodSeconds != 30 {
		t.Error("probes")
	}
	sc := kbs.SecurityContext
	if *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || !*sc.RunAsNonRoot {
		t.Error("security context")
	}
	// Upstream's root-running images: runAsNonRoot left off the Trustee
	// containers only.
	d.images.AllowRootImages = true
	rootPod := d.deployment("ns").Spec.Template.Spec
	if rootPod.Containers[0].SecurityContext.RunAsNonRoot != nil || !*rootPod.InitContainers[0].SecurityContext.RunAsNonRoot ||
		*rootPod.Containers[0].SecurityContext.AllowPrivilegeEscalation {
		t.Error("KBS_ALLOW_ROOT_IMAGES security contexts")
	}
	want := map[string][2]string{
		"kbs-config":             {"/etc/kbs-config", ""},
		"base-storage-dir":       {"/opt/confidential-containers/storage", ""},
		"attestation-policy-dir": {"/opt/confidential-containers/storage/attestation_service_policy", ""},
		"attestation-policy":     {"/opt/confidential-containers/storage/attestation_service_policy/default_cpu.rego", "default_cpu.rego"},
		"attestation-policy-gpu": {"/opt/confidential-containers/storage/attestation_service_policy/default_gpu.rego", "default_gpu.rego"},
		"resource-policy-dir":    {"/opt/confidential-containers/storage/kbs", ""},
		"resource-policy":        {"/opt/confidential-containers/storage/kbs/resource-policy.rego", "resource-policy.rego"},
		"pvc":                    {"/run/confidential-containers/ibmse/", ""},
		"auth-secret":            {"/etc/auth-secret", ""},
		"vcek":                   {"/opt/confidential-containers/attestation-service/kds-store/vcek", ""},
		"other":                  {"/x", ""},
		"https-key":              {"/etc/https-key", ""},
		"https-cert":             {"/etc/https-cert", ""},
		"attestation-key":        {"/etc/attestation-key", ""},
		"attestation-cert":       {"/etc/attestation-cert", ""},
		"repository-dir":         {"/opt/confidential-containers/storage/repository", ""},
		"rvps-dir":               {"/opt/confidential-containers/storage/local_json", ""},
		"reference-values":       {"/opt/confidential-containers/storage/local_json/reference_value", "reference_value"},
	}
	got := mounts(kbs)
	for name, w := range want {
		if m, ok := got[name]; !ok || m.MountPath != w[0] || m.SubPath != w[1] {
			t.Errorf("mount %s = %+v, want %v", name, m, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("kbs mounts %d, want %d: %v", len(got), len(want), got)
	}
	if _, ok := got["llm"]; ok {
		t.Error("a kbsSecretResources Secret is mounted into the kbs container")
	}
	conv := pod.InitContainers[0]
	if conv.Name != "secret-converter" || conv.Image != "op:1" || conv.Command[0] != "/secret-converter" {
		t.Errorf("init container: %+v", conv)
	}
	if m := mounts(conv)["llm"]; m.MountPath != "/tmp/kbs-secrets/llm" {
		t.Errorf("init container secret mount = %+v", m)
	}
	if mounts(conv)["repository-dir"].MountPath != RepositoryPath {
		t.Error("init container cannot write the repository")
	}
	env := map[string]string{}
	for _, e := range kbs.Env {
		env[e.Name] = e.Value
	}
	if env["HTTPS_PROXY"] != "override" || env["NO_PROXY"] != "n" || env["RUST_LOG"] != "debug" {
		t.Errorf("env = %v", env)
	}
	// Every volume is used by some container.
	used := map[string]bool{}
	for _, c := range append(pod.Containers, pod.InitContainers...) {
		for _, m := range c.VolumeMounts {
			used[m.Name] = true
		}
	}
	for _, v := range pod.Volumes {
		if !used[v.Name] {
			t.Errorf("volume %s is mounted nowhere", v.Name)
		}
		if v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("emptyDir %s is not in memory", v.Name)
		}
	}
}

func TestDeploymentMicroservices(t *testing.T) {
	kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kc"}, Spec: v1alpha1.KbsConfigSpec{
		KbsConfigMapName: "kbs-config-grpc", KbsAsConfigMapName: "as-config-grpc", KbsRvpsConfigMapName: "rvps-config-grpc",
		KbsAuthSecretName: "auth", KbsDeploymentType: v1alpha1.DeploymentTypeMicroservices,
		KbsAttestationPolicyConfigMapName: "cpu", KbsRvpsRefValuesConfigMapName: "rv",
	}}
	d := &desired{kc: kc, images: Images{KBSMicroservices: "kbs-m", AS: "as", RVPS: "rvps", Operator: "op"}}
	pod := d.deployment("ns").Spec.Template.Spec
	if len(pod.Containers) != 3 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	kbs, as, rv := container(t, pod.Containers, "kbs"), container(t, pod.Containers, "as"), container(t, pod.Containers, "rvps")
	if kbs.Image != "kbs-m" || kbs.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Error("kbs container")
	}
	if as.Command[0] != "/usr/local/bin/grpc-as" || as.Command[2] != "0.0.0.0:50004" || as.Command[4] != "/etc/as-config/as-config.json" || as.Ports[0].ContainerPort != 50004 {
		t.Errorf("as: %v", as.Command)
	}
	if rv.Command[0] != "/usr/local/bin/rvps" || rv.Command[2] != "/etc/rvps-config/rvps-config.json" || rv.Ports[0].ContainerPort != 50003 {
		t.Errorf("rvps: %v", rv.Command)
	}
	if m := mounts(as); m["attestation-policy"].SubPath != "default_cpu.rego" || m["as-config"].MountPath != "/etc/as-config" {
		t.Errorf("as mounts %v", m)
	}
	if m := mounts(rv); m["reference-values"].SubPath != "reference_value" || m["rvps-config"].MountPath != "/etc/rvps-config" {
		t.Errorf("rvps mounts %v", m)
	}
	if _, ok := mounts(kbs)["attestation-policy"]; ok {
		t.Error("attestation policy mounted into kbs in microservices mode")
	}
}

func TestService(t *testing.T) {
	kc := &v1alpha1.KbsConfig{Spec: v1alpha1.KbsConfigSpec{KbsServiceType: corev1.ServiceTypeNodePort}}
	svc := (&desired{kc: kc}).service("ns")
	if svc.Name != "kbs-service" || svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Selector["app"] != "kbs" ||
		svc.Spec.Ports[0].Name != "kbs-port" || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("service = %+v", svc.Spec)
	}
	if (&desired{kc: &v1alpha1.KbsConfig{}}).service("ns").Spec.Type != corev1.ServiceTypeClusterIP {
		t.Error("default service type")
	}
}
