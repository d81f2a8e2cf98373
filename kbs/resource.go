package kbs

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/resourcepolicy"
)

// attestationToken finds the caller's token: the session's (cookie) first,
// then an Authorization Bearer header, as upstream.
func (s *Server) attestationToken(r *http.Request) (string, string, error) {
	if _, err := r.Cookie(protocol.CookieName); err == nil {
		_, rec, err := s.sessionFromCookie(r)
		if err == nil && rec.Attested != nil {
			return rec.Attested.Token, "cookie", nil
		}
		if err != nil && !errors.Is(err, errSessionNotFound) {
			return "", "", newError(KindInternal, err, "reading session")
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
			return strings.TrimSpace(tok), "bearer", nil
		}
	}
	return "", "", newError(KindTokenNotFound, nil, "Attestation Token not found")
}

// serveAttested serves a guest read: token → verified claims → resource
// policy → plugin → JWE sealed to the TEE key bound in the token.
func (s *Server) serveAttested(w http.ResponseWriter, r *http.Request, log *slog.Logger, name string, p plugin, req *pluginRequest) error {
	path := strings.Join(req.path, "/")
	tok, mode, err := s.attestationToken(r)
	if err != nil {
		return err
	}
	claims, err := s.tokens.Verify(r.Context(), tok)
	if err != nil {
		return newError(KindTokenVerifierError, err, "Token Verifier error")
	}
	query := map[string]string{}
	for k, v := range req.query {
		if len(v) > 0 {
			query[k] = v[0]
		}
	}
	s.metrics.policyEvaluations.Inc()
	dec, err := s.policy.Evaluate(r.Context(), claims, resourcepolicy.Data{Plugin: name, ResourcePath: req.path, Query: query})
	if err != nil {
		s.metrics.policyErrors.Inc()
		s.auditRelease(r, name, path, mode, tok, claims, "error", err.Error())
		return newError(KindPolicyEngineError, err, "Policy Engine error")
	}
	if !dec.Allowed {
		s.metrics.policyViolations.Inc()
		s.auditRelease(r, name, path, mode, tok, claims, "deny", dec.Reason)
		return newError(KindPolicyDeny, nil, "Access denied by policy: %s", dec.Reason)
	}
	s.metrics.policyApprovals.Inc()
	req.initData = initDataClaims(claims)
	out, err := p.handle(r.Context(), req)
	if err != nil {
		s.auditRelease(r, name, path, mode, tok, claims, "error", errDetail(err))
		return err
	}
	if name == "resource" {
		s.metrics.resourceReads.WithLabelValues(path).Inc()
	}
	if !p.encrypted(req) {
		s.auditRelease(r, name, path, mode, tok, claims, "release", "")
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusOK)
		w.Write(out)
		return nil
	}
	key, err := s.tokens.TeePubKey(claims)
	if err != nil {
		return newError(KindTokenVerifierError, err, "Token Verifier error: no TEE public key in the token")
	}
	jwe, err := protocol.Encrypt(key, out, s.rand)
	if err != nil {
		return newError(KindJweError, err, "JWE error")
	}
	b, err := json.Marshal(jwe)
	if err != nil {
		return newError(KindSerdeError, err, "encoding JWE")
	}
	s.auditRelease(r, name, path, mode, tok, claims, "release", "")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

// auditRelease records a release decision. It names the TEE and the EAR
// status from the claims and a digest of the token, never the token.
func (s *Server) auditRelease(r *http.Request, plugin, path, mode, tok string, claims map[string]any, outcome, reason string) {
	// The token digest ties the record to the attestation record that
	// issued the token (same digest) without revealing the token.
	attrs := []any{"event", "release", "outcome", outcome, "request_id", requestID(r.Context()),
		"plugin", plugin, "resource_path", path, "token_source", mode, "token_sha256", digest(tok)}
	if sub, ok := claims["submods"].(map[string]any); ok {
		if cpu, ok := sub["cpu0"].(map[string]any); ok {
			if st, ok := cpu["ear.status"].(string); ok {
				attrs = append(attrs, "ear_status", st)
			}
			if ae, ok := cpu["ear.veraison.annotated-evidence"].(map[string]any); ok {
				for k := range ae {
					if protocol.Tee(k).Known() {
						attrs = append(attrs, "tee", k)
					}
				}
			}
		}
	}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	s.audit.Info("resource", attrs...)
}
