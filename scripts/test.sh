#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   1. installs what the tests need (Debian packages for the real PostgreSQL
#      and Redis servers, libssl-dev for the TPM simulator, docker-registry,
#      skopeo and gnupg, the cosign CLI, Go modules),
#   2. checks gofmt, go vet, staticcheck (staticcheck.conf), the
#      controller-gen output of the operator API (scripts/generate.sh) and
#      go mod tidiness,
#      It also builds (once, cached) the kube-apiserver and etcd the
#      operator's envtest suite runs against (scripts/kube-peers.sh) and
#      the Vault dev server of the Vault backend tests
#      (scripts/vault-peer.sh; BUSL-licensed, a test peer only) and the
#      External Secrets Operator controller (scripts/eso-peer.sh).
#   3. starts PostgreSQL and Redis on loopback (scripts/services.sh),
#   4. runs `go test -race ./...` (unit tests and the end-to-end suite, which
#      builds kbs and kbs-client and runs them as real processes), then the
#      heap measurements without -race,
#   5. runs every fuzz target for its execution budget
#      (scripts/fuzz-budget.tsv, about 10 s each).
# Environment: FUZZTIME=0 skips fuzzing; FUZZSCALE=N multiplies the fuzz
# budgets; TEST_RUN passes -run to go test.
# CI=true (which .ci/run sets) turns every "service not available" skip into
# a failure.
# Vectors: every test reads upstream data from testdata/upstream inside the
# repository (internal/testvectors); TestNoPathLeavesRepository fails on
# any path that escapes the clone.
# Minimization is capped (-fuzzminimizetime 100x): the real-evidence seeds
# are kilobytes long and would otherwise stall each target.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "installing system packages"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The go-tpm-tools TPM simulator (cgo, test files only) links OpenSSL.
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
# The OCI registry the signed/encrypted image e2e pushes to and pulls from.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# skopeo --sign-by makes the GPG simple signatures of the image e2e.
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
# openssl runs upstream's docker-compose setup.sh (e2e/microservices_test.go).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# podman runs the Trustee pod the operator produces (e2e/operator_test.go).
command -v podman >/dev/null 2>&1 || need+=(podman)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
for p in runc catatonit uidmap slirp4netns fuse-overlayfs; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "need root to install: ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# podman on these machines: runc (crun refuses hybrid cgroups), cgroupfs,
# and explicit ulimits (raising RLIMIT_NOFILE is not allowed here).
if ! grep -qs '^runtime = "runc"' /etc/containers/containers.conf && [ "$(id -u)" = 0 ]; then
  mkdir -p /etc/containers
  [ -f /etc/containers/containers.conf ] && cp /etc/containers/containers.conf /etc/containers/containers.conf.before-go-trustee
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
fi

log "downloading Go modules"
# Image signature verification (go.podman.io/image) uses its pure-Go
# OpenPGP, selected by this tag; every build and test of the tree uses it.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=containers_image_openpgp"
go mod download

log "installing cosign (the real CLI signs the e2e images)"
tools="$PWD/.tools/bin"
if [ ! -x "$tools/cosign" ]; then
  GOFLAGS= GOBIN="$tools" go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
fi
export COSIGN="$tools/cosign"
"$COSIGN" version >/dev/null

log "installing staticcheck (the lint gate; configuration in staticcheck.conf)"
if [ ! -x "$tools/staticcheck" ]; then
  GOFLAGS= GOBIN="$tools" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

log "building kube-apiserver and etcd for the operator tests (cached: scripts/kube-peers.sh)"
KUBEBUILDER_ASSETS=$(scripts/kube-peers.sh)
export KUBEBUILDER_ASSETS

log "building the Vault dev server for the Vault backend tests (cached: scripts/vault-peer.sh)"; VAULT_BIN=$(scripts/vault-peer.sh); export VAULT_BIN

log "building the External Secrets Operator for the Vault -> ESO -> KBS e2e (cached: scripts/eso-peer.sh)"
ESO_DIR=$(scripts/eso-peer.sh); export ESO_DIR

