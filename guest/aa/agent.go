// Package aa is the attestation agent that runs inside a confidential
// guest: the ttRPC service attestation_agent.AttestationAgentService that
// kata-agent, confidential-data-hub and api-server-rest call on
// unix:///run/confidential-containers/attestation-agent/attestation-agent.sock.
// It is a drop-in for upstream guest-components' attestation-agent: the same
// proto, configuration file, command line, evidence, token JSON, event log
// and error texts.
//
// # What it fixes over upstream
//
//   - GetToken("kbs") reuses the token and its TEE key pair until
//     token_cache_margin_secs (60) before the token's exp, and concurrent
//     callers share one RCAR handshake (upstream attests, with a new key,
//     on every call).
//   - A refusal by the KBS (attestation failed, policy denied, protocol
//     version mismatch) is reported at once, never retried, with the
//     server's reason in the guest log; only a KBS that cannot be reached or
//     answers 5xx is retried, a bounded number of times, and the error then
//     names the KBS URL.
//   - Over ttRPC the errors keep upstream's terse texts (the host sees
//     them), but their codes classify the failure: Unavailable (KBS or AS
//     unreachable), PermissionDenied (refused), FailedPrecondition (not
//     configured), InvalidArgument, DeadlineExceeded, Internal. The detail
//     goes to the guest log only.
//   - Every RPC has a deadline.
//
// # Invariants
//
//   - Tokens, TEE private keys and init-data contents are never logged.
//   - Evidence is produced only by the detected attesters; report data is
//     bound as given (the attester pads as its TEE defines).
//
// An Agent is safe for concurrent use.
package aa

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/guest/attester"
	"github.com/go-trustee/go-trustee/internal/clock"
	"github.com/go-trustee/go-trustee/protocol"
)

// Sentinel errors of the Agent, mapped to ttRPC codes by Code.
var (
	// ErrUnsupportedTokenType: GetToken was asked for a type other than
	// "kbs" and "coco_as".
	ErrUnsupportedTokenType = errors.New("aa: unsupported token type")
	// ErrNotConfigured: the token source asked for is not configured.
	ErrNotConfigured = errors.New("aa: token source not configured")
	// ErrUnavailable: the KBS or AS could not be reached, or kept failing
	// (HTTP 5xx), within the retries.
	ErrUnavailable = errors.New("aa: attestation server unavailable")
	// ErrRejected: the KBS or AS refused the attestation (401, policy
	// deny, protocol mismatch). Retrying cannot help.
	ErrRejected = errors.New("aa: attestation rejected")
	// ErrInvalidRequest: a request argument is invalid (e.g. an event
	// content with a line break, report data too long).
	ErrInvalidRequest = errors.New("aa: invalid request")
)

// Options configure New. Zero values take the documented defaults.
type Options struct {
	// Config is the agent configuration.
	Config Config
	// Attester is the primary TEE attester. Required.
	Attester attester.Attester
	// Devices are the additional (device) attesters.
	Devices []attester.Attester
	// InitDataTOML, when set, is sent as init-data in KBS attestations.
	InitDataTOML string
	// EventLog records runtime measurements; nil with
	// Config.EventlogConfig.EnableEventlog means the attester cannot
	// measure (NOT_SUPPORTED).
	EventLog *aael.Log
	// HTTPClient is used for the KBS and the AS; nil builds one trusting
	// the system roots plus token_configs.kbs.cert.
	HTTPClient *http.Client
	// Now is the clock of token expiry; nil is time.Now.
	Now func() time.Time
	// Rand is the randomness of TEE keys; nil is crypto/rand.
	Rand io.Reader
	// Logger receives the detail of every failure; nil discards.
	Logger *slog.Logger
	// KBSAttempts bounds the handshakes tried when the KBS is unreachable
	// or failing; 0 is 5 (upstream's RCAR retry count).
	KBSAttempts int
	// RetryInterval separates them; 0 is 1 s.
	RetryInterval time.Duration
	// Sleep waits between attempts; nil waits on a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// RequestTimeout bounds each HTTP request; 0 is 20 s.
	RequestTimeout time.Duration
}

