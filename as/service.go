package as

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/go-trustee/go-trustee/internal/jsonlimit"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsgrpc"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/verifier"
	"github.com/go-trustee/go-trustee/verifier/sample"
)

var (
	// ErrInvalidConfig is returned by New for an unusable configuration
	// (signing key, certificate chain, RVPS type, durations).
	ErrInvalidConfig = errors.New("as: invalid configuration")
	// ErrInvalidRequest means a verification request is malformed: no
	// requests, both or neither runtime-data forms, bad init-data, an
	// unknown hash algorithm, oversized or non-JSON evidence.
	ErrInvalidRequest = errors.New("as: invalid request")
	// ErrVerification means a verifier rejected the evidence (or no
	// verifier serves the TEE); it wraps the verifier's error, so
	// errors.Is(err, verifier.ErrReportDataMismatch) and the like work.
	ErrVerification = errors.New("as: evidence verification failed")
	// ErrPolicyNotFound means the attestation policy does not exist.
	ErrPolicyNotFound = errors.New("as: policy not found")
	// ErrInvalidPolicy means a policy (or policy id) is rejected: it does
	// not compile, is too large, or is not UTF-8.
	ErrInvalidPolicy = errors.New("as: invalid policy")
	// ErrPolicyEvaluation means evaluating a policy failed or its results
	// are unusable (conflicting rules, malformed trust_claims or
	// extensions, no claim set, a reference value lookup failed).
	ErrPolicyEvaluation = errors.New("as: policy evaluation failed")
	// ErrUnsupported means the operation is not available for the TEE.
	ErrUnsupported = errors.New("as: not supported")
)

const (
	// maxRequests bounds the verification requests of one evaluation.
	maxRequests = limits.MaxASVerificationRequests
	// maxSubmods bounds the EAR submodules of one token (upstream numbers
	// them with a u8 per class).
	maxSubmods = limits.MaxEARSubmods
	// defaultPolicyID is used when no policy id is given.
	defaultPolicyID = "default"
)

// Options configure a Service.
type Options struct {
	// Store holds policies and reference values. Required.
	Store storage.Store
	// Verifiers maps TEEs to verifiers; nil means a registry with the
	// sample and sampledevice verifiers only.
	Verifiers *verifier.Registry
	// Now returns the current time (token iat/exp, RVPS expirations);
	// time.Now when nil.
	Now func() time.Time
	// Rand is the randomness for the ephemeral signing key and signatures;
	// crypto/rand when nil. (Since Go 1.26 the crypto/ecdsa functions draw
	// from the system source regardless, unless testing/cryptotest says
	// otherwise.)
	Rand io.Reader
	// Logger receives operational logs; nothing is logged when nil.
	Logger *slog.Logger
	// RVPSStore holds the reference values of a built-in RVPS when
	// rvps_config.storage_type names another backend than Store's; nil
	// means Store.
	RVPSStore storage.Store
	// RVPS, when set, is the reference value provider, whatever
	// rvps_config says (tests, embedding). The Service does not close it.
	RVPS rvps.Provider
}

// RuntimeData is what the evidence's report data must bind: exactly one of
// Raw (compared as is) or Structured (a JSON value, hashed as H(JCS(v)) and
// exposed to policies as runtime_data_claims).
type RuntimeData struct {
	Raw        []byte
	Structured json.RawMessage
}

// InitData is the expected init-data: at most one of Digest (compared as
// is) or TOML (an init-data document, hashed with its own algorithm and
// exposed to policies as init_data_claims).
type InitData struct {
	Digest []byte
	TOML   string
}

// VerificationRequest is one piece of evidence to verify.
type VerificationRequest struct {
	Tee protocol.Tee
	// Evidence is the TEE-specific evidence JSON.
	Evidence []byte
	// RuntimeData, when non-nil, is checked against the report data.
	RuntimeData *RuntimeData
	// InitData, when non-nil, is checked against the init-data binding.
	InitData *InitData
	// HashAlgorithm hashes structured runtime data; "" means SHA-384.
	HashAlgorithm protocol.HashAlgorithm
}

