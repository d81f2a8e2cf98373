package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/internal/testwait"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
	"github.com/go-trustee/go-trustee/operator/controller"
)

// TestOperatorTrusteeInPodman is the operator end to end with real parts:
// a real kube-apiserver and etcd (scripts/kube-peers.sh), our reconcilers
// against it, our container images (scripts/images.sh, pushed to a loopback
// docker-registry), and the Trustee pod the reconcilers produced run by
// podman. The guest side — attestation-agent (sample TEE) and
// confidential-data-hub — then reads a Kubernetes Secret through the KBS
// in that pod, and reads its new value after the Secret is rotated.
//
// podman stands in for the kubelet; three podman 4.3 gaps are bridged here
// and only here (the manifests the operator writes are not changed):
// Secret volumes (podman panics on them), subPath mounts (ignored) and
// emptyDir (a named volume shared across pods) become hostPath mounts of
// files this test lays out as the kubelet would; the pod runs its init
// container with podman's "always" init type (its "once" type races and
// leaves the main container unstarted); the kbs port gets a loopback
// hostPort.
func TestOperatorTrusteeInPodman(t *testing.T) {
	podman := lookTool(t, "PODMAN", "podman")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set: scripts/test.sh builds kube-apiserver and etcd with scripts/kube-peers.sh")
		}
		t.Skip("KUBEBUILDER_ASSETS not set (export KUBEBUILDER_ASSETS=$(scripts/kube-peers.sh))")
	}
	dir := socketDir(t, "op-")
	ctx := context.Background()

	// Images, built without an engine and pulled by podman.
	regAddr, _ := startRegistry(t, dir)
	repo := regAddr + "/go-trustee"
	cmd := exec.Command(filepath.Join("..", "scripts", "images.sh"))
	cmd.Env = append(os.Environ(), "REGISTRY="+repo, "TAG=e2e")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/images.sh: %v\n%s", err, out)
	}
	images := controller.Images{KBS: repo + "/kbs:e2e", KBSMicroservices: repo + "/kbs:e2e", Operator: repo + "/operator:e2e",
		AS: repo + "/as:e2e", RVPS: repo + "/rvps:e2e"}
	for _, img := range []string{images.KBS, images.Operator, images.AS, images.RVPS} {
		mustRun(t, dir, podman, "pull", "--quiet", "--tls-verify=false", img)
	}

	// The control plane and the operator.
	k := startOperator(t, images)

	llm := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm", Namespace: controller.DefaultNamespace},
		StringData: map[string]string{"decryption-key": "the key of my fine-tuned model"}}
	if err := k.Create(ctx, llm); err != nil {
		t.Fatal(err)
	}
	tc := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "trustee", Namespace: controller.DefaultNamespace},
		Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfilePermissive}}
	if err := k.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	// Upstream's way to serve a Secret: list it in the generated
	// KbsConfig's kbsSecretResources (config/samples patch-kbs-resources).
	kcKey := types.NamespacedName{Namespace: controller.DefaultNamespace, Name: "trustee-kbs-config"}
	testwait.Until(t, "the generated KbsConfig", func() bool {
		var kc v1alpha1.KbsConfig
		if k.Get(ctx, kcKey, &kc) != nil {
			return false
		}
		kc.Spec.KbsSecretResources = append(kc.Spec.KbsSecretResources, "llm")
		return k.Update(ctx, &kc) == nil
	})
	dep := waitDeployment(t, k, func(d *appsv1.Deployment) bool {
		return strings.Contains(d.Spec.Template.Annotations[controller.SecretVersionsAnnotation], "llm:")
	})

	port := freePort(t)
	pod := playTrustee(t, k, podman, filepath.Join(dir, "pod1"), dep, port)
	kbsURL := "http://127.0.0.1:" + strconv.Itoa(port)
	waitHealthy(t, podman, pod, kbsURL)

	read := func(gdir string) map[string]string {
		g := startGuestStack(t, gdir, kbsURL, "")
		c, err := cdh.NewClient("unix://" + g.cdhSock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := map[string]string{}
		for _, uri := range []string{"kbs:///default/llm/decryption-key", "kbs:///default/attestation-status/status"} {
			b, err := c.GetResource(ctx, uri)
			if err != nil {
				t.Fatalf("GetResource %s: %v\nkbs log:\n%s", uri, err, podLogs(t, podman, pod))
			}
			got[uri] = string(b)
		}
		return got
	}
	g1 := filepath.Join(dir, "g1")
	if err := os.Mkdir(g1, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := read(g1); got["kbs:///default/llm/decryption-key"] != "the key of my fine-tuned model" || got["kbs:///default/attestation-status/status"] != "success" {
		t.Fatalf("resources through the pod: %v", got)
	}

	// Rotation: the Secret changes, the operator rolls the Deployment
	// (secret-versions annotation), the new pod serves the new value.
	if err := k.Get(ctx, client.ObjectKeyFromObject(llm), llm); err != nil {
		t.Fatal(err)
	}
	llm.Data["decryption-key"] = []byte("the rotated key")
	if err := k.Update(ctx, llm); err != nil {
		t.Fatal(err)
	}
	dep2 := waitDeployment(t, k, func(d *appsv1.Deployment) bool {
		return strings.Contains(d.Spec.Template.Annotations[controller.SecretVersionsAnnotation], "llm:"+llm.ResourceVersion)
	})
	pod = playTrustee(t, k, podman, filepath.Join(dir, "pod2"), dep2, port)
	waitHealthy(t, podman, pod, kbsURL)
	g2 := filepath.Join(dir, "g2")
	if err := os.Mkdir(g2, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := read(g2); got["kbs:///default/llm/decryption-key"] != "the rotated key" {
		t.Fatalf("after rotation: %v", got)
	}

	// The Restricted profile: HTTPS and a token signer, both from
	// kubernetes.io/tls Secrets. The Permissive Trustee goes first (one
	// Trustee per namespace); with no garbage collector in this control
	// plane its KbsConfig is deleted explicitly, and its finalizer removes
	// the Deployment.
	if err := k.Delete(ctx, tc); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: kcKey.Name, Namespace: kcKey.Namespace}}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the Permissive Deployment deleted", func() bool {
		err := k.Get(ctx, types.NamespacedName{Namespace: controller.DefaultNamespace, Name: controller.DeploymentName}, &appsv1.Deployment{})
		return apierrors.IsNotFound(err)
	})
	mustRun(t, dir, podman, "pod", "rm", "--force", pod)

	httpsCert, httpsKey := selfSigned(t, "kbs", true)
	tokenCert, tokenKey := selfSigned(t, "go-trustee e2e token signer", false)
	for name, pair := range map[string][2][]byte{"https-tls": {httpsCert, httpsKey}, "token-tls": {tokenCert, tokenKey}} {
		if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: controller.DefaultNamespace},
			Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: pair[0], corev1.TLSPrivateKeyKey: pair[1]}}); err != nil {
			t.Fatal(err)
		}
	}
	strict := &v1alpha1.TrusteeConfig{ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: controller.DefaultNamespace},
		Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfileRestricted,
			HTTPSSpec:                        v1alpha1.HTTPSSpec{TLSSecretName: "https-tls"},
			AttestationTokenVerificationSpec: v1alpha1.AttestationTokenVerificationSpec{TLSSecretName: "token-tls"}}}
	if err := k.Create(ctx, strict); err != nil {
		t.Fatal(err)
	}
	strictKey := types.NamespacedName{Namespace: controller.DefaultNamespace, Name: "strict-kbs-config"}
	testwait.Until(t, "the Restricted KbsConfig", func() bool {
		var kc v1alpha1.KbsConfig
		if k.Get(ctx, strictKey, &kc) != nil {
			return false
		}
		if !slices.Contains(kc.Spec.KbsSecretResources, "llm") {
			kc.Spec.KbsSecretResources = append(kc.Spec.KbsSecretResources, "llm")
		}
		return k.Update(ctx, &kc) == nil
	})
	// The Restricted resource policy admits only affirming EAR
	// submodules, which the sample TEE never is; the admin edits the
	// generated policy (the operator keeps an edited policy) to admit it.
	testwait.Until(t, "the resource policy edited", func() bool {
		var cm corev1.ConfigMap
		if k.Get(ctx, types.NamespacedName{Namespace: controller.DefaultNamespace, Name: "strict-resource-policy"}, &cm) != nil {
			return false
		}
		cm.Data["resource-policy.rego"] = "package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == \"resource\"\n"
		return k.Update(ctx, &cm) == nil
	})
	dep3 := waitDeployment(t, k, func(d *appsv1.Deployment) bool {
		c := d.Spec.Template.Spec.Containers[0]
		return strings.Contains(d.Spec.Template.Annotations[controller.SecretVersionsAnnotation], "llm:") &&
			c.ReadinessProbe.HTTPGet.Scheme == corev1.URISchemeHTTPS &&
			strings.Contains(d.Spec.Template.Annotations[controller.ConfigMapVersionsAnnotation], "strict-resource-policy:")
	})
	pod = playTrustee(t, k, podman, filepath.Join(dir, "pod3"), dep3, port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(httpsCert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	httpsURL := "https://127.0.0.1:" + strconv.Itoa(port)
	waitHealthyWith(t, hc, podman, pod, httpsURL)
	if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the Restricted KBS answers plain HTTP")
		}
	}
	g3 := filepath.Join(dir, "g3")
	if err := os.Mkdir(g3, 0o700); err != nil {
		t.Fatal(err)
	}
	gs := startGuestStackTLS(t, g3, httpsURL, httpsCert)
	c, err := cdh.NewClient("unix://" + gs.cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := c.GetResource(ctx, "kbs:///default/llm/decryption-key")
	if err != nil || string(b) != "the rotated key" {
		t.Fatalf("Restricted: GetResource = %q, %v\n%s", b, err, podLogs(t, podman, pod))
	}

	// MicroservicesDeployment: kbs, grpc-as and rvps as three containers of
	// one pod, configured as upstream's config/samples/microservices
	// (in the current configuration format).
	if err := k.Delete(ctx, strict); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: strictKey.Name, Namespace: strictKey.Namespace}}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the Restricted Deployment deleted", func() bool {
		err := k.Get(ctx, types.NamespacedName{Namespace: controller.DefaultNamespace, Name: controller.DeploymentName}, &appsv1.Deployment{})
		return apierrors.IsNotFound(err)
	})
	mustRun(t, dir, podman, "pod", "rm", "--force", pod)
	microservicesPhase(t, k, podman, dir, port)
}

