#!/usr/bin/env bash
# Builds go-trustee's container images with no container engine: static
# binaries (CGO_ENABLED=0, -trimpath) assembled by hack/imagebuild on an
# empty base, running as uid 65532, and pushed to REGISTRY.
#
#   REGISTRY=127.0.0.1:5000/go-trustee TAG=dev scripts/images.sh
#
# Images (the operator's environment names them as upstream's does):
#   $REGISTRY/kbs:$TAG       /usr/local/bin/kbs         KBS_IMAGE_NAME
#   $REGISTRY/operator:$TAG  /manager, /secret-converter OPERATOR_IMAGE_NAME
#   $REGISTRY/as:$TAG        /usr/local/bin/grpc-as     AS_IMAGE_NAME
#   $REGISTRY/rvps:$TAG      /usr/local/bin/rvps, rvps-tool RVPS_IMAGE_NAME
# The kbs image also serves KBS_IMAGE_NAME_MICROSERVICES (one kbs binary
# has every attestation_service type). Prints one "<name>
# <reference>@<digest>" line per image.
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=${REGISTRY:?set REGISTRY, e.g. 127.0.0.1:5000/go-trustee}
TAG=${TAG:-dev}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build() { CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags=-s -o "$out/$1" "./cmd/$1"; }
for b in kbs manager secret-converter grpc-as rvps rvps-tool; do build "$b"; done
go build -o "$out/imagebuild" ./hack/imagebuild
printf 'kbs %s\n' "$("$out/imagebuild" -name kbs -entrypoint /usr/local/bin/kbs \
  -file "$out/kbs=/usr/local/bin/kbs" -push "$REGISTRY/kbs:$TAG")"
printf 'operator %s\n' "$("$out/imagebuild" -name trustee-operator -entrypoint /manager \
  -file "$out/manager=/manager" -file "$out/secret-converter=/secret-converter" -push "$REGISTRY/operator:$TAG")"
printf 'as %s\n' "$("$out/imagebuild" -name grpc-as -entrypoint /usr/local/bin/grpc-as \
  -file "$out/grpc-as=/usr/local/bin/grpc-as" -push "$REGISTRY/as:$TAG")"
printf 'rvps %s\n' "$("$out/imagebuild" -name rvps -entrypoint /usr/local/bin/rvps \
  -file "$out/rvps=/usr/local/bin/rvps" -file "$out/rvps-tool=/usr/local/bin/rvps-tool" -push "$REGISTRY/rvps:$TAG")"
