#!/usr/bin/env bash
# Builds the real Kubernetes control plane the operator tests run against
# (controller-runtime envtest: a folder holding kube-apiserver and etcd,
# named by KUBEBUILDER_ASSETS), from the Go module proxy, once:
#   kube-apiserver  k8s.io/kubernetes  $KUBE_VERSION (staging modules at
#                   $K8S_STAGING_VERSION)
#   etcd            go.etcd.io/etcd/server/v3  $ETCD_VERSION
# No download site is needed (setup-envtest is not used). The binaries are
# cached in $KUBE_PEERS_CACHE (default ~/.cache/go-trustee/kube-peers) under
# a folder named by the versions; a warm run prints the folder at once.
# Binaries are built in a scratch directory and moved into place, so an
# interrupted build leaves nothing that looks valid; a lock keeps two
# callers from building at the same time.
# Prints the assets folder as the last (only) line of stdout.
set -euo pipefail
KUBE_VERSION=v1.37.2
K8S_STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
root=${KUBE_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-trustee/kube-peers}
dir="$root/$KUBE_VERSION-etcd${ETCD_VERSION#v}"
mkdir -p "$dir"
say() { printf '%s\n' "$*" >&2; }

ready() {
  [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ] &&
    "$dir/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION" &&
    "$dir/etcd" --version >/dev/null 2>&1
}
if ready; then echo "$dir"; exit 0; fi

exec 9>"$dir/.lock"
flock 9
if ready; then echo "$dir"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
gover=$(go env GOVERSION); gover=${gover#go}

if ! [ -x "$dir/kube-apiserver" ] || ! "$dir/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"; then
  say "building kube-apiserver $KUBE_VERSION (about 5 minutes on 2 cores)"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  mkdir "$work/kas"
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    printf 'module local/kas\n\ngo %s\n\nreplace (\n' "$gover"
    # Every staging module k8s.io/kubernetes replaces with ./staging/...
    # is served by the proxy at the matching v0 version.
    grep -E '=> \./staging' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "\t"$1" => "$1" "v}'
    printf ')\n'
  } > "$work/kas/go.mod"
  (cd "$work/kas" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >&2 &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      -o "$dir/.kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$dir/.kube-apiserver.tmp" "$dir/kube-apiserver"
fi

if ! [ -x "$dir/etcd" ] || ! "$dir/etcd" --version >/dev/null 2>&1; then
  say "building etcd $ETCD_VERSION"
  mkdir "$work/etcd"
  printf 'module local/etcd\n\ngo %s\n' "$gover" > "$work/etcd/go.mod"
  (cd "$work/etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 &&
    CGO_ENABLED=0 go build -trimpath -o "$dir/.etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$dir/.etcd.tmp" "$dir/etcd"
fi

ready || { say "the built control plane does not run"; exit 1; }
echo "$dir"
