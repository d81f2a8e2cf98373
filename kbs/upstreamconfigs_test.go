package kbs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/go-trustee/go-trustee/admin"
)

// upstreamCase is what TestUpstreamConfigs expects of one upstream file:
// refused with a message containing refused, or accepted with check
// passing. CheckConfig (the plugin list included) is run too.
type upstreamCase struct {
	refused string
	check   func(t *testing.T, c *Config, ignored []string)
	plugins string
}

func wantEq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantSlice[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantIDP(t *testing.T, c *Config, want ...admin.IdentityProvider) {
	t.Helper()
	wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeAuthenticatedAuthorization)
	if c.Admin.Authentication == nil || c.Admin.Authentication.BearerJWT == nil {
		t.Fatalf("admin.authentication.bearer_jwt missing")
	}
	wantSlice(t, "identity_providers", c.Admin.Authentication.BearerJWT.IdentityProviders, want)
}

func wantACL(t *testing.T, c *Config, want ...admin.ACLRule) {
	t.Helper()
	if c.Admin.Authorization == nil || c.Admin.Authorization.RegexACL == nil {
		t.Fatalf("admin.authorization.regex_acl missing")
	}
	wantSlice(t, "acls", c.Admin.Authorization.RegexACL.ACLs, want)
}

func wantStorage(t *testing.T, c *Config, typ, dir string) {
	t.Helper()
	wantEq(t, "storage_backend.storage_type", c.StorageBackend.StorageType, typ)
	switch typ {
	case "LocalFs":
		wantEq(t, "local_fs.dir_path", c.StorageBackend.Backends.LocalFs.DirPath, dir)
	case "local_json", "LocalJson":
		wantEq(t, "local_json.file_dir_path", c.StorageBackend.Backends.LocalJson.FileDirPath, dir)
	}
}

func wantResourcePlugin(t *testing.T, c *Config, at int) {
	t.Helper()
	if len(c.Plugins) <= at || c.Plugins[at].Name != "resource" || c.Plugins[at].StorageBackendType != "kvstorage" {
		t.Errorf("plugins = %+v, want resource/kvstorage at %d", c.Plugins, at)
	}
}

// wantAdminStartRefused runs admin.New on the [admin] section: upstream's
// Admin::new refuses it at start, and so must we.
func wantAdminStartRefused(t *testing.T, c *Config, msg string) {
	t.Helper()
	_, err := admin.New(context.Background(), c.Admin, admin.Options{})
	if !errors.Is(err, admin.ErrInvalidConfig) || !strings.Contains(err.Error(), msg) {
		t.Errorf("admin.New = %v, want refusal %q", err, msg)
	}
}

