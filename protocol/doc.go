// Package protocol holds the KBS attestation protocol 0.4.0 as it is on the
// wire, shared by the server (package kbs) and the guest client (package
// client): the request and response types of /kbs/v0/auth, /kbs/v0/attest and
// resource reads, the TEE public key in its typed JWK form, RFC 8785 JSON
// canonicalization, the report-data binding, and the flattened JWE that
// carries a released resource.
//
// # Invariants
//
//   - Version is exactly "0.4.0"; nothing else is spoken.
//   - The report data a guest binds into its evidence is
//     H(JCS({"additional-evidence", "nonce", "tee-pubkey"})) where the
//     tee-pubkey is hashed in its typed form (TeePubKey): unknown JWK members
//     are dropped before canonicalization, as upstream's serde types do.
//   - The JWE protected header is emitted in the canonical compact form the
//     Rust guest re-serializes to compute the GCM AAD: "alg", "enc", then the
//     remaining members sorted. See jwe.go.
//   - Every decoder of peer input here is size-bounded (see the limits
//     in internal/limits) and fuzzed.
package protocol
