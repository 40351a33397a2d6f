// Package runtime runs this node's workloads and keeps them alive: the
// drivers (exec, docker) and the local supervisor, murmur's "local
// autonomic manager".
//
// # Contract
//
// The agent translates intents and placements into InstanceSpecs and calls
// Supervisor.SetDesired with the node's whole desired set whenever it
// changes. The supervisor persists the set (atomic write + fsync) and
// reconciles continuously: it starts what is missing, stops what is extra,
// restarts exited instances per restart policy with exponential backoff
// (BackoffBase, doubling, capped by restart.maxBackoff, reset after a run of
// StableAfter), probes health (http, tcp, exec) and restarts instances that
// fail FailureThreshold probes in a row. A spec that cannot run (missing
// binary or image, bad limits, unknown driver) makes that instance failed
// with the reason; everything else keeps running.
//
// Lifecycle: New starts nothing (it loads the persisted desired set). Run
// adopts instances that survived an agent restart (docker: by labels; exec:
// by pid plus process start time and boot id, so a recycled pid is never
// adopted), starts the rest, and reconciles until its context ends; it
// returns after all its goroutines exited and leaves the instances running.
// StopAll stops everything (drain, tests).
//
// Reports: Instances (state, restarts, last exit code, error, limits note,
// usage) and Usage (sum of milli-CPU and memory, for the node's load
// record). OnChange is called after changes and must not block.
//
// Logs: Supervisor.Logs sends an instance's stdout and stderr through its
// driver (LogReader): the last lines and bytes that exist, then, to follow,
// new output until the instance's current run ends. Exec reads the files in
// the instance's directory (polled on the Clock), docker the engine's log.
//
// DetectDrivers reports the drivers that work here (exec always; docker
// when the engine answers a ping).
//
// Exec driver: argv without a shell, own process group, no Pdeathsig and
// output to files (never pipes) so instances survive the agent. Leased
// (at-most-once) instances are the exception: their lease ends with the
// agent, so they get Pdeathsig SIGKILL, and a restarted supervisor never
// starts them from the persisted desired set (it stops any it finds). CPU and
// memory limits use cgroup v2 when murmur can create groups under
// <root>/murmur/<node>; otherwise every handle and status carries
// "limits not enforced: <reason>".
//
// Docker driver: containers labelled murmur.owner/node/intent/instance/
// generation/spec-hash, restart policy "no", NanoCPUs and Memory from the
// spec, usage from engine stats, never pulls (a missing image is the
// instance error "image X not present on node N").
//
// Imports: standard library, docker client, prometheus client,
// golang.org/x/sys/unix. No other murmur package.
package runtime
