#!/usr/bin/env bash
# Regenerates what controller-gen derives from the operator's API types
# (operator/api/v1alpha1) and RBAC markers (operator/controller):
#   operator/api/v1alpha1/zz_generated.deepcopy.go
#   config/crd/bases/*.yaml
#   config/rbac/role.yaml
# scripts/test.sh runs it and fails when the committed files drift.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools/bin"
CONTROLLER_GEN_VERSION=v0.23.0
if [ ! -x "$tools/controller-gen" ] || ! "$tools/controller-gen" --version | grep -q "$CONTROLLER_GEN_VERSION"; then
  GOFLAGS= GOBIN="$tools" go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
fi
"$tools/controller-gen" object paths=./operator/api/...
"$tools/controller-gen" crd paths=./operator/api/... output:crd:artifacts:config=config/crd/bases
"$tools/controller-gen" rbac:roleName=manager-role paths=./operator/controller/... output:rbac:artifacts:config=config/rbac
