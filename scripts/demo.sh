#!/usr/bin/env bash
# make demo: a local fleet of 5 murmur agents on loopback, shown live until Ctrl-C.
#
#   scripts/demo.sh               start the fleet, push testdata/demo/intents.yaml, show
#                                 members, regions and which node runs what until Ctrl-C,
#                                 then stop every agent and workload instance of the demo
#   scripts/demo.sh kill node-N   from a second terminal: node N loses power (SIGKILL its
#                                 agent and every workload instance it runs)
#   scripts/demo.sh start node-N  from a second terminal: start node N again, same flags
#
# Both terminals must see the same DEMO_* variables and MURMUR_BIN: kill and start find
# the fleet through $DEMO_DIR (pid files, data dirs) and the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MURMUR_BIN:-bin/murmur}
N=${DEMO_NODES:-5}
DIR=${DEMO_DIR:-.demo}
BASE=${DEMO_BASE_PORT:-17946}
HTTP_BASE=${DEMO_HTTP_PORT:-17070}
REFRESH=${DEMO_REFRESH:-2}
REGIONS=(site-a site-a site-a site-b site-b)

die() {
  echo "demo: $*" >&2
  exit 1
}

region_of() { echo "${REGIONS[$((($1 - 1) % ${#REGIONS[@]}))]}"; }
gossip_addr() { echo "127.0.0.1:$((BASE + ($1 - 1) * 10))"; }
http_addr() { echo "127.0.0.1:$((HTTP_BASE + $1 - 1))"; }

# start_node I starts node-I's agent in the background and writes its pid to
# $DIR/node-I.pid. Its flags depend on I alone, so 'start node-I' repeats them. Every
# node joins node-1 and node-2 (an agent skips its own address): all joins go through
# the same two nodes, so the fleet is one, whichever of them is up first or comes back.
start_node() {
  local i=$1 region j
  region=$(region_of "$i")
  local args=(agent --name "node-$i" --region "$region"
    --bind "$(gossip_addr "$i")" --http "$(http_addr "$i")"
    --data-dir "$DIR/node-$i" --capacity cpu=500m,memory=256Mi
    --label "demo=yes" --label "zone=$region-z$((i % 2))")
  for ((j = 1; j <= 2 && j <= N; j++)); do args+=(--join "$(gossip_addr "$j")"); done
  "$BIN" "${args[@]}" </dev/null >>"$DIR/node-$i.log" 2>&1 &
  echo "$!" >"$DIR/node-$i.pid"
}

# agent_pid I prints the pid of node-I's agent and succeeds while it runs: the pid in
# its pid file, as long as that process's command line names node-I's data dir (a
# reaped, zombie or recycled pid does not).
agent_pid() {
  local f="$DIR/node-$1.pid" pid args
  [ -f "$f" ] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  [[ "$args " == *" agent "*" --data-dir $DIR/node-$1 "* ]] || return 1
  echo "$pid"
}

