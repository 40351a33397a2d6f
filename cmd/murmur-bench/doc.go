// Command murmur-bench measures a real murmur fleet on 127.0.0.1: it launches agents
// from a given binary (--bin) in a temporary directory, measures join latency, failure
// detection latency, idle cost, region coordinator failover and handoff, and intent
// dissemination, and prints the figures plus a markdown table.
//
// Subcommands:
//
//	murmur-bench join --bin bin/murmur --nodes 5 --runs 5
//	murmur-bench kill --bin bin/murmur --nodes 5 --kills 20
//	murmur-bench idle --bin bin/murmur --nodes 5 --duration 10m
//	murmur-bench failover --bin bin/murmur --nodes 5 --kills 20
//	murmur-bench handoff --bin bin/murmur --nodes 5 --runs 20
//	murmur-bench intents --bin bin/murmur --nodes 5 --pushes 50 [--size 64Ki]
//
// Contract: every process the tool starts is killed before it returns, on success, on
// error and on SIGINT/SIGTERM (the signal cancels a context; the fleet's Close runs
// deferred). Children also get PR_SET_PDEATHSIG=SIGKILL so they die if the tool itself
// is SIGKILLed. Every wait is bounded by a timeout. Only 127.0.0.1 is used. Gossip
// ports are picked free for TCP and UDP, with port+1 (Raft) free as well.
//
// It is a benchmark harness, not product code: it imports no murmur package and talks
// to agents only through their HTTP API (GET /v1/members, GET /v1/regions, GET /metrics,
// GET and POST /v1/intents) and /proc.
package main