// Agent is the attestation agent. Build it with New.
type Agent struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	tokens *client.TokenCache[[]byte] // KBS tokens (the GetToken("kbs") JSON)
	roots  *x509.CertPool
}

// New validates opts and returns an Agent.
func New(opts Options) (*Agent, error) {
	if opts.Attester == nil {
		return nil, errors.New("aa: Options.Attester is required")
	}
	if err := opts.Config.validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.KBSAttempts <= 0 {
		opts.KBSAttempts = 5
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 20 * time.Second
	}
	if opts.Sleep == nil {
		opts.Sleep = clock.Sleep
	}
	a := &Agent{opts: opts, log: opts.Logger, now: opts.Now}
	if k := opts.Config.TokenConfigs.KBS; k != nil && k.Cert != "" && opts.HTTPClient == nil {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(k.Cert)) {
			return nil, fmt.Errorf("%w: token_configs.kbs.cert holds no PEM certificate", ErrInvalidConfig)
		}
		a.roots = pool
	}
	var err error
	if a.tokens, err = newTokenCache(opts); err != nil {
		return nil, err
	}
	return a, nil
}

// TeeType returns the primary TEE type.
func (a *Agent) TeeType() protocol.Tee { return a.opts.Attester.Tee() }

// AdditionalTees returns the device TEE types.
func (a *Agent) AdditionalTees() []protocol.Tee {
	out := make([]protocol.Tee, len(a.opts.Devices))
	for i, d := range a.opts.Devices {
		out[i] = d.Tee()
	}
	return out
}

// Evidence returns the primary TEE evidence binding reportData.
func (a *Agent) Evidence(ctx context.Context, reportData []byte) ([]byte, error) {
	if len(reportData) > 64 {
		return nil, fmt.Errorf("%w: report data of %d bytes exceeds 64", ErrInvalidRequest, len(reportData))
	}
	ev, err := a.opts.Attester.Evidence(ctx, reportData)
	if err != nil {
		return nil, fmt.Errorf("getting %s evidence: %w", a.TeeType(), err)
	}
	if err := attester.Check(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// AdditionalEvidence returns {"<tee>": <evidence>, ...} over the devices,
// or empty bytes when there is none, as upstream.
func (a *Agent) AdditionalEvidence(ctx context.Context, reportData []byte) ([]byte, error) {
	if len(reportData) > 64 {
		return nil, fmt.Errorf("%w: report data of %d bytes exceeds 64", ErrInvalidRequest, len(reportData))
	}
	s, err := attester.AdditionalEvidence(ctx, a.opts.Devices, reportData)
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// MeasurementResult is the outcome of ExtendRuntimeMeasurement, the
// proto's RuntimeMeasurementResult.
type MeasurementResult int

// The results, numbered as the proto enum.
const (
	MeasurementOK           MeasurementResult = 0
	MeasurementNotSupported MeasurementResult = 1
	MeasurementNotEnabled   MeasurementResult = 2
)

// ExtendRuntimeMeasurement records the event "<domain> <operation>
// <content>" and extends the register of pcr (nil: init_pcr).
func (a *Agent) ExtendRuntimeMeasurement(ctx context.Context, domain, operation, content string, pcr *uint64) (MeasurementResult, error) {
	if !a.opts.Config.EventlogConfig.EnableEventlog {
		return MeasurementNotEnabled, nil
	}
	if a.opts.EventLog == nil {
		return MeasurementNotSupported, nil
	}
	if err := a.opts.EventLog.Extend(ctx, domain, operation, content, pcr); err != nil {
		if errors.Is(err, aael.ErrInvalidEvent) {
			return 0, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		return 0, err
	}
	return MeasurementOK, nil
}
