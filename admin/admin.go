// Package admin authenticates and authorizes requests to the KBS admin
// endpoints (set policies, resources and reference values), configured by
// the [admin] section in any of upstream's three configuration generations
// (see Config).
//
// # Decisions
//
//   - authorization_mode = "AuthenticatedAuthorization" (v0.21+): the
//     request's "Authorization: Bearer" JWT is tried against each identity
//     provider in order. A provider verifies with its JWK set when the
//     header names a kid found there (the JWK's alg is the algorithm), else
//     with its PEM key and the header algorithm (which must fit the key).
//     "exp" is required (60 s leeway). A verified token whose "iss" or
//     "aud" does not match the provider's issuer/audience moves on to the
//     next provider. The token must carry a string "role"; the request URI
//     (path and query, as received) must match the allowed_endpoints of an
//     ACL rule of that role. The principal is the role.
//   - "InsecureAllowAll" allows everything (principal "Anonymous");
//     "DenyAll" denies everything with ErrAdminDenied.
//   - v0.16–v0.20 (type = "Simple"): the first persona whose Ed25519 key
//     verifies the EdDSA token (exp required) is the principal; if
//     [[admin.roles]] exist, the persona's role must allow the URI.
//     type = "InsecureAllowAll" yields principal "Anonymous", still subject
//     to roles; "DenyAll" denies.
//   - up to v0.15: insecure_api = true allows everything; otherwise the
//     EdDSA token must verify with auth_public_key (exp checked if present).
//   - A configuration without any of these keys is refused by New, as
//     upstream refuses a configuration without authorization_mode.
//   - Refusals (*Error) carry upstream's text first: "Admin access
//     denied: " followed by ReasonNoIssuer, ReasonDenyAll,
//     ReasonMissingRole or ReasonRoleNotAllowed, or "Failed to parse HTTP
//     Auth Bearer header"; what we add (and, for the legacy formats, that
//     release's wording) comes after.
//   - Hardening beyond upstream: request paths with dot segments or encoded
//     slashes are refused before any ACL match, so a regex over raw URIs
//     cannot be walked around with "..".
//
// Tokens are never logged. An Authorizer is immutable after New apart from
// the JWK set caches, and safe for concurrent use.
package admin

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/token/jwt"
)

var (
	// ErrInvalidConfig is returned by decoding and New for an unusable
	// [admin] section.
	ErrInvalidConfig = errors.New("admin: invalid configuration")
	// ErrUnauthenticated is returned by Authorize when the request carries
	// no admin token, or one no identity provider or persona verifies.
	ErrUnauthenticated = errors.New("admin: admin request not authenticated")
	// ErrForbidden is returned by Authorize when the token is genuine but
	// its role may not use the requested endpoint (or has no role).
	ErrForbidden = errors.New("admin: admin request not authorized")
	// ErrAdminDenied is returned by Authorize in DenyAll mode.
	ErrAdminDenied = errors.New("admin: admin endpoints are disabled (DenyAll)")
)

// PrincipalAnonymous is the principal of requests allowed without a token.
const PrincipalAnonymous = "Anonymous"

// principalLegacyKey is the principal of a v0.15 auth_public_key token.
const principalLegacyKey = "admin"

// Options are the non-configuration inputs of an Authorizer. Zero values
// are production defaults.
type Options struct {
	// HTTPClient fetches https:// keys and JWK sets; nil: 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock for exp/nbf; nil: time.Now.
	Now func() time.Time
	// Logger receives configuration warnings; nil discards.
	Logger *slog.Logger
}

type kind int

const (
	kindAllowAll kind = iota
	kindDenyAll
	kindBearer   // current generation, AuthenticatedAuthorization
	kindPersonas // v0.16–v0.20 Simple and InsecureAllowAll
	kindKey      // v0.15 auth_public_key
)

// Authorizer decides admin requests. See the package documentation.
type Authorizer struct {
	kind      kind
	mode      string
	providers []*provider
	acls      []acl // current generation, in order
	// v0.16–v0.20
	anonymous bool // type = InsecureAllowAll: no token, principal Anonymous
	legacy    bool // v0.16–v0.20 type = DenyAll: refusals also carry that release's text
	personas  []persona
	roles     map[string]*regexp.Regexp
	// v0.15
	legacyKey ed25519.PublicKey

	now func() time.Time
	log *slog.Logger
}

