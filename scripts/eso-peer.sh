#!/usr/bin/env bash
# Builds (once, cached) the External Secrets Operator controller the
# Vault -> ESO -> Secret -> KBS test runs against the test apiserver, and
# prints the folder holding it:
#   <dir>/external-secrets   the controller binary (ESO's own main.go)
#   <dir>/crds/              ESO's CRDs (config/crds/bases of the release)
#
# ESO v0.16.2 from the Go module proxy. `go install ...@v0.16.2` refuses
# the module (its go.mod has a replace directive), so the release's source
# is copied out of the module cache and built in place, where its go.mod
# and go.sum apply as they do upstream.
#
# One change to ESO's source: the two registration files
# (pkg/provider/register, pkg/generator/register) are cut down to the
# providers and generators that need no cloud SDK (Vault, Kubernetes, fake;
# password, uuid, fake, vault, webhook). The controllers, the Vault
# provider and everything they run are ESO's code unchanged; the cut only
# spares compiling the AWS, Azure, GCP, IBM, Oracle, ... SDKs, which this
# test never calls and which would add many minutes to a cold CI run.
#
# Cache: ${GO_TRUSTEE_CACHE:-~/.cache/go-trustee}/eso/<version>-vault.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v0.16.2
module=github.com/external-secrets/external-secrets
cache="${GO_TRUSTEE_CACHE:-$HOME/.cache/go-trustee}/eso/$version-vault"
if [ -x "$cache/external-secrets" ] && [ -d "$cache/crds" ]; then
  echo "$cache"
  exit 0
fi
# One build at a time; a caller that waited finds the other's result.
mkdir -p "$(dirname "$cache")"
exec 9>"$(dirname "$cache")/.lock"
flock 9
if [ -x "$cache/external-secrets" ] && [ -d "$cache/crds" ]; then
  echo "$cache"
  exit 0
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
src=$(GOFLAGS= go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -f "$src/go.mod" ]; then
  echo "eso-peer: could not download $module@$version" >&2
  exit 1
fi
cp -r "$src" "$work/eso"
chmod -R u+w "$work/eso"
cd "$work/eso"

cat > pkg/provider/register/register.go <<'EOF'
// Package register is cut down by go-trustee's scripts/eso-peer.sh to the
// providers that need no cloud SDK.
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/provider/fake"
	_ "github.com/external-secrets/external-secrets/pkg/provider/kubernetes"
	_ "github.com/external-secrets/external-secrets/pkg/provider/vault"
)
EOF
cat > pkg/generator/register/register.go <<'EOF'
// Package register is cut down by go-trustee's scripts/eso-peer.sh to the
// generators that need no cloud SDK.
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/generator/fake"
	_ "github.com/external-secrets/external-secrets/pkg/generator/password"
	_ "github.com/external-secrets/external-secrets/pkg/generator/uuid"
	_ "github.com/external-secrets/external-secrets/pkg/generator/vault"
	_ "github.com/external-secrets/external-secrets/pkg/generator/webhook"
)
EOF

mkdir -p "$work/out/crds"
# ESO's own module: its go.mod and go.sum, its Go version.
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$work/out/external-secrets" . >&2
cp config/crds/bases/*.yaml "$work/out/crds/"
"$work/out/external-secrets" --help >/dev/null

mkdir -p "$(dirname "$cache")"
rm -rf "$cache.tmp"
mv "$work/out" "$cache.tmp"
mv "$cache.tmp" "$cache"
echo "$cache"