// ChallengeGenerator is implemented by verifiers whose TEE needs a
// server-generated challenge (IBM SE).
type ChallengeGenerator interface {
	GenerateSupplementalChallenge(ctx context.Context, params string) (string, error)
}

// Service is the Attestation Service.
type Service struct {
	store     storage.Store
	rvps      rvps.Provider
	closeRVPS func() error
	verifiers *verifier.Registry
	engine    *policyEngine
	signer    *signer
	settings  brokerSettings
	now       func() time.Time
	log       *slog.Logger
}

// DefaultVerifiers returns a registry with the sample and sampledevice
// verifiers.
func DefaultVerifiers() *verifier.Registry {
	r := &verifier.Registry{}
	r.Register(protocol.TeeSample, sample.New())
	r.Register(protocol.TeeSampleDevice, sample.NewDevice())
	return r
}

// New validates cfg, writes the built-in policies that are not yet stored,
// and loads (or generates) the token signing key.
func New(ctx context.Context, cfg Config, opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrInvalidConfig)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	settings, err := cfg.resolve(log)
	if err != nil {
		return nil, err
	}
	rv, closeRVPS, err := openRVPS(ctx, cfg.RVPS, opts, now, log)
	if err != nil {
		return nil, err
	}
	var sig *signer
	if settings.signer == nil {
		sig, err = storedSigner(ctx, opts.Store, rnd)
	} else {
		sig, err = newSigner(settings.signer, rnd)
	}
	if err != nil {
		closeRVPS()
		return nil, err
	}
	if sig.ephemeral {
		log.Warn("NO TOKEN SIGNER CONFIGURED: attestation tokens are signed with a key generated once and kept in the store (namespace " + NamespaceSigner +
			"), with no certificate; only the KBS that runs this AS, or a KBS with [attestation_token] insecure_header_jwk = true, accepts them. " +
			"Configure attestation_token_broker.signer (key_path, cert_path) in production.")
	}
	verifiers := opts.Verifiers
	if verifiers == nil {
		verifiers = DefaultVerifiers()
	}
	s := &Service{
		store:     opts.Store,
		rvps:      rv,
		closeRVPS: closeRVPS,
		verifiers: verifiers,
		engine:    newPolicyEngine(opts.Store, rv, log),
		signer:    sig,
		settings:  settings,
		now:       now,
		log:       log,
	}
	defaults := DefaultPolicies()
	ids := make([]string, 0, len(defaults))
	for id := range defaults {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		key, _ := policyKey(id)
		if _, err := opts.Store.Set(ctx, storage.NamespaceAttestationPolicy, key, defaults[id], false); err != nil {
			closeRVPS()
			return nil, fmt.Errorf("writing default policy %s: %w", id, err)
		}
		// Warm the cache with whatever version is stored; a broken
		// operator policy is reported here and fails its attestations.
		if _, err := s.engine.load(ctx, id); err != nil {
			log.Error("stored attestation policy does not compile", "policy", id, "error", err)
		}
	}
	return s, nil
}

// openRVPS returns the reference value provider cfg names: the built-in
// RVPS on opts.RVPSStore (or opts.Store), or a remote one over gRPC, which
// is probed once so that a wrong address shows in the log at start (the
// service starts anyway, and queries fail until the RVPS answers).
func openRVPS(ctx context.Context, cfg rvps.Config, opts Options, now func() time.Time, log *slog.Logger) (rvps.Provider, func() error, error) {
	nop := func() error { return nil }
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if opts.RVPS != nil {
		return opts.RVPS, nop, nil
	}
	if !cfg.Remote() {
		st := opts.RVPSStore
		if st == nil {
			st = opts.Store
		}
		rv, err := rvps.New(st, rvps.Options{Now: now, Config: cfg})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return rv, nop, nil
	}
	addr := cfg.Address
	if addr == "" {
		addr = rvps.DefaultRemoteAddress
	}
	c, err := rvpsgrpc.Dial(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: rvps_config address: %w", ErrInvalidConfig, err)
	}
	pctx, cancel := context.WithTimeout(ctx, rvpsProbeTimeout)
	defer cancel()
	if _, _, err := c.Query(pctx, rvpsProbeID); err != nil {
		log.Warn("remote RVPS does not answer yet; attestations that query reference values fail until it does", "address", addr, "error", err)
	} else {
		log.Info("connected to remote RVPS", "address", addr)
	}
	return c, c.Close, nil
}

