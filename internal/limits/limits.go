// Package limits collects, in one place, the bounds applied to every piece
// of untrusted input the KBS, the Attestation Service and the guest client
// parse. Raising one is a security decision: each says what it protects.
package limits

const (
	// DefaultPayloadMB is the default request body limit of the KBS HTTP
	// server, in MiB (upstream payload_request_size).
	DefaultPayloadMB = 2
	// MaxHeaderBytes bounds request headers; large enough for a verbose EAR
	// token with many GPUs as Bearer (upstream is stuck at 128 KiB).
	MaxHeaderBytes = 512 << 10
	// MaxTokenBytes bounds a JWT (EAR, admin token) before it is parsed.
	MaxTokenBytes = 512 << 10
	// MaxJSONDepth bounds the nesting of JSON documents we canonicalize or
	// feed to the policy engine.
	MaxJSONDepth = 64
	// MaxEvidenceBytes bounds one TEE evidence document.
	MaxEvidenceBytes = 2 << 20
	// MaxResourceBytes bounds a stored resource.
	MaxResourceBytes = 32 << 20
	// MaxPolicyBytes bounds a Rego policy.
	MaxPolicyBytes = 1 << 20
	// MaxResponseBytes bounds a KBS response read by the client.
	MaxResponseBytes = 48 << 20
	// MaxCertChain bounds the number of certificates in an x5c chain.
	MaxCertChain = 10
	// MaxConfigBytes bounds a configuration file.
	MaxConfigBytes = 1 << 20
)