type provider struct {
	issuer, audience string
	key              crypto.PublicKey
	jwks             *jwt.KeySet
}

type acl struct {
	role string
	re   *regexp.Regexp
}

type persona struct {
	id  string
	key ed25519.PublicKey
}

// New validates cfg, loads keys and JWK sets, and returns an Authorizer.
func New(ctx context.Context, cfg Config, opts Options) (*Authorizer, error) {
	a := &Authorizer{now: opts.Now, log: opts.Logger}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	gen, err := cfg.generation()
	if err != nil {
		return nil, err
	}
	if len(cfg.ignored) > 0 {
		a.log.Warn("ignoring unknown keys in legacy [admin] section", "keys", strings.Join(cfg.ignored, ","))
	}
	switch gen {
	case genCurrent:
		err = a.initCurrent(ctx, cfg, opts)
	case genV2:
		err = a.initV2(cfg)
	case genV1:
		err = a.initV1(cfg)
	default:
		err = fmt.Errorf("%w: [admin] has no authorization_mode; set \"DenyAll\", \"AuthenticatedAuthorization\" or (testing only) \"InsecureAllowAll\"", ErrInvalidConfig)
	}
	if err != nil {
		return nil, err
	}
	if strings.Contains(a.mode, "INSECURE") {
		a.log.Warn("admin API is open to anyone: " + a.mode)
	}
	if gen == genV2 || gen == genV1 {
		a.log.Warn("[admin] uses a configuration format of an older release; see authorization_mode", "mode", a.mode)
	}
	return a, nil
}

func (a *Authorizer) initCurrent(ctx context.Context, cfg Config, opts Options) error {
	switch cfg.AuthorizationMode {
	case ModeInsecureAllowAll, ModeDenyAll:
		if cfg.Authentication != nil || cfg.Authorization != nil {
			return fmt.Errorf("%w: authorization_mode %q takes no authentication or authorization", ErrInvalidConfig, cfg.AuthorizationMode)
		}
		if cfg.AuthorizationMode == ModeDenyAll {
			a.kind, a.mode = kindDenyAll, ModeDenyAll
		} else {
			a.kind, a.mode = kindAllowAll, ModeInsecureAllowAll+" (INSECURE)"
		}
		return nil
	case ModeAuthenticatedAuthorization:
	case "":
		return fmt.Errorf("%w: authorization_mode is required", ErrInvalidConfig)
	default:
		return fmt.Errorf("%w: unknown authorization_mode %q (want %s, %s or %s)", ErrInvalidConfig, cfg.AuthorizationMode,
			ModeInsecureAllowAll, ModeDenyAll, ModeAuthenticatedAuthorization)
	}
	a.kind, a.mode = kindBearer, ModeAuthenticatedAuthorization
	if cfg.Authentication == nil || cfg.Authentication.BearerJWT == nil {
		return fmt.Errorf("%w: AuthenticatedAuthorization requires [admin.authentication.bearer_jwt]", ErrInvalidConfig)
	}
	if cfg.Authorization == nil || cfg.Authorization.RegexACL == nil {
		return fmt.Errorf("%w: AuthenticatedAuthorization requires [admin.authorization.regex_acl]", ErrInvalidConfig)
	}
	idps := cfg.Authentication.BearerJWT.IdentityProviders
	if len(idps) == 0 {
		return fmt.Errorf("%w: AuthenticatedAuthorization requires at least one identity_providers entry in [admin.authentication.bearer_jwt]", ErrInvalidConfig)
	}
	for i, idp := range idps {
		if idp.PublicKeyURI == "" && idp.JWKSetURI == "" {
			return fmt.Errorf("%w: identity_providers[%d] must set public_key_uri and/or jwk_set_uri", ErrInvalidConfig, i)
		}
		p := &provider{issuer: idp.Issuer, audience: idp.Audience}
		if idp.PublicKeyURI != "" {
			k, err := jwt.ReadPublicKey(ctx, opts.HTTPClient, idp.PublicKeyURI)
			if err != nil {
				return fmt.Errorf("%w: identity_providers[%d] public_key_uri: %w", ErrInvalidConfig, i, err)
			}
			p.key = k
		}
		if idp.JWKSetURI != "" {
			ks, err := jwt.NewKeySet(ctx, []string{idp.JWKSetURI}, jwt.KeySetOptions{HTTPClient: opts.HTTPClient, Now: a.now, Logger: a.log})
			if err != nil {
				return fmt.Errorf("%w: identity_providers[%d] jwk_set_uri: %w", ErrInvalidConfig, i, err)
			}
			p.jwks = ks
		}
		if idp.Issuer == "" {
			a.log.Warn("identity provider without issuer: the token issuer is not checked", "provider", i)
		}
		if idp.Audience == "" {
			a.log.Warn("identity provider without audience: the token audience is not checked", "provider", i)
		}
		a.providers = append(a.providers, p)
	}
	for i, r := range cfg.Authorization.RegexACL.ACLs {
		if r.Role == "" {
			return fmt.Errorf("%w: acls[%d] has no role", ErrInvalidConfig, i)
		}
		re, err := compileEndpoint(r.AllowedEndpoints)
		if err != nil {
			return fmt.Errorf("acls[%d]: %w", i, err)
		}
		a.acls = append(a.acls, acl{role: r.Role, re: re})
	}
	if len(a.acls) == 0 {
		a.log.Warn("[admin.authorization.regex_acl] has no acls: every admin request will be refused")
	}
	return nil
}

