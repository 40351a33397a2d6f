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
//	murmur-bench workloads host --bin bin/murmur --nodes 5 --trials 20
//	murmur-bench workloads coordinator --bin bin/murmur --nodes 5 --trials 20
//	murmur-bench workloads apply --bin bin/murmur --nodes 5 --trials 20
//	murmur-bench workloads apply --bin bin/murmur --nodes 10 --workloads 100 --replicas 3
//	murmur-bench sim --nodes 100 --regions 2 [--duration 20s] [--loss 0.01] [--latency 1ms] [--dilation K] [--results FILE]
//	murmur-bench plot --results FILE [--out DIR]
//
// The workloads subcommands run exec Workloads (default /bin/sleep 3600) and observe
// them two ways: in a node's GET /v1/workloads and in the process table (live
// processes whose cwd is an instance directory under the run's temp dir). host and
// coordinator keep a standing set (default 2 Workloads with one replica per node) and
// power a host off per trial: SIGKILL of its agent and of its instances' process
// groups; then they restart it (same name, data dir and ports) and wait until the
// fleet has settled. apply POSTs Workloads and deletes them again per trial. Each run
// ends with murmur_assignment_delivery_seconds summed over the agents, its p50/p99
// estimated from the buckets.
//
// Contract: every process the tool starts is killed before it returns, on success, on
// error and on SIGINT/SIGTERM (the signal cancels a context; the fleet's Close runs
// deferred), agents first, then every workload instance they started. Agents also get
// PR_SET_PDEATHSIG=SIGKILL so they die if the tool itself is SIGKILLed; workload
// instances do not (the exec driver detaches them on purpose): after a SIGKILL of the
// tool they are the processes whose cwd is under its /tmp/murmur-bench-* directory.
// Every wait is bounded by a timeout. Only 127.0.0.1 is used. Gossip ports are picked
// free for TCP and UDP, with port+1 (Raft) free as well, from the kernel's ephemeral
// range or, with --port-base, counting up from that base.
//
// sim is the exception to all of the above: it runs N full agents inside this process
// (package agent with Deps for an in-memory gossip network, an in-memory Raft network
// and runtime.SimDriver), talks to them through their HTTP APIs on 127.0.0.1 and
// times intent arrival with Deps.OnIntentStored. It launches no process. It measures
// gossip bytes per node (the in-memory transport counts them), idle CPU and heap per
// agent, intent dissemination to 99/99.9/100 % of the nodes, failure detection and
// host death → instances running elsewhere, and ends with one line for scripts:
//
//	sim: nodes=N regions=R dilation=K detect_p99_ms=N intent_p999_ms=N gossip_bytes_per_node_s=N failover_p99_ms=N
//
// With --dilation K every protocol timer runs K times slower and every figure is in
// that dilated time, for fleets two cores cannot run in real time (0 picks K from
// --nodes). With --results FILE it also appends every figure of the run, its settings,
// commit and time as one JSON line to FILE (simResult in results.go documents the
// fields); the file is opened before the fleet starts, so a path that cannot be
// written costs no run.
//
// plot reads such a file and draws each figure against N into --out (default: the
// file's directory): detection.png, intent.png, gossip_bytes.png, failover.png,
// cpu.png and heap.png, one point per run labelled with its K, a line through the
// median at each N, a log x axis when N spans 10× or more and a dashed line at the
// issue's goal where there is one; and figures.md, a markdown table with one row per
// run followed by the PNGs. It uses gonum.org/v1/plot and launches nothing.
//
// The other subcommands are a benchmark harness, not product code: they import no
// murmur package and talk to agents only through their HTTP API (GET /v1/members, GET /v1/regions, GET /metrics,
// GET /v1/workloads, GET, POST and DELETE /v1/intents) and /proc.
package main