log "checking every installed tool is present"
missing=()
for t in redis-server docker-registry skopeo gpg openssl podman runc "$COSIGN" "$tools/staticcheck" "$KUBEBUILDER_ASSETS/kube-apiserver" "$KUBEBUILDER_ASSETS/etcd" "$VAULT_BIN" "$ESO_DIR/external-secrets"; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(initdb)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then echo "installed but not found: ${missing[*]}" >&2; exit 1; fi

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed on:"; echo "$unformatted"; exit 1; fi

log "go vet"
go vet ./...

log "staticcheck"
"$tools/staticcheck" ./...

log "operator code generation drift (scripts/generate.sh, controller-gen)"
scripts/generate.sh
if ! git diff --quiet -- operator/api config/crd config/rbac 2>/dev/null || [ -n "$(git ls-files --others --exclude-standard -- operator/api config/crd config/rbac 2>/dev/null)" ]; then
  echo "generated operator files differ from the committed ones; run scripts/generate.sh and commit:" >&2
  git --no-pager diff --stat -- operator/api config/crd config/rbac >&2 || true
  exit 1
fi

log "go mod tidy check"
cp go.mod /tmp/go.mod.before.$$; cp go.sum /tmp/go.sum.before.$$
go mod tidy
if ! diff -q go.mod /tmp/go.mod.before.$$ >/dev/null || ! diff -q go.sum /tmp/go.sum.before.$$ >/dev/null; then
  echo "go.mod/go.sum are not tidy:"; git --no-pager diff -- go.mod go.sum || true
  cp /tmp/go.mod.before.$$ go.mod; cp /tmp/go.sum.before.$$ go.sum
  exit 1
fi
rm -f /tmp/go.mod.before.$$ /tmp/go.sum.before.$$

log "starting PostgreSQL and Redis on loopback"
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT

log "go test -race ./..."
go test -race -count=1 -timeout 30m ${TEST_RUN:+-run "$TEST_RUN"} ./...

# Heap measurements are left out of -race builds (//go:build !race); they
# run here, without the race detector.
log "go test (heap measurements, without -race)"
go test -count=1 -timeout 10m -run 'PeakMemory' ./guest/image ./imagecrypt

# Fuzzing is bounded by an execution count per target, not by time: with
# a duration, Go 1.26's coordinator can report "context deadline exceeded"
# and FAIL at the deadline with no failing input (golang/go#75804, fixed in
# Go 1.27): the -fuzztime context's parent is done before its child is
# cancelled, and stop() takes the parent's error for a worker failure. A
# count limit stops through the coordinator's own limit check instead, so
# every FAIL here is a finding. scripts/fuzz-budget.tsv holds each target's
# count, about 10 s of executions on the 2-core CI machine
# (scripts/fuzz-calibrate.sh measures them); FUZZSCALE multiplies them.
FUZZTIME=${FUZZTIME:-on}
if [ "$FUZZTIME" != "0" ]; then
  scale=${FUZZSCALE:-1}
  log "fuzzing each target for its budget (scripts/fuzz-budget.tsv) x $scale"
  grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . | sort | while read -r f; do
    pkg="./$(dirname "${f#./}")"
    for name in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //'); do
      n=$(awk -v p="$pkg" -v t="$name" '$1 == p && $2 == t { print $3 }' scripts/fuzz-budget.tsv)
      if [ -z "$n" ]; then
        echo "fuzz target $pkg $name has no budget in scripts/fuzz-budget.tsv (run scripts/fuzz-calibrate.sh)" >&2
        exit 1
      fi
      n=$(( n * scale ))
      echo "-- $pkg $name (${n}x)"
      if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "${n}x" -fuzzminimizetime 100x "$pkg" >/tmp/fuzz.$$.log 2>&1; then
        cat /tmp/fuzz.$$.log
        exit 1
      fi
      tail -1 /tmp/fuzz.$$.log
    done
  done
fi
log "all tests passed"