// microservicesPhase deploys a MicroservicesDeployment KbsConfig and has
// the guest read a Secret whose release depends on a reference value the
// rvps container serves (from the operator-mounted LocalJson file) to the
// grpc-as container, which appraises the evidence the kbs container passes
// it over gRPC: the whole split chain inside one pod.
func microservicesPhase(t *testing.T, k client.Client, podman, dir string, port int) {
	ctx := context.Background()
	ns := controller.DefaultNamespace
	record, _ := json.Marshal(map[string]any{"version": "0.1.0", "name": "svn", "expiration": "2099-01-01T00:00:00Z", "value": []string{"1"}})
	// LocalJson's layout: key -> base64url (padded) of the stored bytes.
	refValues, _ := json.Marshal(map[string]string{"svn": base64.URLEncoding.EncodeToString(record)})
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "kbs-config-grpc", Namespace: ns}, Data: map[string]string{controller.KbsConfigKey: `
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = true

[admin]
authorization_mode = "DenyAll"

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_grpc"
as_addr = "http://127.0.0.1:50004"

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "/opt/confidential-containers/storage"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
`}},
		{ObjectMeta: metav1.ObjectMeta{Name: "as-config-grpc", Namespace: ns}, Data: map[string]string{controller.ASConfigKey: `{
  "storage_backend": {"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": "/opt/confidential-containers/storage"}}},
  "rvps_config": {"type": "GrpcRemote", "address": "http://127.0.0.1:50003"},
  "attestation_token_broker": {"duration_min": 5}
}`}},
		{ObjectMeta: metav1.ObjectMeta{Name: "rvps-config-grpc", Namespace: ns}, Data: map[string]string{controller.RVPSConfigKey: `{
  "storage": {"storage_type": "LocalJson", "backends": {"local_json": {"file_dir_path": "/opt/confidential-containers/storage/local_json"}}}
}`}},
		{ObjectMeta: metav1.ObjectMeta{Name: "rvps-reference-values", Namespace: ns}, Data: map[string]string{"reference_value": string(refValues)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "attestation-policy-rv", Namespace: ns}, Data: map[string]string{"default_cpu.rego": earRVPolicy}},
		{ObjectMeta: metav1.ObjectMeta{Name: "resource-policy-micro", Namespace: ns}, Data: map[string]string{"resource-policy.rego": checkContraindicatedPolicy}},
	} {
		if err := k.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kbs-auth-public-key", Namespace: ns},
		Data: map[string][]byte{"kbs.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}}); err != nil {
		t.Fatal(err)
	}
	kc := &v1alpha1.KbsConfig{ObjectMeta: metav1.ObjectMeta{Name: "kbsconfig-microservices", Namespace: ns},
		Spec: v1alpha1.KbsConfigSpec{
			KbsConfigMapName: "kbs-config-grpc", KbsAsConfigMapName: "as-config-grpc", KbsRvpsConfigMapName: "rvps-config-grpc",
			KbsAuthSecretName: "kbs-auth-public-key", KbsDeploymentType: v1alpha1.DeploymentTypeMicroservices,
			KbsRvpsRefValuesConfigMapName: "rvps-reference-values", KbsAttestationPolicyConfigMapName: "attestation-policy-rv",
			KbsResourcePolicyConfigMapName: "resource-policy-micro", KbsSecretResources: []string{"llm"},
		}}
	if err := k.Create(ctx, kc); err != nil {
		t.Fatal(err)
	}
	dep := waitDeployment(t, k, func(d *appsv1.Deployment) bool { return len(d.Spec.Template.Spec.Containers) == 3 })
	pod := playTrustee(t, k, podman, filepath.Join(dir, "pod4"), dep, port)
	kbsURL := "http://127.0.0.1:" + strconv.Itoa(port)
	waitHealthy(t, podman, pod, kbsURL)
	g := filepath.Join(dir, "g4")
	if err := os.Mkdir(g, 0o700); err != nil {
		t.Fatal(err)
	}
	gs := startGuestStack(t, g, kbsURL, "")
	c, err := cdh.NewClient("unix://" + gs.cdhSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := c.GetResource(ctx, "kbs:///default/llm/decryption-key")
	if err != nil || string(b) != "the rotated key" {
		t.Fatalf("Microservices: GetResource = %q, %v\n%s", b, err, podLogs(t, podman, pod))
	}
	// The verdict came from the split chain: grpc-as appraised it, with
	// the reference value rvps served from the mounted file.
	logs := podLogs(t, podman, pod)
	// (grpc-as may start before rvps listens: it then logs that the RVPS
	// does not answer yet, and reconnects; the release above needed it.)
	for _, want := range []string{"AttestationEvaluate succeeded.", `"rvps":"GrpcRemote http://127.0.0.1:50003"`, "CoCo RVPS"} {
		if !strings.Contains(logs, want) {
			t.Errorf("pod logs lack %q:\n%s", want, logs)
		}
	}
}

// selfSigned returns a self-signed P-256 certificate and its PKCS #8 key
// (PEM): for 127.0.0.1 when server, else a token signer.
func selfSigned(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	ck := newCert(t, tmpl, nil)
	k8, err := x509.MarshalPKCS8PrivateKey(ck.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ck.der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k8})
}

