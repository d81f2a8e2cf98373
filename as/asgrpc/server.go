// Package asgrpc carries the Attestation Service over upstream Trustee's
// gRPC API (attestation.AttestationService, attestation.proto): Handler is
// what grpc-as serves on its port, Client is what the KBS uses in
// coco_as_grpc mode.
//
// # Invariants
//
//   - The wire is upstream's, field by field: evidence and raw runtime data
//     and init-data digests are base64url without padding, structured
//     runtime data is a JSON string, the policy of SetAttestationPolicy is
//     base64url without padding, an empty policy_ids means "default", an
//     empty runtime_data_hash_algorithm means sha384. Refusals are
//     codes.Aborted with upstream's message prefixes.
//   - grpc-as's port serves, as upstream's: the AttestationService, the
//     ReferenceValueProviderService (the AS's own RVPS, built in or remote),
//     grpc.health.v1 and, over plain HTTP/1.1, GET /.well-known/jwks.json
//     (the token signer's keys) and GET /healthz.
//   - Every decoded request is bounded before it reaches a verifier: the
//     gRPC message by grpcdial.MaxMessageBytes, each piece of evidence by
//     limits.MaxEvidenceBytes, the number of pieces by
//     limits.MaxASVerificationRequests, a policy by limits.MaxPolicyBytes.
package asgrpc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asproto"
	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps/rvpsgrpc"
)

// ErrInvalidRequest is wrapped by every decoding error of a request.
var ErrInvalidRequest = errors.New("asgrpc: invalid request")

// grpcTees are the TEE names upstream's grpc-as accepts, plus sampledevice
// (the sample device evidence our KBS sends as additional evidence).
var grpcTees = map[string]protocol.Tee{
	"sgx": protocol.TeeSgx, "snp": protocol.TeeSnp, "tdx": protocol.TeeTdx, "csv": protocol.TeeCsv,
	"sample": protocol.TeeSample, "az-snp-vtpm": protocol.TeeAzSnpVtpm, "cca": protocol.TeeCca,
	"az-tdx-vtpm": protocol.TeeAzTdxVtpm, "se": protocol.TeeSe, "hygondcu": protocol.TeeHygonDCU,
	"nvidia": protocol.TeeNvidia, "tpm": protocol.TeeTpm, "sampledevice": protocol.TeeSampleDevice,
}

// b64 is upstream's URL_SAFE_NO_PAD engine: no padding, no stray bits.
var b64 = base64.RawURLEncoding.Strict()

// Server implements attestation.AttestationService on an as.Service.
type Server struct {
	asproto.UnimplementedAttestationServiceServer
	svc *as.Service
	log *slog.Logger
}

// NewServer returns the gRPC service of svc; log may be nil.
func NewServer(svc *as.Service, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{svc: svc, log: log}
}

func (s *Server) requestLog(api string) *slog.Logger {
	l := s.log.With("request_id", uuid.NewString())
	l.Info(api + " API called.")
	return l
}

// DecodeRequest turns one wire request into a verification request, with
// upstream's error texts.
func DecodeRequest(r *asproto.IndividualAttestationRequest) (as.VerificationRequest, error) {
	tee, ok := grpcTees[r.GetTee()]
	if !ok {
		return as.VerificationRequest{}, fmt.Errorf("%w: parse TEE type: Unsupported TEE type: %s", ErrInvalidRequest, r.GetTee())
	}
	if len(r.GetEvidence()) > base64.RawURLEncoding.EncodedLen(limits.MaxEvidenceBytes) {
		return as.VerificationRequest{}, fmt.Errorf("%w: evidence exceeds %d bytes", ErrInvalidRequest, limits.MaxEvidenceBytes)
	}
	evidence, err := b64.DecodeString(r.GetEvidence())
	if err != nil {
		return as.VerificationRequest{}, fmt.Errorf("%w: Illegal input Evidence: %v", ErrInvalidRequest, err)
	}
	if !json.Valid(evidence) {
		return as.VerificationRequest{}, fmt.Errorf("%w: failed to parse tee evidence: not JSON", ErrInvalidRequest)
	}
	vr := as.VerificationRequest{Tee: tee, Evidence: evidence, HashAlgorithm: protocol.SHA384}
	switch rd := r.GetRuntimeData().(type) {
	case *asproto.IndividualAttestationRequest_RawRuntimeData:
		raw, err := b64.DecodeString(rd.RawRuntimeData)
		if err != nil {
			return as.VerificationRequest{}, fmt.Errorf("%w: base64 decode runtime data: %v", ErrInvalidRequest, err)
		}
		if raw == nil {
			raw = []byte{}
		}
		vr.RuntimeData = &as.RuntimeData{Raw: raw}
	case *asproto.IndividualAttestationRequest_StructuredRuntimeData:
		if !json.Valid([]byte(rd.StructuredRuntimeData)) {
			return as.VerificationRequest{}, fmt.Errorf("%w: parse structured runtime data: not JSON", ErrInvalidRequest)
		}
		vr.RuntimeData = &as.RuntimeData{Structured: json.RawMessage(rd.StructuredRuntimeData)}
	}
	switch id := r.GetInitData().(type) {
	case *asproto.IndividualAttestationRequest_InitDataDigest:
		d, err := b64.DecodeString(id.InitDataDigest)
		if err != nil {
			return as.VerificationRequest{}, fmt.Errorf("%w: base64 decode init data: %v", ErrInvalidRequest, err)
		}
		if d == nil {
			d = []byte{}
		}
		vr.InitData = &as.InitData{Digest: d}
	case *asproto.IndividualAttestationRequest_InitDataToml:
		if len(id.InitDataToml) > limits.MaxInitDataBytes {
			return as.VerificationRequest{}, fmt.Errorf("%w: init data exceeds %d bytes", ErrInvalidRequest, limits.MaxInitDataBytes)
		}
		vr.InitData = &as.InitData{TOML: id.InitDataToml}
	}
	if h := r.GetRuntimeDataHashAlgorithm(); h != "" {
		alg, err := protocol.ParseHashAlgorithm(h)
		if err != nil {
			return as.VerificationRequest{}, fmt.Errorf("%w: parse runtime data HashAlgorithm failed: %v", ErrInvalidRequest, err)
		}
		vr.HashAlgorithm = alg
	}
	return vr, nil
}

