package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/token/jwt"
)

var upstreamConfigs = testvectors.Path("trustee/kbs/")

var now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return now }

type file struct {
	Admin Config `toml:"admin"`
}

func decodeTOML(t testing.TB, in string) (Config, error) {
	t.Helper()
	var f file
	_, err := toml.Decode(in, &f)
	return f.Admin, err
}

func writePubPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newEd25519(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// setupToken is the admin token of upstream's docker-compose setup.sh.
func setupToken(t testing.TB, key crypto.Signer, mod func(map[string]any)) string {
	t.Helper()
	claims := map[string]any{"iss": "TrusteeInDocker", "sub": "admin", "aud": []string{"KBS"}, "role": "admin",
		"iat": now.Unix(), "exp": now.Add(10 * 365 * 24 * time.Hour).Unix()}
	if mod != nil {
		mod(claims)
	}
	alg := jwt.AlgForKey(key.Public())[0]
	s, err := jwt.Sign(map[string]any{"alg": alg, "typ": "JWT"}, claims, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUpstreamConfigFiles(t *testing.T) {
	files, err := filepath.Glob(upstreamConfigs + "test_data/configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstream configs: %v", err)
	}
	files = append(files, upstreamConfigs+"test/config/kbs.toml")
	key := newEd25519(t)
	pub := writePubPEM(t, key.Public())
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var whole file
			if _, err := toml.Decode(string(b), &whole); err != nil {
				t.Fatalf("decoding [admin]: %v", err)
			}
			cfg := whole.Admin
			if cfg.AuthorizationMode == "" {
				t.Fatalf("authorization_mode not decoded: %+v", cfg)
			}
			// Point key files at a real key, as the deployments do.
			if cfg.Authentication != nil && cfg.Authentication.BearerJWT != nil {
				for i := range cfg.Authentication.BearerJWT.IdentityProviders {
					cfg.Authentication.BearerJWT.IdentityProviders[i].PublicKeyURI = pub
				}
			}
			a, err := New(context.Background(), cfg, Options{Now: fixedNow})
			if strings.HasSuffix(f, "coco-as-builtin-3.toml") {
				// Empty [admin.authentication.bearer_jwt]: upstream refuses it.
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("New = %v, want ErrInvalidConfig for empty identity_providers", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if a.Mode() == "" {
				t.Fatal("empty mode")
			}
		})
	}
}

func TestUpstreamGRPC2Decodes(t *testing.T) {
	b, err := os.ReadFile(upstreamConfigs + "test_data/configs/coco-as-grpc-2.toml")
	if err != nil {
		t.Fatal(err)
	}
	var f file
	if _, err := toml.Decode(string(b), &f); err != nil {
		t.Fatal(err)
	}
	want := Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: &Authentication{BearerJWT: &BearerJWT{IdentityProviders: []IdentityProvider{
			{Issuer: "admin1-issuer", PublicKeyURI: "/opt/confidential-containers/trustee/admin1-pubkey.pem"},
			{Issuer: "admin2-issuer", PublicKeyURI: "/opt/confidential-containers/trustee/admin2-pubkey.pem"},
		}}},
		Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{
			{Role: "admin1", AllowedEndpoints: "^/kbs/v0/resource/.+$"},
			{Role: "admin2", AllowedEndpoints: "^/kbs/v0/config/.+$"},
		}}},
	}
	got, _ := json.Marshal(f.Admin)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("decoded\n%s\nwant\n%s", got, exp)
	}
	// Missing key files fail at New, as upstream.
	if _, err := New(context.Background(), f.Admin, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with missing key files = %v", err)
	}
}

