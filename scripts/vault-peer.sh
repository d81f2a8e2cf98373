#!/usr/bin/env bash
# Builds the real HashiCorp Vault server the Vault resource backend tests
# (kbs/vaultkv, kbs) run against, from the Go module proxy, once:
#   vault  github.com/hashicorp/vault  $VAULT_VERSION, with
#          github.com/hashicorp/vault/sdk $VAULT_SDK_VERSION and
#          github.com/hashicorp/vault/api $VAULT_API_VERSION
# (newer Vault releases do not compile from the proxy: no published sdk
# matches their ./sdk replace; ../shared/spec/ecosystem.md section 7).
# No download site is needed. The binary is cached at
# ${GOTRUSTEE_CACHE:-~/.cache/go-trustee}/vault/bin/vault; a warm run prints
# it at once. It is built in a temporary module folder inside the cache and
# moved into place, so an interrupted build leaves nothing that looks valid;
# a lock keeps two callers from building at the same time. A cold build
# takes about 10-11 minutes on 2 cores and about 6 GB of Go build cache.
# LICENCE: Vault >= 1.14 is BUSL-1.1. It is a test peer only: never vendor
# it, ship it, put it in an image or make anything depend on it at run time.
# Prints the binary path as the last (only) line of stdout; progress goes
# to stderr.
set -euo pipefail
VAULT_VERSION=v1.21.0
VAULT_SDK_VERSION=v0.20.0
VAULT_API_VERSION=v1.22.0
root=${GOTRUSTEE_CACHE:-$HOME/.cache/go-trustee}/vault
bin="$root/bin/vault"
stamp="$root/bin/.vault.version"
mkdir -p "$root/bin"
say() { printf '%s\n' "$*" >&2; }

# The stamp records the versions the binary was built from; checking it
# (not running the 470 MB binary) keeps a warm run well under a second.
want="vault $VAULT_VERSION sdk $VAULT_SDK_VERSION api $VAULT_API_VERSION"
ready() { [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }
if ready; then echo "$bin"; exit 0; fi

exec 9>"$root/.lock"
flock 9
if ready; then echo "$bin"; exit 0; fi

work=$(mktemp -d "$root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
gover=$(go env GOVERSION); gover=${gover#go}

say "building vault $VAULT_VERSION (sdk $VAULT_SDK_VERSION, api $VAULT_API_VERSION; about 10-11 minutes on 2 cores)"
cat > "$work/go.mod" <<EOF
module local/vault

go $gover

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1

replace github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk $VAULT_SDK_VERSION

replace github.com/hashicorp/vault/api => github.com/hashicorp/vault/api $VAULT_API_VERSION
EOF
(cd "$work" && go get "github.com/hashicorp/vault@$VAULT_VERSION" >&2 &&
  go build -trimpath -o "$root/bin/.vault.tmp" github.com/hashicorp/vault)
"$root/bin/.vault.tmp" version 2>/dev/null | grep -q "Vault $VAULT_VERSION" || {
  say "the built vault does not report $VAULT_VERSION"; rm -f "$root/bin/.vault.tmp"; exit 1
}
rm -f "$stamp"
mv "$root/bin/.vault.tmp" "$bin"
printf '%s\n' "$want" > "$stamp"

ready || { say "the built vault is not in place"; exit 1; }
echo "$bin"
