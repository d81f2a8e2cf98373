package asgrpc

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/as/asproto"
	"github.com/go-trustee/go-trustee/internal/grpcdial"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/rvps/rvpsgrpc"
)

// Upstream's defaults for coco_as_grpc.
const (
	DefaultAddress  = "http://127.0.0.1:50004"
	DefaultPoolSize = 100
	// DefaultTimeout bounds one call, as upstream's AS_REQUEST_TIMEOUT:
	// verification may fetch collateral and be legitimately slow.
	DefaultTimeout = 300 * time.Second
)

// ErrUnavailable is wrapped when the Attestation Service cannot be reached
// or does not answer within the deadline.
var ErrUnavailable = errors.New("asgrpc: attestation service unavailable")

// ErrRefused is wrapped when the Attestation Service answered with a
// refusal (the evidence, the policy or the request was rejected).
var ErrRefused = errors.New("asgrpc: attestation service refused the request")

// Client is the KBS's side of a remote Attestation Service.
type Client struct {
	pool    *grpcdial.Pool
	timeout time.Duration
	as      asproto.AttestationServiceClient
	rvps    *rvpsgrpc.Client
}

// Dial returns a Client of the AS at addr (upstream's as_addr) with a pool
// of up to poolSize connections (DefaultPoolSize when 0) and a per-call
// deadline (DefaultTimeout when 0). It connects lazily, so it succeeds
// while the AS is down.
func Dial(addr string, poolSize int, timeout time.Duration) (*Client, error) {
	if addr == "" {
		addr = DefaultAddress
	}
	if poolSize <= 0 {
		poolSize = DefaultPoolSize
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	p, err := grpcdial.NewPool(addr, poolSize, grpcdial.Options{})
	if err != nil {
		return nil, err
	}
	cc := poolConn{p}
	return &Client{pool: p, timeout: timeout, as: asproto.NewAttestationServiceClient(cc), rvps: rvpsgrpc.New(cc)}, nil
}

// Close closes the pool.
func (c *Client) Close() error { return c.pool.Close() }

// Connections returns the number of open pooled connections.
func (c *Client) Connections() int { return c.pool.Len() }

// EncodeRequest is the wire form of one verification request, as
// upstream's KBS sends it.
func EncodeRequest(vr as.VerificationRequest) (*asproto.IndividualAttestationRequest, error) {
	h := vr.HashAlgorithm
	if h == "" {
		h = protocol.SHA384
	}
	r := &asproto.IndividualAttestationRequest{
		Tee:                      string(vr.Tee),
		Evidence:                 base64.RawURLEncoding.EncodeToString(vr.Evidence),
		RuntimeDataHashAlgorithm: string(h),
	}
	if rd := vr.RuntimeData; rd != nil {
		switch {
		case rd.Structured != nil && rd.Raw != nil:
			return nil, fmt.Errorf("%w: both raw and structured runtime data", ErrInvalidRequest)
		case rd.Structured != nil:
			r.RuntimeData = &asproto.IndividualAttestationRequest_StructuredRuntimeData{StructuredRuntimeData: string(rd.Structured)}
		default:
			r.RuntimeData = &asproto.IndividualAttestationRequest_RawRuntimeData{RawRuntimeData: base64.RawURLEncoding.EncodeToString(rd.Raw)}
		}
	}
	if id := vr.InitData; id != nil {
		switch {
		case id.TOML != "" && id.Digest != nil:
			return nil, fmt.Errorf("%w: both init-data digest and TOML", ErrInvalidRequest)
		case id.Digest != nil:
			r.InitData = &asproto.IndividualAttestationRequest_InitDataDigest{InitDataDigest: base64.RawURLEncoding.EncodeToString(id.Digest)}
		default:
			r.InitData = &asproto.IndividualAttestationRequest_InitDataToml{InitDataToml: id.TOML}
		}
	}
	return r, nil
}

// Evaluate sends the evidence to the AS and returns its token.
func (c *Client) Evaluate(ctx context.Context, reqs []as.VerificationRequest, policyIDs []string) (string, error) {
	msg := &asproto.AttestationRequest{PolicyIds: policyIDs}
	for _, vr := range reqs {
		r, err := EncodeRequest(vr)
		if err != nil {
			return "", err
		}
		msg.VerificationRequests = append(msg.VerificationRequests, r)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.as.AttestationEvaluate(ctx, msg)
	if err != nil {
		return "", callError("attestation evaluate", err)
	}
	tok := resp.GetAttestationToken()
	if tok == "" || len(tok) > limits.MaxTokenBytes {
		return "", fmt.Errorf("%w: attestation evaluate: token of %d bytes (want 1..%d)", ErrRefused, len(tok), limits.MaxTokenBytes)
	}
	return tok, nil
}

// SetPolicy stores an attestation policy in the AS.
func (c *Client) SetPolicy(ctx context.Context, id string, policy []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.as.SetAttestationPolicy(ctx, &asproto.SetPolicyRequest{PolicyId: id, Policy: base64.RawURLEncoding.EncodeToString(policy)})
	return callError("set attestation policy", err)
}

// GenerateSupplementalChallenge asks the AS for the challenge of TEEs that
// need one (se); for every other TEE the KBS makes its own nonce and the
// AS is not called, as upstream.
func (c *Client) GenerateSupplementalChallenge(ctx context.Context, tee protocol.Tee, params string) (string, error) {
	if tee != protocol.TeeSe {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.as.GetAttestationChallenge(ctx, &asproto.ChallengeRequest{Inner: map[string]string{"tee": string(tee), "tee_params": params}})
	if err != nil {
		return "", callError("get attestation challenge", err)
	}
	return resp.GetAttestationChallenge(), nil
}

// RVPS returns the AS's reference value provider, reached through the AS.
func (c *Client) RVPS() rvps.Provider { return c.rvps }

func callError(what string, err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %s: %s", ErrUnavailable, what, st.Message())
	}
	return fmt.Errorf("%w: %s: %s", ErrRefused, what, st.Message())
}

// poolConn spreads calls over the pool's connections.
type poolConn struct{ p *grpcdial.Pool }

func (c poolConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	cc, release := c.p.Get()
	defer release()
	return cc.Invoke(ctx, method, args, reply, opts...)
}

func (c poolConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// The AS API has no streams; a stream is not counted against the
	// connection it runs on.
	cc, release := c.p.Get()
	release()
	return cc.NewStream(ctx, desc, method, opts...)
}