func TestDecodeShapes(t *testing.T) {
	cases := []struct {
		name string
		toml string
		gen  generation
		err  bool
	}{
		{"current DenyAll", `[admin]
authorization_mode = "DenyAll"`, genCurrent, false},
		{"current full", `[admin]
authorization_mode = "AuthenticatedAuthorization"
[admin.authentication.bearer_jwt]
identity_providers = [{ issuer = "i", audience = "a", public_key_uri = "/k.pem", jwk_set_uri = "https://idp/jwks" }]
[admin.authorization.regex_acl]
acls = [{ role = "admin", allowed_endpoints = "^/kbs/.+$" }]`, genCurrent, false},
		{"v0.16-v0.20 Simple", `[admin]
type = "Simple"
[[admin.personas]]
id = "alice"
public_key_path = "/a.pem"
[[admin.roles]]
id = "alice"
allowed_endpoints = "^/kbs/v0/resource/.+$"`, genV2, false},
		{"v0.16-v0.20 tolerates unknown keys", `[admin]
type = "DenyAll"
comment = "x"`, genV2, false},
		{"v0.15 key", `[admin]
auth_public_key = "/etc/kbs-admin.pub"`, genV1, false},
		{"v0.15 insecure", `[admin]
insecure_api = true`, genV1, false},
		{"empty table", `[admin]`, genNone, false},
		{"unknown authorization_mode decodes, New refuses", `[admin]
authorization_mode = "AllowAll"`, genCurrent, false},
		{"legacy type beside authorization_mode", `[admin]
authorization_mode = "InsecureAllowAll"
type = "Simple"`, 0, true},
		{"v0.15 beside v0.20", `[admin]
insecure_api = true
type = "DenyAll"`, 0, true},
		{"unknown key with authorization_mode", `[admin]
authorization_mode = "DenyAll"
insecure = true`, 0, true},
		{"legacy adjacent-tag authentication table", `[admin]
authorization_mode = "AuthenticatedAuthorization"
[admin.authentication]
type = "BearerJwt"
identity_providers = [{ issuer = "oidc-1", public_key_uri = "k.pem" }]
[admin.authorization.regex_acl]
acls = [{ role = "admin", allowed_endpoints = "^/kbs/.+$" }]`, 0, true},
		{"unknown provider field", `[admin]
authorization_mode = "AuthenticatedAuthorization"
[admin.authentication.bearer_jwt]
identity_providers = [{ issuer = "i", public_key = "k.pem" }]`, 0, true},
		{"unknown role field (allowed_paths)", `[admin]
type = "InsecureAllowAll"
[[admin.roles]]
id = "Anonymous"
allowed_paths = "^/kbs/xyz$"`, 0, true},
		{"wrong type", `[admin]
insecure_api = "yes"`, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := decodeTOML(t, tc.toml)
			if tc.err {
				if err == nil {
					t.Fatalf("decoded %+v, want error", cfg)
				}
				// BurntSushi/toml flattens the error to text.
				if !strings.Contains(err.Error(), ErrInvalidConfig.Error()) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g, err := cfg.generation()
			if err != nil || g != tc.gen {
				t.Fatalf("generation = %v, %v; want %v", g, err, tc.gen)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	// Upstream's admin tests use JSON too.
	var c Config
	in := `{"authorization_mode":"AuthenticatedAuthorization","authorization":{"regex_acl":{"acls":[{"role":"Anonymous","allowed_endpoints":"(xyz"}]}},
		"authentication":{"bearer_jwt":{"identity_providers":[{"issuer":"oidc-1","public_key_uri":"PUB"}]}}}`
	pub := writePubPEM(t, newEd25519(t).Public())
	if err := json.Unmarshal([]byte(strings.Replace(in, "PUB", pub, 1)), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), c, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unanchored/invalid regex accepted: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"authorization_mode":"DenyAll","x":1}`), &c); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unknown field: %v", err)
	}
	if err := json.Unmarshal([]byte(`[1]`), &c); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("array: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	pub := writePubPEM(t, newEd25519(t).Public())
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub := writePubPEM(t, ecKey.Public())
	f := false
	acls := &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "admin", AllowedEndpoints: "^/kbs/.+$"}}}}
	bearer := func(idps ...IdentityProvider) *Authentication {
		return &Authentication{BearerJWT: &BearerJWT{IdentityProviders: idps}}
	}
	cases := []struct {
		name string
		cfg  Config
		mode string
	}{
		{"missing section", Config{}, ""},
		{"AllowAll is not a mode", Config{AuthorizationMode: "AllowAll"}, ""},
		{"DenyAll", Config{AuthorizationMode: ModeDenyAll}, "DenyAll"},
		{"InsecureAllowAll", Config{AuthorizationMode: ModeInsecureAllowAll}, "InsecureAllowAll (INSECURE)"},
		{"DenyAll with authentication", Config{AuthorizationMode: ModeDenyAll, Authentication: bearer()}, ""},
		{"no authentication", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authorization: acls}, ""},
		{"no authorization", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub})}, ""},
		{"empty identity_providers", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(), Authorization: acls}, ""},
		{"provider without key", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{Issuer: "x"}), Authorization: acls}, ""},
		{"provider with missing key file", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub + ".nope"}), Authorization: acls}, ""},
		{"provider with http JWKS", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{JWKSetURI: "http://127.0.0.1:1/jwks"}), Authorization: acls}, ""},
		{"ok Ed25519", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub}), Authorization: acls}, "AuthenticatedAuthorization"},
		{"ok EC via file URL", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: "file://" + ecPub}), Authorization: acls}, "AuthenticatedAuthorization"},
		{"regex not starting with ^/kbs", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub}),
			Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "a", AllowedEndpoints: "/kbs/.+$"}}}}}, ""},
		{"regex not ending with $", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub}),
			Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "a", AllowedEndpoints: "^/kbs/.+"}}}}}, ""},
		{"regex invalid", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub}),
			Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "a", AllowedEndpoints: "^/kbs/(xyz$"}}}}}, ""},
		{"acl without role", Config{AuthorizationMode: ModeAuthenticatedAuthorization, Authentication: bearer(IdentityProvider{PublicKeyURI: pub}),
			Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{AllowedEndpoints: "^/kbs/.+$"}}}}}, ""},
		{"mixed generations", Config{AuthorizationMode: ModeDenyAll, Type: TypeDenyAll}, ""},
		{"v2 Simple", Config{Type: TypeSimple, Personas: []Persona{{ID: "alice", PublicKeyPath: pub}}}, "Simple (legacy personas)"},
		{"v2 persona with EC key", Config{Type: TypeSimple, Personas: []Persona{{ID: "alice", PublicKeyPath: ecPub}}}, ""},
		{"v2 duplicate role", Config{Type: TypeInsecureAllowAll, Roles: []Role{{ID: "a", AllowedEndpoints: "^/kbs/x$"}, {ID: "a", AllowedEndpoints: "^/kbs/y$"}}}, ""},
		{"v2 unanchored role", Config{Type: TypeInsecureAllowAll, Roles: []Role{{ID: "a", AllowedEndpoints: "xyz"}}}, ""},
		{"v2 no type", Config{Personas: []Persona{{ID: "alice", PublicKeyPath: pub}}}, ""},
		{"v2 unknown type", Config{Type: "Complex"}, ""},
		{"v1 key", Config{AuthPublicKey: pub}, "auth_public_key (legacy)"},
		{"v1 no key", Config{InsecureAPI: &f}, ""},
		{"v1 EC key", Config{AuthPublicKey: ecPub}, ""},
		{"v1 key URL", Config{AuthPublicKey: "file://" + pub}, ""},
		{"v2 key URL", Config{Type: TypeSimple, Personas: []Persona{{ID: "alice", PublicKeyPath: "https://example.com/k.pem"}}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(context.Background(), tc.cfg, Options{Now: fixedNow})
			if tc.mode == "" {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != tc.mode {
				t.Fatalf("Mode = %q, want %q", a.Mode(), tc.mode)
			}
		})
	}
}

func request(uri, authz string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, uri, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	return r
}

func TestAuthorizeBearer(t *testing.T) {
	ed := newEd25519(t)
	other := newEd25519(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	cfg := Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: &Authentication{BearerJWT: &BearerJWT{IdentityProviders: []IdentityProvider{
			{Issuer: "TrusteeInDocker", Audience: "KBS", PublicKeyURI: writePubPEM(t, ed.Public())},
			{Issuer: "ec-issuer", PublicKeyURI: writePubPEM(t, ec.Public())},
			{Issuer: "rsa-issuer", Audience: "kbs", PublicKeyURI: writePubPEM(t, rk.Public())},
		}}},
		Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{
			{Role: "admin", AllowedEndpoints: "^/kbs/.+$"},
			{Role: "resource-writer", AllowedEndpoints: "^/kbs/v0/resource/.+$"},
			{Role: "query", AllowedEndpoints: `^/kbs/v0/resource-policy\?id=[a-z]+$`},
		}}},
	}
	a, err := New(context.Background(), cfg, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	role := func(r string) func(map[string]any) { return func(c map[string]any) { c["role"] = r } }
	writer := setupToken(t, ed, role("resource-writer"))
	parts := strings.Split(setupToken(t, ed, nil), ".")
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	pubDER, _ := x509.MarshalPKIXPublicKey(ed.Public())
	_ = pubDER

	cases := []struct {
		name      string
		uri       string
		authz     string
		err       error
		principal string
	}{
		{"setup.sh admin token", "/kbs/v0/resource-policy", "Bearer " + setupToken(t, ed, nil), nil, "admin"},
		{"lowercase scheme", "/kbs/v0/resource/a/b/c", "bearer " + setupToken(t, ed, nil), nil, "admin"},
		{"aud as string", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { c["aud"] = "KBS" }), nil, "admin"},
		{"EC provider, no audience configured", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ec, func(c map[string]any) { c["iss"] = "ec-issuer"; delete(c, "aud") }), nil, "admin"},
		{"RSA provider", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, rk, func(c map[string]any) { c["iss"] = "rsa-issuer"; c["aud"] = []string{"x", "kbs"} }), nil, "admin"},
		{"restricted role allowed", "/kbs/v0/resource/a/b/c", "Bearer " + writer, nil, "resource-writer"},
		{"restricted role, other endpoint", "/kbs/v0/resource-policy", "Bearer " + writer, ErrForbidden, ""},
		{"query string trick: endpoint in query", "/kbs/v0/attestation-policy?x=/kbs/v0/resource/a/b/c", "Bearer " + writer, ErrForbidden, ""},
		{"query string is matched too", "/kbs/v0/resource-policy?id=abc", "Bearer " + setupToken(t, ed, role("query")), nil, "query"},
		{"query string mismatch", "/kbs/v0/resource-policy?id=abc&evil=1", "Bearer " + setupToken(t, ed, role("query")), ErrForbidden, ""},
		{"query string absent", "/kbs/v0/resource-policy", "Bearer " + setupToken(t, ed, role("query")), ErrForbidden, ""},
		{"dot segments", "/kbs/v0/resource/../attestation-policy", "Bearer " + writer, ErrForbidden, ""},
		{"encoded dot segments", "/kbs/v0/resource/%2e%2e/attestation-policy", "Bearer " + writer, ErrForbidden, ""},
		{"encoded slash", "/kbs/v0/resource/a%2F..%2Fb/c", "Bearer " + writer, ErrForbidden, ""},
		{"unknown role", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, role("root")), ErrForbidden, ""},
		{"missing role", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { delete(c, "role") }), ErrForbidden, ""},
		{"role not a string", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { c["role"] = []string{"admin"} }), ErrForbidden, ""},
		{"expired", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), ErrUnauthenticated, ""},
		{"no exp", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { delete(c, "exp") }), ErrUnauthenticated, ""},
		{"wrong issuer", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { c["iss"] = "evil" }), ErrUnauthenticated, ""},
		{"wrong audience", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { c["aud"] = []string{"other"} }), ErrUnauthenticated, ""},
		{"no audience", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ed, func(c map[string]any) { delete(c, "aud") }), ErrUnauthenticated, ""},
		{"EC key, wrong issuer for it", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, ec, nil), ErrUnauthenticated, ""},
		{"alg none", "/kbs/v0/resource/a/b/c", "Bearer " + noneTok, ErrUnauthenticated, ""},
		{"wrong key", "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, other, nil), ErrUnauthenticated, ""},
		{"tampered role", "/kbs/v0/resource/a/b/c", "Bearer " + tamper(t, writer, "role", "admin"), ErrUnauthenticated, ""},
		{"no header", "/kbs/v0/resource/a/b/c", "", ErrUnauthenticated, ""},
		{"basic auth", "/kbs/v0/resource/a/b/c", "Basic YWRtaW46YWRtaW4=", ErrUnauthenticated, ""},
		{"empty bearer", "/kbs/v0/resource/a/b/c", "Bearer ", ErrUnauthenticated, ""},
		{"garbage bearer", "/kbs/v0/resource/a/b/c", "Bearer abc", ErrUnauthenticated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authorize(request(tc.uri, tc.authz))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && p != tc.principal {
				t.Fatalf("principal = %q, want %q", p, tc.principal)
			}
		})
	}

	t.Run("two Authorization headers", func(t *testing.T) {
		r := request("/kbs/v0/resource/a/b/c", "Bearer "+setupToken(t, ed, nil))
		r.Header.Add("Authorization", "Bearer x")
		if _, err := a.Authorize(r); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("HS256 signed with the public key", func(t *testing.T) {
		// Key confusion: an HMAC over the PEM public key must not verify.
		forged := hmacToken(t, []byte(mustRead(t, cfg.Authentication.BearerJWT.IdentityProviders[0].PublicKeyURI)))
		if _, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "Bearer "+forged)); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("err = %v", err)
		}
	})
}

func mustRead(t testing.TB, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hmacToken(t testing.TB, secret []byte) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":"TrusteeInDocker","aud":["KBS"],"role":"admin","exp":%d}`, now.Add(time.Hour).Unix())))
	return h + "." + c + "." + base64.RawURLEncoding.EncodeToString(secret[:32])
}

