// Package rvpsproto is the generated Go code of the Reference Value Provider
// Service gRPC API (reference.proto in this directory, upstream Trustee's
// protos/reference.proto unchanged): the messages and the
// reference.ReferenceValueProviderService client and server, which both the
// rvps binary and grpc-as serve. Names and numbers are upstream's wire
// contract; change none of them.
//
// Regenerate with `go generate` (see gen.sh for the tool versions).
package rvpsproto

//go:generate sh gen.sh
