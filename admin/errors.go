package admin

import "fmt"

// Upstream's refusal texts (kbs/src/admin/error.rs, mod.rs,
// authentication/bearer_jwt.rs, authorization/regex_acl.rs at upstream
// commit 78962cd). Clients and upstream's integration tests
// (integration-tests/tests/admin.rs) match on them, so every refusal's text
// starts with one of them; ours follows.
const (
	// ReasonNoIssuer: no identity provider verifies the token (also a
	// token that does not parse as a JWT at all).
	ReasonNoIssuer = "Cannot verify token with any of the issuers"
	// ReasonDenyAll: authorization_mode = "DenyAll".
	ReasonDenyAll = "Admin access denied as DenyAll authorization_mode is enabled"
	// ReasonMissingRole: a verified token without a string "role" claim.
	ReasonMissingRole = "Missing required `role` claim in JWT"
	// accessDeniedPrefix is the Display of upstream's AdminAccessDenied.
	accessDeniedPrefix = "Admin access denied: "
	// textParseHeader is the Display of upstream's ParseAuthHeaderFailed:
	// no, several or a non-Bearer Authorization header.
	textParseHeader = "Failed to parse HTTP Auth Bearer header"
)

// ReasonRoleNotAllowed is upstream's denial of a genuine token whose role
// no ACL rule allows for the request URI (path and query, as received).
func ReasonRoleNotAllowed(role, uri string) string {
	return fmt.Sprintf("Role %s not allowed for path %s", role, uri)
}

// Wording of the older releases whose [admin] formats are still accepted,
// appended after upstream's current text so that scripts written against
// those releases keep matching.
const (
	legacyPersonaText = "Admin Token could not be verified for any admin persona" // v0.16–v0.20
	legacyDisabled    = "Admin endpoints disabled."                               // v0.16–v0.20 DenyAll
	legacyKeyText     = "Admin Token verification failed"                         // ≤ v0.15
)

// Error is an admin request Authorize refused. Its text is upstream's
// Display of the same refusal ("Admin access denied: <reason>" or "Failed
// to parse HTTP Auth Bearer header"), then, after ": ", what we add.
// errors.Is matches it against ErrUnauthenticated, ErrForbidden or
// ErrAdminDenied.
type Error struct {
	// Reason is upstream's AdminAccessDenied reason, e.g.
	// ReasonNoIssuer; empty for a malformed Authorization header.
	Reason string
	// Detail is ours (may be empty); it never comes first.
	Detail string

	kind  error
	cause error
}

func (e *Error) Error() string {
	s := e.Upstream()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Upstream returns upstream's text of the refusal alone.
func (e *Error) Upstream() string {
	if e.Reason == "" {
		return textParseHeader
	}
	return accessDeniedPrefix + e.Reason
}

// Is reports whether target is the refusal class of e.
func (e *Error) Is(target error) bool { return target == e.kind }

// Unwrap returns the underlying verification error, if any.
func (e *Error) Unwrap() error { return e.cause }

func denied(kind error, reason, detail string, cause error) *Error {
	return &Error{Reason: reason, Detail: detail, kind: kind, cause: cause}
}

// badHeader is upstream's ParseAuthHeaderFailed.
func badHeader(detail string) *Error {
	return &Error{Detail: detail, kind: ErrUnauthenticated}
}
