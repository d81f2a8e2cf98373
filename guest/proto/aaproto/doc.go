// Package aaproto is the generated Go code of the attestation-agent ttRPC
// API (attestation-agent.proto in this directory): the messages, the
// AttestationAgentServiceService interface, its registration on a
// ttrpc.Server and a client. The proto keeps upstream guest-components'
// package (attestation_agent), service, method, message and field names and
// numbers, so the method paths are
// /attestation_agent.AttestationAgentService/<Method>, byte-compatible with
// kata-agent, the Rust confidential-data-hub and api-server-rest.
//
// Regenerate with `go generate` (see gen.sh for the tool versions).
package aaproto

//go:generate sh gen.sh
