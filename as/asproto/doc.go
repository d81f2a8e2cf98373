// Package asproto is the generated Go code of the Attestation Service gRPC
// API (attestation.proto in this directory, upstream Trustee's
// protos/attestation.proto unchanged): the messages and the
// attestation.AttestationService client and server. Package, service,
// method, message and field names and numbers are upstream's — they are the
// wire contract between kbs and grpc-as; change none of them.
//
// Regenerate with `go generate` (see gen.sh for the tool versions).
package asproto

//go:generate sh gen.sh
