package as

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"

	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/protocol"
)

// MaxRequestBytes bounds a REST request body: room for the largest evidence
// (limits.MaxEvidenceBytes) once base64-encoded, with its envelope.
const MaxRequestBytes = limits.MaxASRequestBytes

// restTees are the TEE names upstream's restful AS accepts (no nvidia, tpm).
var restTees = map[string]protocol.Tee{
	"az-snp-vtpm":  protocol.TeeAzSnpVtpm,
	"sgx":          protocol.TeeSgx,
	"snp":          protocol.TeeSnp,
	"tdx":          protocol.TeeTdx,
	"cca":          protocol.TeeCca,
	"csv":          protocol.TeeCsv,
	"sample":       protocol.TeeSample,
	"sampledevice": protocol.TeeSampleDevice,
	"az-tdx-vtpm":  protocol.TeeAzTdxVtpm,
	"se":           protocol.TeeSe,
	"hygondcu":     protocol.TeeHygonDCU,
}

// errDecode marks a request body that does not have the API's shape
// (upstream's JSON extractor rejects those with 400).
var errDecode = errors.New("json deserialize error")

// Handler serves upstream's restful-as API:
//
//	POST /attestation            {"verification_requests":[...],"policy_ids":[...]} → token (text)
//	POST /policy                 {"policy_id":..,"policy":<base64url, no padding>} → empty
//	GET  /policy                 → [{"policy-id":..},...]
//	POST /challenge              {"tee":..,"tee_params":..} → challenge (text)
//	GET  /.well-known/jwks.json  → JWKS
//	GET  /healthz                → empty
//
// Malformed JSON bodies get 400, oversized ones 413, every other failure
// 500 with upstream's "An internal error occured" text body. The server
// has no authentication, as upstream: expose it only to the KBS or admins.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /attestation", s.handleAttestation)
	mux.HandleFunc("POST /policy", s.handleSetPolicy)
	mux.HandleFunc("GET /policy", s.handleListPolicies)
	mux.HandleFunc("POST /challenge", s.handleChallenge)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

func (s *Service) requestLog(r *http.Request, api string) *slog.Logger {
	log := s.log.With("request_id", uuid.NewString())
	log.Info(api+" API called", "remote", r.RemoteAddr)
	return log
}

// readBody reads a bounded body; false means a response was written.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("JSON payload is larger than allowed (limit: %d bytes).", MaxRequestBytes), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
		}
		return nil, false
	}
	return body, true
}

func writeDecodeError(w http.ResponseWriter, log *slog.Logger, err error) {
	log.Info("bad request", "error", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, err.Error())
}

func writeInternalError(w http.ResponseWriter, log *slog.Logger, err error) {
	body := "An internal error occured: \n0: " + err.Error()
	log.Error(body)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	io.WriteString(w, body)
}

// AttestationRequest is the body of POST /attestation.
type AttestationRequest struct {
	VerificationRequests []IndividualAttestationRequest
	PolicyIDs            []string
}

// IndividualAttestationRequest is one element of verification_requests.
type IndividualAttestationRequest struct {
	Tee string
	// Evidence is base64url (no padding) of the evidence JSON.
	Evidence string
	// RawRuntimeData (base64url) or StructuredRuntimeData (JSON), or neither.
	RawRuntimeData        *string
	StructuredRuntimeData json.RawMessage
	// InitDataDigest (base64url) or InitDataTOML, or neither.
	InitDataDigest *string
	InitDataTOML   *string
	// RuntimeDataHashAlgorithm is optional (sha384 by default).
	RuntimeDataHashAlgorithm *string
}

// object decodes a JSON object into its members (names matched exactly).
func object(raw json.RawMessage, what string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: %s: expected a JSON object", errDecode, what)
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// str decodes a required string member.
func str(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", fmt.Errorf("%w: missing field `%s`", errDecode, name)
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%w: field `%s`: expected a string", errDecode, name)
	}
	return s, nil
}

// optStr decodes an optional string member (absent or null → nil).
func optStr(m map[string]json.RawMessage, name string) (*string, error) {
	raw, ok := m[name]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("%w: field `%s`: expected a string", errDecode, name)
	}
	return &s, nil
}

// variant decodes an optional externally tagged enum member:
// {"<variant>": value}.
func variant(m map[string]json.RawMessage, name string, variants ...string) (string, json.RawMessage, error) {
	raw, ok := m[name]
	if !ok || isNull(raw) {
		return "", nil, nil
	}
	obj, err := object(raw, name)
	if err != nil {
		return "", nil, err
	}
	if len(obj) != 1 {
		return "", nil, fmt.Errorf("%w: field `%s`: expected exactly one of %s", errDecode, name, strings.Join(variants, ", "))
	}
	for k, v := range obj {
		for _, want := range variants {
			if k == want {
				return k, v, nil
			}
		}
		return "", nil, fmt.Errorf("%w: field `%s`: unknown variant `%s`, expected one of %s", errDecode, name, k, strings.Join(variants, ", "))
	}
	return "", nil, nil
}

