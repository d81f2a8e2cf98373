package cdh

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/sealedsecret"
)

// Sentinel errors of the hub. Their texts are what a ttRPC caller (the
// host side) sees, and through api-server-rest the workload: upstream's
// texts, so they carry no package prefix. The wrapped details stay in the
// guest log.
var (
	// ErrInvalidRequest: the request is malformed (bad resource URI,
	// keyprovider JSON or annotation packet).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotFound: the KBS (or the offline files) has no such resource.
	ErrNotFound = errors.New("resource not found")
	// ErrPolicyDeny: the KBS resource policy refused the resource.
	// Re-attesting cannot change that, so it is reported at once.
	ErrPolicyDeny = errors.New("access denied by the KBS resource policy")
	// ErrUnauthorized: the KBS refused the attestation token even after a
	// fresh one was obtained.
	ErrUnauthorized = errors.New("the KBS refused the attestation token")
	// ErrKBSRefused: the KBS answered with an error that is neither of the
	// above (e.g. a plugin or storage failure on its side).
	ErrKBSRefused = errors.New("the KBS refused the request")
	// ErrKBSUnreachable: the KBS could not be reached within the retries.
	ErrKBSUnreachable = errors.New("KBS unreachable")
	// ErrAttestation: no KBS token could be had from the attestation-agent.
	ErrAttestation = errors.New("attestation failed: no KBS token from the attestation-agent")
	// ErrUnsupported: the operation is not provided by this hub.
	ErrUnsupported = errors.New("not supported")
)

// Prefix of every ttRPC error message, as upstream writes it.
const rpcErrorPrefix = "[CDH] [ERROR]: "

// rpcError maps err to the ttRPC status the caller sees: a code and a terse
// message naming the category (the sentinel), never server details,
// secrets or keys. It is the only place errors cross to the host.
func rpcError(op string, err error) error {
	code, what := classify(err)
	return status.Error(code, rpcErrorPrefix+op+" failed: "+what)
}

func classify(err error) (codes.Code, string) {
	var unreachable *unreachableError
	switch {
	case errors.As(err, &unreachable):
		return codes.Unavailable, fmt.Sprintf("%v %s", ErrKBSUnreachable, unreachable.url)
	case errors.Is(err, ErrPolicyDeny):
		return codes.PermissionDenied, ErrPolicyDeny.Error()
	case errors.Is(err, ErrUnauthorized):
		return codes.PermissionDenied, ErrUnauthorized.Error()
	case errors.Is(err, ErrNotFound):
		return codes.NotFound, ErrNotFound.Error()
	case errors.Is(err, ErrAttestation):
		return codes.Unavailable, ErrAttestation.Error()
	case errors.Is(err, ErrKBSRefused):
		return codes.Internal, ErrKBSRefused.Error()
	case errors.Is(err, ErrUnsupported):
		return codes.Unimplemented, ErrUnsupported.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return codes.Canceled, "canceled"
	case errors.Is(err, ErrInvalidRequest):
		return codes.InvalidArgument, ErrInvalidRequest.Error()
	}
	for _, s := range []error{
		sealedsecret.ErrTooLarge, sealedsecret.ErrMalformed, sealedsecret.ErrUnsupportedAlgorithm,
		sealedsecret.ErrBadSignature, sealedsecret.ErrVerificationKey, sealedsecret.ErrUnsupportedVersion,
		sealedsecret.ErrUnknownProvider, sealedsecret.ErrDecrypt,
	} {
		if errors.Is(err, s) {
			c := codes.InvalidArgument
			if s == sealedsecret.ErrVerificationKey {
				c = codes.FailedPrecondition
			}
			return c, s.Error()
		}
	}
	return codes.Internal, "internal error (details in the guest log)"
}

// unreachableError is ErrKBSUnreachable with the KBS URL.
type unreachableError struct {
	url      string
	attempts int
	err      error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%v: %s after %d attempts: %v", ErrKBSUnreachable, e.url, e.attempts, e.err)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrKBSUnreachable, e.err} }
