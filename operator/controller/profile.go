package controller

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

// kbsConfigTemplate renders kbs-config.toml for a TrusteeConfig profile:
// the keys and values upstream's config/templates/kbs-config-{permissive,
// restricted}.toml produce (operator.md, "Generated kbs-config.toml").
var kbsConfigTemplate = template.Must(template.New("kbs-config.toml").Parse(`[http_server]
sockets = ["0.0.0.0:8080"]
worker_count = 4
{{- if .Restricted}}
insecure_http = false
private_key = "/etc/https-key/privateKey"
certificate = "/etc/https-cert/certificate"
{{- with .TLS}}
tls_profile = "{{.Profile}}"
{{- if .MinVersion}}
tls_min_version = "{{.MinVersion}}"
{{- end}}
{{- if .MaxVersion}}
tls_max_version = "{{.MaxVersion}}"
{{- end}}
{{- if .Ciphers}}
tls_ciphers = "{{.Ciphers}}"
{{- end}}
{{- if .Groups}}
tls_groups = "{{.Groups}}"
{{- end}}
{{- end}}
{{- else}}
insecure_http = true
{{- end}}

[admin]
authorization_mode = "DenyAll"

[attestation_token]
{{- if .Restricted}}
insecure_header_jwk = false
attestation_token_type = "CoCo"
trusted_certs_paths = ["/etc/attestation-cert/token.crt"]
{{- else}}
insecure_header_jwk = true
{{- end}}

[attestation_service]
type = "coco_as_builtin"
{{- if not .Restricted}}
timeout = 5

[attestation_service.attestation_token_broker]
duration_min = 5
{{- else}}

[attestation_service.attestation_token_config]
duration_min = 5

[attestation_service.attestation_token_broker.signer]
key_path = "/etc/attestation-key/token.key"
cert_path = "/etc/attestation-cert/token.crt"
{{- end}}

[attestation_service.rvps_config]
type = "BuiltIn"
storage_type = "LocalJson"

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "/opt/confidential-containers/storage"

[storage_backend.backends.local_json]
dir_path = "/opt/confidential-containers/storage/local_json"

[attestation_service.verifier_config.snp_verifier]
vcek_sources = [{ type = "OfflineStore" }, { type = "KDS" }]

[attestation_service.verifier_config.dcap_verifier]
collateral_service = "https://api.trustedservices.intel.com/sgx/certification/v4/"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
`))

type tlsValues struct {
	Profile, MinVersion, MaxVersion, Ciphers, Groups string
}

// renderKbsConfig renders the kbs-config.toml of a TrusteeConfig.
func renderKbsConfig(tc *v1alpha1.TrusteeConfig) (string, error) {
	data := struct {
		Restricted bool
		TLS        *tlsValues
	}{Restricted: tc.Spec.Profile == v1alpha1.ProfileRestricted}
	if data.Restricted {
		t, err := tlsSettings(tc.Spec.TLSConfig)
		if err != nil {
			return "", err
		}
		data.TLS = t
	}
	var b bytes.Buffer
	if err := kbsConfigTemplate.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// tlsSettings maps a TLSConfig onto the KBS's tls_* keys; nil is the
// intermediate profile. Custom cipher names are given to the KBS in
// OpenSSL form, as upstream converts them (IANA names are translated).
func tlsSettings(c *v1alpha1.TLSConfig) (*tlsValues, error) {
	if c == nil || c.Profile == "" {
		return &tlsValues{Profile: "intermediate"}, nil
	}
	t := &tlsValues{Profile: c.Profile}
	if c.Profile != "custom" {
		return t, nil
	}
	if c.MinVersion != "" && c.MaxVersion != "" && c.MinVersion > c.MaxVersion {
		return nil, fmt.Errorf("tlsConfig: minVersion %s is greater than maxVersion %s", c.MinVersion, c.MaxVersion)
	}
	t.MinVersion, t.MaxVersion = c.MinVersion, c.MaxVersion
	ciphers := make([]string, 0, len(c.Ciphers))
	for _, name := range c.Ciphers {
		if strings.ContainsAny(name, "\"\\\n:") {
			return nil, fmt.Errorf("tlsConfig: cipher %q is not a cipher name", name)
		}
		if o, ok := ianaToOpenSSL[name]; ok {
			name = o
		}
		ciphers = append(ciphers, name)
	}
	t.Ciphers = strings.Join(ciphers, ":")
	for _, g := range c.Groups {
		if strings.ContainsAny(g, "\"\\\n:") {
			return nil, fmt.Errorf("tlsConfig: group %q is not a group name", g)
		}
	}
	t.Groups = strings.Join(c.Groups, ":")
	return t, nil
}

// ianaToOpenSSL maps the IANA names of the TLS 1.2 ECDHE AEAD suites to
// OpenSSL's; TLS 1.3 suites keep their IANA names in OpenSSL.
var ianaToOpenSSL = map[string]string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256":       "ECDHE-ECDSA-AES128-GCM-SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":         "ECDHE-RSA-AES128-GCM-SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384":       "ECDHE-ECDSA-AES256-GCM-SHA384",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":         "ECDHE-RSA-AES256-GCM-SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256":   "ECDHE-RSA-CHACHA20-POLY1305",
}
