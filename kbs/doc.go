// Package kbs is the Key Broker Service: the HTTP server that runs the KBS
// attestation protocol 0.4.0 (RCAR) with guests, releases resources to
// attested guests as JWE, and serves the admin API. It is a drop-in for
// upstream Trustee's kbs: same endpoints, same wire bytes, same error JSON,
// same configuration file and on-disk layouts.
//
// # Request flow
//
//	POST /kbs/v0/auth     Request → Challenge (+ kbs-session-id cookie)
//	POST /kbs/v0/attest   Attestation → {"token"}: evidence verified by the
//	                      Attestation Service, token kept in the session
//	GET  /kbs/v0/resource/<repo>/<type>/<tag>
//	                      token from the session cookie or an
//	                      "Authorization: Bearer" header → verified →
//	                      resource policy → JWE sealed to the TEE key in
//	                      the token
//
// # Invariants
//
//   - Sessions live in the shared store (package storage), never in process
//     memory, so replicas need no sticky sessions.
//   - Errors reach the wire through one function (toWire) with upstream's
//     status rules: 404 only for a bad path or an unknown plugin, 401 for
//     everything else, 413 for an oversized body. A policy deny names the
//     rule that denied in its detail.
//   - A request that fails authentication or authorization changes nothing.
//   - Secrets, keys and tokens are never logged. Every release and every
//     deny is written to the audit log with the request id.
package kbs
