package controller

import (
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/kbs"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

// Both profiles render a configuration our KBS accepts, with the keys of
// upstream's templates.
func TestRenderKbsConfig(t *testing.T) {
	for _, tc := range []struct {
		profile v1alpha1.ProfileType
		tls     *v1alpha1.TLSConfig
		want    []string
		notWant []string
	}{
		{v1alpha1.ProfilePermissive, nil,
			[]string{"insecure_http = true", "insecure_header_jwk = true", "timeout = 5", "[attestation_service.attestation_token_broker]", `dir_path = "/opt/confidential-containers/storage"`, `storage_backend_type = "kvstorage"`},
			[]string{"private_key", "tls_profile", "signer"}},
		{v1alpha1.ProfileRestricted, nil,
			[]string{"insecure_http = false", `private_key = "/etc/https-key/privateKey"`, `certificate = "/etc/https-cert/certificate"`, `tls_profile = "intermediate"`,
				"insecure_header_jwk = false", `attestation_token_type = "CoCo"`, `trusted_certs_paths = ["/etc/attestation-cert/token.crt"]`,
				"[attestation_service.attestation_token_config]", `key_path = "/etc/attestation-key/token.key"`, `cert_path = "/etc/attestation-cert/token.crt"`},
			[]string{"insecure_http = true", "tls_min_version"}},
		{v1alpha1.ProfileRestricted, &v1alpha1.TLSConfig{Profile: "custom", MinVersion: "1.2", MaxVersion: "1.3",
			// Go cannot switch TLS 1.3 suites off one by one, so with 1.3 on
			// the KBS accepts a cipher list only when it names all three.
			Ciphers: []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, Groups: []string{"x25519", "secp256r1"}},
			[]string{`tls_profile = "custom"`, `tls_min_version = "1.2"`, `tls_max_version = "1.3"`,
				`tls_ciphers = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256"`, `tls_groups = "x25519:secp256r1"`},
			nil},
	} {
		cfg, err := renderKbsConfig(&v1alpha1.TrusteeConfig{Spec: v1alpha1.TrusteeConfigSpec{Profile: tc.profile, TLSConfig: tc.tls}})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(cfg, w) {
				t.Errorf("%s: missing %q in\n%s", tc.profile, w, cfg)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(cfg, w) {
				t.Errorf("%s: unexpected %q", tc.profile, w)
			}
		}
		if _, _, err := kbs.ParseConfig([]byte(cfg)); err != nil {
			t.Errorf("%s: the KBS refuses the generated configuration: %v\n%s", tc.profile, err, cfg)
		}
	}
}

func TestTLSSettingsRefuses(t *testing.T) {
	for _, c := range []*v1alpha1.TLSConfig{
		{Profile: "custom", MinVersion: "1.3", MaxVersion: "1.2"},
		{Profile: "custom", Ciphers: []string{"A\"\ninsecure_http = true"}},
		{Profile: "custom", Groups: []string{"x:y"}},
	} {
		if _, err := tlsSettings(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
