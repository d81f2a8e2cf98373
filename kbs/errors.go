package kbs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-trustee/go-trustee/protocol"
)

// Kind is an upstream error variant (kbs/src/error.rs); it names the
// ErrorInformation type on the wire.
type Kind string

// The variants upstream emits.
const (
	KindAdminAuthInitialization Kind = "AdminAuthInitialization"
	KindAdminAuthAccess         Kind = "AdminAuthAccess"
	KindAttestationError        Kind = "AttestationError"
	KindInvalidRequestPath      Kind = "InvalidRequestPath"
	KindJweError                Kind = "JweError"
	KindPluginNotFound          Kind = "PluginNotFound"
	KindPluginInternalError     Kind = "PluginInternalError"
	KindPolicyDeny              Kind = "PolicyDeny"
	KindParsePolicyError        Kind = "ParsePolicyError"
	KindPolicyEngineError       Kind = "PolicyEngineError"
	KindRvpsError               Kind = "RvpsError"
	KindSerdeError              Kind = "SerdeError"
	KindTokenNotFound           Kind = "TokenNotFound"
	KindTokenVerifierError      Kind = "TokenVerifierError"
	// KindPayloadTooLarge is ours: upstream's actix answers 413 with a
	// plain-text body; we keep the status and give it the JSON shape.
	KindPayloadTooLarge Kind = "PayloadTooLarge"
	// KindInternal is ours, for faults of the KBS itself (storage down).
	KindInternal Kind = "InternalError"
)

// Error is the single error type the handlers return: a wire kind, the
// detail sent to the client, and the cause kept for the logs.
type Error struct {
	Kind   Kind
	Detail string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// newError builds an Error; when cause is non-nil its text is appended to
// the detail, as upstream's Display strings do.
func newError(kind Kind, cause error, format string, args ...any) *Error {
	d := fmt.Sprintf(format, args...)
	if cause != nil {
		d = d + ": " + cause.Error()
	}
	return &Error{Kind: kind, Detail: d, Err: cause}
}

// status maps a kind to its HTTP status with upstream's rules: 404 only for
// InvalidRequestPath and PluginNotFound, 401 for everything else; our two
// additions keep the status a client expects for them.
func status(k Kind) int {
	switch k {
	case KindInvalidRequestPath, KindPluginNotFound:
		return http.StatusNotFound
	case KindPayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindInternal:
		return http.StatusInternalServerError
	}
	return http.StatusUnauthorized
}

// toWire is the one place where an error becomes a status and an
// ErrorInformation body. Errors that are not *Error (a bug) are reported
// as internal without their text.
func toWire(err error) (int, protocol.ErrorInformation) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Kind: KindInternal, Detail: "internal error"}
	}
	return status(e.Kind), protocol.ErrorInformation{Type: protocol.ErrorTypePrefix + string(e.Kind), Detail: e.Detail}
}

func writeError(w http.ResponseWriter, err error) {
	code, info := toWire(err)
	b, _ := json.Marshal(info)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}
