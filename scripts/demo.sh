#!/usr/bin/env bash
# make demo: a local fleet of 5 murmur agents on loopback, shown live until Ctrl-C.
# Every process this script starts is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MURMUR_BIN:-bin/murmur}
N=${DEMO_NODES:-5}
DIR=${DEMO_DIR:-.demo}
BASE=${DEMO_BASE_PORT:-17946}
HTTP_BASE=${DEMO_HTTP_PORT:-17070}
REFRESH=${DEMO_REFRESH:-2}

[ -x "$BIN" ] || { echo "demo: $BIN not found; run 'make build' first" >&2; exit 1; }
rm -rf "$DIR" && mkdir -p "$DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping ${#pids[@]} agents (graceful leave)"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give them 15 s to leave gracefully, then SIGKILL whatever is left.
  for _ in $(seq 1 75); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  echo "demo: all agents stopped; logs and data are in $DIR/"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

regions=(site-a site-a site-a site-b site-b)
seed="127.0.0.1:$BASE"
# Start the seed last: the others retry --join in the background until it answers.
order=()
for ((i = 2; i <= N; i++)); do order+=("$i"); done
order+=(1)
for i in "${order[@]}"; do
  port=$((BASE + (i - 1) * 10))
  region=${regions[$(((i - 1) % ${#regions[@]}))]}
  "$BIN" agent --name "node-$i" --region "$region" \
    --bind "127.0.0.1:$port" --http "127.0.0.1:$((HTTP_BASE + i - 1))" \
    --join "$seed" --data-dir "$DIR/node-$i" --capacity cpu=500m,memory=256Mi \
    --label "demo=yes" --label "zone=$region-z$((i % 2))" \
    >"$DIR/node-$i.log" 2>&1 &
  pids+=($!)
done
echo "demo: started $N agents (HTTP APIs on 127.0.0.1:$HTTP_BASE..$((HTTP_BASE + N - 1)), logs in $DIR/)"

api="127.0.0.1:$HTTP_BASE"
ready=0
for _ in $(seq 1 50); do
  "$BIN" status --addr "$api" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.2
done
if [ "$ready" = 0 ]; then
  echo "demo: node-1 did not answer on $api within 10 s; its log:" >&2
  tail -20 "$DIR/node-1.log" >&2
  exit 1
fi
INTENTS=${DEMO_INTENTS:-testdata/demo/intents.yaml}
if [ -f "$INTENTS" ]; then
  echo "demo: pushing $INTENTS to node-1 and waiting until every node stored it"
  "$BIN" apply --addr "$api" --wait -f "$INTENTS" 2>&1 | sed 's/^/demo:   /' || true
fi

echo "demo: try 'bin/murmur members --addr $api' or 'curl $api/metrics' in another terminal; Ctrl-C stops the fleet"
rounds=${DEMO_ROUNDS:-0} # 0 = until Ctrl-C
r=0
while :; do
  r=$((r + 1))
  printf '\n== %s  members as node-1 sees them\n' "$(date +%T)"
  "$BIN" members --addr "$api" || true
  printf -- '-- regions (coordinators elected by Raft per region)\n'
  "$BIN" get regions --addr "$api" || true
  printf -- '-- intents as node-5 stores them (pushed to node-1)\n'
  "$BIN" get intents --addr "127.0.0.1:$((HTTP_BASE + N - 1))" || true
  if [ "$rounds" -gt 0 ] && [ "$r" -ge "$rounds" ]; then break; fi
  sleep "$REFRESH"
done
