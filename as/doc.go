// Package as is the Attestation Service built into the KBS (upstream
// Trustee's coco_as_builtin) and served on its own by cmd/restful-as: it
// verifies TEE evidence, appraises the resulting claims with Rego
// attestation policies and reference values from the built-in RVPS, and
// issues EAR (EAT Attestation Result) tokens signed with ES256.
//
// # Pipeline
//
// For each VerificationRequest, the verifier of its TEE checks the evidence
// against the expected report data (raw bytes, or H(JCS(structured)) with
// the request's hash algorithm, SHA-384 by default) and init-data digest
// (given, or the hash of the init-data TOML with its own algorithm). Any
// verifier error fails the whole evaluation. Each (claims, class) result
// becomes one EAR submodule "<class><index>" (cpu0, gpu0, gpu1, ...): its
// annotated evidence is
//
//	{"<tee>": {claims without report_data/init_data},
//	 "report_data": .., "runtime_data_claims": {structured runtime data},
//	 "init_data": .., "init_data_claims": {init-data [data], cdh.toml and
//	 aa.toml as JSON, agent_policy_claims}}
//
// (runtime_data_claims only when the verifier reported report_data, and the
// same for init data), which is both the Rego input and the token's
// ear.veraison.annotated-evidence. The policy "<policy-id>_<class>"
// (default_cpu, default_gpu, ...) yields data.policy.trust_claims and
// optionally data.policy.extensions; the submodule status is the worst AR4SI
// tier of the vector.
//
// # Invariants
//
//   - Policies and reference values live only in the storage.Store
//     (namespaces attestation_service_policy, key "<id>.rego", and
//     reference_value), so replicas sharing a backend agree. The built-in
//     policies are written at start with overwrite=false: an operator's
//     policy is never replaced.
//   - A policy is compiled once per version: compiled queries are cached by
//     the SHA-256 of the stored bytes, read on every evaluation, so a change
//     made by any replica takes effect at once and an unchanged policy is
//     never recompiled. Rego v1 and v0 syntax are both accepted.
//   - Policies cannot reach the network: http.send and net.lookup_ip_addr
//     are not available. query_reference_value failures abort evaluation.
//   - Tokens are ES256 JWTs whose header embeds the public key as "jwk"
//     (with "x5c"/"x5u" when configured). Without a configured signer an
//     ephemeral key is generated; a KBS can then only accept the tokens
//     with insecure_header_jwk.
//   - Every input from the network is size-bounded before it is parsed:
//     evidence (limits.MaxEvidenceBytes), init-data (limits.MaxInitDataBytes),
//     policies (limits.MaxPolicyBytes), JSON nesting (limits.MaxJSONDepth),
//     REST bodies (MaxRequestBytes).
//
// A Service is safe for concurrent use.
package as
