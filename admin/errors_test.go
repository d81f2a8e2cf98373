package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRefusalTextsStartWithUpstreams checks that every refusal's text
// begins with upstream's Display of it (kbs/src/admin/..., the strings
// integration-tests/tests/admin.rs matches on), whatever we add after.
func TestRefusalTextsStartWithUpstreams(t *testing.T) {
	key := newEd25519(t)
	other := newEd25519(t)
	bearer, err := New(context.Background(), Config{
		AuthorizationMode: ModeAuthenticatedAuthorization,
		Authentication: &Authentication{BearerJWT: &BearerJWT{IdentityProviders: []IdentityProvider{
			{Issuer: "TrusteeInDocker", Audience: "KBS", PublicKeyURI: writePubPEM(t, key.Public())},
		}}},
		Authorization: &Authorization{RegexACL: &RegexACL{ACLs: []ACLRule{
			{Role: "admin", AllowedEndpoints: "^/kbs/v0/resource/.+$"},
		}}},
	}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	denyAll, err := New(context.Background(), Config{AuthorizationMode: ModeDenyAll}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	legacyDenyAll, err := New(context.Background(), Config{Type: TypeDenyAll}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	personas, err := New(context.Background(), Config{Type: TypeSimple,
		Personas: []Persona{{ID: "alice", PublicKeyPath: writePubPEM(t, key.Public())}},
		Roles:    []Role{{ID: "alice", AllowedEndpoints: "^/kbs/v0/resource/.+$"}},
	}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	legacyKey, err := New(context.Background(), Config{AuthPublicKey: writePubPEM(t, key.Public())}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		a      *Authorizer
		uri    string
		authz  string
		class  error
		prefix string // upstream's text
		also   string // what must follow it, if anything
	}{
		{"wrong key", bearer, "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, other, nil), ErrUnauthenticated,
			"Admin access denied: Cannot verify token with any of the issuers", ""},
		{"wrong issuer", bearer, "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, key, func(c map[string]any) { c["iss"] = "evil" }), ErrUnauthenticated,
			"Admin access denied: Cannot verify token with any of the issuers", ""},
		{"not a JWT", bearer, "/kbs/v0/resource/a/b/c", "Bearer abc", ErrUnauthenticated,
			"Admin access denied: Cannot verify token with any of the issuers", ""},
		{"no role", bearer, "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, key, func(c map[string]any) { delete(c, "role") }), ErrForbidden,
			"Admin access denied: Missing required `role` claim in JWT", ""},
		{"role not allowed", bearer, "/kbs/v0/resource-policy?x=1", "Bearer " + setupToken(t, key, nil), ErrForbidden,
			"Admin access denied: Role admin not allowed for path /kbs/v0/resource-policy?x=1", ""},
		{"dot segments", bearer, "/kbs/v0/resource/../resource-policy", "Bearer " + setupToken(t, key, nil), ErrForbidden,
			"Admin access denied: Role admin not allowed for path /kbs/v0/resource/../resource-policy", "dot segment"},
		{"no header", bearer, "/kbs/v0/resource/a/b/c", "", ErrUnauthenticated,
			"Failed to parse HTTP Auth Bearer header", "no Authorization header"},
		{"basic auth", bearer, "/kbs/v0/resource/a/b/c", "Basic YWRtaW46YWRtaW4=", ErrUnauthenticated,
			"Failed to parse HTTP Auth Bearer header", "not a Bearer token"},
		{"DenyAll", denyAll, "/kbs/v0/resource/a/b/c", "", ErrAdminDenied,
			"Admin access denied: Admin access denied as DenyAll authorization_mode is enabled", ""},
		{"legacy DenyAll", legacyDenyAll, "/kbs/v0/resource/a/b/c", "", ErrAdminDenied,
			"Admin access denied: Admin access denied as DenyAll authorization_mode is enabled", legacyDisabled},
		{"legacy persona, wrong key", personas, "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, other, nil), ErrUnauthenticated,
			"Admin access denied: Cannot verify token with any of the issuers", legacyPersonaText},
		{"legacy persona, role not allowed", personas, "/kbs/v0/resource-policy", "Bearer " + setupToken(t, key, nil), ErrForbidden,
			"Admin access denied: Role alice not allowed for path /kbs/v0/resource-policy", legacyPersonaText},
		{"legacy key, wrong key", legacyKey, "/kbs/v0/resource/a/b/c", "Bearer " + setupToken(t, other, nil), ErrUnauthenticated,
			"Admin access denied: Cannot verify token with any of the issuers", legacyKeyText},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.a.Authorize(request(tc.uri, tc.authz))
			if !errors.Is(err, tc.class) {
				t.Fatalf("err = %v, want %v", err, tc.class)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err is %T, not *Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.prefix) || !strings.HasPrefix(e.Upstream(), tc.prefix) {
				t.Fatalf("text %q does not start with upstream's %q", err.Error(), tc.prefix)
			}
			if tc.also != "" && !strings.Contains(strings.TrimPrefix(err.Error(), tc.prefix), tc.also) {
				t.Fatalf("text %q lacks %q after upstream's", err.Error(), tc.also)
			}
			// Wrapped as kbs does, the class still matches.
			if w := fmt.Errorf("x: %w", err); !errors.Is(w, tc.class) {
				t.Fatalf("wrapped error lost its class")
			}
		})
	}
}