# wait_ready I waits up to 10 s for node-I's API to answer.
wait_ready() {
  local _
  for _ in $(seq 1 50); do
    "$BIN" status --addr "$(http_addr "$1")" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# kill_instances I [rm] SIGKILLs the workload instances node-I runs, as a power cut
# would: the process group of every exec instance (each runs in its own group, pid and
# start time in runtime/exec/<id>/handle.json), and the docker containers that node-I's
# driver labelled (murmur.node) and that are in node-I's desired set (runtime/
# desired.json), since other fleets on this host may also have a node-I. With rm, the
# containers are removed too (exited ones included).
kill_instances() {
  local i=$1 rm=${2:-} h pid tick now n=0 ids line all=()
  for h in "$DIR/node-$i"/runtime/exec/*/handle.json; do
    [ -f "$h" ] || continue
    pid=$(grep -o '"pid": *[0-9]*' "$h" | head -1 | cut -d: -f2 | tr -d ' ' || true)
    tick=$(grep -o '"startTick": *[0-9]*' "$h" | head -1 | cut -d: -f2 | tr -d ' ' || true)
    [ -n "$pid" ] || continue
    if [ -n "$tick" ] && [ -r "/proc/$pid/stat" ]; then
      # Field 22 of /proc/PID/stat (the 20th after "PID (comm) ") is the start time.
      now=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20 || true)
      [ "$now" = "$tick" ] || continue
    fi
    kill -KILL -- "-$pid" 2>/dev/null && n=$((n + 1))
  done
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ids=" $(grep -o '"id": *"[^"]*"' "$DIR/node-$i/runtime/desired.json" 2>/dev/null | cut -d'"' -f4 | tr '\n' ' ' || true) "
    [ -z "$rm" ] || all=(--all)
    while read -r line; do
      [ -n "$line" ] || continue
      [[ "$ids" == *" ${line#* } "* ]] || continue
      if [ -n "$rm" ]; then
        docker rm --force "${line%% *}" >/dev/null 2>&1 && n=$((n + 1))
      else
        docker kill "${line%% *}" >/dev/null 2>&1 && n=$((n + 1))
      fi
    done < <(docker ps "${all[@]}" --filter label=murmur.owner=murmur --filter "label=murmur.node=node-$i" \
      --format '{{.ID}} {{.Label "murmur.instance"}}' 2>/dev/null || true)
  fi
  echo "demo: node-$i: killed $n workload instance(s)"
}

# node_arg NAME checks a node-N (or N) argument and prints N.
node_arg() {
  local i=${1#node-}
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$N" ] ||
    die "'$1' is not a node of the demo: use node-1 .. node-$N"
  echo "$i"
}

[ -x "$BIN" ] || die "$BIN not found; run 'make build' first"

case "${1:-}" in
kill)
  [ $# -eq 2 ] || die "usage: $0 kill node-N"
  i=$(node_arg "$2")
  if pid=$(agent_pid "$i"); then
    kill -KILL "$pid"
    for _ in $(seq 1 50); do agent_pid "$i" >/dev/null || break; sleep 0.1; done
    echo "demo: node-$i: agent (pid $pid) killed"
  else
    echo "demo: node-$i: no agent runs (pid file $DIR/node-$i.pid)"
  fi
  kill_instances "$i"
  echo "demo: its region's coordinator replaces its instances on the other nodes; '$0 start node-$i' brings it back"
  exit 0
  ;;
start)
  [ $# -eq 2 ] || die "usage: $0 start node-N"
  i=$(node_arg "$2")
  [ -d "$DIR/node-$i" ] || die "no demo data in $DIR/node-$i: run '$0' (or 'make demo') first"
  if pid=$(agent_pid "$i"); then die "node-$i already runs (pid $pid)"; fi
  start_node "$i"
  wait_ready "$i" || die "node-$i did not answer on $(http_addr "$i") within 10 s; see $DIR/node-$i.log"
  echo "demo: node-$i started again (pid $(<"$DIR/node-$i.pid"), API $(http_addr "$i")); it rejoins the fleet with its last assignments"
  exit 0
  ;;
"") ;;
*) die "usage: $0 [kill node-N | start node-N]" ;;
esac

for ((i = 1; i <= N; i++)); do
  if pid=$(agent_pid "$i"); then
    die "a demo already runs in $DIR (node-$i, pid $pid): stop it, or set DEMO_DIR and the ports for another"
  fi
done
rm -rf "$DIR" && mkdir -p "$DIR"

stopping=0
cleanup() {
  trap - INT TERM EXIT
  [ "$stopping" = 0 ] || return 0
  stopping=1
  local pids=() i p alive _
  # Read the pid files: a node killed and started again from another terminal has a
  # new pid, and is not a child of this script.
  for ((i = 1; i <= N; i++)); do
    if p=$(agent_pid "$i"); then pids+=("$p"); fi
  done
  echo
  echo "demo: stopping ${#pids[@]} agents (graceful leave)"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give them 15 s to leave gracefully, then SIGKILL whatever is left.
  for _ in $(seq 1 75); do
    alive=0
    for ((i = 1; i <= N; i++)); do agent_pid "$i" >/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for ((i = 1; i <= N; i++)); do
    if p=$(agent_pid "$i"); then kill -KILL "$p" 2>/dev/null || true; fi
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done # reaps the children among them
  # Agents leave their workloads running (they adopt them when they come back); the
  # demo's are stopped with it.
  for ((i = 1; i <= N; i++)); do kill_instances "$i" rm >/dev/null; done
  echo "demo: all agents and their workloads stopped; logs and data are in $DIR/"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

# Start node-1 last: the others retry --join in the background until it answers.
for ((i = 2; i <= N; i++)); do start_node "$i"; done
start_node 1
echo "demo: started $N agents (HTTP APIs on $(http_addr 1)..$(http_addr "$N"), logs in $DIR/)"

if ! wait_ready 1; then
  echo "demo: node-1 did not answer on $(http_addr 1) within 10 s; its log:" >&2
  tail -20 "$DIR/node-1.log" >&2
  exit 1
fi
INTENTS=${DEMO_INTENTS:-testdata/demo/intents.yaml}
if [ -f "$INTENTS" ]; then
  echo "demo: pushing $INTENTS to node-1 and waiting until every node stored it"
  "$BIN" apply --addr "$(http_addr 1)" --wait -f "$INTENTS" 2>&1 | sed 's/^/demo:   /' || true
fi

echo "demo: in another terminal: '$0 kill node-2' cuts node-2's power, '$0 start node-2' brings it back;"
echo "demo: '$BIN get workloads -o wide --addr $(http_addr 1)' shows who runs what. Ctrl-C stops the fleet"
rounds=${DEMO_ROUNDS:-0} # 0 = until Ctrl-C
r=0
while :; do
  r=$((r + 1))
  # Ask the first node that runs, so the view survives 'kill node-1'.
  v=1
  for ((i = 1; i <= N; i++)); do
    if agent_pid "$i" >/dev/null; then
      v=$i
      break
    fi
  done
  api=$(http_addr "$v")
  printf '\n== %s  the fleet as node-%s sees it\n' "$(date +%T)" "$v"
  "$BIN" members --addr "$api" || true
  printf -- '-- regions (coordinators elected by Raft per region)\n'
  "$BIN" get regions --addr "$api" || true
  for reg in site-a site-b; do
    printf -- '-- %s: instances (get workloads -o wide --region %s), then desired vs running\n' "$reg" "$reg"
    if "$BIN" get workloads -o wide --region "$reg" --addr "$api"; then
      "$BIN" get workloads --region "$reg" --addr "$api" || true
    fi
  done
  if [ "$rounds" -gt 0 ] && [ "$r" -ge "$rounds" ]; then break; fi
  sleep "$REFRESH"
done
