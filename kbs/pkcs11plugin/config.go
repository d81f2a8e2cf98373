package pkcs11plugin

import (
	"crypto"
	_ "crypto/sha1" // RsaPkcsTest
	_ "crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
)

// Bounds (ours; upstream has none below the KBS payload limit).
const (
	// MaxResourceBytes bounds a resource written to or read from the token.
	MaxResourceBytes = 256 << 10
	// MaxSlotIndex is the largest slot_index (upstream's u8).
	MaxSlotIndex = 255
)

// The rsa_mechanism values: upstream's RsaMechanism variants, spelled as
// upstream's serde reads them.
const (
	// MechanismOAEP is RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label
	// (upstream's default).
	MechanismOAEP = "RsaPkcsOaep"
	// MechanismTest is RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label
	// (upstream: "for testing or legacy compatibility").
	MechanismTest = "RsaPkcsTest"
)

// Config is one pkcs11 [[plugins]] entry: upstream's Pkcs11Config.
type Config struct {
	// Module is the path of the PKCS#11 library (upstream "module").
	Module string
	// SlotIndex is the index, among the slots that hold a token, of the
	// token to use (upstream "slot_index", default 0). It is an index into
	// C_GetSlotList(CK_TRUE), not a slot ID.
	SlotIndex int
	// Pin is the user PIN (upstream "pin"). It is never logged, printed
	// or put in an error.
	Pin string
	// RsaMechanism is MechanismOAEP (default, "") or MechanismTest
	// (upstream "rsa_mechanism").
	RsaMechanism string
	// LookupLabel is the CKA_LABEL of the RSA key pair of the wrap-key
	// endpoints (upstream "lookup_label"); empty: no wrap key.
	LookupLabel string
}

// String prints the configuration without the PIN.
func (c Config) String() string {
	pin := ""
	if c.Pin != "" {
		pin = "<redacted>"
	}
	return fmt.Sprintf("{Module:%s SlotIndex:%d Pin:%s RsaMechanism:%s LookupLabel:%s}", c.Module, c.SlotIndex, pin, c.RsaMechanism, c.LookupLabel)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Validate checks the entry without opening anything: what CheckConfig
// runs.
func (c Config) Validate() error {
	if c.Module == "" {
		return errors.New("module (the path of the PKCS#11 library) is required")
	}
	if c.SlotIndex < 0 || c.SlotIndex > MaxSlotIndex {
		return fmt.Errorf("slot_index must be between 0 and %d", MaxSlotIndex)
	}
	if c.Pin == "" {
		return errors.New("pin is required")
	}
	if _, err := hashOf(c.RsaMechanism); err != nil {
		return err
	}
	return nil
}

// hashOf is the OAEP hash of an rsa_mechanism.
func hashOf(mechanism string) (crypto.Hash, error) {
	switch mechanism {
	case "", MechanismOAEP:
		return crypto.SHA256, nil
	case MechanismTest:
		return crypto.SHA1, nil
	}
	return 0, fmt.Errorf("rsa_mechanism %q is not one of %q, %q", mechanism, MechanismOAEP, MechanismTest)
}

// Options are the plugin's dependencies.
type Options struct {
	// Logger receives the start-up record (nil: discarded).
	Logger *slog.Logger
}

// Errors, tested with errors.Is. Their texts are upstream's where
// upstream has one.
var (
	// ErrInvalidMethod: a method other than GET, POST and DELETE, or a
	// DELETE of wrap-key.
	ErrInvalidMethod = errors.New("invalid method")
	// ErrInvalidPath: not resource/<repository>/<type>/<tag> or wrap-key.
	ErrInvalidPath = errors.New("invalid path")
	// ErrNotFound: no resource object with that label.
	ErrNotFound = errors.New("not found")
	// ErrNotReadable: the object's CKA_VALUE cannot be read (sensitive).
	ErrNotReadable = errors.New("value not readable")
	// ErrTooLarge: a resource above MaxResourceBytes.
	ErrTooLarge = errors.New("resource too large")
	// ErrInvalidInput: a wrap-key body the key cannot take (length, or
	// a ciphertext the token rejects).
	ErrInvalidInput = errors.New("invalid input")
	// ErrNoToken: slot_index names no slot with a token.
	ErrNoToken = errors.New("no token")
	// ErrNoWrapKey: no lookup_label, or no RSA key pair with it.
	ErrNoWrapKey = errors.New("no wrap key")
	// ErrNoCgo: this build has no cgo, so no PKCS#11.
	ErrNoCgo = errors.New("the pkcs11 plugin needs a build with cgo (CGO_ENABLED=1)")
	// ErrClosed: the plugin was closed.
	ErrClosed = errors.New("the pkcs11 plugin is closed")
)

// opError is an error with upstream's text and one of the kinds above.
type opError struct {
	kind error
	text string
}

func (e *opError) Error() string        { return e.text }
func (e *opError) Is(target error) bool { return target == e.kind }

func errorf(kind error, format string, args ...any) error {
	return &opError{kind: kind, text: fmt.Sprintf(format, args...)}
}

// Op is what a request asks of the plugin.
type Op int

// The operations, as upstream's handle dispatches them.
const (
	OpReadResource   Op = iota + 1 // GET resource/<r>/<t>/<g>: attested, sealed
	OpWriteResource                // POST resource/<r>/<t>/<g>: admin
	OpDeleteResource               // DELETE resource/<r>/<t>/<g>: admin
	OpWrap                         // POST wrap-key: admin
	OpUnwrap                       // GET wrap-key: attested, sealed
)

// Admin reports whether the operation is an admin one (upstream's
// validate_auth: every method but GET).
func (o Op) Admin() bool { return o != OpReadResource && o != OpUnwrap }

// Request is a routed request.
type Request struct {
	Op Op
	// Resource is <repository>/<type>/<tag> for the resource operations:
	// the CKA_LABEL of its object.
	Resource string
}

// resourceDescRE is upstream's ResourceDesc syntax.
var resourceDescRE = regexp.MustCompile(`^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*/[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*/[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*$`)

// Route maps a method and the path after /kbs/v0/pkcs11/ to an operation
// as upstream does: the method first (validate_auth), then the path joined
// with "/" ("wrap-key", or "resource/" and a ResourceDesc). The error texts
// are upstream's.
func Route(method string, path []string) (Request, error) {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		return Request{}, errorf(ErrInvalidMethod, "invalid method")
	}
	desc := strings.Join(path, "/")
	if desc == "wrap-key" {
		switch method {
		case http.MethodPost:
			return Request{Op: OpWrap}, nil
		case http.MethodGet:
			return Request{Op: OpUnwrap}, nil
		}
		return Request{}, errorf(ErrInvalidMethod, "invalid method")
	}
	action, params, ok := strings.Cut(desc, "/")
	if !ok {
		return Request{}, errorf(ErrInvalidPath, "accessed path is invalid")
	}
	if action != "resource" {
		return Request{}, errorf(ErrInvalidPath, "invalid path")
	}
	if !resourceDescRE.MatchString(params) {
		return Request{}, errorf(ErrInvalidPath, "invalid path: illegal ResourceDesc format.")
	}
	r := Request{Resource: params}
	switch method {
	case http.MethodGet:
		r.Op = OpReadResource
	case http.MethodPost:
		r.Op = OpWriteResource
	default:
		r.Op = OpDeleteResource
	}
	return r, nil
}