func tamper(t testing.TB, tok, claim, value string) string {
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	c[claim] = value
	nb, _ := json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(nb) + "." + parts[2]
}

func TestAuthorizeJWKSProvider(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed := newEd25519(t)
	j, _ := jwt.PublicJWK(ec.Public(), jwt.ES256)
	j["kid"] = "idp-key-1"
	set, _ := json.Marshal(map[string]any{"keys": []any{j}})
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/realms/kbs/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"jwks_uri":%q}`, srv.URL+"/realms/kbs/certs")
	})
	mux.HandleFunc("/realms/kbs/certs", func(w http.ResponseWriter, r *http.Request) { w.Write(set) })
	srv = httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()

	cfg := Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: &Authentication{BearerJWT: &BearerJWT{IdentityProviders: []IdentityProvider{
			{Issuer: "https://idp", Audience: "kbs", JWKSetURI: srv.URL + "/realms/kbs", PublicKeyURI: writePubPEM(t, ed.Public())},
		}}},
		Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "admin", AllowedEndpoints: "^/kbs/.+$"}}}},
	}
	a, err := New(context.Background(), cfg, Options{Now: fixedNow, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "https://idp", "aud": "kbs", "role": "admin", "exp": now.Add(time.Hour).Unix()}
	sign := func(hdr map[string]any, key crypto.Signer) string {
		s, err := jwt.Sign(hdr, claims, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	evil, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name string
		tok  string
		err  error
	}{
		{"kid from OIDC JWKS", sign(map[string]any{"alg": "ES256", "kid": "idp-key-1"}, ec), nil},
		{"no kid: PEM key with header alg", sign(map[string]any{"alg": "EdDSA"}, ed), nil},
		{"unknown kid falls back to PEM key", sign(map[string]any{"alg": "EdDSA", "kid": "nope"}, ed), nil},
		{"known kid, wrong key: no fallback", sign(map[string]any{"alg": "ES256", "kid": "idp-key-1"}, evil), ErrUnauthenticated},
		{"header jwk is never trusted", sign(map[string]any{"alg": "ES256", "jwk": func() map[string]any { m, _ := jwt.PublicJWK(evil.Public(), "ES256"); return m }()}, evil), ErrUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "Bearer "+tc.tok))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestAuthorizeModes(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		err       error
		principal string
	}{
		{ModeDenyAll, ErrAdminDenied, ""},
		{ModeInsecureAllowAll, nil, PrincipalAnonymous},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			a, err := New(context.Background(), Config{AuthorizationMode: tc.mode}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Authorize(request("/kbs/v0/resource/a/b/c", ""))
			if !errors.Is(err, tc.err) || p != tc.principal {
				t.Fatalf("got %q, %v", p, err)
			}
		})
	}
}

func TestAuthorizeV2(t *testing.T) {
	alice := newEd25519(t)
	bob := newEd25519(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tomlCfg := fmt.Sprintf(`[admin]