// AttestationEvaluate implements the gRPC method.
func (s *Server) AttestationEvaluate(ctx context.Context, req *asproto.AttestationRequest) (*asproto.AttestationResponse, error) {
	log := s.requestLog("AttestationEvaluate")
	if n := len(req.GetVerificationRequests()); n > limits.MaxASVerificationRequests {
		return nil, status.Errorf(codes.Aborted, "Attestation evaluation failed: \n0: %d verification requests exceed the limit of %d", n, limits.MaxASVerificationRequests)
	}
	reqs := make([]as.VerificationRequest, 0, len(req.GetVerificationRequests()))
	for _, ir := range req.GetVerificationRequests() {
		vr, err := DecodeRequest(ir)
		if err != nil {
			log.Info("bad request", "error", err)
			return nil, status.Error(codes.Aborted, strings.TrimPrefix(err.Error(), ErrInvalidRequest.Error()+": "))
		}
		reqs = append(reqs, vr)
	}
	ids := req.GetPolicyIds()
	if len(ids) == 0 {
		ids = []string{"default"}
	}
	tok, err := s.svc.Evaluate(ctx, reqs, ids)
	if err != nil {
		log.Info("attestation evaluation failed", "error", err)
		return nil, status.Errorf(codes.Aborted, "Attestation evaluation failed: \n0: %v", err)
	}
	log.Info("AttestationEvaluate succeeded.")
	return &asproto.AttestationResponse{AttestationToken: tok}, nil
}

// SetAttestationPolicy implements the gRPC method.
func (s *Server) SetAttestationPolicy(ctx context.Context, req *asproto.SetPolicyRequest) (*asproto.SetPolicyResponse, error) {
	log := s.requestLog("SetPolicy")
	if len(req.GetPolicy()) > base64.RawURLEncoding.EncodedLen(limits.MaxPolicyBytes) {
		return nil, status.Errorf(codes.Aborted, "Set Attestation Policy Failed: policy exceeds %d bytes", limits.MaxPolicyBytes)
	}
	pol, err := b64.DecodeString(req.GetPolicy())
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "Set Attestation Policy Failed: %v", err)
	}
	if err := s.svc.SetPolicy(ctx, req.GetPolicyId(), pol); err != nil {
		log.Info("set policy failed", "error", err)
		return nil, status.Errorf(codes.Aborted, "Set Attestation Policy Failed: %v", err)
	}
	log.Info("SetPolicy succeeded.", "policy_id", req.GetPolicyId())
	return &asproto.SetPolicyResponse{}, nil
}

// GetAttestationChallenge implements the gRPC method.
func (s *Server) GetAttestationChallenge(ctx context.Context, req *asproto.ChallengeRequest) (*asproto.ChallengeResponse, error) {
	log := s.requestLog("GetAttestationChallenge")
	teeName, ok := req.GetInner()["tee"]
	if !ok {
		return nil, status.Error(codes.Aborted, "Error parse inner_tee tee")
	}
	params, ok := req.GetInner()["tee_params"]
	if !ok {
		return nil, status.Error(codes.Aborted, "Error parse inner_tee tee_params")
	}
	tee, ok := grpcTees[teeName]
	if !ok {
		return nil, status.Errorf(codes.Aborted, "Error parse TEE type: Unsupported TEE type: %s", teeName)
	}
	ch, err := s.svc.GenerateSupplementalChallenge(ctx, tee, params)
	if err != nil {
		log.Info("challenge failed", "error", err)
		return nil, status.Errorf(codes.Aborted, "Challenge: %v", err)
	}
	log.Info("GetAttestationChallenge succeeded.")
	return &asproto.ChallengeResponse{AttestationChallenge: ch}, nil
}

// Handler returns what grpc-as serves on its port, and the gRPC server
// inside it (for GracefulStop). gRPC calls (HTTP/2, application/grpc) go to
// the AttestationService, the ReferenceValueProviderService of the AS's
// RVPS and grpc.health.v1; other requests to the JWKS and health routes.
func Handler(svc *as.Service, log *slog.Logger) (http.Handler, *grpc.Server) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := grpc.NewServer(grpcdial.ServerOptions()...)
	asproto.RegisterAttestationServiceServer(g, NewServer(svc, log))
	rvpsgrpc.NewServer(svc.RVPS(), log.With("component", "rvps")).Register(g)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(asproto.AttestationService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		log.Info("GetJWKS called.")
		w.Header().Set("Content-Type", "application/json")
		w.Write(svc.JWKS())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}), g
}