// The start-up probe of a remote RVPS: a query for an id nobody registers
// (upstream's pool health check uses the same idea).
const (
	rvpsProbeTimeout = 3 * time.Second
	rvpsProbeID      = "__healthcheck__"
)

// RVPS returns the reference value provider: the built-in service, or the
// client of a remote one.
func (s *Service) RVPS() rvps.Provider { return s.rvps }

// Close releases the connection to a remote RVPS; a Service with a
// built-in RVPS holds nothing to release.
func (s *Service) Close() error { return s.closeRVPS() }

// JWKS returns the JSON Web Key Set of the token signing key, as upstream
// publishes it at /.well-known/jwks.json.
func (s *Service) JWKS() []byte { return s.signer.jwks() }

// SetPolicy stores the Rego policy id after checking that it compiles.
func (s *Service) SetPolicy(ctx context.Context, id string, policy []byte) error {
	key, err := policyKey(id)
	if err != nil {
		return err
	}
	if _, err := s.engine.compiled(ctx, policy); err != nil {
		return fmt.Errorf("policy %q: %w", id, err)
	}
	if _, err := s.store.Set(ctx, storage.NamespaceAttestationPolicy, key, policy, true); err != nil {
		return fmt.Errorf("storing policy %q: %w", id, err)
	}
	return nil
}

// GetPolicy returns the stored policy id.
func (s *Service) GetPolicy(ctx context.Context, id string) ([]byte, error) {
	key, err := policyKey(id)
	if err != nil {
		return nil, err
	}
	b, err := s.store.Get(ctx, storage.NamespaceAttestationPolicy, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: Policy `%s` not found", ErrPolicyNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("reading policy %q: %w", id, err)
	}
	return b, nil
}