// DecodeAttestationRequest decodes the body of POST /attestation with the
// shape of upstream's serde types.
func DecodeAttestationRequest(body []byte) (AttestationRequest, error) {
	top, err := object(body, "request")
	if err != nil {
		return AttestationRequest{}, err
	}
	var out AttestationRequest
	rawReqs, ok := top["verification_requests"]
	if !ok {
		return AttestationRequest{}, fmt.Errorf("%w: missing field `verification_requests`", errDecode)
	}
	var items []json.RawMessage
	if isNull(rawReqs) || json.Unmarshal(rawReqs, &items) != nil {
		return AttestationRequest{}, fmt.Errorf("%w: field `verification_requests`: expected a sequence", errDecode)
	}
	rawIDs, ok := top["policy_ids"]
	if !ok {
		return AttestationRequest{}, fmt.Errorf("%w: missing field `policy_ids`", errDecode)
	}
	if isNull(rawIDs) || json.Unmarshal(rawIDs, &out.PolicyIDs) != nil {
		return AttestationRequest{}, fmt.Errorf("%w: field `policy_ids`: expected a sequence of strings", errDecode)
	}
	for _, item := range items {
		m, err := object(item, "verification request")
		if err != nil {
			return AttestationRequest{}, err
		}
		var ir IndividualAttestationRequest
		if ir.Tee, err = str(m, "tee"); err != nil {
			return AttestationRequest{}, err
		}
		if ir.Evidence, err = str(m, "evidence"); err != nil {
			return AttestationRequest{}, err
		}
		kind, v, err := variant(m, "runtime_data", "raw", "structured")
		if err != nil {
			return AttestationRequest{}, err
		}
		switch kind {
		case "raw":
			var s string
			if isNull(v) || json.Unmarshal(v, &s) != nil {
				return AttestationRequest{}, fmt.Errorf("%w: runtime_data.raw: expected a string", errDecode)
			}
			ir.RawRuntimeData = &s
		case "structured":
			ir.StructuredRuntimeData = v
		}
		kind, v, err = variant(m, "init_data", "init_data_digest", "init_data_toml")
		if err != nil {
			return AttestationRequest{}, err
		}
		if kind != "" {
			var s string
			if isNull(v) || json.Unmarshal(v, &s) != nil {
				return AttestationRequest{}, fmt.Errorf("%w: init_data.%s: expected a string", errDecode, kind)
			}
			if kind == "init_data_digest" {
				ir.InitDataDigest = &s
			} else {
				ir.InitDataTOML = &s
			}
		}
		if ir.RuntimeDataHashAlgorithm, err = optStr(m, "runtime_data_hash_algorithm"); err != nil {
			return AttestationRequest{}, err
		}
		out.VerificationRequests = append(out.VerificationRequests, ir)
	}
	return out, nil
}

// decodeB64URL decodes unpadded base64url, as Rust's URL_SAFE_NO_PAD.
func decodeB64URL(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("invalid character")
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// toService converts a decoded REST request into service
// requests, as upstream's handler does (the tee must be one the REST API
// lists; evidence must decode to JSON), and returns the policy ids
// (["default"] when none is given).
func (r AttestationRequest) toService() ([]VerificationRequest, []string, error) {
	reqs := make([]VerificationRequest, 0, len(r.VerificationRequests))
	for _, ir := range r.VerificationRequests {
		evidence, err := decodeB64URL(ir.Evidence)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: base64 decode evidence: %v", ErrInvalidRequest, err)
		}
		if !json.Valid(evidence) {
			return nil, nil, fmt.Errorf("%w: failed to parse evidence as JSON", ErrInvalidRequest)
		}
		tee, ok := restTees[ir.Tee]
		if !ok {
			return nil, nil, fmt.Errorf("%w: tee `%s not supported`", ErrInvalidRequest, ir.Tee)
		}
		vr := VerificationRequest{Tee: tee, Evidence: evidence}
		switch {
		case ir.RawRuntimeData != nil:
			raw, err := decodeB64URL(*ir.RawRuntimeData)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: decode given Runtime Data: base64 decode raw runtime data: %v", ErrInvalidRequest, err)
			}
			if raw == nil {
				raw = []byte{}
			}
			vr.RuntimeData = &RuntimeData{Raw: raw}
		case ir.StructuredRuntimeData != nil:
			vr.RuntimeData = &RuntimeData{Structured: ir.StructuredRuntimeData}
		}
		switch {
		case ir.InitDataDigest != nil:
			d, err := decodeB64URL(*ir.InitDataDigest)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: decode given Init Data: base64 decode raw init data: %v", ErrInvalidRequest, err)
			}
			if d == nil {
				d = []byte{}
			}
			vr.InitData = &InitData{Digest: d}
		case ir.InitDataTOML != nil:
			vr.InitData = &InitData{TOML: *ir.InitDataTOML}
		}
		vr.HashAlgorithm = protocol.SHA384
		if ir.RuntimeDataHashAlgorithm != nil {
			h, err := protocol.ParseHashAlgorithm(*ir.RuntimeDataHashAlgorithm)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: parse runtime data HashAlgorithm failed: %v", ErrInvalidRequest, err)
			}
			vr.HashAlgorithm = h
		}
		reqs = append(reqs, vr)
	}
	ids := r.PolicyIDs
	if len(ids) == 0 {
		ids = []string{defaultPolicyID}
	}
	return reqs, ids, nil
}