// startGuestStackTLS is startGuestStack for an https KBS whose root CA
// is caPEM (aa.toml token_configs.kbs.cert, cdh.toml kbc.kbs_cert).
func startGuestStackTLS(t *testing.T, dir, kbsURL string, caPEM []byte) guestStack {
	t.Helper()
	g := guestStack{aaSock: filepath.Join(dir, "aa.sock"), cdhSock: filepath.Join(dir, "cdh.sock")}
	aaCfg, cdhCfg := filepath.Join(dir, "aa.toml"), filepath.Join(dir, "cdh.toml")
	if err := os.WriteFile(aaCfg, []byte(fmt.Sprintf("[token_configs.kbs]\nurl = %q\ncert = %q\n", kbsURL, caPEM)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cdhCfg, []byte(fmt.Sprintf("socket = %q\n[aa]\naa_socket = %q\n[kbc]\nname = \"cc_kbc\"\nurl = %q\nkbs_cert = %q\n",
		"unix://"+g.cdhSock, "unix://"+g.aaSock, kbsURL, caPEM)), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, socketReady(g.aaSock), bin.attestationAgent, "--attestation_sock", "unix://"+g.aaSock, "-c", aaCfg)
	g.cdh = startDaemon(t, dir, socketReady(g.cdhSock), bin.confidentialDataHub, "-c", cdhCfg)
	return g
}

// startOperator starts kube-apiserver and etcd with our CRDs and runs the
// operator's reconcilers against them; it returns a client.
func startOperator(t *testing.T, images controller.Images) client.Client {
	t.Helper()
	c, _ := startOperatorWith(t, images)
	return c
}

// startOperatorWith is startOperator with more CRDs installed (folders of
// CRD YAML), returning the control plane's system:masters configuration
// too.
func startOperatorWith(t *testing.T, images controller.Images, crdDirs ...string) (client.Client, *rest.Config) {
	t.Helper()
	env := &envtest.Environment{CRDDirectoryPaths: append([]string{filepath.Join("..", "config", "crd", "bases")}, crdDirs...), ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme, err := controller.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controller.DefaultNamespace}}); err != nil {
		t.Fatal(err)
	}
	// Several tests of this process run a manager each; controller-runtime
	// refuses a second controller of the same name unless told otherwise.
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{controller.DefaultNamespace: {}}},
		Controller: ctrlconfig.Controller{SkipNameValidation: &skip}})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, controller.DefaultNamespace, images); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, cfg
}