// upstreamCases covers every TOML file under testdata/upstream-configs.
var upstreamCases = map[string]upstreamCase{
	"trustee/kbs/config/docker-compose/kbs-config.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{"0.0.0.0:8080"})
		wantEq(t, "insecure_http", c.HTTPServer.InsecureHTTP, true)
		wantSlice(t, "trusted_certs_paths", c.AttestationToken.TrustedCertsPaths, []string{"/opt/confidential-containers/kbs/user-keys/ca-cert.pem"})
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeGRPC)
		wantEq(t, "as_addr", c.AttestationService.ASAddr, "http://as:50004")
		wantIDP(t, c, admin.IdentityProvider{Issuer: "TrusteeInDocker", PublicKeyURI: "/opt/confidential-containers/kbs/user-keys/public.pub"})
		wantACL(t, c, admin.ACLRule{Role: "admin", AllowedEndpoints: "^/kbs/.+$"})
		wantResourcePlugin(t, c, 0)
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/kbs")
	}},
	"trustee/kbs/config/kbs-config.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "insecure_http", c.HTTPServer.InsecureHTTP, true)
		wantEq(t, "insecure_header_jwk", c.AttestationToken.InsecureHeaderJWK, true)
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeBuiltin)
		wantEq(t, "duration_min", c.AttestationService.TokenBroker.DurationMin, 5)
		wantEq(t, "rvps_config.type", c.AttestationService.RVPS.Type, "BuiltIn")
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeInsecureAllowAll)
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/storage")
		wantEq(t, "session_storage_type", c.SessionStorageType, "")
		wantResourcePlugin(t, c, 0)
	}},
	"trustee/kbs/config/kbs-config-grpc.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeGRPC)
		wantEq(t, "as_addr", c.AttestationService.ASAddr, "http://127.0.0.1:50004")
		wantEq(t, "pool_size", c.AttestationService.PoolSize, 200)
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/storage")
	}},
	"trustee/kbs/config/kbs-config-intel-trust-authority.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeIntelTA)
		wantEq(t, "base_url", c.AttestationService.BaseURL, "https://api.trustauthority.intel.com")
		wantEq(t, "api_key", c.AttestationService.APIKey, "tBfd5kKX2x9ahbodKV1...")
		wantEq(t, "certs_file", c.AttestationService.CertsFile, "https://portal.trustauthority.intel.com")
		wantSlice(t, "trusted_jwk_sets", c.AttestationToken.TrustedJWKSets, []string{"https://portal.trustauthority.intel.com"})
	}},
	"trustee/kbs/config/kubernetes/base/kbs-config.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "insecure_header_jwk", c.AttestationToken.InsecureHeaderJWK, true)
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeBuiltin)
		wantIDP(t, c, admin.IdentityProvider{PublicKeyURI: "/kbs/kbs.pem"})
		wantACL(t, c, admin.ACLRule{Role: "admin", AllowedEndpoints: "^/kbs/.+$"})
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/kbs")
		wantResourcePlugin(t, c, 0)
	}},
	"trustee/kbs/config/kubernetes/ita/kbs-config.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeIntelTA)
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeInsecureAllowAll)
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/kbs")
	}},
	"trustee/kbs/test/config/kbs.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{"127.0.0.1:8080"})
		wantEq(t, "private_key", c.HTTPServer.PrivateKey, "./work/https.key")
		wantEq(t, "certificate", c.HTTPServer.Certificate, "./work/https.crt")
		wantEq(t, "insecure_http", c.HTTPServer.InsecureHTTP, false)
		wantSlice(t, "trusted_certs_paths", c.AttestationToken.TrustedCertsPaths, []string{"./work/ca-cert.pem"})
		if s := c.AttestationService.TokenBroker.Signer; s == nil || s.KeyPath != "./work/token.key" || s.CertPath != "./work/token-cert-chain.pem" {
			t.Errorf("signer = %+v", s)
		}
		tpm, _ := c.AttestationService.VerifierConfig["tpm_verifier"].(map[string]any)
		wantEq(t, "tpm_verifier.trusted_ak_keys_dir", tpm["trusted_ak_keys_dir"], any("./work/attestation-service/tpm_trusted_keys"))
		wantStorage(t, c, "LocalFs", "./work/storage")
		wantIDP(t, c, admin.IdentityProvider{Issuer: "issuer", Audience: "kbs", PublicKeyURI: "./work/kbs.pem"})
		wantEq(t, "timeout", c.AttestationService.Timeout, DefaultSessionTimeout)
		wantResourcePlugin(t, c, 0)
	}},
	"trustee/kbs/test/config/resource-kbs.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{"127.0.0.1:50002"})
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeBuiltin)
		wantStorage(t, c, "LocalFs", "./work/storage")
		wantIDP(t, c, admin.IdentityProvider{Issuer: "issuer", Audience: "kbs", PublicKeyURI: "./work/kbs.pem"})
	}},
	"trustee/kbs/test/config/external-plugin.toml":              {plugins: "external", check: wantExternal},
	"trustee/kbs/test/config/external-plugin-tls.toml":          {plugins: "external", check: wantExternal},
	"trustee/kbs/test/config/external-plugin-attest.toml":       {plugins: "external", check: wantExternal},
	"trustee/kbs/test/config/external-plugin-resource.toml":     {plugins: "external", check: wantExternal},
	"trustee/kbs/test/config/external-plugin-resource-tls.toml": {plugins: "external", check: wantExternal},
	// Upstream refuses this [admin] (type without authorization_mode);
	// we read it as the v0.16–v0.20 format it is, see package admin.
	"trustee/kbs/test/test_data/configs/external-plugin-test.toml": {plugins: "external", check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "admin.type (legacy)", c.Admin.Type, admin.TypeInsecureAllowAll)
		if len(c.Plugins) != 2 || c.Plugins[0].Name != "sample" || c.Plugins[0].Item != "test-value" {
			t.Errorf("plugins = %+v", c.Plugins)
		}
	}},
	"trustee/kbs/test_data/configs/coco-as-builtin-1.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "timeout", c.AttestationService.Timeout, 5)
		wantEq(t, "issuer_name", c.AttestationService.TokenBroker.IssuerName, "CoCo-Attestation-Service")
		wantEq(t, "rvps_config.type", c.AttestationService.RVPS.Type, "GrpcRemote")
		wantEq(t, "rvps_config.address", c.AttestationService.RVPS.Address, "http://127.0.0.1:50003")
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{"127.0.0.1:8080"})
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeDenyAll)
		wantStorage(t, c, "local_json", "/opt/confidential-containers/trustee")
	}},
	"trustee/kbs/test_data/configs/coco-as-builtin-2.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "session_storage_type", c.SessionStorageType, "memory")
		wantEq(t, "payload_request_size", c.HTTPServer.PayloadRequestSize, 2)
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeInsecureAllowAll)
		wantStorage(t, c, "Memory", "")
	}},
	// Parses, as upstream; upstream's Admin::new then refuses an empty
	// identity_providers at start, and so does ours.
	"trustee/kbs/test_data/configs/coco-as-builtin-3.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantStorage(t, c, "LocalJson", "/opt/confidential-containers/trustee")
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{DefaultSocket})
		wantAdminStartRefused(t, c, "at least one identity_providers")
	}},
	"trustee/kbs/test_data/configs/coco-as-grpc-1.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantSlice(t, "trusted_certs_paths", c.AttestationToken.TrustedCertsPaths, []string{"/etc/ca", "/etc/ca2"})
		wantEq(t, "as_addr", c.AttestationService.ASAddr, "http://127.0.0.1:50001")
		wantEq(t, "pool_size", c.AttestationService.PoolSize, 100)
		wantEq(t, "timeout", c.AttestationService.Timeout, 600)
		wantEq(t, "private_key", c.HTTPServer.PrivateKey, "/etc/kbs-private.key")
		if len(c.Plugins) != 2 || c.Plugins[0].Name != "sample" || c.Plugins[0].Item != "value1" {
			t.Errorf("plugins = %+v", c.Plugins)
		}
		wantResourcePlugin(t, c, 1)
	}},
	"trustee/kbs/test_data/configs/coco-as-grpc-2.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "session_storage_type", c.SessionStorageType, "memory")
		wantEq(t, "as_addr", c.AttestationService.ASAddr, "http://as:50004")
		wantIDP(t, c,
			admin.IdentityProvider{Issuer: "admin1-issuer", PublicKeyURI: "/opt/confidential-containers/trustee/admin1-pubkey.pem"},
			admin.IdentityProvider{Issuer: "admin2-issuer", PublicKeyURI: "/opt/confidential-containers/trustee/admin2-pubkey.pem"})
		wantACL(t, c, admin.ACLRule{Role: "admin1", AllowedEndpoints: "^/kbs/v0/resource/.+$"}, admin.ACLRule{Role: "admin2", AllowedEndpoints: "^/kbs/v0/config/.+$"})
	}},
	"trustee/kbs/test_data/configs/coco-as-grpc-3.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "as_addr", c.AttestationService.ASAddr, "http://127.0.0.1:50004")
		wantSlice(t, "sockets", c.HTTPServer.Sockets, []string{DefaultSocket})
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeDenyAll)
	}},
	"trustee/kbs/test_data/configs/intel-ta-1.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeIntelTA)
		wantEq(t, "base_url", c.AttestationService.BaseURL, "example.io")
		wantEq(t, "certs_file", c.AttestationService.CertsFile, "file:///etc/ita-cert.pem")
		wantEq(t, "allow_unmatched_policy", c.AttestationService.AllowUnmatchedPolicy, true)
		wantSlice(t, "trusted_jwk_sets", c.AttestationToken.TrustedJWKSets, []string{"/etc/ca", "/etc/ca2"})
	}},
	"trustee/kbs/test_data/configs/intel-ta-2.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeIntelTA)
		wantEq(t, "session_storage_type", c.SessionStorageType, "memory")
	}},
	"trustee/kbs/test_data/configs/intel-ta-3.toml": {check: func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "attestation_service.type", c.AttestationService.Type, ASTypeIntelTA)
		wantEq(t, "api_key", c.AttestationService.APIKey, "tBfd5kKX2x9ahbodKV1...")
	}},
	// The TLS settings of these are compared with upstream's in
	// TestTLSProfilesFromUpstreamConfigs.
	"trustee/kbs/test_data/configs/tls-profile-intermediate.toml": {check: wantProfile("intermediate")},
	"trustee/kbs/test_data/configs/tls-profile-old.toml":          {check: wantProfile("old")},
	"trustee/kbs/test_data/configs/tls-profile-modern.toml":       {check: wantProfile("modern")},
	"trustee/kbs/test_data/configs/tls-profile-custom-pqc.toml":   {check: wantProfile("custom")},
	"trustee/kbs/test_data/configs/tls-profile-custom.toml": {
		refused: "http_server.tls_ciphers leaves out TLS 1.3 suite(s) TLS_AES_128_GCM_SHA256, but this KBS (Go crypto/tls) cannot disable TLS 1.3 suites"},
	"trustee-operator/config/templates/kbs-config-permissive.toml": {check: func(t *testing.T, c *Config, ignored []string) {
		wantEq(t, "worker_count", c.HTTPServer.WorkerCount, 4)
		wantEq(t, "admin.authorization_mode", c.Admin.AuthorizationMode, admin.ModeDenyAll)
		wantEq(t, "insecure_header_jwk", c.AttestationToken.InsecureHeaderJWK, true)
		wantEq(t, "timeout", c.AttestationService.Timeout, 5)
		wantEq(t, "rvps_config.storage_type", c.AttestationService.RVPS.StorageType, "LocalJson")
		wantStorage(t, c, "LocalFs", "/opt/confidential-containers/storage")
		// dir_path is not a LocalJson key; it names the directory
		// LocalJson uses by default, so it is accepted and reported.
		wantSlice(t, "ignored", ignored, []string{"storage_backend.backends.local_json.dir_path"})
		if _, ok := c.AttestationService.VerifierConfig["snp_verifier"].(map[string]any)["vcek_sources"]; !ok {
			t.Errorf("verifier_config = %v", c.AttestationService.VerifierConfig)
		}
		if _, ok := c.AttestationService.VerifierConfig["dcap_verifier"].(map[string]any)["collateral_service"]; !ok {
			t.Errorf("verifier_config = %v", c.AttestationService.VerifierConfig)
		}
		wantResourcePlugin(t, c, 0)
	}},
	// A Go template; TestOperatorRestrictedTemplate renders it.
	"trustee-operator/config/templates/kbs-config-restricted.toml": {},
}

