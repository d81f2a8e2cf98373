package kbs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/protocol"
)

// decodeJSON decodes one JSON value and rejects trailing data.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func (s *Server) setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	// As upstream (actix Cookie): name, value and Expires only.
	w.Header().Add("Set-Cookie", protocol.CookieName+"="+id+"; Expires="+expires.UTC().Format(http.TimeFormat))
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return newError(KindSerdeError, err, "encoding response")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request, body []byte) (err error) {
	s.metrics.authRequests.Inc()
	defer func() {
		if err != nil {
			s.metrics.authErrors.Inc()
		} else {
			s.metrics.authSuccesses.Inc()
		}
	}()
	if s.as == nil {
		return newError(KindAttestationError, nil, "Attestation error: this KBS has no attestation service (type %s); present a token from your attestation service as Bearer", s.cfg.AttestationService.Type)
	}
	var req protocol.Request
	if err := decodeJSON(body, &req); err != nil {
		return newError(KindSerdeError, err, "Serde Json Error")
	}
	if req.Version != protocol.Version {
		return newError(KindAttestationError, nil, "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =%s while the request is %s", protocol.Version, req.Version)
	}
	extra, err := s.as.GenerateSupplementalChallenge(r.Context(), req.Tee, string(req.ExtraParams))
	if err != nil {
		return newError(KindAttestationError, err, "Attestation error: RCAR handshake Auth failed")
	}
	var selected protocol.HashAlgorithm
	if h, ok := s.as.(challengeHasher); ok {
		if selected, err = h.ChallengeHashAlgorithm(req.Tee, string(req.ExtraParams)); err != nil {
			return newError(KindAttestationError, err, "Attestation error: RCAR handshake Auth failed")
		}
	}
	var nonce [32]byte
	if _, err := io.ReadFull(s.rand, nonce[:]); err != nil {
		return newError(KindInternal, err, "generating nonce")
	}
	ch := protocol.Challenge{Nonce: base64.StdEncoding.EncodeToString(nonce[:]), ExtraParams: json.RawMessage(protocol.EmptyExtraParams)}
	if extra != "" {
		// Only the se TEE has a supplemental challenge: it replaces the nonce
		// and selects SHA-512, as upstream.
		ch.Nonce = extra
		ch.ExtraParams = json.RawMessage(`{"selected-hash-algorithm":"sha512"}`)
	} else if selected != "" {
		b, err := json.Marshal(map[string]string{"selected-hash-algorithm": string(selected)})
		if err != nil {
			return newError(KindSerdeError, err, "encoding challenge")
		}
		ch.ExtraParams = b
	}
	sess, err := s.sessions.create(r.Context(), req, ch)
	if err != nil {
		return newError(KindInternal, err, "creating session")
	}
	s.setSessionCookie(w, sess.ID, sess.Timeout)
	return writeJSON(w, ch)
}

func (s *Server) sessionFromCookie(r *http.Request) (string, *sessionRecord, error) {
	c, err := r.Cookie(protocol.CookieName)
	if err != nil {
		return "", nil, errSessionNotFound
	}
	rec, err := s.sessions.get(r.Context(), c.Value)
	if err != nil {
		return "", nil, err
	}
	return c.Value, rec, nil
}