func waitDeployment(t *testing.T, k client.Client, ok func(*appsv1.Deployment) bool) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	testwait.Until(t, "the Trustee Deployment", func() bool {
		return k.Get(context.Background(), types.NamespacedName{Namespace: controller.DefaultNamespace, Name: controller.DeploymentName}, &d) == nil && ok(&d)
	})
	return &d
}

func freePort(t *testing.T) int {
	_, p, _ := strings.Cut(freeAddr(t), ":")
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// playTrustee runs the Deployment's pod template under podman (see the
// test's comment for what is bridged) and returns the pod name. Any
// earlier pod of the same name is replaced.
func playTrustee(t *testing.T, k client.Client, podman, dir string, dep *appsv1.Deployment, port int) string {
	t.Helper()
	ctx := context.Background()
	spec := *dep.Spec.Template.Spec.DeepCopy()
	ns := dep.Namespace
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostDir := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, "volumes", name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeFiles := func(p string, data map[string][]byte) {
		for key, v := range data {
			if err := os.WriteFile(filepath.Join(p, key), v, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	hostPaths := map[string]string{}
	for i, v := range spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			var cm corev1.ConfigMap
			if err := k.Get(ctx, types.NamespacedName{Namespace: ns, Name: v.ConfigMap.Name}, &cm); err != nil {
				t.Fatal(err)
			}
			p := hostDir(v.Name, 0o755)
			data := map[string][]byte{}
			for key, s := range cm.Data {
				data[key] = []byte(s)
			}
			writeFiles(p, data)
			hostPaths[v.Name] = p
		case v.Secret != nil:
			var s corev1.Secret
			if err := k.Get(ctx, types.NamespacedName{Namespace: ns, Name: v.Secret.SecretName}, &s); err != nil {
				t.Fatal(err)
			}
			p := hostDir(v.Name, 0o755)
			writeFiles(p, s.Data)
			hostPaths[v.Name] = p
		case v.EmptyDir != nil:
			hostPaths[v.Name] = hostDir(v.Name, 0o777)
		default:
			t.Fatalf("volume %s: no podman bridge for its source", v.Name)
		}
		dirType := corev1.HostPathDirectory
		spec.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPaths[v.Name], Type: &dirType}}
	}
	fileType := corev1.HostPathFile
	bridge := func(cs []corev1.Container) {
		for ci := range cs {
			for mi, m := range cs[ci].VolumeMounts {
				if m.SubPath == "" {
					continue
				}
				name := fmt.Sprintf("%s-sub%d-%d", m.Name, ci, mi)
				spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
					HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(hostPaths[m.Name], m.SubPath), Type: &fileType}}})
				cs[ci].VolumeMounts[mi] = corev1.VolumeMount{Name: name, MountPath: m.MountPath, ReadOnly: m.ReadOnly}
			}
		}
	}
	bridge(spec.Containers)
	bridge(spec.InitContainers)
	// podman applies the pod's restart policy to init containers as well:
	// with the Deployment's Always, the secret-converter would be rerun
	// after every successful exit, forever. OnFailure still restarts a
	// crashing container, as the kubelet would.
	spec.RestartPolicy = corev1.RestartPolicyOnFailure
	for ci := range spec.Containers {
		if spec.Containers[ci].Name == "kbs" {
			spec.Containers[ci].Ports[0].HostPort = int32(port)
			spec.Containers[ci].Ports[0].HostIP = "127.0.0.1"
		}
	}
	// Unique per test process: two suites on one machine must not
	// replace each other's pods.
	name := fmt.Sprintf("trustee-e2e-%d", os.Getpid())
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: dep.Spec.Template.Labels,
			Annotations: map[string]string{"io.podman.annotations.init.container.type": "always"}},
		Spec: spec,
	}
	b, err := yaml.Marshal(&pod)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, podman, "kube", "play", "--replace", manifest)
	t.Cleanup(func() {
		exec.Command(podman, "pod", "rm", "--force", "--ignore", name).Run()
	})
	return name
}

func waitHealthy(t *testing.T, podman, pod, kbsURL string) {
	waitHealthyWith(t, http.DefaultClient, podman, pod, kbsURL)
}

func waitHealthyWith(t *testing.T, hc *http.Client, podman, pod, kbsURL string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(kbsURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the KBS in pod %s did not answer /healthz in 60 s\n%s", pod, podLogs(t, podman, pod))
}

func podLogs(t *testing.T, podman, pod string) string {
	var buf bytes.Buffer
	for _, c := range []string{pod + "-secret-converter", pod + "-kbs", pod + "-as", pod + "-rvps"} {
		out, _ := exec.Command(podman, "logs", c).CombinedOutput()
		fmt.Fprintf(&buf, "== %s\n", c)
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if !strings.Contains(sc.Text(), "systemd") {
				fmt.Fprintln(&buf, sc.Text())
			}
		}
	}
	return buf.String()
}