func (a *Authorizer) initV2(cfg Config) error {
	a.roles = map[string]*regexp.Regexp{}
	for i, r := range cfg.Roles {
		re, err := compileEndpoint(r.AllowedEndpoints)
		if err != nil {
			return fmt.Errorf("roles[%d]: %w", i, err)
		}
		if _, dup := a.roles[r.ID]; dup {
			return fmt.Errorf("%w: duplicate admin role %q", ErrInvalidConfig, r.ID)
		}
		a.roles[r.ID] = re
	}
	switch cfg.Type {
	case TypeDenyAll:
		a.kind, a.mode, a.legacy = kindDenyAll, "DenyAll (legacy type)", true
		return nil
	case TypeInsecureAllowAll:
		a.kind, a.mode, a.anonymous = kindPersonas, "InsecureAllowAll (INSECURE, legacy type)", true
		return nil
	case TypeSimple:
		a.kind, a.mode = kindPersonas, "Simple (legacy personas)"
	case "":
		return fmt.Errorf("%w: [admin] type is required with personas or roles", ErrInvalidConfig)
	default:
		return fmt.Errorf("%w: unknown [admin] type %q (want %s, %s or %s)", ErrInvalidConfig, cfg.Type, TypeSimple, TypeInsecureAllowAll, TypeDenyAll)
	}
	for i, p := range cfg.Personas {
		if p.PublicKeyPath == "" {
			return fmt.Errorf("%w: personas[%d] has no public_key_path", ErrInvalidConfig, i)
		}
		k, err := readEd25519(p.PublicKeyPath)
		if err != nil {
			return fmt.Errorf("%w: personas[%d]: %w", ErrInvalidConfig, i, err)
		}
		a.personas = append(a.personas, persona{id: p.ID, key: k})
	}
	if len(a.personas) == 0 {
		a.log.Warn("[admin] type Simple has no personas: every admin request will be refused")
	}
	return nil
}

func (a *Authorizer) initV1(cfg Config) error {
	if cfg.InsecureAPI != nil && *cfg.InsecureAPI {
		a.kind, a.mode = kindAllowAll, "insecure_api (INSECURE, legacy)"
		return nil
	}
	if cfg.AuthPublicKey == "" {
		return fmt.Errorf("%w: auth_public_key is not set and insecure_api is false", ErrInvalidConfig)
	}
	k, err := readEd25519(cfg.AuthPublicKey)
	if err != nil {
		return fmt.Errorf("%w: auth_public_key: %w", ErrInvalidConfig, err)
	}
	a.kind, a.mode, a.legacyKey = kindKey, "auth_public_key (legacy)", k
	return nil
}

