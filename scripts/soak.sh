#!/usr/bin/env bash
# Long run, as an operator runs it (BENCHMARKS.md, "Long run"): separate processes on 127.0.0.1, the simulator
# with short sessions (150 ms blocks, 4 blocks per session: a session every 0.6 s), `relay-miner run` and the
# load generator. Every 30 s it prints each node's resident memory and data directory size, the redb files' size
# and the claims submitted so far; at the end, the first and last samples and the growth per minute. What grows
# with the number of sessions served shows up here within minutes.
#
#   scripts/soak.sh [minutes (10)] [relays per second (300)] [binary (target/release/relay-miner)]
#   SOAK_STORAGE=raft scripts/soak.sh ...     # three `run` processes replicating over raft instead of one
#
# Uses the simulator's fixed ports (9090, 26657, 8545), relay ports from 8080, metrics/health ports from 9091
# and raft ports from 7001: stop a running localnet first.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
rate=${2:-300}
bin=${3:-target/release/relay-miner}
storage=${SOAK_STORAGE:-embedded}
case "$storage" in
  embedded) nodes=1 ;;
  raft) nodes=3 ;;
  *) echo "SOAK_STORAGE: '$storage' is neither embedded nor raft" >&2; exit 2 ;;
esac
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
printf 'soak-cluster-token-0123456789abcdef\n' >"$dir/token"
chmod 600 "$dir/keys.yaml" "$dir/token"
peers=""
for i in $(seq "$nodes"); do peers+="${peers:+, }\"$i=127.0.0.1:$((7000 + i))\""; done

# Node i: relays on 8079+i, metrics and health on 9090+i, data in $dir/node-i.
config() {
  local i=$1 raft=""
  if [ "$storage" = raft ]; then
    raft="  raft:\n    node_id: $i\n    listen_addr: 127.0.0.1:$((7000 + i))\n    peers: [$peers]\n    cluster_token_file: $dir/token\n"
  fi
  sed -e "s#^listen_addr: .*#listen_addr: 127.0.0.1:$((8079 + i))#" \
    -e "s#mode: embedded#mode: $storage#" \
    -e "s#data_dir: .*#data_dir: $dir/node-$i\n$raft#" \
    -e "s#keys_file: .*#keys_file: $dir/keys.yaml#" \
    -e "s#^  addr: 127.0.0.1:9091#  addr: 127.0.0.1:$((9090 + i))#" \
    -e "s#^  addr: 127.0.0.1:8081#  addr: 127.0.0.1:$((9090 + i))#" \
    -e 's/level: info/level: warn/' config/relay-miner.sim.yaml >"$dir/run-$i.yaml"
}

"$bin" sim --genesis "$dir/genesis.yaml" --block-time-ms 150 >"$dir/sim.log" 2>&1 &
pids+=($!)
run_pids=()
for i in $(seq "$nodes"); do
  config "$i"
  "$bin" run --config "$dir/run-$i.yaml" >"$dir/run-$i.log" 2>&1 &
  pids+=($!)
  run_pids+=($!)
done
for i in $(seq "$nodes"); do
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$((9090 + i))/ready" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$((9090 + i))/ready" >/dev/null || { echo "node $i not ready; see $dir/run-$i.log" >&2; exit 1; }
done
"$bin" loadgen --genesis "$dir/genesis.yaml" --rate "$rate" --duration-secs $((minutes * 60)) >"$dir/loadgen.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")

# One line: seconds, then per node RSS and data dir (MB), then the redb files (all nodes) and claims (all nodes).
sample() {
  local out="$1" redb claims=0 i
  for i in $(seq "$nodes"); do
    local rss data c
    rss=$(awk '/^VmRSS/{print $2}' "/proc/${run_pids[$((i - 1))]}/status")
    data=$(du -sk "$dir/node-$i" | awk '{print $1}')
    c=$(curl -s "http://127.0.0.1:$((9090 + i))/metrics" | awk '/^ha_miner_claims_submitted_total/{s+=$NF} END{print s+0}')
    claims=$((claims + c))
    out+=$(awk -v i="$i" -v rss="$rss" -v data="$data" 'BEGIN{printf "  node%d RSS %6.1f MB data %6.1f MB", i, rss / 1024, data / 1024}')
  done
  redb=$(find "$dir" -name '*.redb' -printf '%s\n' | awk '{s+=$1} END{printf "%.1f", s / 1048576}')
  echo "$out  redb $redb MB  claims $claims"
}

# Growth is measured from the first sample after two minutes of load (start-up and the first sessions fill
# what any run holds).
start=$(date +%s)
first=""
while kill -0 "$load_pid" 2>/dev/null; do
  now=$(($(date +%s) - start))
  line=$(sample "$(printf '%6d s' "$now")")
  echo "$line"
  if [ "$now" -ge 120 ]; then first=${first:-$line}; fi
  sleep 30
done
last=$(sample "$(printf '%6d s' $(($(date +%s) - start)))")
echo "$last"
echo "load: $(tail -1 "$dir/loadgen.log")"
# What the money metrics say at the end, per node: losses by reason, what the chain settled, and what the miner
# skipped or could not read (the sessions of the last seconds are still open: their claims are not settled yet).
for i in $(seq "$nodes"); do
  curl -s "http://127.0.0.1:$((9090 + i))/metrics" | awk -v i="$i" '
    /^ha_miner_upokt_lost_total\{/ { match($0, /reason="[^"]*"/); lost[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
    /^ha_miner_claims_settled_by_status_total\{/ { match($0, /status="[^"]*"/); settled[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
    /^ha_miner_claims_skipped_total\{/ { match($0, /reason="[^"]*"/); skipped[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
    /^ha_miner_relays_rejected_total\{/ { rejected += $NF }
    END {
      printf "node%d lost uPOKT:", i; n = 0; for (r in lost) { printf " %s %d", r, lost[r]; n++ } if (!n) printf " none"
      printf "; claims settled:"; n = 0; for (s in settled) { printf " %s %d", s, settled[s]; n++ } if (!n) printf " none"
      printf "; claims skipped:"; n = 0; for (s in skipped) { printf " %s %d", s, skipped[s]; n++ } if (!n) printf " none"
      printf "; relay-log entries not mined: %d\n", rejected
    }'
done
first=${first:-$last}
echo "first: $first"
echo "last:  $last"
awk -v a="$first" -v b="$last" -v n="$nodes" 'BEGIN{split(a,x," "); split(b,y," "); m=(y[1]-x[1]) / 60;
  if (m < 1) { print "RSS growth: needs samples a minute apart after the first two minutes"; exit }
  for (i = 0; i < n; i++) printf "node%d RSS growth: %.2f MB/min over %.1f min\n", i + 1, (y[5+7*i]-x[5+7*i]) / m, m}'
echo "logs: $dir"
