package kbs

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/token/jwt"
)

// TestAdminRefusalWireDetail checks the ErrorInformation of admin
// refusals: type AdminAuthAccess, detail upstream's Display of
// Error::AdminAuthAccess ("admin access denied for endpoint <e>: <admin
// error>") whose admin error starts with upstream's text, the strings
// upstream's integration-tests/tests/admin.rs matches on.
func TestAdminRefusalWireDetail(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(t.TempDir(), "admin.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(k ed25519.PrivateKey, role string) string {
		claims := map[string]any{"iss": "TrusteeInDocker", "aud": []string{"KBS"}, "exp": time.Now().Add(time.Hour).Unix()}
		if role != "" {
			claims["role"] = role
		}
		s, err := jwt.Sign(map[string]any{"alg": "EdDSA", "typ": "JWT"}, claims, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	authn := strings.Replace(testConfig, `authorization_mode = "InsecureAllowAll"`, fmt.Sprintf(`authorization_mode = "AuthenticatedAuthorization"
[admin.authentication.bearer_jwt]
identity_providers = [{ issuer = "TrusteeInDocker", audience = "KBS", public_key_uri = %q }]
[admin.authorization.regex_acl]
acls = [{ role = "resource-writer", allowed_endpoints = "^/kbs/v0/resource/.+$" }]`, pub), 1)
	bearer := newEnv(t, authn, nil, nil)
	denyAll := newEnv(t, strings.Replace(testConfig, "InsecureAllowAll", "DenyAll", 1), nil, nil)

	const (
		noIssuer = "Admin access denied: Cannot verify token with any of the issuers"
		denied   = "Admin access denied: Admin access denied as DenyAll authorization_mode is enabled"
		badHdr   = "Failed to parse HTTP Auth Bearer header"
	)
	policy := fmt.Sprintf(`{"policy":%q}`, b64url(allowAllPolicy))
	cases := []struct {
		name         string
		e            *env
		method, path string
		body         string
		authz        string
		want         string // the whole detail, or its start when ours follows
	}{
		{"wrong key, resource-policy", bearer, "POST", "/kbs/v0/resource-policy", policy, token(other, "resource-writer"),
			"admin access denied for endpoint resource-policy: " + noIssuer},
		{"wrong key, attestation-policy", bearer, "POST", "/kbs/v0/attestation-policy", `{"policy_id":"x","policy":"cGFja2FnZSBwb2xpY3k"}`, token(other, "resource-writer"),
			"admin access denied for endpoint attestation-policy: " + noIssuer},
		{"wrong key, reference-value", bearer, "GET", "/kbs/v0/reference-value/svn", "", token(other, "resource-writer"),
			"admin access denied for endpoint reference-value: " + noIssuer},
		{"wrong key, resource write", bearer, "POST", "/kbs/v0/resource/default/key/1", "secret", token(other, "resource-writer"),
			"admin access denied for endpoint resource: " + noIssuer},
		{"role not allowed", bearer, "POST", "/kbs/v0/resource-policy", policy, token(key, "resource-writer"),
			"admin access denied for endpoint resource-policy: Admin access denied: Role resource-writer not allowed for path /kbs/v0/resource-policy"},
		{"role not allowed, query kept", bearer, "GET", "/kbs/v0/resource-policy?a=b", "", token(key, "resource-writer"),
			"admin access denied for endpoint resource-policy: Admin access denied: Role resource-writer not allowed for path /kbs/v0/resource-policy?a=b"},
		{"no role claim", bearer, "DELETE", "/kbs/v0/resource/default/key/1", "", token(key, ""),
			"admin access denied for endpoint resource: Admin access denied: Missing required `role` claim in JWT"},
		{"no token", bearer, "POST", "/kbs/v0/resource-policy", policy, "",
			"admin access denied for endpoint resource-policy: " + badHdr + ": "},
		{"DenyAll, resource-policy", denyAll, "POST", "/kbs/v0/resource-policy", policy, "",
			"admin access denied for endpoint resource-policy: " + denied},
		{"DenyAll, resource delete", denyAll, "DELETE", "/kbs/v0/resource/default/key/1", "", "",
			"admin access denied for endpoint resource: " + denied},
		{"DenyAll, reference-value", denyAll, "POST", "/kbs/v0/reference-value", `{}`, "",
			"admin access denied for endpoint reference-value: " + denied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.e.ts.URL+tc.path, strings.NewReader(tc.body))
			if tc.authz != "" {
				req.Header.Set("Authorization", "Bearer "+tc.authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			info := wantError(t, resp.StatusCode, b, http.StatusUnauthorized, string(KindAdminAuthAccess))
			if !strings.HasPrefix(info.Detail, tc.want) {
				t.Fatalf("detail %q\ndoes not start with upstream's %q", info.Detail, tc.want)
			}
		})
	}
	// The grant still works, so the refusals above are the ACL's.
	req, _ := http.NewRequest("POST", bearer.ts.URL+"/kbs/v0/resource/default/key/1", strings.NewReader("s"))
	req.Header.Set("Authorization", "Bearer "+token(key, "resource-writer"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed write: %d", resp.StatusCode)
	}
}