// readEd25519 reads the Ed25519 PEM key of a legacy configuration, which
// upstream read from a local path only.
func readEd25519(path string) (ed25519.PublicKey, error) {
	if strings.Contains(path, "://") {
		return nil, fmt.Errorf("%s: a local path is required", path)
	}
	b, err := jwt.ReadSource(context.Background(), nil, path)
	if err != nil {
		return nil, err
	}
	k, err := jwt.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: an Ed25519 public key is required, have %T", path, k)
	}
	return ek, nil
}

// compileEndpoint compiles an allowed_endpoints expression, which must be
// anchored: start with "^/kbs" and end with "$".
func compileEndpoint(expr string) (*regexp.Regexp, error) {
	if !strings.HasPrefix(expr, "^/kbs") || !strings.HasSuffix(expr, "$") {
		return nil, fmt.Errorf("%w: allowed_endpoints %q must start with ^/kbs and end with $", ErrInvalidConfig, expr)
	}
	if len(expr) > limits.MaxAdminEndpointRegexBytes {
		return nil, fmt.Errorf("%w: allowed_endpoints longer than %d", ErrInvalidConfig, limits.MaxAdminEndpointRegexBytes)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: allowed_endpoints %q: %v", ErrInvalidConfig, expr, err)
	}
	return re, nil
}

// Mode describes the configured mode for startup logs, e.g.
// "AuthenticatedAuthorization" or "InsecureAllowAll (INSECURE)".
func (a *Authorizer) Mode() string { return a.mode }

// Authorize decides an admin request and returns its principal (role,
// persona ID, or "Anonymous") for audit logs. A refusal is an *Error whose
// text starts with upstream's (see Error), and matches
// ErrUnauthenticated, ErrForbidden or ErrAdminDenied.
func (a *Authorizer) Authorize(r *http.Request) (string, error) {
	switch a.kind {
	case kindAllowAll:
		return PrincipalAnonymous, nil
	case kindDenyAll:
		if a.legacy {
			return "", denied(ErrAdminDenied, ReasonDenyAll, legacyDisabled, nil)
		}
		return "", denied(ErrAdminDenied, ReasonDenyAll, "", nil)
	case kindBearer:
		return a.authorizeBearer(r)
	case kindPersonas:
		return a.authorizePersonas(r)
	case kindKey:
		raw, err := bearerToken(r)
		if err != nil {
			return "", err
		}
		if err := verifyEdDSA(raw, a.legacyKey, a.now(), false); err != nil {
			return "", denied(ErrUnauthenticated, ReasonNoIssuer, legacyKeyText, err)
		}
		return principalLegacyKey, nil
	}
	return "", denied(ErrAdminDenied, ReasonDenyAll, "", nil)
}

func (a *Authorizer) authorizeBearer(r *http.Request) (string, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return "", err
	}
	tok, err := jwt.Parse(raw)
	if err != nil {
		return "", denied(ErrUnauthenticated, ReasonNoIssuer, "", err)
	}
	var claims map[string]any
	for _, p := range a.providers {
		c, err := p.verify(r.Context(), tok, a.now())
		if err != nil {
			continue
		}
		// As upstream, a token some provider's key verifies must carry a
		// role, whatever its issuer and audience.
		if _, ok := c["role"].(string); !ok {
			return "", denied(ErrForbidden, ReasonMissingRole, "", nil)
		}
		if p.issuer != "" {
			if iss, _ := c["iss"].(string); iss != p.issuer {
				continue
			}
		}
		if p.audience != "" && !hasAudience(c["aud"], p.audience) {
			continue
		}
		claims = c
		break
	}
	if claims == nil {
		return "", denied(ErrUnauthenticated, ReasonNoIssuer, "", nil)
	}
	role := claims["role"].(string) // checked above
	uri, err := requestURI(r)
	if err != nil {
		return role, denied(ErrForbidden, ReasonRoleNotAllowed(role, rawURI(r)), err.Error(), nil)
	}
	for _, rule := range a.acls {
		if rule.role == role && rule.re.MatchString(uri) {
			return role, nil
		}
	}
	return role, denied(ErrForbidden, ReasonRoleNotAllowed(role, uri), "", nil)
}