type = "Simple"
[[admin.personas]]
id = "alice"
public_key_path = %q
[[admin.personas]]
id = "bob"
public_key_path = %q
[[admin.roles]]
id = "alice"
allowed_endpoints = "^/kbs/.+$"
[[admin.roles]]
id = "bob"
allowed_endpoints = "^/kbs/v0/resource/a/.+/c$"
`, writePubPEM(t, alice.Public()), writePubPEM(t, bob.Public()))
	cfg, err := decodeTOML(t, tomlCfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		uri       string
		tok       string
		err       error
		principal string
	}{
		{"alice anywhere", "/kbs/v0/resource-policy", setupToken(t, alice, nil), nil, "alice"},
		{"bob allowed", "/kbs/v0/resource/a/b/c", setupToken(t, bob, nil), nil, "bob"},
		{"bob denied", "/kbs/v0/resource/b/b/c", setupToken(t, bob, nil), ErrForbidden, ""},
		{"unknown key", "/kbs/v0/resource/a/b/c", setupToken(t, newEd25519(t), nil), ErrUnauthenticated, ""},
		{"ES256 token", "/kbs/v0/resource/a/b/c", setupToken(t, ec, nil), ErrUnauthenticated, ""},
		{"no exp", "/kbs/v0/resource/a/b/c", setupToken(t, alice, func(c map[string]any) { delete(c, "exp") }), ErrUnauthenticated, ""},
		{"expired", "/kbs/v0/resource/a/b/c", setupToken(t, alice, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), ErrUnauthenticated, ""},
		{"claims irrelevant (no role needed)", "/kbs/v0/resource/a/b/c", setupToken(t, bob, func(c map[string]any) { delete(c, "role"); delete(c, "iss") }), nil, "bob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authorize(request(tc.uri, "Bearer "+tc.tok))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && p != tc.principal {
				t.Fatalf("principal %q, want %q", p, tc.principal)
			}
		})
	}

	// Upstream v0.20 check_requests: InsecureAllowAll with roles.
	cfg, err = decodeTOML(t, `[admin]
