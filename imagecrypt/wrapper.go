package imagecrypt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap"
)

// handlePrefix marks an in-process session handle among the
// attestation-agent parameters of an ocicrypt Encrypt/DecryptConfig.
// ocicrypt's key wrapper interface carries no context, so a call's context,
// KeySource or WrapFunc travel through this registry, keyed by a random
// handle that lives only for the duration of the call.
const handlePrefix = "imagecrypt-session:"

// session is the state of one wrap or unwrap call.
type session struct {
	ctx  context.Context
	keys KeySource
	wrap WrapFunc

	mu   sync.Mutex
	opts []byte // unwrapped key options
	errs []error
}

func (s *session) record(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// failure turns ocicrypt's stringified error back into our typed errors:
// ocicrypt flattens wrapper errors to text, so the ones recorded here are
// returned (joined) when present.
func (s *session) failure(ocierr error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return ocierr
	}
	return errors.Join(s.errs...)
}

var sessions sync.Map // handle string -> *session

func newHandle() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("imagecrypt: crypto/rand failed: %v", err))
	}
	return handlePrefix + hex.EncodeToString(b[:])
}

func register(s *session) string {
	h := newHandle()
	sessions.Store(h, s)
	return h
}

func registerAs(h string, s *session) { sessions.Store(h, s) }

func unregister(h string) { sessions.Delete(h) }

// lookup finds the session named by the attestation-agent parameters.
func lookup(params map[string][][]byte) (*session, bool) {
	for _, p := range params[ProviderName] {
		if h := string(p); strings.HasPrefix(h, handlePrefix) {
			if v, ok := sessions.Load(h); ok {
				return v.(*session), true
			}
		}
	}
	return nil, false
}

// keyWrapper is the ocicrypt key wrapper registered for Scheme.
type keyWrapper struct {
	// fallback is the wrapper OCICRYPT_KEYPROVIDER_CONFIG registered for
	// the scheme before us (a keyprovider over gRPC or a command), or nil.
	fallback keywrap.KeyWrapper
}

func init() {
	ocicrypt.RegisterKeyWrapper(Scheme, &keyWrapper{fallback: ocicrypt.GetKeyWrapper(Scheme)})
}

func (w *keyWrapper) GetAnnotationID() string { return AnnotationKeys }

// WrapKeys wraps with the session's WrapFunc; without a session it
// delegates to the configured key provider, if any, and otherwise wraps
// nothing (the layer is not for this provider).
func (w *keyWrapper) WrapKeys(ec *config.EncryptConfig, optsData []byte) ([]byte, error) {
	if s, ok := lookup(ec.Parameters); ok {
		if s.wrap == nil {
			err := errors.New("imagecrypt session has no wrap function")
			s.record(err)
			return nil, err
		}
		p, err := s.wrap(optsData)
		if err != nil {
			s.record(err)
			return nil, err
		}
		return p, nil
	}
	if _, ok := ec.Parameters[ProviderName]; !ok {
		return nil, nil
	}
	if w.fallback != nil {
		return w.fallback.WrapKeys(ec, optsData)
	}
	return nil, fmt.Errorf("no %s key provider configured (set OCICRYPT_KEYPROVIDER_CONFIG or use imagecrypt.EncryptLayer)", ProviderName)
}

// UnwrapKey opens one annotation packet with the session's KeySource, or
// delegates to the configured key provider.
func (w *keyWrapper) UnwrapKey(dc *config.DecryptConfig, packet []byte) ([]byte, error) {
	if s, ok := lookup(dc.Parameters); ok {
		ctx := s.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		opts, err := UnwrapPacket(ctx, s.keys, packet)
		if err != nil {
			s.record(err)
			return nil, err
		}
		s.mu.Lock()
		s.opts = opts
		s.mu.Unlock()
		return opts, nil
	}
	if w.fallback != nil {
		return w.fallback.UnwrapKey(dc, packet)
	}
	return nil, fmt.Errorf("no %s key provider configured (use imagecrypt.LayerDecrypter)", ProviderName)
}

// NoPossibleKeys is true when neither a session nor a configured key
// provider can unwrap.
func (w *keyWrapper) NoPossibleKeys(params map[string][][]byte) bool {
	if _, ok := lookup(params); ok {
		return false
	}
	return w.fallback == nil
}

func (w *keyWrapper) GetPrivateKeys(map[string][][]byte) [][]byte { return nil }

func (w *keyWrapper) GetKeyIdsFromPacket(string) ([]uint64, error) { return nil, nil }

func (w *keyWrapper) GetRecipients(string) ([]string, error) { return nil, nil }
