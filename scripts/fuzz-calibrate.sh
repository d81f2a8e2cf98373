#!/usr/bin/env bash
# Measures the fuzz budget of every fuzz target: how many executions it
# completes in CAL (default 10s) on this machine, printed as
# "<package> <target> <executions>" lines for scripts/fuzz-budget.tsv.
#
#   scripts/fuzz-calibrate.sh > scripts/fuzz-budget.tsv
#
# It is the one place a duration-bounded fuzz run is used, and only to read
# the execution counter: if the Go 1.26 coordinator race (golang/go#75804,
# see scripts/test.sh) fails the run at the deadline, the count printed
# before it is still the measurement. A real finding stops the calibration.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp}
CAL=${CAL:-10s}
echo "# package	target	executions in $CAL on $(nproc) cores ($(date -u +%F))"
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . | sort | while read -r f; do
  pkg="./$(dirname "${f#./}")"
  for name in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //'); do
    out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$CAL" -fuzzminimizetime 100x "$pkg" 2>&1) || true
    if printf '%s\n' "$out" | grep -q "Failing input written to"; then
      printf '%s\n' "$out" >&2
      exit 1
    fi
    n=$(printf '%s\n' "$out" | grep -oE 'fuzz: elapsed: [0-9]+s, execs: [0-9]+' | tail -1 | grep -oE '[0-9]+$' || true)
    # At least 1000 executions, whatever the machine.
    [ "${n:-0}" -ge 1000 ] || n=1000
    printf '%s\t%s\t%s\n' "$pkg" "$name" "$n"
  done
done
