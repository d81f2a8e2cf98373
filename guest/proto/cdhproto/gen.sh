#!/usr/bin/env bash
# Regenerates the Go code of the confidential-data-hub ttRPC protos.
# Needs: protoc (Debian protobuf-compiler), and the plugins at the versions
# go.mod pins (the files register as confidential-data-hub/*.proto, the
# path upstream uses, so they never clash with another "api.proto"):
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$(go env GOPATH)/bin:$PATH"
protoc -I confidential-data-hub=. \
  --go_out=. --go_opt=module=github.com/go-trustee/go-trustee/guest/proto/cdhproto \
  --go-ttrpc_out=. --go-ttrpc_opt=module=github.com/go-trustee/go-trustee/guest/proto/cdhproto \
  confidential-data-hub/api.proto
# keyprovider: only the ttrpc service; its messages are ocicrypt's generated
# types (aliases in keyprovider/keyprovider.go), so that the two copies never
# meet in one protobuf registry.
protoc -I confidential-data-hub=. \
  --go-ttrpc_out=. --go-ttrpc_opt=module=github.com/go-trustee/go-trustee/guest/proto/cdhproto \
  confidential-data-hub/keyprovider.proto
gofmt -w api keyprovider
