#!/bin/sh
# Regenerates the Go code of plugin.proto, which is upstream Trustee's
# protos/plugin.proto byte for byte (commit 78962cd, Apache-2.0): the Go
# package is given with -M, so the file itself stays upstream's. Needs
# protoc (Debian: protobuf-compiler) and, on PATH:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
set -eu
cd "$(dirname "$0")"
m=Mplugin.proto=github.com/go-trustee/go-trustee/kbs/extplugin/pluginproto
protoc -I. \
	--go_out=. --go_opt=paths=source_relative --go_opt=$m \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=$m \
	plugin.proto