func (s *Service) handleAttestation(w http.ResponseWriter, r *http.Request) {
	log := s.requestLog(r, "Attestation")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := DecodeAttestationRequest(body)
	if err != nil {
		writeDecodeError(w, log, err)
		return
	}
	reqs, ids, err := req.toService()
	if err != nil {
		writeInternalError(w, log, err)
		return
	}
	token, err := s.Evaluate(r.Context(), reqs, ids)
	if err != nil {
		writeInternalError(w, log, fmt.Errorf("attestation report evaluate: %w", err))
		return
	}
	log.Info("AttestationEvaluate succeeded")
	io.WriteString(w, token)
}

// SetPolicyRequest is the body of POST /policy.
type SetPolicyRequest struct {
	PolicyID string
	// Policy is base64url (no padding) of the Rego text.
	Policy string
}

// DecodeSetPolicyRequest decodes the body of POST /policy.
func DecodeSetPolicyRequest(body []byte) (SetPolicyRequest, error) {
	m, err := object(body, "request")
	if err != nil {
		return SetPolicyRequest{}, err
	}
	var out SetPolicyRequest
	if out.PolicyID, err = str(m, "policy_id"); err != nil {
		return SetPolicyRequest{}, err
	}
	if out.Policy, err = str(m, "policy"); err != nil {
		return SetPolicyRequest{}, err
	}
	return out, nil
}

func (s *Service) handleSetPolicy(w http.ResponseWriter, r *http.Request) {
	log := s.requestLog(r, "Set Policy")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := DecodeSetPolicyRequest(body)
	if err != nil {
		writeDecodeError(w, log, err)
		return
	}
	policy, err := decodeB64URL(req.Policy)
	if err != nil {
		writeInternalError(w, log, fmt.Errorf("set policy: %w: base64 decode policy: %v", ErrInvalidPolicy, err))
		return
	}
	if err := s.SetPolicy(r.Context(), req.PolicyID, policy); err != nil {
		writeInternalError(w, log, fmt.Errorf("set policy: %w", err))
		return
	}
	log.Info("SetPolicy succeeded", "policy_id", req.PolicyID)
	w.WriteHeader(http.StatusOK)
}

func (s *Service) handleListPolicies(w http.ResponseWriter, r *http.Request) {
	log := s.requestLog(r, "Get Policy")
	ids, err := s.ListPolicies(r.Context())
	if err != nil {
		writeInternalError(w, log, fmt.Errorf("get policies: %w", err))
		return
	}
	list := make([]map[string]string, len(ids))
	for i, id := range ids {
		list[i] = map[string]string{"policy-id": id}
	}
	b, err := encodeJSON(list)
	if err != nil {
		writeInternalError(w, log, fmt.Errorf("serialize response body: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// DecodeChallengeRequest decodes the body of POST /challenge: a flat JSON
// object of strings.
func DecodeChallengeRequest(body []byte) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: expected a JSON object of strings", errDecode)
	}
	return m, nil
}

func (s *Service) handleChallenge(w http.ResponseWriter, r *http.Request) {
	log := s.requestLog(r, "GetChallenge")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	m, err := DecodeChallengeRequest(body)
	if err != nil {
		writeDecodeError(w, log, err)
		return
	}
	teeName, ok := m["tee"]
	if !ok {
		writeInternalError(w, log, fmt.Errorf("%w: Failed to get inner tee", ErrInvalidRequest))
		return
	}
	params, ok := m["tee_params"]
	if !ok {
		writeInternalError(w, log, fmt.Errorf("%w: Failed to get inner tee_params", ErrInvalidRequest))
		return
	}
	tee, ok := restTees[teeName]
	if !ok {
		writeInternalError(w, log, fmt.Errorf("%w: tee `%s not supported`", ErrInvalidRequest, teeName))
		return
	}
	challenge, err := s.GenerateSupplementalChallenge(r.Context(), tee, params)
	if err != nil {
		writeInternalError(w, log, fmt.Errorf("generate challenge: %w", err))
		return
	}
	log.Info("GetChallenge succeeded")
	io.WriteString(w, challenge)
}

func (s *Service) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.JWKS())
}
