#!/usr/bin/env bash
# Measures the KBS guest flow two ways in one run and prints the ratio:
#   floor: BenchmarkFlowFloor (in process, no HTTP, all cores), median of COUNT runs
#   load:  kbs-load against a real kbs process on loopback with C clients for DURATION
# Usage: scripts/bench.sh [storage]   storage: Memory (default) | LocalFs | Redis
# Env: C=32 DURATION=20s COUNT=5 KEYALG=ec256
set -euo pipefail
cd "$(dirname "$0")/.."
STORAGE=${1:-Memory}
C=${C:-32}; DURATION=${DURATION:-20s}; COUNT=${COUNT:-5}; KEYALG=${KEYALG:-ec256}
work=$(mktemp -d); trap 'kill $kbs_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/" ./cmd/kbs ./cmd/kbs-client ./cmd/kbs-load

store_cfg="[storage_backend]
storage_type = \"$STORAGE\""
case "$STORAGE" in
  LocalFs) store_cfg="$store_cfg
[storage_backend.backends.local_fs]
dir_path = \"$work/storage\"";;
  Redis) eval "$(scripts/services.sh start)"; export REDIS_URL=$GOTRUSTEE_TEST_REDIS_URL;;
esac
cat > "$work/kbs.toml" <<CFG
[http_server]
sockets = ["127.0.0.1:0"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_service]
type = "coco_as_builtin"
$store_cfg
CFG
# Info level: the audit records of every attestation and release are
# written, as in production.
"$work/kbs" --config-file "$work/kbs.toml" 2>"$work/kbs.log" &
kbs_pid=$!
addr=
for _ in $(seq 200); do
  addr=$(grep -o '"address":"[^"]*"' "$work/kbs.log" 2>/dev/null | head -1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break; sleep 0.1
done
[ -n "$addr" ] || { cat "$work/kbs.log"; echo "kbs did not start" >&2; exit 1; }
url="http://$addr"
echo "bench-secret" > "$work/secret"
"$work/kbs-client" --url "$url" config set-resource --path default/bench/secret --resource-file "$work/secret" >/dev/null
"$work/kbs-client" --url "$url" config set-resource-policy --allow-all >/dev/null

echo "== load: kbs-load -c $C -d $DURATION --key-alg $KEYALG (storage $STORAGE)"
"$work/kbs-load" --url "$url" --path default/bench/secret -c "$C" -d "$DURATION" --key-alg "$KEYALG" --json > "$work/load.json"
cat "$work/load.json"
kill $kbs_pid; wait $kbs_pid 2>/dev/null || true

echo "== floor: go test -bench BenchmarkFlowFloor -count $COUNT ./kbs"
go test -run '^$' -bench '^BenchmarkFlowFloor$' -benchtime 3s -count "$COUNT" ./kbs | tee "$work/floor.txt" | grep Benchmark
python3 - "$work/load.json" "$work/floor.txt" <<'PY'
import json, re, statistics, sys
load = json.load(open(sys.argv[1]))
ns = [float(m.group(1)) for m in re.finditer(r'BenchmarkFlowFloor\S*\s+\d+\s+([\d.]+) ns/op', open(sys.argv[2]).read())]
floor = 1e9 / statistics.median(ns)
fps = load["flows_per_second"]
lat = load["latency_ms"]
print(f"floor median: {statistics.median(ns)/1e3:.0f} us/flow -> {floor:.0f} flows/s (parallel, all cores)")
print(f"load: {fps:.0f} flows/s, ratio {fps/floor*100:.0f}% of floor; p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms p99 {lat['p99']:.1f} ms (p99/p50 {lat['p99']/lat['p50']:.2f}); errors {load['errors']}")
PY
