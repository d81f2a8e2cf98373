package kbs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/resourcepolicy"
)

// authorizeAdmin authenticates and authorizes an admin request. A failure
// is AdminAuthAccess (401) and the handler changes nothing. Its detail is
// upstream's Display of AdminAuthAccess, "admin access denied for endpoint
// <endpoint>: <admin error>", where the admin error starts with upstream's
// own text (see admin.Error) and the endpoint is the first path segment
// after /kbs/v0/ ("resource-policy", "resource", ...).
//
// Upstream reports an admin refusal on a plugin path (resource writes)
// through a different conversion, as AdminAuthInitialization with the
// detail "failed to initialize [admin] configuration: ..."; we keep
// AdminAuthAccess there, the type that says what happened, with the same
// admin error text.
func (s *Server) authorizeAdmin(r *http.Request) (string, error) {
	principal, err := s.admin.Authorize(r)
	if err != nil {
		s.audit.Info("admin", "event", "admin", "outcome", "deny", "request_id", requestID(r.Context()),
			"method", r.Method, "path", r.URL.EscapedPath(), "reason", err.Error())
		return "", newError(KindAdminAuthAccess, err, "admin access denied for endpoint %s", adminEndpoint(r))
	}
	return principal, nil
}

// adminEndpoint names the endpoint of an admin request as upstream's
// AdminAuthAccess does: the first path segment after /kbs/v0/.
func adminEndpoint(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.Path, "/kbs/v0/")
	p, _, _ = strings.Cut(p, "/")
	return p
}

func (s *Server) auditAdmin(r *http.Request, principal, action, target string) {
	s.audit.Info("admin", "event", "admin", "outcome", "success", "request_id", requestID(r.Context()),
		"principal", principal, "action", action, "target", target)
}

func (s *Server) countResourceWrite(method, path string) {
	switch method {
	case http.MethodDelete:
		s.metrics.resourceDeletes.WithLabelValues(path).Inc()
	default:
		s.metrics.resourceWrites.WithLabelValues(path).Inc()
	}
}

// decodePolicyB64 decodes a policy sent base64url without padding; padded
// input and standard base64 are accepted too, as lenient clients send them.
func decodePolicyB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

type setAttestationPolicyRequest struct {
	Type     string `json:"type"`
	PolicyID string `json:"policy_id"`
	Policy   string `json:"policy"`
}

func (s *Server) handleSetAttestationPolicy(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) error {
	principal, err := s.authorizeAdmin(r)
	if err != nil {
		return err
	}
	if s.as == nil {
		return newError(KindAttestationError, nil, "this KBS has no built-in attestation service")
	}
	var req setAttestationPolicyRequest
	if err := decodeJSON(body, &req); err != nil {
		return newError(KindSerdeError, err, "Serde Json Error: attestation policy request")
	}
	pol, err := decodePolicyB64(req.Policy)
	if err != nil {
		return newError(KindParsePolicyError, err, "Parse policy error: policy is not base64url")
	}
	if req.PolicyID == "" {
		return newError(KindParsePolicyError, nil, "Parse policy error: policy_id is empty")
	}
	if err := s.as.SetPolicy(r.Context(), req.PolicyID, pol); err != nil {
		if errors.Is(err, as.ErrInvalidPolicy) {
			return newError(KindParsePolicyError, err, "Parse policy error")
		}
		return newError(KindPolicyEngineError, err, "Policy Engine error")
	}
	s.auditAdmin(r, principal, "set-attestation-policy", req.PolicyID)
	w.WriteHeader(http.StatusOK)
	return nil
}

type setResourcePolicyRequest struct {
	Policy string `json:"policy"`
}

func (s *Server) handleSetResourcePolicy(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) error {
	principal, err := s.authorizeAdmin(r)
	if err != nil {
		return err
	}
	var req setResourcePolicyRequest
	if err := decodeJSON(body, &req); err != nil {
		return newError(KindSerdeError, err, "Serde Json Error: resource policy request")
	}
	pol, err := decodePolicyB64(req.Policy)
	if err != nil {
		return newError(KindParsePolicyError, err, "Parse policy error: policy is not base64url")
	}
	if err := s.policy.SetPolicy(r.Context(), pol); err != nil {
		if errors.Is(err, resourcepolicy.ErrInvalidPolicy) {
			return newError(KindParsePolicyError, err, "Parse policy error")
		}
		return newError(KindPolicyEngineError, err, "Policy Engine error")
	}
	s.auditAdmin(r, principal, "set-resource-policy", "resource-policy")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) handleGetResourcePolicy(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authorizeAdmin(r); err != nil {
		return err
	}
	ids, err := s.policy.ListPolicies(r.Context())
	if err != nil {
		return newError(KindPolicyEngineError, err, "Policy Engine error")
	}
	if ids == nil {
		ids = []string{}
	}
	return writeJSON(w, ids)
}

func (s *Server) handleSetReferenceValue(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) error {
	principal, err := s.authorizeAdmin(r)
	if err != nil {
		return err
	}
	if s.as == nil {
		return newError(KindRvpsError, nil, "RVPS error: this KBS has no built-in attestation service")
	}
	if err := s.as.RVPS().Register(r.Context(), body); err != nil {
		return newError(KindRvpsError, err, "RVPS error: Failed to register reference value")
	}
	s.auditAdmin(r, principal, "set-reference-value", "")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) handleGetReferenceValue(w http.ResponseWriter, r *http.Request, id string) error {
	if _, err := s.authorizeAdmin(r); err != nil {
		return err
	}
	if s.as == nil {
		return newError(KindRvpsError, nil, "RVPS error: this KBS has no built-in attestation service")
	}
	v, ok, err := s.as.RVPS().Query(r.Context(), id)
	if err != nil {
		return newError(KindRvpsError, err, "RVPS error: Failed to get reference_values")
	}
	if !ok {
		return newError(KindRvpsError, nil, "RVPS error: reference value %s not found", id)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(json.RawMessage(v))
	return nil
}