type = "InsecureAllowAll"
[[admin.roles]]
id = "Anonymous"
allowed_endpoints = "^/kbs/v0/resource/a/.+/c$"`)
	if err != nil {
		t.Fatal(err)
	}
	a, err = New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "")); err != nil || p != PrincipalAnonymous {
		t.Fatalf("allowed path: %q, %v", p, err)
	}
	if _, err := a.Authorize(request("/kbs/v0/resource/b/b/c", "")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("denied path: %v", err)
	}
	// check_requests_wrong_role: roles exist but none for Anonymous.
	cfg, _ = decodeTOML(t, `[admin]
type = "InsecureAllowAll"
[[admin.roles]]
id = "Steve"
allowed_endpoints = "^/kbs/v0/resource/a/.+/c$"`)
	a, _ = New(context.Background(), cfg, Options{})
	if _, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("wrong role: %v", err)
	}
	cfg, _ = decodeTOML(t, "[admin]\ntype = \"DenyAll\"")
	a, _ = New(context.Background(), cfg, Options{})
	if _, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "Bearer "+setupToken(t, alice, nil))); !errors.Is(err, ErrAdminDenied) {
		t.Fatalf("DenyAll: %v", err)
	}
}

func TestAuthorizeV1(t *testing.T) {
	key := newEd25519(t)
	cfg, err := decodeTOML(t, fmt.Sprintf("[admin]\ninsecure_api = false\nauth_public_key = %q\n", writePubPEM(t, key.Public())))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tok  string
		err  error
	}{
		{"valid", setupToken(t, key, nil), nil},
		{"no exp is fine in v0.15", setupToken(t, key, func(c map[string]any) { delete(c, "exp") }), nil},
		{"expired", setupToken(t, key, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), ErrUnauthenticated},
		{"not yet valid", setupToken(t, key, func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), ErrUnauthenticated},
		{"wrong key", setupToken(t, newEd25519(t), nil), ErrUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "Bearer "+tc.tok))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	cfg, _ = decodeTOML(t, "[admin]\ninsecure_api = true\n")
	a, err = New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Mode(), "INSECURE") {
		t.Fatalf("mode %q", a.Mode())
	}
	if p, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "")); err != nil || p != PrincipalAnonymous {
		t.Fatalf("insecure_api: %q %v", p, err)
	}
}

func FuzzConfigDecode(f *testing.F) {
	files, _ := filepath.Glob(upstreamConfigs + "test_data/configs/*.toml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("[admin]\ntype = \"Simple\"\n[[admin.personas]]\nid = \"a\"\npublic_key_path = \"/nope\"\n"))
	f.Add([]byte(`{"authorization_mode":"AuthenticatedAuthorization","authentication":{"bearer_jwt":{"identity_providers":[{"jwk_set_uri":"/nope"}]}}}`))
	noNet := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("no network in fuzzing") })}
	f.Fuzz(func(t *testing.T, b []byte) {
		var whole file
		cfgs := []Config{}
		if _, err := toml.Decode(string(b), &whole); err == nil {
			cfgs = append(cfgs, whole.Admin)
		}
		var c Config
		if err := json.Unmarshal(b, &c); err == nil {
			cfgs = append(cfgs, c)
		}
		for _, cfg := range cfgs {
			a, err := New(context.Background(), cfg, Options{HTTPClient: noNet})
			if err != nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("New error %v does not match ErrInvalidConfig", err)
				}
				continue
			}
			if _, err := a.Authorize(request("/kbs/v0/resource/a/b/c", "Bearer x.y.z")); err == nil && !strings.Contains(a.Mode(), "INSECURE") {
				t.Fatalf("garbage token authorized in mode %q", a.Mode())
			}
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func FuzzAuthorizeRequest(f *testing.F) {
	ed := newEd25519(f)
	cfg := Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication:    &Authentication{BearerJWT: &BearerJWT{IdentityProviders: []IdentityProvider{{Issuer: "TrusteeInDocker", PublicKeyURI: writePubPEM(f, ed.Public())}}}},
		Authorization:     &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{{Role: "writer", AllowedEndpoints: "^/kbs/v0/resource/.+$"}}}},
	}
	a, err := New(context.Background(), cfg, Options{Now: fixedNow})
	if err != nil {
		f.Fatal(err)
	}
	tok := setupToken(f, ed, func(c map[string]any) { c["role"] = "writer" })
	f.Add("/kbs/v0/resource/a/b/c", "Bearer "+tok)
	f.Add("/kbs/v0/resource/../x", "Bearer "+tok)
	f.Fuzz(func(t *testing.T, uri, authz string) {
		r, err := http.NewRequest(http.MethodPost, "http://kbs"+uri, nil)
		if err != nil {
			return
		}
		r.RequestURI = uri
		r.Header.Set("Authorization", authz)
		p, err := a.Authorize(r)
		if err == nil {
			if p != "writer" || !strings.HasPrefix(uri, "/kbs/v0/resource/") || strings.Contains(uri, "..") {
				t.Fatalf("authorized %q as %q", uri, p)
			}
			return
		}
		// Every refusal carries upstream's text first.
		var e *Error
		if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), e.Upstream()) ||
			!(strings.HasPrefix(err.Error(), accessDeniedPrefix) || strings.HasPrefix(err.Error(), textParseHeader)) {
			t.Fatalf("refusal %q (%T) does not start with upstream's text", err, err)
		}
	})
}