func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) (err error) {
	s.metrics.attestationRequests.Inc()
	// One rule for the two counters: a request that fails before a session
	// names its TEE is an attestation error; once the TEE is known, any
	// failure is an attestation failure of that TEE (and is audited).
	var tee protocol.Tee
	var id string
	defer func() {
		switch {
		case err == nil:
		case tee == "":
			s.metrics.attestationErrors.Inc()
		default:
			s.metrics.attestationFailures.WithLabelValues(string(tee)).Inc()
			s.audit.Info("attestation", "event", "attest", "outcome", "failure", "request_id", requestID(r.Context()),
				"tee", string(tee), "session", sessionTag(id), "reason", errDetail(err))
		}
	}()
	if s.as == nil {
		return newError(KindAttestationError, nil, "Attestation error: this KBS has no attestation service (type %s)", s.cfg.AttestationService.Type)
	}
	if _, err := r.Cookie(protocol.CookieName); err != nil {
		return newError(KindAttestationError, nil, "Attestation error: cookie %s not found", protocol.CookieName)
	}
	id, rec, err := s.sessionFromCookie(r)
	if err != nil {
		if errors.Is(err, errSessionNotFound) {
			return newError(KindAttestationError, nil, "Attestation error: session not found or expired")
		}
		return newError(KindInternal, err, "reading session")
	}
	if rec.Attested != nil {
		// Re-attesting an attested session returns its token, as upstream.
		s.setSessionCookie(w, id, rec.Attested.Timeout)
		return writeJSON(w, protocol.AttestationResponse{Token: rec.Attested.Token})
	}
	sess := rec.Authed
	tee = sess.Request.Tee

	var att protocol.Attestation
	if err := decodeJSON(body, &att); err != nil {
		return newError(KindSerdeError, err, "Serde Json Error: attestation request")
	}
	if att.RuntimeData.Nonce != sess.Challenge.Nonce {
		return newError(KindAttestationError, nil, "Attestation error: runtime-data nonce does not match the session challenge")
	}
	// A key no release could be sealed to (RSA under 2048 bits, a point
	// off its curve) gets no token: refused here, not at the first GET.
	if _, err := protocol.PublicKeyFromTeePubKey(att.RuntimeData.TeePubKey); err != nil {
		return newError(KindAttestationError, nil, "Attestation error: runtime-data tee-pubkey is not usable: %v", err)
	}
	if len(att.TeeEvidence.PrimaryEvidence) == 0 || bytes.Equal(att.TeeEvidence.PrimaryEvidence, []byte("null")) {
		return newError(KindAttestationError, nil, "Attestation error: tee-evidence.primary_evidence is missing")
	}
	hashAlg, err := protocol.SelectedHashAlgorithm(sess.Challenge.ExtraParams)
	if err != nil {
		return newError(KindAttestationError, err, "Attestation error: challenge hash algorithm")
	}
	var initData *as.InitData
	if att.InitData != nil {
		if att.InitData.Format != "toml" {
			return newError(KindAttestationError, nil, "Attestation error: init-data format %q is not supported (want \"toml\")", att.InitData.Format)
		}
		initData = &as.InitData{TOML: att.InitData.Body}
	}
	primaryRD, err := json.Marshal(protocol.PrimaryRuntimeData{
		AdditionalEvidence: att.TeeEvidence.AdditionalEvidence, Nonce: att.RuntimeData.Nonce, TeePubKey: att.RuntimeData.TeePubKey})
	if err != nil {
		return newError(KindSerdeError, err, "encoding runtime data")
	}
	reqs := []as.VerificationRequest{{
		Tee: tee, Evidence: att.TeeEvidence.PrimaryEvidence, HashAlgorithm: hashAlg,
		RuntimeData: &as.RuntimeData{Structured: primaryRD}, InitData: initData,
	}}
	if ae := att.TeeEvidence.AdditionalEvidence; ae != "" {
		var devices map[protocol.Tee]json.RawMessage
		if err := json.Unmarshal([]byte(ae), &devices); err != nil {
			return newError(KindAttestationError, err, "Attestation error: additional evidence is not a map of TEE to evidence")
		}
		deviceRD, err := json.Marshal(protocol.DeviceRuntimeData{Nonce: att.RuntimeData.Nonce, TeePubKey: att.RuntimeData.TeePubKey})
		if err != nil {
			return newError(KindSerdeError, err, "encoding runtime data")
		}
		for dt, ev := range devices {
			reqs = append(reqs, as.VerificationRequest{Tee: dt, Evidence: ev, HashAlgorithm: hashAlg,
				RuntimeData: &as.RuntimeData{Structured: deviceRD}})
		}
	}
	// One appraisal per challenge at a time, across replicas: concurrent
	// /attest on one session (each with its own TEE key) would otherwise
	// each get a token for the one nonce.
	claimed, err := s.sessions.claim(r.Context(), id, sess.Timeout)
	if err != nil {
		return newError(KindInternal, err, "claiming the challenge")
	}
	if !claimed {
		return newError(KindAttestationError, nil, "Attestation error: the challenge of this session is being attested by another request")
	}
	defer s.sessions.release(context.WithoutCancel(r.Context()), id)
	// Claimed after another request finished with it: that one's token.
	if cur, err := s.sessions.get(r.Context(), id); err == nil && cur.Attested != nil {
		s.setSessionCookie(w, id, cur.Attested.Timeout)
		return writeJSON(w, protocol.AttestationResponse{Token: cur.Attested.Token})
	}
	tok, err := s.as.Evaluate(r.Context(), reqs, []string{"default"})
	if err != nil {
		return newError(KindAttestationError, err, "Attestation error: verifying evidence")
	}
	if err := s.sessions.attested(r.Context(), id, tok, sess.Timeout); err != nil {
		return newError(KindInternal, err, "storing session")
	}
	s.metrics.attestationSuccesses.WithLabelValues(string(tee)).Inc()
	s.audit.Info("attestation", "event", "attest", "outcome", "success", "request_id", requestID(r.Context()),
		"tee", string(tee), "session", sessionTag(id), "token_sha256", digest(tok))
	s.setSessionCookie(w, id, sess.Timeout)
	return writeJSON(w, protocol.AttestationResponse{Token: tok})
}

func requestID(ctx context.Context) string {
	v, _ := ctx.Value(ctxKeyRequestID{}).(string)
	return v
}

// sessionTag identifies a session in logs without revealing the cookie
// value (which is a bearer credential while the session lives).
func sessionTag(id string) string { return digest(id)[:16] }

func errDetail(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return fmt.Sprint(err)
}
