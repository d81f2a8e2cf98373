package kbs

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
)

// Sessions live in the shared key-value store (namespace
// kbs_protocol_session) in upstream's serde encoding, so that any replica
// sharing the store can continue a handshake another replica began:
//
//	{"Authed":{"request":{...},"challenge":{...},"id":"..","timeout":"<RFC 3339>"}}
//	{"Attested":{"token":"<jwt>","id":"..","timeout":"<RFC 3339>"}}
//
// The timeout is fixed at /auth and not extended by /attest. Expired
// sessions are deleted when read and by a periodic sweep.

var errSessionNotFound = errors.New("session not found or expired")

// scrub returns err with every occurrence of the session id replaced by
// its tag: a store's error may quote the key (a LocalFs path, a Redis key),
// and a session id is the bearer credential of its cookie while the
// session lives, so it must reach neither a log nor an error detail.
// errors.Is and errors.As still see err.
func scrub(err error, id string) error {
	if err == nil || id == "" || !strings.Contains(err.Error(), id) {
		return err
	}
	return &scrubbed{err: err, msg: strings.ReplaceAll(err.Error(), id, "<session "+sessionTag(id)+">")}
}

type scrubbed struct {
	err error
	msg string
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

type authedSession struct {
	Request   protocol.Request   `json:"request"`
	Challenge protocol.Challenge `json:"challenge"`
	ID        string             `json:"id"`
	Timeout   time.Time          `json:"timeout"`
}

type attestedSession struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Timeout time.Time `json:"timeout"`
}

type sessionRecord struct {
	Authed   *authedSession   `json:"Authed,omitempty"`
	Attested *attestedSession `json:"Attested,omitempty"`
}

func (r *sessionRecord) timeout() time.Time {
	if r.Authed != nil {
		return r.Authed.Timeout
	}
	if r.Attested != nil {
		return r.Attested.Timeout
	}
	return time.Time{}
}

type sessions struct {
	kv      storage.Store
	now     func() time.Time
	rand    io.Reader
	timeout time.Duration
	log     *slog.Logger
}

// newID returns a UUID v4 in its simple form (32 hex digits), as upstream.
func (s *sessions) newID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", err
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return hex.EncodeToString(b[:]), nil
}

// validID reports whether id has the shape of a session id; anything else
// is rejected before touching the store.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *sessions) create(ctx context.Context, req protocol.Request, ch protocol.Challenge) (*authedSession, error) {
	for range 3 {
		id, err := s.newID()
		if err != nil {
			return nil, fmt.Errorf("generating session id: %w", err)
		}
		a := &authedSession{Request: req, Challenge: ch, ID: id, Timeout: s.now().Add(s.timeout).UTC().Truncate(time.Second)}
		b, err := json.Marshal(sessionRecord{Authed: a})
		if err != nil {
			return nil, err
		}
		ok, err := s.kv.Set(ctx, storage.NamespaceSession, id, b, false)
		if err != nil {
			return nil, fmt.Errorf("storing session: %w", scrub(err, id))
		}
		if ok {
			return a, nil
		}
	}
	return nil, errors.New("storing session: id collision")
}

func (s *sessions) get(ctx context.Context, id string) (*sessionRecord, error) {
	if !validID(id) {
		return nil, errSessionNotFound
	}
	b, err := s.kv.Get(ctx, storage.NamespaceSession, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errSessionNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading session: %w", scrub(err, id))
	}
	var r sessionRecord
	if err := json.Unmarshal(b, &r); err != nil || (r.Authed == nil) == (r.Attested == nil) {
		s.log.Warn("dropping undecodable session record", "session", sessionTag(id))
		_ = s.kv.Delete(ctx, storage.NamespaceSession, id)
		return nil, errSessionNotFound
	}
	if !s.now().Before(r.timeout()) {
		_ = s.kv.Delete(ctx, storage.NamespaceSession, id)
		return nil, errSessionNotFound
	}
	return &r, nil
}

func (s *sessions) attested(ctx context.Context, id, token string, timeout time.Time) error {
	b, err := json.Marshal(sessionRecord{Attested: &attestedSession{Token: token, ID: id, Timeout: timeout}})
	if err != nil {
		return err
	}
	if _, err := s.kv.Set(ctx, storage.NamespaceSession, id, b, true); err != nil {
		return fmt.Errorf("storing session: %w", scrub(err, id))
	}
	return nil
}

// namespaceClaim holds the claims of challenges being appraised: key the
// session id, value {"timeout": <the session's>}. A claim is taken with
// insert-if-absent, which every store does atomically, so across replicas
// one /attest per challenge is appraised at a time; it is removed when
// that request ends (the session is Attested by then, or the attempt
// failed and may be retried), and swept with the sessions if a crash left
// it behind.
const namespaceClaim = "kbs_protocol_claim"

type claimRecord struct {
	Timeout time.Time `json:"timeout"`
}

// claim takes the challenge of session id; false if another request holds
// it.
func (s *sessions) claim(ctx context.Context, id string, timeout time.Time) (bool, error) {
	b, err := json.Marshal(claimRecord{Timeout: timeout})
	if err != nil {
		return false, err
	}
	ok, err := s.kv.Set(ctx, namespaceClaim, id, b, false)
	if err != nil {
		return false, fmt.Errorf("storing challenge claim: %w", scrub(err, id))
	}
	if ok {
		return true, nil
	}
	// A claim a crashed request left past the session's life is stale.
	if old, err := s.kv.Get(ctx, namespaceClaim, id); err == nil {
		var c claimRecord
		if json.Unmarshal(old, &c) != nil || !s.now().Before(c.Timeout) {
			_ = s.kv.Delete(ctx, namespaceClaim, id)
		}
	}
	return false, nil
}

// release drops the claim of session id.
func (s *sessions) release(ctx context.Context, id string) {
	if err := s.kv.Delete(ctx, namespaceClaim, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("dropping a challenge claim failed; the sweep removes it", "session", sessionTag(id), "error", scrub(err, id))
	}
}

// sweep deletes expired sessions, and expired claims, once.
func (s *sessions) sweep(ctx context.Context) (int, error) {
	if claims, err := s.kv.List(ctx, namespaceClaim); err == nil {
		for _, id := range claims {
			b, err := s.kv.Get(ctx, namespaceClaim, id)
			var c claimRecord
			if err == nil && (json.Unmarshal(b, &c) != nil || !s.now().Before(c.Timeout)) {
				_ = s.kv.Delete(ctx, namespaceClaim, id)
			}
		}
	}
	ids, err := s.kv.List(ctx, storage.NamespaceSession)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		b, err := s.kv.Get(ctx, storage.NamespaceSession, id)
		if err != nil {
			continue
		}
		var r sessionRecord
		if json.Unmarshal(b, &r) != nil || !s.now().Before(r.timeout()) {
			if s.kv.Delete(ctx, storage.NamespaceSession, id) == nil {
				n++
			}
		}
	}
	return n, nil
}

// runSweeper sweeps every minute, backing off from 5 s to 300 s while the
// store fails, until ctx ends.
func (s *sessions) runSweeper(ctx context.Context) {
	interval := time.Minute
	backoff := 5 * time.Second
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.sweep(ctx); err != nil {
			s.log.Warn("session sweep failed", "error", err, "retry_in", backoff)
			t.Reset(backoff)
			backoff = min(backoff*2, 300*time.Second)
			continue
		}
		backoff = 5 * time.Second
		t.Reset(interval)
	}
}
