#!/bin/sh
# Regenerates the Go code of attestation-agent.proto. Needs protoc (Debian:
# protobuf-compiler) and, on PATH, the plugins at the versions go.mod pins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
set -eu
cd "$(dirname "$0")"
protoc -I. \
	--go_out=. --go_opt=paths=source_relative \
	--go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative \
	attestation-agent.proto
