package as

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/protocol/initdata"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/storagetest"
	"github.com/go-trustee/go-trustee/verifier"
)

// trustPolicy returns an attestation policy with the AR4SI defaults the
// upstream integration tests use (hardware 97, executables 33,
// configuration 36, the rest 0), the trust_claims object, and extra rules.
func trustPolicy(extra string) string {
	return `package policy
import rego.v1

default hardware := 97
default executables := 33
default configuration := 36
default file_system := 0
default instance_identity := 0
default runtime_opaque := 0
default storage_opaque := 0
default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}
` + extra
}

var (
	contraindicatedPolicy = trustPolicy("")
	sampleRVPolicy        = trustPolicy("hardware := 2 if {\n\tinput.sample.svn in query_reference_value(\"svn\")\n}\n")
	deviceRVPolicy        = trustPolicy("hardware := 2 if {\n\tinput.sampledevice.svn in query_reference_value(\"device_svn\")\n}\n")
)

func TestDefaultPoliciesStoredOnce(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	custom := []byte(trustPolicy("hardware := 3\n"))
	if _, err := st.Set(ctx, storage.NamespaceAttestationPolicy, "default_cpu.rego", custom, true); err != nil {
		t.Fatal(err)
	}
	s := newTestService(t, Config{}, st)
	ids, err := s.ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default_cpu", "default_gpu", "default_ppcie", "default_switch"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ListPolicies = %v, want %v", ids, want)
	}
	got, err := s.GetPolicy(ctx, "default_cpu")
	if err != nil || !bytes.Equal(got, custom) {
		t.Errorf("an operator's default_cpu was overwritten: %s, %v", got, err)
	}
	gpu, _ := s.GetPolicy(ctx, "default_gpu")
	if !bytes.Equal(gpu, DefaultPolicies()["default_gpu"]) {
		t.Error("default_gpu not written")
	}
	// Every shipped policy compiles.
	for id, p := range DefaultPolicies() {
		if _, err := s.engine.compile(ctx, p); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// The upstream integration cases of get_resource.rs, at the AS level: the
// KBS resource policy there checks ear.status != "contraindicated".
func TestUpstreamPolicyCases(t *testing.T) {
	tests := []struct {
		name       string
		cpuPolicy  string // "" keeps the shipped default_cpu
		gpuPolicy  string
		rvs        map[string]any
		withDevice bool
		wantCPU    string
		wantVector map[string]int64
		wantGPU    string
	}{
		{
			name:       "default policy without reference values",
			wantCPU:    "contraindicated",
			wantVector: map[string]int64{"instance-identity": 0, "configuration": 2, "executables": 33, "file-system": 0, "hardware": 97, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
		},
		{
			name: "default policy with reference values",
			rvs: map[string]any{
				"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1,
			},
			wantCPU:    "affirming",
			wantVector: map[string]int64{"instance-identity": 0, "configuration": 2, "executables": 3, "file-system": 0, "hardware": 2, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
		},
		{
			name:       "default policy with a too recent minimum minor version",
			rvs:        map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 5},
			wantCPU:    "contraindicated",
			wantVector: map[string]int64{"instance-identity": 0, "configuration": 2, "executables": 3, "file-system": 0, "hardware": 97, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
		},
		{
			name:       "policy_contraindicated",
			cpuPolicy:  contraindicatedPolicy,
			wantCPU:    "contraindicated",
			wantVector: map[string]int64{"instance-identity": 0, "configuration": 36, "executables": 33, "file-system": 0, "hardware": 97, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
		},
		{
			name:      "policy_not_contraindicated",
			cpuPolicy: sampleRVPolicy,
			rvs:       map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1},
			wantCPU:   "warning",
		},
		{
			name:       "device_contraindicated",
			cpuPolicy:  sampleRVPolicy,
			gpuPolicy:  sampleRVPolicy,
			rvs:        map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1},
			withDevice: true,
			wantCPU:    "warning",
			wantGPU:    "contraindicated",
		},
		{
			name:       "device_not_contraindicated",
			cpuPolicy:  sampleRVPolicy,
			gpuPolicy:  deviceRVPolicy,
			rvs:        map[string]any{"svn": []string{"1"}, "launch_digest": []string{"abcde"}, "major_version": 1, "minimum_minor_version": 1, "device_svn": []string{"2"}},
			withDevice: true,
			wantCPU:    "warning",
			wantGPU:    "warning",
		},
		{
			name:       "device with the shipped default_gpu",
			withDevice: true,
			rvs:        map[string]any{"device_svn": []string{"2"}},
			wantCPU:    "contraindicated",
			wantGPU:    "contraindicated",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := newTestService(t, Config{}, nil)
			if tc.cpuPolicy != "" {
				if err := s.SetPolicy(ctx, "default_cpu", []byte(tc.cpuPolicy)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.gpuPolicy != "" {
				if err := s.SetPolicy(ctx, "default_gpu", []byte(tc.gpuPolicy)); err != nil {
					t.Fatal(err)
				}
			}
			for name, v := range tc.rvs {
				registerRV(t, s, name, v)
			}
			// The KBS splits composite evidence: the primary evidence binds
			// the additional-evidence string, each device the nonce and key.
			additional := ""
			var deviceReq VerificationRequest
			if tc.withDevice {
				devRD, _ := json.Marshal(map[string]any{"nonce": "bm9uY2U=", "tee-pubkey": json.RawMessage(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}`)})
				canon, _ := protocol.Canonicalize(devRD)
				devDigest := sha512.Sum384(canon)
				devEv := sampleEvidence("2", devDigest[:])
				deviceReq = VerificationRequest{Tee: protocol.TeeSampleDevice, Evidence: devEv, RuntimeData: &RuntimeData{Structured: devRD}}
				addl, _ := json.Marshal(map[string]json.RawMessage{"sampledevice": devEv})
				additional = string(addl)
			}
			rd, digest := kbsRuntimeData(t, additional)
			reqs := []VerificationRequest{{Tee: protocol.TeeSample, Evidence: sampleEvidence("1", digest), RuntimeData: &RuntimeData{Structured: rd}}}
			if tc.withDevice {
				reqs = append(reqs, deviceReq)
			}
			token, err := s.Evaluate(ctx, reqs, []string{"default"})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			pt := verifyToken(t, token)
			if got := pt.submod(t, "cpu0")["ear.status"]; got != tc.wantCPU {
				t.Errorf("cpu0 status = %v, want %s (vector %v)", got, tc.wantCPU, pt.vector(t, "cpu0"))
			}
			if tc.wantVector != nil && !reflect.DeepEqual(pt.vector(t, "cpu0"), tc.wantVector) {
				t.Errorf("cpu0 vector = %v\nwant %v", pt.vector(t, "cpu0"), tc.wantVector)
			}
			subs := pt.claims["submods"].(map[string]any)
			if tc.withDevice {
				if got := pt.submod(t, "gpu0")["ear.status"]; got != tc.wantGPU {
					t.Errorf("gpu0 status = %v, want %s (vector %v)", got, tc.wantGPU, pt.vector(t, "gpu0"))
				}
				if len(subs) != 2 {
					t.Errorf("submods = %v", subs)
				}
			} else if len(subs) != 1 {
				t.Errorf("submods = %v", subs)
			}
		})
	}
}

func TestTokenLayout(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t, Config{TokenBroker: TokenBrokerConfig{DurationMin: 7}}, nil)
	req := sampleRequest(t)
	token, err := s.Evaluate(ctx, []VerificationRequest{req}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := verifyToken(t, token)

	// Header: typ, alg and the embedded public key, nothing else.
	if pt.header["typ"] != "JWT" || pt.header["alg"] != "ES256" || len(pt.header) != 3 {
		t.Errorf("header = %v", pt.header)
	}
	jwk := pt.header["jwk"].(map[string]any)
	if jwk["alg"] != "ES256" || jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk["x5c"] != nil {
		t.Errorf("header jwk = %v", jwk)
	}
	// The header is exactly what upstream's jsonwebtoken writes.
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if !bytes.HasPrefix(hdr, []byte(`{"typ":"JWT","alg":"ES256","jwk":{"alg":"ES256","kty":"EC","crv":"P-256","x":"`)) {
		t.Errorf("header bytes = %s", hdr)
	}

	c := pt.claims
	iat, _ := c["iat"].(json.Number).Int64()
	exp, _ := c["exp"].(json.Number).Int64()
	if iat != testNow.Unix() || exp != testNow.Add(7*time.Minute).Unix() {
		t.Errorf("iat %d exp %d, want %d and iat+7min", iat, exp, testNow.Unix())
	}
	if c["eat_profile"] != DefaultProfileName || c["iss"] != DefaultIssuerName {
		t.Errorf("eat_profile %v iss %v", c["eat_profile"], c["iss"])
	}
	vid := c["ear.verifier-id"].(map[string]any)
	if vid["developer"] != DefaultDeveloperName || vid["build"] != DefaultBuildName {
		t.Errorf("verifier-id = %v", vid)
	}
	if _, ok := c["nbf"]; ok {
		t.Error("unexpected nbf")
	}
	cpu := pt.submod(t, "cpu0")
	if cpu["ear.appraisal-policy-id"] != "default" {
		t.Errorf("policy id = %v", cpu["ear.appraisal-policy-id"])
	}
	ev := cpu["ear.veraison.annotated-evidence"].(map[string]any)
	var structured map[string]any
	json.Unmarshal(req.RuntimeData.Structured, &structured)
	want := map[string]any{
		"sample": map[string]any{
			"svn": "1", "launch_digest": "abcde", "debug": false,
			"platform_version": map[string]any{"major": json.Number("1"), "minor": json.Number("4")},
		},
		"report_data":         base64.StdEncoding.EncodeToString(mustReportData(t, req)),
		"runtime_data_claims": structured,
	}
	if !reflect.DeepEqual(ev, want) {
		gotJSON, _ := json.Marshal(ev)
		wantJSON, _ := json.Marshal(want)
		t.Errorf("annotated evidence\n got %s\nwant %s", gotJSON, wantJSON)
	}
	// The default CPU policy's extension, with no agent policy: empty.
	ids, ok := cpu["ear.trustee.identifiers"].(map[string]any)
	if !ok || !reflect.DeepEqual(ids, map[string]any{"validated": map[string]any{}}) {
		t.Errorf("ear.trustee.identifiers = %v", cpu["ear.trustee.identifiers"])
	}

	// Member order of the claims, as upstream's ear crate writes them.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	order := []string{`"eat_profile"`, `"iat"`, `"ear.verifier-id"`, `"developer"`, `"build"`, `"submods"`, `"cpu0"`,
		`"ear.status"`, `"ear.trustworthiness-vector"`, `"instance-identity"`, `"configuration"`, `"executables"`,
		`"file-system"`, `"hardware"`, `"runtime-opaque"`, `"storage-opaque"`, `"sourced-data"`,
		`"ear.appraisal-policy-id"`, `"ear.veraison.annotated-evidence"`, `"report_data"`, `"runtime_data_claims"`, `"sample"`,
		`"ear.trustee.identifiers"`, `"exp"`, `"iss"`}
	last := -1
	for _, k := range order {
		i := bytes.Index(payload, []byte(k+":"))
		if i <= last {
			t.Fatalf("member %s out of order in %s", k, payload)
		}
		last = i
	}
}

func mustReportData(t *testing.T, req VerificationRequest) []byte {
	d, _, err := ExpectedReportData(req.RuntimeData, "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The JWKS of the fixture key and chain is exactly upstream's, and a token
// signed with them verifies through the x5c chain.
func TestSignerFixture(t *testing.T) {
	dir := testvectors.Path("trustee/attestation-service/tests/fixtures/jwk/")
	cfg := Config{TokenBroker: TokenBrokerConfig{Signer: &SignerConfig{
		KeyPath: dir + "signing-key.pem", CertPath: dir + "cert-chain.pem", CertURL: "",
	}}}
	s := newTestService(t, cfg, nil)
	want, err := os.ReadFile(dir + "expected-jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal(s.JWKS(), &got); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	json.Unmarshal(want, &exp)
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("JWKS = %s\nwant %s", s.JWKS(), want)
	}

	token, err := s.Evaluate(context.Background(), []VerificationRequest{sampleRequest(t)}, []string{"default"})
	if err != nil {
		t.Fatal(err)
	}
	pt := verifyToken(t, token)
	if len(pt.jwk.Certificates) != 1 {
		t.Fatalf("x5c chain has %d certificates", len(pt.jwk.Certificates))
	}
	leaf := pt.jwk.Certificates[0]
	if _, err := leaf.Verify(x509VerifyOptions(leaf)); err != nil {
		t.Errorf("x5c chain does not verify to the fixture root: %v", err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(pt.jwk.Key) {
		t.Error("x5c leaf does not certify the header key")
	}
}

func TestSignerConfigErrors(t *testing.T) {
	dir := testvectors.Path("trustee/attestation-service/tests/fixtures/jwk/")
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := tmp + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	otherChain, _ := os.ReadFile(testvectors.Path("trustee/kbs/test/data/test_cert_chain.pem"))
	tests := []struct {
		name   string
		signer *SignerConfig
	}{
		{"missing key file", &SignerConfig{KeyPath: tmp + "/absent.pem"}},
		{"no key path", &SignerConfig{CertPath: dir + "cert-chain.pem"}},
		{"not a key", &SignerConfig{KeyPath: write("garbage.pem", "hello")}},
		{"P-384 key", &SignerConfig{KeyPath: write("p384.pem", pemKey(t, elliptic.P384(), false))}},
		{"chain of another key", &SignerConfig{KeyPath: dir + "signing-key.pem", CertPath: write("other.pem", string(otherChain))}},
		{"empty chain", &SignerConfig{KeyPath: dir + "signing-key.pem", CertPath: write("empty.pem", "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{TokenBroker: TokenBrokerConfig{Signer: tc.signer}}, Options{Store: storagetest.NewFaulty(memory.New())})
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// A SEC1 ("EC PRIVATE KEY") key is accepted like PKCS#8, and x5u is
// published.
func TestSignerSEC1AndURL(t *testing.T) {
	p := t.TempDir() + "/k.pem"
	if err := os.WriteFile(p, []byte(pemKey(t, elliptic.P256(), true)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestService(t, Config{TokenBroker: TokenBrokerConfig{Signer: &SignerConfig{KeyPath: p, CertURL: "https://as.example/cert?a=1&b=2"}}}, nil)
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", s.JWKS(), err)
	}
	if jwks.Keys[0]["x5u"] != "https://as.example/cert?a=1&b=2" || jwks.Keys[0]["x5c"] != nil {
		t.Errorf("jwk = %v", jwks.Keys[0])
	}
	if !bytes.Contains(s.JWKS(), []byte("a=1&b=2")) {
		t.Error("x5u is HTML-escaped")
	}
}

func TestInitDataClaims(t *testing.T) {
	doc, err := os.ReadFile("testdata/initdata-agent-policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := newTestService(t, Config{}, nil)
	req := sampleRequest(t)
	req.InitData = &InitData{TOML: string(doc)}
	token, err := s.Evaluate(ctx, []VerificationRequest{req}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpu := verifyToken(t, token).submod(t, "cpu0")
	ev := cpu["ear.veraison.annotated-evidence"].(map[string]any)

	// The sample verifier reports b64(H(document)) with the document's
	// algorithm (sha384 here).
	digest := sha512.Sum384(doc)
	if ev["init_data"] != base64.StdEncoding.EncodeToString(digest[:]) {
		t.Errorf("init_data = %v", ev["init_data"])
	}
	claims := ev["init_data_claims"].(map[string]any)
	if _, ok := claims["policy.rego"]; ok {
		t.Error("policy.rego not replaced by agent_policy_claims")
	}
	if claims["extra"] != "kept as a string" {
		t.Errorf("extra = %v", claims["extra"])
	}
	cdh := claims["cdh.toml"].(map[string]any)
	if cdh["kbc"].(map[string]any)["name"] != "cc_kbc" ||
		!strings.HasPrefix(cdh["image"].(map[string]any)["extra_root_certificates"].([]any)[0].(string), "-----BEGIN CERTIFICATE-----\n") ||
		cdh["image"].(map[string]any)["max_concurrent_layer_downloads_per_image"] != json.Number("3") {
		t.Errorf("cdh.toml claims = %v", cdh)
	}
	if claims["aa.toml"].(map[string]any)["token_configs"].(map[string]any)["kbs"].(map[string]any)["url"] != "https://kbs.example:8080" {
		t.Errorf("aa.toml claims = %v", claims["aa.toml"])
	}
	args := claims["agent_policy_claims"].(map[string]any)["containers"].([]any)[1].(map[string]any)["OCI"].(map[string]any)["Process"].(map[string]any)["Args"].([]any)
	if args[0] != "/docker-entrypoint.sh" {
		t.Errorf("Args = %v", args)
	}
	// The default policy turns the agent policy into validated identifiers.
	gotIDs, _ := json.Marshal(cpu["ear.trustee.identifiers"])
	if want := `{"validated":{"container_images":["docker.io/library/nginx:1.27"],"container_uids":[65535,101]}}`; string(gotIDs) != want {
		t.Errorf("identifiers = %s, want %s", gotIDs, want)
	}

	// Policies can read the claims as upstream's integration tests do.
	for name, rule := range map[string]string{
		"cdh.toml":            `input.init_data_claims["cdh.toml"].image.extra_root_certificates[0] == "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTESTTESTTESTTESTTESTTESTTEST\n-----END CERTIFICATE-----\n"`,
		"agent_policy_claims": `input.init_data_claims.agent_policy_claims.containers[1].OCI.Process.Args[0] = "/docker-entrypoint.sh"`,
		"init_data":           `input.init_data == "` + base64.StdEncoding.EncodeToString(digest[:]) + `"`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := s.SetPolicy(ctx, "initdata_cpu", []byte(trustPolicy("hardware := 2 if {\n\t"+rule+"\n}\n"))); err != nil {
				t.Fatal(err)
			}
			token, err := s.Evaluate(ctx, []VerificationRequest{req}, []string{"initdata"})
			if err != nil {
				t.Fatal(err)
			}
			if hw := verifyToken(t, token).vector(t, "cpu0")["hardware"]; hw != 2 {
				t.Errorf("hardware = %d: the rule did not match", hw)
			}
		})
	}
}

// A given digest is reported by the sample verifier; there are no
// init_data_claims then (null).
func TestInitDataDigest(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	req := sampleRequest(t)
	d := sha256.Sum256([]byte("init-data"))
	req.InitData = &InitData{Digest: d[:]}
	token, err := s.Evaluate(context.Background(), []VerificationRequest{req}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := verifyToken(t, token).submod(t, "cpu0")["ear.veraison.annotated-evidence"].(map[string]any)
	if ev["init_data"] != base64.StdEncoding.EncodeToString(d[:]) {
		t.Errorf("init_data = %v", ev["init_data"])
	}
	if v, ok := ev["init_data_claims"]; !ok || v != nil {
		t.Errorf("init_data_claims = %v, %v; want null", v, ok)
	}
}

func TestParseInitDataErrors(t *testing.T) {
	tests := map[string]string{
		"not toml":          "version = ",
		"missing version":   "algorithm = \"sha256\"\n[data]\n",
		"missing algorithm": "version = \"0.1.0\"\n[data]\n",
		"missing data":      "version = \"0.1.0\"\nalgorithm = \"sha256\"\n",
		"unknown algorithm": "version = \"0.1.0\"\nalgorithm = \"sha-384\"\n[data]\n",
		"upper case":        "version = \"0.1.0\"\nalgorithm = \"SHA384\"\n[data]\n",
		"sm3":               "version = \"0.1.0\"\nalgorithm = \"sm3\"\n[data]\n",
		"data not strings":  "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n",
		"version not str":   "version = 1\nalgorithm = \"sha256\"\n[data]\n",
		"too large":         "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = \"" + strings.Repeat("a", limits.MaxInitDataBytes) + "\"\n",
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, _, err := InitDataClaims(doc); !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("InitDataClaims = %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestInitDataConversions(t *testing.T) {
	doc := `version = "0.1.0"
algorithm = "sha256"
[data]
"cdh.toml" = '''
f = 1.0
g = nan
d = 1979-05-27T07:32:00Z
ld = 1979-05-27
lt = 07:32:00.5
[[t]]
a = 1
'''
"aa.toml" = "not = [toml"
"policy.rego" = "package x\npolicy_data := {\"a\": 1} trailing"
`
	d, claims, err := InitDataClaims(doc)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(doc)); !bytes.Equal(d, want[:]) {
		t.Error("digest is not sha256 of the document")
	}
	got, _ := json.Marshal(claims["cdh.toml"])
	if want := `{"d":{"$__toml_private_datetime":"1979-05-27T07:32:00Z"},"f":1.0,"g":null,"ld":{"$__toml_private_datetime":"1979-05-27"},"lt":{"$__toml_private_datetime":"07:32:00.5"},"t":[{"a":1}]}`; string(got) != want {
		t.Errorf("cdh.toml = %s\nwant      %s", got, want)
	}
	if claims["aa.toml"] != "not = [toml" {
		t.Errorf("unparseable aa.toml must stay a string: %v", claims["aa.toml"])
	}
	if _, ok := claims["agent_policy_claims"]; ok {
		t.Error("policy_data with trailing content must not be extracted")
	}
	if claims["policy.rego"] == nil {
		t.Error("policy.rego must stay when policy_data does not parse")
	}
}

func TestExpectedReportData(t *testing.T) {
	// The vector of upstream's attestation-service lib.rs test.
	want, _ := hexDecode("e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3")
	got, claims, err := ExpectedReportData(&RuntimeData{Structured: json.RawMessage(`{"b": 1, "a": "test", "c": {"d": "e"}}`)}, protocol.SHA384)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ExpectedReportData = %x, %v", got, err)
	}
	if !reflect.DeepEqual(claims, map[string]any{"b": json.Number("1"), "a": "test", "c": map[string]any{"d": "e"}}) {
		t.Errorf("claims = %v", claims)
	}
	raw, claims, err := ExpectedReportData(&RuntimeData{Raw: []byte("aaaaa")}, "")
	if err != nil || string(raw) != "aaaaa" || claims != nil {
		t.Errorf("raw = %q %v %v", raw, claims, err)
	}
	for name, rd := range map[string]*RuntimeData{
		"both":    {Raw: []byte("a"), Structured: json.RawMessage(`{}`)},
		"neither": {},
		"bad":     {Structured: json.RawMessage(`{`)},
		"deep":    {Structured: json.RawMessage(strings.Repeat("[", 100) + strings.Repeat("]", 100))},
	} {
		if _, _, err := ExpectedReportData(rd, ""); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		b[i] = v
	}
	return b, nil
}

func TestEvaluateErrors(t *testing.T) {
	ctx := context.Background()
	good := sampleRequest(t)
	mismatch := good
	mismatch.Evidence = sampleEvidence("1", []byte("some other report data"))
	badB64 := good
	badB64.Evidence = []byte(`{"svn":"1","report_data":"%%%"}`)
	unknown := good
	unknown.Tee = protocol.TeeTdx
	notJSON := good
	notJSON.Evidence = []byte("svn=1")
	badInit := good
	badInit.InitData = &InitData{TOML: "nope"}
	badAlg := good
	badAlg.HashAlgorithm = protocol.SM3

	tests := []struct {
		name     string
		reqs     []VerificationRequest
		policies []string
		want     []error
		contains string
	}{
		{"no requests", nil, nil, []error{ErrInvalidRequest}, ""},
		{"report data mismatch", []VerificationRequest{good, mismatch}, nil, []error{ErrVerification, verifier.ErrReportDataMismatch}, "REPORT_DATA"},
		{"bad base64 report data", []VerificationRequest{badB64}, nil, []error{ErrVerification, verifier.ErrMalformedEvidence}, "base64"},
		{"unsupported tee", []VerificationRequest{unknown}, nil, []error{ErrVerification, verifier.ErrUnsupportedTee}, "tdx"},
		{"evidence not json", []VerificationRequest{notJSON}, nil, []error{ErrInvalidRequest}, ""},
		{"bad init-data", []VerificationRequest{badInit}, nil, []error{ErrInvalidRequest}, "init data"},
		{"unsupported hash", []VerificationRequest{badAlg}, nil, []error{ErrInvalidRequest}, ""},
		{"unknown policy", []VerificationRequest{good}, []string{"nope"}, []error{ErrPolicyNotFound}, "nope_cpu"},
		{"illegal policy id", []VerificationRequest{good}, []string{"../x"}, []error{ErrInvalidPolicy}, ""},
	}
	s := newTestService(t, Config{}, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token, err := s.Evaluate(ctx, tc.reqs, tc.policies)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Evaluate = %v, want %v", err, w)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
			if token != "" {
				t.Error("a token was issued")
			}
		})
	}
}

func TestPolicyResults(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		policy     string
		want       error // from Evaluate
		wantStatus string
		wantVector map[string]int64
		check      func(t *testing.T, cpu map[string]any)
	}{
		{
			name:       "no trust_claims rule: every claim 0, as upstream",
			policy:     "package policy\nimport rego.v1\nallow := true\n",
			wantStatus: "none",
			wantVector: map[string]int64{"instance-identity": 0, "configuration": 0, "executables": 0, "file-system": 0, "hardware": 0, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0},
		},
		{
			name:       "partial trust_claims: unset claims are omitted",
			policy:     "package policy\ntrust_claims := {\"hardware\": 2}\n",
			wantStatus: "affirming",
			wantVector: map[string]int64{"hardware": 2},
		},
		{
			name:       "warning tier",
			policy:     "package policy\ntrust_claims := {\"hardware\": 2, \"configuration\": 32}\n",
			wantStatus: "warning",
		},
		{
			name:       "negative values",
			policy:     "package policy\ntrust_claims := {\"hardware\": -97, \"executables\": -1}\n",
			wantStatus: "contraindicated",
			wantVector: map[string]int64{"hardware": -97, "executables": -1},
		},
		{
			name:       "values wrap to int8 as upstream",
			policy:     "package policy\ntrust_claims := {\"hardware\": 258}\n",
			wantStatus: "affirming",
			wantVector: map[string]int64{"hardware": 2},
		},
		{
			name:       "v0 syntax",
			policy:     "package policy\ndefault hardware = 97\nhardware = 2 { input.sample.svn == \"1\" }\ntrust_claims = {\"hardware\": hardware}\n",
			wantStatus: "affirming",
		},
		{
			name:   "extensions",
			policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"z.ext\", \"key\": -70, \"value\": {\"b\": [1, \"x\"]}}, {\"name\": \"a.ext\", \"key\": -71, \"value\": 1.5}, {\"name\": \"n.ext\", \"key\": -72, \"value\": null}]\n",
			check: func(t *testing.T, cpu map[string]any) {
				if got, _ := json.Marshal(cpu["z.ext"]); string(got) != `{"b":[1,"x"]}` {
					t.Errorf("z.ext = %s", got)
				}
				if cpu["a.ext"] != json.Number("1.5") {
					t.Errorf("a.ext = %v", cpu["a.ext"])
				}
				if _, ok := cpu["n.ext"]; ok {
					t.Error("null extension values are omitted upstream")
				}
			},
		},
		{name: "empty trust_claims", policy: "package policy\ntrust_claims := {}\n", want: ErrPolicyEvaluation},
		{name: "trust_claims undefined", policy: "package policy\ntrust_claims := {\"hardware\": 2} if { false }\n", want: ErrPolicyEvaluation},
		{name: "trust_claims not an object", policy: "package policy\ntrust_claims := [2]\n", want: ErrPolicyEvaluation},
		{name: "unknown claim", policy: "package policy\ntrust_claims := {\"firmware\": 2}\n", want: ErrPolicyEvaluation},
		{name: "fractional claim", policy: "package policy\ntrust_claims := {\"hardware\": 2.5}\n", want: ErrPolicyEvaluation},
		{name: "string claim", policy: "package policy\ntrust_claims := {\"hardware\": \"2\"}\n", want: ErrPolicyEvaluation},
		{name: "conflicting rules", policy: "package policy\nhardware := 2 if { input.sample }\nhardware := 3 if { input.sample.svn }\ntrust_claims := {\"hardware\": hardware}\n", want: ErrPolicyEvaluation},
		{name: "extensions not an array", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := {}\n", want: ErrPolicyEvaluation},
		{name: "extension without value", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"x\", \"key\": 1}]\n", want: ErrPolicyEvaluation},
		{name: "duplicate extension name", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"x\", \"key\": 1, \"value\": 1}, {\"name\": \"x\", \"key\": 2, \"value\": 1}]\n", want: ErrPolicyEvaluation},
		{name: "duplicate extension key", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"x\", \"key\": 1, \"value\": 1}, {\"name\": \"y\", \"key\": 1, \"value\": 1}]\n", want: ErrPolicyEvaluation},
		{name: "reserved extension name", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"ear.status\", \"key\": 1, \"value\": \"affirming\"}]\n", want: ErrPolicyEvaluation},
		{name: "extension key out of range", policy: "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"x\", \"key\": 4294967296, \"value\": 1}]\n", want: ErrPolicyEvaluation},
		{name: "query_reference_value with a number", policy: "package policy\ntrust_claims := {\"hardware\": 2} if { query_reference_value(1) }\n", want: ErrPolicyEvaluation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, Config{}, nil)
			if err := s.SetPolicy(ctx, "t_cpu", []byte(tc.policy)); err != nil {
				t.Fatalf("SetPolicy: %v", err)
			}
			token, err := s.Evaluate(ctx, []VerificationRequest{sampleRequest(t)}, []string{"t"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Evaluate = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			pt := verifyToken(t, token)
			cpu := pt.submod(t, "cpu0")
			if tc.wantStatus != "" && cpu["ear.status"] != tc.wantStatus {
				t.Errorf("status = %v, want %s", cpu["ear.status"], tc.wantStatus)
			}
			if tc.wantVector != nil && !reflect.DeepEqual(pt.vector(t, "cpu0"), tc.wantVector) {
				t.Errorf("vector = %v, want %v", pt.vector(t, "cpu0"), tc.wantVector)
			}
			if tc.check != nil {
				tc.check(t, cpu)
			}
		})
	}
}

func TestSetPolicyErrors(t *testing.T) {
	tests := []struct {
		name, id, policy string
		want             error
	}{
		{"syntax error", "p", "package policy\ntrust_claims := {", ErrInvalidPolicy},
		{"unsafe variable", "p", "package policy\ntrust_claims := {\"hardware\": x}\n", ErrInvalidPolicy},
		{"unknown builtin", "p", "package policy\ntrust_claims := {\"hardware\": nope(1)}\n", ErrInvalidPolicy},
		{"network builtin", "p", "package policy\ntrust_claims := {\"hardware\": 2} if { http.send({\"method\": \"get\", \"url\": \"http://x\"}) }\n", ErrInvalidPolicy},
		{"not utf-8", "p", "package policy\n# \xff\n", ErrInvalidPolicy},
		{"too large", "p", "package policy\n#" + strings.Repeat("x", 1<<20), ErrInvalidPolicy},
		{"bad id", "a b", "package policy\n", ErrInvalidPolicy},
		{"empty id", "", "package policy\n", ErrInvalidPolicy},
	}
	s := newTestService(t, Config{}, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetPolicy(context.Background(), tc.id, []byte(tc.policy)); !errors.Is(err, tc.want) {
				t.Fatalf("SetPolicy = %v, want %v", err, tc.want)
			}
			if _, err := s.GetPolicy(context.Background(), tc.id); err == nil {
				t.Error("a rejected policy was stored")
			}
		})
	}
	if _, err := s.GetPolicy(context.Background(), "absent"); !errors.Is(err, ErrPolicyNotFound) {
		t.Errorf("GetPolicy(absent) = %v", err)
	}
}

// A policy changed behind the service's back (by another replica sharing
// the store) is used on the next evaluation; an unchanged one is reused.
func TestPolicyCacheFollowsStore(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	s := newTestService(t, Config{}, st)
	hw := func() int64 {
		t.Helper()
		token, err := s.Evaluate(ctx, []VerificationRequest{sampleRequest(t)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return verifyToken(t, token).vector(t, "cpu0")["hardware"]
	}
	if got := hw(); got != 97 {
		t.Fatalf("hardware = %d", got)
	}
	other := newTestService(t, Config{}, st) // a second replica
	if err := other.SetPolicy(ctx, "default_cpu", []byte(trustPolicy("hardware := 5\n"))); err != nil {
		t.Fatal(err)
	}
	if got := hw(); got != 5 {
		t.Fatalf("hardware = %d after another replica changed the policy", got)
	}
	n := s.engine.lru.Len()
	hw()
	if s.engine.lru.Len() != n {
		t.Error("an unchanged policy was compiled again")
	}
}

func TestVerboseToken(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name    string
		verbose *bool
		want    bool
	}{{"default keeps additional-evidence", nil, true}, {"verbose_token=false drops it", &f, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, Config{TokenBroker: TokenBrokerConfig{VerboseToken: tc.verbose}}, nil)
			rd, digest := kbsRuntimeData(t, `{"sampledevice":{"svn":"2"}}`)
			req := VerificationRequest{Tee: protocol.TeeSample, Evidence: sampleEvidence("1", digest), RuntimeData: &RuntimeData{Structured: rd}}
			token, err := s.Evaluate(context.Background(), []VerificationRequest{req}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := verifyToken(t, token).submod(t, "cpu0")["ear.veraison.annotated-evidence"].(map[string]any)
			rdc := ev["runtime_data_claims"].(map[string]any)
			if _, ok := rdc["additional-evidence"]; ok != tc.want {
				t.Errorf("additional-evidence present = %v, want %v", ok, tc.want)
			}
			if rdc["nonce"] != "bm9uY2U=" {
				t.Errorf("runtime_data_claims = %v", rdc)
			}
		})
	}
}

func TestRawRuntimeData(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	rd := []byte("raw report data")
	req := VerificationRequest{Tee: protocol.TeeSample, Evidence: sampleEvidence("1", rd), RuntimeData: &RuntimeData{Raw: rd}}
	token, err := s.Evaluate(context.Background(), []VerificationRequest{req}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := verifyToken(t, token).submod(t, "cpu0")["ear.veraison.annotated-evidence"].(map[string]any)
	if v, ok := ev["runtime_data_claims"]; !ok || v != nil {
		t.Errorf("runtime_data_claims = %v (present %v), want null", v, ok)
	}
}

// Several devices of one class are numbered in order.
func TestSubmodNaming(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	reqs := []VerificationRequest{
		{Tee: protocol.TeeSampleDevice, Evidence: sampleEvidence("2", nil)},
		sampleRequest(t),
		{Tee: protocol.TeeSampleDevice, Evidence: sampleEvidence("3", nil)},
	}
	token, err := s.Evaluate(context.Background(), reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := verifyToken(t, token)
	for name, svn := range map[string]string{"gpu0": "2", "gpu1": "3"} {
		ev := pt.submod(t, name)["ear.veraison.annotated-evidence"].(map[string]any)
		if ev["sampledevice"].(map[string]any)["svn"] != svn {
			t.Errorf("%s = %v", name, ev)
		}
	}
	pt.submod(t, "cpu0")
}

func TestGenerateSupplementalChallenge(t *testing.T) {
	s := newTestService(t, Config{}, nil)
	for _, tee := range []protocol.Tee{protocol.TeeSample, protocol.TeeTdx, protocol.TeeSnp} {
		c, err := s.GenerateSupplementalChallenge(context.Background(), tee, "{}")
		if err != nil || c != "" {
			t.Errorf("%s: %q, %v", tee, c, err)
		}
	}
	if _, err := s.GenerateSupplementalChallenge(context.Background(), protocol.TeeSe, "{}"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("se: %v, want ErrUnsupported", err)
	}
	reg := DefaultVerifiers()
	reg.Register(protocol.TeeSe, seFake{})
	s2, err := New(context.Background(), Config{}, Options{Store: storagetest.NewFaulty(memory.New()), Verifiers: reg})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s2.GenerateSupplementalChallenge(context.Background(), protocol.TeeSe, "p"); err != nil || c != "challenge(p)" {
		t.Errorf("se with a generator: %q, %v", c, err)
	}
}

type seFake struct{}

func (seFake) Evaluate(context.Context, []byte, verifier.Expected) ([]verifier.Result, error) {
	return nil, errors.New("not used")
}

func (seFake) GenerateSupplementalChallenge(_ context.Context, p string) (string, error) {
	return "challenge(" + p + ")", nil
}

func TestConfigResolve(t *testing.T) {
	f := false
	tests := []struct {
		name string
		cfg  Config
		want brokerSettings
		err  error
	}{
		{"defaults", Config{}, brokerSettings{durationMin: 5, issuer: DefaultIssuerName, developer: DefaultDeveloperName, build: DefaultBuildName, profile: DefaultProfileName, verbose: true}, nil},
		{"legacy duration", Config{AttestationTokenConfig: &LegacyTokenConfig{DurationMin: 9}}, brokerSettings{durationMin: 9, issuer: DefaultIssuerName, developer: DefaultDeveloperName, build: DefaultBuildName, profile: DefaultProfileName, verbose: true}, nil},
		{"broker wins over legacy", Config{TokenBroker: TokenBrokerConfig{DurationMin: 3, IssuerName: "i", VerboseToken: &f}, AttestationTokenConfig: &LegacyTokenConfig{DurationMin: 9}}, brokerSettings{durationMin: 3, issuer: "i", developer: DefaultDeveloperName, build: DefaultBuildName, profile: DefaultProfileName, verbose: false}, nil},
		{"negative duration", Config{TokenBroker: TokenBrokerConfig{DurationMin: -1}}, brokerSettings{}, ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.resolve(discardLog())
			if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("resolve = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
	bad := rvpsGrpc()
	bad.Address = "ftp://127.0.0.1:50003"
	if _, err := New(context.Background(), Config{RVPS: bad}, Options{Store: storagetest.NewFaulty(memory.New())}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("GrpcRemote RVPS at %s: %v, want ErrInvalidConfig", bad.Address, err)
	}
}

// A remote RVPS that is down does not stop the AS from starting; its
// queries fail with rvps.ErrUnavailable within their deadline.
func TestRemoteRVPSDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := rvpsGrpc()
	cfg.Address = "http://" + addr
	s, err := New(context.Background(), Config{RVPS: cfg}, Options{Store: storagetest.NewFaulty(memory.New())})
	if err != nil {
		t.Fatalf("New with an RVPS that is down: %v", err)
	}
	defer s.Close()
	if _, _, err := s.RVPS().Query(context.Background(), "x"); !errors.Is(err, rvps.ErrUnavailable) {
		t.Errorf("Query = %v, want rvps.ErrUnavailable", err)
	}
}

// Real upstream KBS configurations: their [attestation_service] sections
// decode into Config (unknown keys such as type and timeout are ignored).
func TestUpstreamKBSConfigs(t *testing.T) {
	tests := []struct {
		file     string
		rvpsType string
		duration int
	}{
		{"coco-as-builtin-1.toml", "GrpcRemote", 5},
		{"coco-as-builtin-2.toml", "BuiltIn", 5},
		{"coco-as-builtin-3.toml", "BuiltIn", 5},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cfg := decodeKBSConfig(t, testvectors.Path("trustee/kbs/test_data/configs/")+tc.file)
			if cfg.RVPS.Type != tc.rvpsType || cfg.TokenBroker.DurationMin != tc.duration {
				t.Errorf("decoded %+v", cfg)
			}
		})
	}
}

// Standalone AS JSON configurations as upstream documents them.
func TestStandaloneJSONConfig(t *testing.T) {
	doc := `{
	  "storage_backend": {"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": "/opt/x"}}},
	  "rvps_config": {"type": "BuiltIn"},
	  "attestation_token_broker": {
	    "duration_min": 5, "issuer_name": "test", "developer_name": "someone", "build_name": "0.1.0",
	    "profile_name": "tag:github.com,2024:confidential-containers/Trustee",
	    "signer": {"key_path": "/etc/key", "cert_url": "https://example.io", "cert_path": "/etc/cert.pem"}
	  },
	  "verifier_config": {"tpm_verifier": {"trusted_ak_keys_dir": "/etc/tpm/trusted_ak_keys", "max_trusted_ak_keys": 100}}
	}`
	var cfg Config
	if err := json.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	want := TokenBrokerConfig{DurationMin: 5, IssuerName: "test", DeveloperName: "someone", BuildName: "0.1.0",
		ProfileName: DefaultProfileName, Signer: &SignerConfig{KeyPath: "/etc/key", CertPath: "/etc/cert.pem", CertURL: "https://example.io"}}
	if !reflect.DeepEqual(cfg.TokenBroker, want) || cfg.RVPS.Type != "BuiltIn" || cfg.VerifierConfig["tpm_verifier"] == nil {
		t.Errorf("decoded %+v", cfg)
	}
}

// Evaluations run concurrently with policy changes; every token is valid
// and reflects one of the two policy versions.
func TestConcurrentEvaluateAndSetPolicy(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t, Config{}, nil)
	req := sampleRequest(t)
	errs := make(chan error, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			hw := 3 + i%2
			if err := s.SetPolicy(ctx, "default_cpu", []byte(trustPolicy("hardware := "+string(rune('0'+hw))+"\n"))); err != nil {
				errs <- err
				return
			}
		}
	}()
	var mu sync.Mutex
	var tokens []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 3 {
				token, err := s.Evaluate(ctx, []VerificationRequest{req}, nil)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				tokens = append(tokens, token)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if hw := verifyToken(t, tok).vector(t, "cpu0")["hardware"]; hw != 97 && hw != 3 && hw != 4 {
			t.Errorf("hardware = %d", hw)
		}
	}
}

// Documents whose shape would make the TOML decoder super-linear are
// refused before decoding; strings and comments do not count.
func TestTOMLShape(t *testing.T) {
	head := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
	n := 200000
	refused := map[string]string{
		"nested inline tables": head + "y = " + strings.Repeat("{a=", n) + "\"1\"" + strings.Repeat("}", n) + "\n",
		"nested arrays":        head + "y = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n",
		"long dotted key":      head + "y" + strings.Repeat(".a", n) + " = \"1\"\n",
		"long table header":    "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n[x" + strings.Repeat(".a", n) + "]\n",
		"quoted components":    head + "y" + strings.Repeat(`."a"`, n) + " = \"1\"\n",
	}
	for name, doc := range refused {
		t.Run(name, func(t *testing.T) {
			if _, _, err := InitDataClaims(doc); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "nest") && !strings.Contains(err.Error(), "dotted") {
				t.Fatalf("InitDataClaims = %v", err)
			}
		})
	}
	// The same shapes inside cdh.toml leave it a string.
	doc := head + "\"cdh.toml\" = '''\ny" + strings.Repeat(".a", n) + " = 1\n'''\n"
	_, claims, err := InitDataClaims(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["cdh.toml"].(string); !ok {
		t.Error("an over-nested cdh.toml was decoded")
	}
	accepted := []string{
		head + "s = \"[[[[{{{{ a.b.c.d \\\" ]]\"\n# [[[[[[[[ a.a.a.a.a\nl = '[[[[.....'\n",
		head + "m = \"\"\"\n[[[[[[[[[[ \\\"\"\" .......\n\"\"\"\"\"\nn = '''[[[[[[''''\n",
		head + "\"a.b.c\" = \"x\"\n",
		head + "d = \"" + strings.Repeat("[.", 1000) + "\"\n",
	}
	for i, doc := range accepted {
		if err := initdata.CheckTOMLShape(doc); err != nil {
			t.Errorf("doc %d: %v", i, err)
		}
		if _, err := initdata.Parse([]byte(doc)); err != nil {
			t.Errorf("doc %d: %v", i, err)
		}
	}
}

// TestDefaultPolicyReseeded: a store that lost the built-in policies (a
// Redis restarted empty) does not fail attestations until a restart: the
// built-in version is evaluated and written back. A policy the operator
// stored is never replaced, and an id with no built-in stays not found.
func TestDefaultPolicyReseeded(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	s := newTestService(t, Config{}, st)
	key := "default_cpu" + policySuffix
	if err := st.Delete(ctx, storage.NamespaceAttestationPolicy, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Evaluate(ctx, []VerificationRequest{sampleRequest(t)}, nil); err != nil {
		t.Fatalf("Evaluate with the built-in policy gone from the store: %v", err)
	}
	got, err := st.Get(ctx, storage.NamespaceAttestationPolicy, key)
	if err != nil || !bytes.Equal(got, DefaultPolicies()["default_cpu"]) {
		t.Fatalf("not written back: %v", err)
	}

	// Gone again and the store refuses writes: still served.
	if err := st.Delete(ctx, storage.NamespaceAttestationPolicy, key); err != nil {
		t.Fatal(err)
	}
	s.engine.store = refusingWrites{st}
	_, err = s.Evaluate(ctx, []VerificationRequest{sampleRequest(t)}, nil)
	s.engine.store = st
	if err != nil {
		t.Fatalf("Evaluate while the store refuses the write-back: %v", err)
	}

	// An operator's policy is what is evaluated, not the built-in one.
	if err := s.SetPolicy(ctx, "default_cpu", []byte(trustPolicy("hardware := 5\n"))); err != nil {
		t.Fatal(err)
	}
	token, err := s.Evaluate(ctx, []VerificationRequest{sampleRequest(t)}, nil)
	if err != nil || verifyToken(t, token).vector(t, "cpu0")["hardware"] != 5 {
		t.Fatalf("the operator's policy: %v", err)
	}
	if _, err := s.engine.load(ctx, "no_such_policy"); !errors.Is(err, ErrPolicyNotFound) {
		t.Fatalf("load of an unknown id = %v", err)
	}
}

// refusingWrites is a store whose writes fail.
type refusingWrites struct{ storage.Store }

func (refusingWrites) Set(context.Context, string, string, []byte, bool) (bool, error) {
	return false, errors.New("store refuses writes")
}

// TestStoredSignerShared: services started together on one store, without
// a configured signer, sign with one key (one of them generates and stores
// it, the others read it); a service on another store has its own.
func TestStoredSignerShared(t *testing.T) {
	st := memory.New()
	const n = 8
	jwks := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := New(context.Background(), Config{}, Options{Store: st})
			if err != nil {
				t.Error(err)
				return
			}
			jwks[i] = s.signer.jwk
		})
	}
	wg.Wait()
	for i := range jwks {
		if !bytes.Equal(jwks[i], jwks[0]) {
			t.Fatalf("service %d signs with another key", i)
		}
	}
	other, err := New(context.Background(), Config{}, Options{Store: memory.New()})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.signer.jwk, jwks[0]) {
		t.Fatal("a service on another store has the same key")
	}
	// An unusable stored key is a clear start-up error.
	bad := memory.New()
	if _, err := bad.Set(context.Background(), NamespaceSigner, storedSignerKey, []byte("not a key"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{}, Options{Store: bad}); err == nil || !strings.Contains(err.Error(), "delete it to have a new one generated") {
		t.Fatalf("New with a broken stored key: %v", err)
	}
}
