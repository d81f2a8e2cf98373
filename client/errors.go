package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/protocol"
)

// Sentinel errors. An *Error from the KBS matches the first three through
// errors.Is according to its status and ErrorInformation (see Error.Is).
var (
	// ErrUnauthorized: the KBS refused the credentials (HTTP 401) and
	// re-attesting did not help within MaxResourceAttempts, or no fresh
	// token could be had (a static Token without an Attester).
	ErrUnauthorized = errors.New("kbs: unauthorized")
	// ErrPolicyDeny: the KBS resource policy refused the request
	// (ErrorInformation type .../PolicyDeny). Re-attesting cannot change
	// the decision, so the client stops at once.
	ErrPolicyDeny = errors.New("kbs: access denied by policy")
	// ErrResourceNotFound: the KBS answered 404 (invalid path or unknown
	// plugin; upstream answers 401 for a missing resource of a known path).
	ErrResourceNotFound = errors.New("kbs: resource not found")
	// ErrVersionMismatch: the KBS speaks another protocol version.
	ErrVersionMismatch = errors.New("kbs: protocol version mismatch")
	// ErrServer: the KBS answered with a status other than 200, 401 and 404.
	ErrServer = errors.New("kbs: server error")
	// ErrResponseTooLarge: a response body exceeded limits.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("kbs: response too large")
	// ErrInvalidResponse: a 200 response could not be decoded (challenge,
	// token or JWE), or the resource did not decrypt with our key.
	ErrInvalidResponse = errors.New("kbs: invalid response")
	// ErrInvalidToken: an attestation token is not a JWT whose claims
	// decode, or exceeds limits.MaxTokenBytes.
	ErrInvalidToken = errors.New("invalid attestation token")
	// ErrNoAttester: the operation needs attestation but the client was
	// built without an Attester.
	ErrNoAttester = errors.New("client has no attester")
	// ErrInvalidResourceURI: a resource path or kbs:// URI is malformed.
	ErrInvalidResourceURI = errors.New("invalid resource URI")
)

// Error is a non-200 answer of the KBS, with its ErrorInformation when the
// body held one. Detail texts come from the server and are safe to show;
// they never contain the token, key or resource.
type Error struct {
	// Op names the request: "auth", "attest", "get resource", ...
	Op string
	// Status is the HTTP status code.
	Status int
	// Info is the decoded ErrorInformation; zero when the body was not one.
	Info protocol.ErrorInformation
	// Body is a short, printable excerpt of a body that was not an
	// ErrorInformation.
	Body string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kbs %s: HTTP %d", e.Op, e.Status)
	switch {
	case e.Info.Kind() != "":
		fmt.Fprintf(&b, " %s: %s", e.Info.Kind(), e.Info.Detail)
	case e.Info.Type != "" || e.Info.Detail != "":
		fmt.Fprintf(&b, " %s: %s", e.Info.Type, e.Info.Detail)
	case e.Body != "":
		fmt.Fprintf(&b, ": %s", e.Body)
	}
	return b.String()
}

// Is maps the KBS answer to the sentinels, in one place:
//   - ErrPolicyDeny: ErrorInformation kind PolicyDeny (any status).
//   - ErrVersionMismatch: a detail naming a protocol version mismatch.
//   - ErrUnauthorized: status 401 that is neither of the above.
//   - ErrResourceNotFound: status 404.
//   - ErrServer: any other status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPolicyDeny:
		return e.policyDeny()
	case ErrVersionMismatch:
		return e.versionMismatch()
	case ErrUnauthorized:
		return e.Status == 401 && !e.policyDeny() && !e.versionMismatch()
	case ErrResourceNotFound:
		return e.Status == 404
	case ErrServer:
		return e.Status != 401 && e.Status != 404
	}
	return false
}

func (e *Error) policyDeny() bool { return e.Info.Kind() == "PolicyDeny" }

func (e *Error) versionMismatch() bool {
	return strings.Contains(e.Info.Detail, "Protocol Version Mismatch")
}

// permanent reports whether retrying an RCAR handshake cannot help.
func permanent(err error) bool {
	return errors.Is(err, ErrPolicyDeny) || errors.Is(err, ErrVersionMismatch) ||
		errors.Is(err, ErrNoAttester) || errors.Is(err, ErrResponseTooLarge)
}
