#!/usr/bin/env bash
# Long run, as an operator runs it (BENCHMARKS.md, "Long run"): three separate processes on 127.0.0.1, the
# simulator with short sessions (150 ms blocks, 4 blocks per session: a session every 0.6 s), `relay-miner run`
# (embedded storage) and the load generator. Every 30 s it prints the `run` process's resident memory, the redb
# file and data directory sizes, and the claims submitted so far; at the end, the first and last samples and the
# growth per minute. What grows with the number of sessions served shows up here within minutes.
#
#   scripts/soak.sh [minutes (10)] [relays per second (300)] [binary (target/release/relay-miner)]
#
# Uses the simulator's fixed ports (9090, 26657, 8545) and 8080/8081/9091: stop a running localnet first.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
rate=${2:-300}
bin=${3:-target/release/relay-miner}
if [ "$bin" = target/release/relay-miner ]; then cargo build --release --quiet --bin relay-miner; fi

dir=$(mktemp -d /tmp/relay-miner-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

sed 's/num_blocks_per_session: 10/num_blocks_per_session: 4/' config/sim-genesis.yaml >"$dir/genesis.yaml"
grep -q 'num_blocks_per_session: 4' "$dir/genesis.yaml" || { echo "genesis: num_blocks_per_session not found" >&2; exit 1; }
# The demo supplier's key (config/relay-miner.sim.yaml's comment).
printf 'keys:\n  - 56f8576343ad8dd84321164fdeb037afbb670c5bf74343b083d5949a6ed4b12e\n' >"$dir/keys.yaml"
chmod 600 "$dir/keys.yaml"
sed -e "s#data_dir: .*#data_dir: $dir/data#" -e "s#keys_file: .*#keys_file: $dir/keys.yaml#" \
  -e 's/level: info/level: warn/' config/relay-miner.sim.yaml >"$dir/run.yaml"

"$bin" sim --genesis "$dir/genesis.yaml" --block-time-ms 150 >"$dir/sim.log" 2>&1 &
pids+=($!)
"$bin" run --config "$dir/run.yaml" >"$dir/run.log" 2>&1 &
run_pid=$!
pids+=("$run_pid")
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:8081/ready >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf http://127.0.0.1:8081/ready >/dev/null || { echo "relay-miner not ready; see $dir/run.log" >&2; exit 1; }
"$bin" loadgen --genesis "$dir/genesis.yaml" --rate "$rate" --duration-secs $((minutes * 60)) >"$dir/loadgen.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")

sample() {
  local rss redb data claims
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$run_pid/status")
  redb=$(stat -c %s "$dir/data/"*.redb 2>/dev/null | awk '{s+=$1} END{print s+0}')
  data=$(du -sk "$dir/data" | awk '{print $1}')
  claims=$(curl -s http://127.0.0.1:9091/metrics | awk '/^ha_miner_claims_submitted_total/{s+=$NF} END{print s+0}')
  awk -v t="$1" -v rss="$rss" -v redb="$redb" -v data="$data" -v claims="$claims" 'BEGIN{
    printf "%6d s  RSS %7.1f MB  redb %6.1f MB  data %6.1f MB  claims %6d\n", t, rss / 1024, redb / 1048576, data / 1024, claims}'
}

start=$(date +%s)
first=""
while kill -0 "$load_pid" 2>/dev/null; do
  line=$(sample $(($(date +%s) - start)))
  echo "$line"
  first=${first:-$line}
  sleep 30
done
last=$(sample $(($(date +%s) - start)))
echo "$last"
echo "load: $(tail -1 "$dir/loadgen.log")"
echo "first: $first"
echo "last:  $last"
awk -v a="$first" -v b="$last" 'BEGIN{split(a,x," "); split(b,y," ");
  printf "RSS growth: %.2f MB/min over %.1f min\n", (y[4]-x[4]) / ((y[1]-x[1]) / 60), (y[1]-x[1]) / 60}'
echo "logs: $dir"