// ListPolicies returns the ids of the stored policies, sorted. (Upstream's
// restful GET /policy wraps each as {"policy-id": id}; see Handler.)
// Stored keys without the ".rego" suffix are skipped.
func (s *Service) ListPolicies(ctx context.Context) ([]string, error) {
	keys, err := s.store.List(ctx, storage.NamespaceAttestationPolicy)
	if err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, ok := strings.CutSuffix(k, policySuffix)
		if !ok || id == "" {
			s.log.Warn("ignoring a stored policy without the .rego suffix", "key", k)
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// GenerateSupplementalChallenge returns the TEE-specific challenge that
// replaces the KBS nonce: "" for every TEE but se, whose verifier must
// implement ChallengeGenerator.
func (s *Service) GenerateSupplementalChallenge(ctx context.Context, tee protocol.Tee, params string) (string, error) {
	if tee != protocol.TeeSe {
		return "", nil
	}
	v, err := s.verifiers.Get(tee)
	if err != nil {
		return "", fmt.Errorf("%w: supplemental challenge: %w", ErrUnsupported, err)
	}
	g, ok := v.(ChallengeGenerator)
	if !ok {
		return "", fmt.Errorf("%w: the %s verifier cannot generate challenges", ErrUnsupported, tee)
	}
	return g.GenerateSupplementalChallenge(ctx, params)
}

// teeClaims is one verifier result with the request's data claims.
type teeClaims struct {
	tee        protocol.Tee
	class      verifier.Class
	claims     verifier.Claims
	initClaims any
	rdClaims   any
}

// Evaluate verifies every request, appraises each resulting device with
// the policy "<policyIDs[0]>_<class>" (policy id "default" when none is
// given; further ids are ignored, as upstream) and returns the signed EAR.
func (s *Service) Evaluate(ctx context.Context, reqs []VerificationRequest, policyIDs []string) (string, error) {
	if len(reqs) == 0 {
		return "", fmt.Errorf("%w: no verification requests provided", ErrInvalidRequest)
	}
	if len(reqs) > maxRequests {
		return "", fmt.Errorf("%w: %d verification requests exceed the limit of %d", ErrInvalidRequest, len(reqs), maxRequests)
	}
	policyID := defaultPolicyID
	if len(policyIDs) > 0 {
		policyID = policyIDs[0]
		if len(policyIDs) > 1 {
			s.log.Warn("EAR token only accepts the first policy; the rest are ignored", "policy_ids", policyIDs)
		}
	}

	var all []teeClaims
	for i, req := range reqs {
		results, err := s.verify(ctx, req)
		if err != nil {
			return "", fmt.Errorf("verification request %d (%s): %w", i, req.Tee, err)
		}
		all = append(all, results...)
		if len(all) > maxSubmods {
			return "", fmt.Errorf("%w: more than %d devices", ErrInvalidRequest, maxSubmods)
		}
	}

	now := s.now()
	c := &earClaims{
		profile:   s.settings.profile,
		developer: s.settings.developer,
		build:     s.settings.build,
		issuer:    s.settings.issuer,
		iat:       now.Unix(),
		exp:       now.Add(time.Duration(s.settings.durationMin) * time.Minute).Unix(),
		submods:   map[string]*appraisal{},
	}
	indices := map[verifier.Class]int{}
	for _, tc := range all {
		a, err := s.appraise(ctx, tc, policyID)
		if err != nil {
			return "", err
		}
		name := string(tc.class) + strconv.Itoa(indices[tc.class])
		indices[tc.class]++
		c.submods[name] = a
		c.names = append(c.names, name)
	}
	slices.Sort(c.names)
	return s.signer.issue(c)
}

// verify runs the verifier of one request.
func (s *Service) verify(ctx context.Context, req VerificationRequest) ([]teeClaims, error) {
	v, err := s.verifiers.Get(req.Tee)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerification, err)
	}
	if len(req.Evidence) > limits.MaxEvidenceBytes {
		return nil, fmt.Errorf("%w: evidence of %d bytes exceeds the limit of %d", ErrInvalidRequest, len(req.Evidence), limits.MaxEvidenceBytes)
	}
	if !json.Valid(req.Evidence) {
		return nil, fmt.Errorf("%w: failed to parse evidence as JSON", ErrInvalidRequest)
	}
	var exp verifier.Expected
	var rdClaims any
	if rd := req.RuntimeData; rd != nil {
		exp.ReportData, rdClaims, err = ExpectedReportData(rd, req.HashAlgorithm)
		if err != nil {
			return nil, fmt.Errorf("parse runtime data: %w", err)
		}
	}
	var initClaims any
	if id := req.InitData; id != nil {
		switch {
		case id.Digest != nil && id.TOML != "":
			return nil, fmt.Errorf("%w: init data has both a digest and a TOML document", ErrInvalidRequest)
		case id.Digest != nil:
			exp.InitDataDigest = id.Digest
		default:
			digest, claims, err := InitDataClaims(id.TOML)
			if err != nil {
				return nil, fmt.Errorf("parse init data: %w", err)
			}
			exp.InitDataDigest, initClaims = digest, claims
		}
	}
	results, err := v.Evaluate(ctx, req.Evidence, exp)
	if err != nil {
		return nil, fmt.Errorf("%w: Verifier evaluate failed: %w", ErrVerification, err)
	}
	out := make([]teeClaims, 0, len(results))
	for _, r := range results {
		s.log.Info("verifier/endorsement check passed", "tee", req.Tee, "tee_class", r.Class)
		out = append(out, teeClaims{tee: req.Tee, class: r.Class, claims: r.Claims, initClaims: initClaims, rdClaims: rdClaims})
	}
	return out, nil
}