func wantExternal(t *testing.T, c *Config, ignored []string) {
	t.Helper()
	if len(c.Plugins) == 0 || c.Plugins[len(c.Plugins)-1].Name != "external" || len(c.Plugins[len(c.Plugins)-1].Backends) == 0 {
		t.Errorf("plugins = %+v", c.Plugins)
	}
}

func wantProfile(p string) func(t *testing.T, c *Config, _ []string) {
	return func(t *testing.T, c *Config, _ []string) {
		wantEq(t, "tls_profile", c.HTTPServer.TLSProfile, p)
		wantEq(t, "private_key", c.HTTPServer.PrivateKey, "/etc/kbs-private.key")
		wantEq(t, "storage_type", c.StorageBackend.StorageType, "memory")
	}
}

// TestUpstreamConfigs loads every upstream configuration file (copied
// under testdata/upstream-configs) and checks that it is accepted with its
// values read, or refused with the expected message.
func TestUpstreamConfigs(t *testing.T) {
	var files []string
	err := filepath.WalkDir(upstreamConfigDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".toml") {
			files = append(files, filepath.ToSlash(strings.TrimPrefix(p, upstreamConfigDir+string(filepath.Separator))))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(upstreamCases) {
		t.Errorf("%d upstream files, %d cases", len(files), len(upstreamCases))
	}
	for _, f := range files {
		tc, ok := upstreamCases[f]
		if !ok {
			t.Errorf("no case for %s", f)
			continue
		}
		if tc.check == nil && tc.refused == "" {
			continue
		}
		t.Run(f, func(t *testing.T) {
			cfg, ignored, err := LoadConfig(filepath.Join(upstreamConfigDir, f))
			if tc.refused != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("LoadConfig = %v, want refusal %q", err, tc.refused)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("refusal is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			for _, k := range ignored {
				if k != "storage_backend.backends.local_json.dir_path" {
					t.Errorf("key ignored: %s", k)
				}
			}
			if err := CheckConfig(cfg); err != nil {
				t.Errorf("CheckConfig: %v", err)
			}
			tc.check(t, cfg, ignored)
		})
	}
}

// TestOperatorRestrictedTemplate renders trustee-operator's restricted
// kbs-config template (upstream's Go template, with the data its
// GetTLSConfigFromTlsConfig produces) and loads the result.
func TestOperatorRestrictedTemplate(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(upstreamConfigDir, "trustee-operator/config/templates/kbs-config-restricted.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template.Must(template.New("restricted").Parse(string(src)))
	type data struct{ TlsProfile, TlsMinVersion, TlsMaxVersion, TlsCiphers, TlsGroups string }
	for _, tc := range []struct {
		name    string
		d       data
		refused string
		check   func(t *testing.T, c *Config)
	}{
		{name: "default intermediate", d: data{TlsProfile: "intermediate"}, check: func(t *testing.T, c *Config) {
			wantEq(t, "tls_profile", c.HTTPServer.TLSProfile, "intermediate")
		}},
		{name: "modern", d: data{TlsProfile: "modern"}, check: func(t *testing.T, c *Config) {
			s, err := TLSSettings(c.HTTPServer)
			if err != nil {
				t.Fatal(err)
			}
			wantEq(t, "MinVersion", s.MinVersion, uint16(0x0304))
		}},
		{name: "custom, versions and groups", d: data{TlsProfile: "custom", TlsMinVersion: "1.3", TlsGroups: "X25519MLKEM768:X25519"}, check: func(t *testing.T, c *Config) {
			wantEq(t, "tls_min_version", c.HTTPServer.TLSMinVersion, "1.3")
			wantEq(t, "tls_groups", c.HTTPServer.TLSGroups, "X25519MLKEM768:X25519")
		}},
		{name: "custom, every TLS 1.3 suite and an ECDHE suite", d: data{TlsProfile: "custom",
			TlsCiphers: "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256"}, check: func(t *testing.T, c *Config) {
			s, err := TLSSettings(c.HTTPServer)
			if err != nil {
				t.Fatal(err)
			}
			wantSlice(t, "CipherSuites", s.CipherSuites, []uint16{0xc02f})
		}},
		// The operator passes a TLS 1.2-only cipher list with TLS 1.3 on:
		// upstream's OpenSSL refuses such a TLS 1.3 list, and so do we.
		{name: "custom, TLS 1.2 ciphers only", d: data{TlsProfile: "custom", TlsCiphers: "ECDHE-RSA-AES128-GCM-SHA256"},
			refused: "no TLS 1.3 cipher suite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tmpl.Execute(&b, tc.d); err != nil {
				t.Fatal(err)
			}
			c, ignored, err := ParseConfig(b.Bytes())
			if tc.refused != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("ParseConfig = %v, want refusal %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConfig(c); err != nil {
				t.Fatal(err)
			}
			wantSlice(t, "ignored", ignored, []string{"storage_backend.backends.local_json.dir_path"})
			wantEq(t, "insecure_http", c.HTTPServer.InsecureHTTP, false)
			wantEq(t, "worker_count", c.HTTPServer.WorkerCount, 4)
			wantEq(t, "attestation_token_type", c.AttestationToken.AttestationTokenType, "CoCo")
			wantSlice(t, "trusted_certs_paths", c.AttestationToken.TrustedCertsPaths, []string{"/etc/attestation-cert/token.crt"})
			if d := c.AttestationService.AttestationTokenConfig; d == nil || d.DurationMin != 5 {
				t.Errorf("attestation_token_config = %+v", d)
			}
			if s := c.AttestationService.TokenBroker.Signer; s == nil || s.KeyPath != "/etc/attestation-key/token.key" || s.CertPath != "/etc/attestation-cert/token.crt" {
				t.Errorf("signer = %+v", s)
			}
			tc.check(t, c)
		})
	}
}