// verify checks tok against one identity provider as upstream's
// JwtVerifier does without trusted certificates: a kid found in the JWK set
// decides (with the JWK's alg); otherwise the PEM key with the header alg.
func (p *provider) verify(ctx context.Context, tok *jwt.Token, now time.Time) (map[string]any, error) {
	verified := false
	if p.jwks != nil && tok.Header.JWK == nil && tok.Header.Kid != "" {
		if k, ok := p.jwks.Lookup(ctx, tok.Header.Kid); ok {
			if k.Alg == "" {
				return nil, errors.New("JWK has no alg")
			}
			if err := tok.Verify(k.Key, k.Alg); err != nil {
				return nil, err
			}
			verified = true
		}
	}
	if !verified {
		if p.key == nil {
			return nil, errors.New("no key for this token")
		}
		if err := tok.Verify(p.key, tok.Header.Alg); err != nil {
			return nil, err
		}
	}
	claims, err := tok.Claims()
	if err != nil {
		return nil, err
	}
	if err := jwt.ValidateTime(claims, now, jwt.DefaultLeeway, true); err != nil {
		return nil, err
	}
	return claims, nil
}

func hasAudience(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

func (a *Authorizer) authorizePersonas(r *http.Request) (string, error) {
	principal := PrincipalAnonymous
	if !a.anonymous {
		raw, err := bearerToken(r)
		if err != nil {
			return "", err
		}
		principal = ""
		for _, p := range a.personas {
			if verifyEdDSA(raw, p.key, a.now(), true) == nil {
				principal = p.id
				break
			}
		}
		if principal == "" {
			return "", denied(ErrUnauthenticated, ReasonNoIssuer, legacyPersonaText, nil)
		}
	}
	if len(a.roles) == 0 {
		return principal, nil
	}
	uri, err := requestURI(r)
	if err != nil {
		return principal, denied(ErrForbidden, ReasonRoleNotAllowed(principal, rawURI(r)), err.Error()+" ("+legacyPersonaText+")", nil)
	}
	if re, ok := a.roles[principal]; ok && re.MatchString(uri) {
		return principal, nil
	}
	return principal, denied(ErrForbidden, ReasonRoleNotAllowed(principal, uri), legacyPersonaText, nil)
}

func verifyEdDSA(raw string, key ed25519.PublicKey, now time.Time, requireExp bool) error {
	tok, err := jwt.Parse(raw)
	if err != nil {
		return err
	}
	if err := tok.Verify(key, jwt.EdDSA); err != nil {
		return err
	}
	claims, err := tok.Claims()
	if err != nil {
		return err
	}
	return jwt.ValidateTime(claims, now, jwt.DefaultLeeway, requireExp)
}

// bearerToken extracts the token of the single "Authorization: Bearer"
// header (scheme case-insensitive).
func bearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", badHeader("no Authorization header")
	case 1:
	default:
		return "", badHeader("several Authorization headers")
	}
	v := vals[0]
	if len(v) > limits.MaxTokenBytes+64 {
		return "", badHeader("Authorization header too large")
	}
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", badHeader("Authorization is not a Bearer token")
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", badHeader("malformed Bearer token")
	}
	return tok, nil
}

// rawURI returns the request target as received (path and query), the
// string upstream matches ACLs against and names in its refusals.
func rawURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// requestURI returns rawURI, refusing non-canonical paths (the error says
// why).
func requestURI(r *http.Request) (string, error) {
	uri := rawURI(r)
	p, _, _ := strings.Cut(uri, "?")
	lower := strings.ToLower(p)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(p, `\`) {
		return "", errors.New("encoded slash in request path")
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		return "", errors.New("malformed request path")
	}
	for _, seg := range strings.Split(dec, "/") {
		if seg == "." || seg == ".." {
			return "", errors.New("dot segment in request path")
		}
	}
	return uri, nil
}