// ExpectedReportData returns the report data rd binds and the claims it
// exposes (the structured value, or nil for raw data). Structured data is
// canonicalized (RFC 8785) and hashed with h (SHA-384 when empty).
func ExpectedReportData(rd *RuntimeData, h protocol.HashAlgorithm) ([]byte, any, error) {
	switch {
	case rd.Raw != nil && rd.Structured != nil:
		return nil, nil, fmt.Errorf("%w: runtime data has both a raw and a structured form", ErrInvalidRequest)
	case rd.Structured == nil:
		if rd.Raw == nil {
			return nil, nil, fmt.Errorf("%w: runtime data has neither a raw nor a structured form", ErrInvalidRequest)
		}
		return rd.Raw, nil, nil
	}
	if len(rd.Structured) > limits.MaxEvidenceBytes || jsonlimit.Depth(rd.Structured) > limits.MaxJSONDepth {
		return nil, nil, fmt.Errorf("%w: structured runtime data too large or too deeply nested", ErrInvalidRequest)
	}
	if h == "" {
		h = protocol.DefaultHashAlgorithm
	}
	canon, err := protocol.Canonicalize(rd.Structured)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: parse JSON structured data: %v", ErrInvalidRequest, err)
	}
	digest, err := h.Sum(canon)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(rd.Structured))
	dec.UseNumber()
	var claims any
	if err := dec.Decode(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: parse JSON structured data: %v", ErrInvalidRequest, err)
	}
	return digest, claims, nil
}

// transformClaims builds the annotated evidence of one device, as upstream's
// transform_claims: the verifier's report_data and init_data move to the
// top, next to runtime_data_claims and init_data_claims, and the remaining
// claims go under the TEE name.
func transformClaims(tc teeClaims, verbose bool) (map[string]any, error) {
	out := make(map[string]any, 5)
	rest := make(map[string]any, len(tc.claims))
	for k, v := range tc.claims {
		rest[k] = v
	}
	if v, ok := rest["init_data"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s verifier claim init_data is not a string", ErrVerification, tc.tee)
		}
		delete(rest, "init_data")
		out["init_data"] = s
		out["init_data_claims"] = tc.initClaims
	}
	if v, ok := rest["report_data"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s verifier claim report_data is not a string", ErrVerification, tc.tee)
		}
		delete(rest, "report_data")
		out["report_data"] = s
		rd := tc.rdClaims
		if m, ok := rd.(map[string]any); ok && !verbose {
			// Large device evidence would make the token too big for HTTP
			// headers; it stays bound through the report data hash.
			trimmed := make(map[string]any, len(m))
			for k, v := range m {
				if k != "additional-evidence" {
					trimmed[k] = v
				}
			}
			rd = trimmed
		}
		out["runtime_data_claims"] = rd
	}
	out[string(tc.tee)] = rest
	return out, nil
}

// appraise evaluates the class policy for one device.
func (s *Service) appraise(ctx context.Context, tc teeClaims, policyID string) (*appraisal, error) {
	ev, err := transformClaims(tc, s.settings.verbose)
	if err != nil {
		return nil, err
	}
	evJSON, err := encodeJSON(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding claims: %v", ErrVerification, err)
	}
	if d := jsonlimit.Depth(evJSON); d > limits.MaxJSONDepth {
		return nil, fmt.Errorf("%w: claims nested %d deep exceed the limit of %d", ErrInvalidRequest, d, limits.MaxJSONDepth)
	}
	input, err := ast.ValueFromReader(bytes.NewReader(evJSON))
	if err != nil {
		return nil, fmt.Errorf("%w: claims as policy input: %v", ErrPolicyEvaluation, err)
	}
	id := policyID + "_" + string(tc.class)
	cp, err := s.engine.load(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := s.engine.evaluate(ctx, cp, input)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", id, err)
	}
	return &appraisal{trust: res.trust, policyID: policyID, evidence: evJSON, extensions: res.extensions}, nil
}
