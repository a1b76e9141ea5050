#!/usr/bin/env bash
# A measurement session as bench/README.md's tables were made: every variant of W5 and W1, and
# Postfix beside them, interleaved round by round so that the VM's drift spreads over all of them;
# then W7. Results: one JSON line per run in $OUT/<label>.jsonl (runs of the shared harness,
# Postfix's and our W5 and W1 through it: $OUT/<label>.dirs, their result directories);
# `node bench/session-report.mjs $OUT` prints the medians.
# ROUNDS=3 OUT=/tmp/impulse-session SHARED=../shared/bench (the shared harness: Postfix, and us through it).
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/impulse-session}
SHARED=$(cd "${SHARED:-../shared/bench}" && pwd)
mkdir -p "$OUT"
SHAPING="{\"shaping_rules_files\": [\"$PWD/config/shaping/providers.yaml\"]}"
CLUSTER='{"cluster_max_outbound_connections": 1000, "cluster_outbound_throttle_messages": "1000000/1"}'
W5_HOSTS=$(seq -s, -f '127.0.0.%g' 10 59)
W5_SINK="SINK_ARGS=--greet-delay 150 --data-delay 400"

impulse() { local label=$1; shift; echo "[$(date +%T)] $label" >&2; node bench/run.mjs "$@" 2>>"$OUT/$label.err" | tail -1 >> "$OUT/$label.jsonl"; }
# A run of the shared harness, `shared <label> <runner script> VAR=value...`: its result directory
# is listed in $OUT/<label>.dirs.
shared() {
  local label=$1 runner=$2; shift 2; echo "[$(date +%T)] $label" >&2
  local dir="$OUT/$label-$(date +%s)"
  (cd "$SHARED" && env "$@" OUTDIR="$dir" bash "$runner" > "$OUT/$label.log" 2>&1) && echo "$dir" >> "$OUT/$label.dirs"
}
postfix() { local label=$1; shift; shared "$label" run-postfix.sh "$@"; }
# Impulse as run-cmd.sh's relay (bench/harness-relay.mjs): the injector, sink and CPU monitor that
# measure Postfix measure us.
harness() { local label=$1; shift; shared "$label" run-cmd.sh LABEL=impulse RELAY_CMD="node $PWD/bench/harness-relay.mjs" "$@"; }

node scripts/setup.mjs >&2 || exit 1
# The VM's speed for JavaScript, before and after: its drift within the session shows here.
node bench/yardstick.mjs >> "$OUT/yardstick.jsonl"
# 80% of this session's W5 rate, from a first run of its own.
impulse calibration W5
RATE=$(node -e "const l=require('fs').readFileSync('$OUT/calibration.jsonl','utf8').trim().split('\n').pop(); console.log(Math.round(JSON.parse(l).e2e_msg_s * 0.8))")
for ((round = 1; round <= ROUNDS; round++)); do
  impulse w5 W5
  impulse w5-warm W5 --warm 10000
  postfix w5-postfix N=10000 DOMAINS=500 SINK_HOSTS="$W5_HOSTS" "$W5_SINK"
  impulse w5-dkim-rsa W5 --dkim rsa
  impulse w5-dkim-ed25519 W5 --dkim ed25519
  postfix w5-postfix-tuned N=10000 DOMAINS=500 SINK_HOSTS="$W5_HOSTS" "$W5_SINK" POSTFIX_MAIN_EXTRA=default_process_limit=500
  harness w5-harness N=10000 DOMAINS=500 SINK_HOSTS="$W5_HOSTS" "$W5_SINK"
  impulse w5-shaping W5 --config "$SHAPING"
  impulse w5-mta-sts W5 --mta-sts
  impulse w5-single W5 --redis single
  impulse w5-cluster-limits W5 --redis single --config "$CLUSTER"
  impulse w5-nodes2 W5 --nodes 2
  impulse w5-rate80 W5 --rate "$RATE"
  impulse w5-rate80-normal W5 --rate "$RATE" --config '{"connection_allocation_aggressiveness": "normal"}'
  impulse w1 W1
  impulse w1-warm W1 --warm 10000
  postfix w1-postfix N=20000 DOMAINS=50
  harness w1-harness N=20000 DOMAINS=50
  impulse w1-dkim-rsa W1 --dkim rsa
  impulse w1-dkim-ed25519 W1 --dkim ed25519
  impulse w1-shaping W1 --config "$SHAPING"
  impulse w1-mta-sts W1 --mta-sts
  impulse w1-single W1 --redis single
  impulse w1-cluster-limits W1 --redis single --config "$CLUSTER"
  impulse w1-nodes2 W1 --nodes 2
done
for ((round = 1; round <= ROUNDS; round++)); do impulse w7 W7; done
node bench/yardstick.mjs >> "$OUT/yardstick.jsonl"
node bench/session-report.mjs "$OUT"
