// Package scheduler decides where a region's workloads run: placement, rescheduling
// after node death, moving failing instances, offload of hot nodes, reconciliation
// after a partition heals and priority preemption.
//
// # Contract
//
// The package is pure, like etcd's raft core: one entry point, Plan(Input) Result,
// takes a snapshot (nodes, workloads, the placement table, Now and a Seed) and
// returns actions. It reads no clock, starts no goroutines, does no I/O, logs
// nothing and keeps no state between calls: the same Input gives the same Result.
// Everything that must persist between plans (when a node's load breach began,
// when it last offloaded, the placement table itself) is kept by the caller and
// passed in. It may import only the standard library (fmt, math/bits, slices,
// strconv, strings, time for values) and policy, which is pure too (intent
// versions); purity_test.go enforces this.
//
// # The caller's duties (the region coordinator)
//
//  1. Build an Input from the fleet view, the intents and the Raft placement table:
//     - Nodes: every node of the region with its gossip Status (pass dead nodes with
//     DeadSince for as long as their instances may come back; dropping a node from
//     the list makes its records "gone", and they are stopped and replaced), its
//     Capacity, live Load, Labels (zone under "zone"), Drivers and Draining.
//     - Node.LoadHighSince: when the node's load last went above the offload
//     threshold (zero when below). Node.LastMigrationAt: when an offload last moved
//     an instance off it. The caller keeps both between plans (murmur's coordinator
//     commits the second with the plan, so it survives a failover).
//     - Workloads: the intents that target the region, translated (replicas or global
//     mode, driver, resources, constraints, priority, replaceAfter and reconcile rule
//     from spec.disconnect, failure threshold, strategy, spec.exclusive); Offload from
//     the Policy in force, and optionally a region-wide Reconcile rule.
//     - Placements: the table, with each instance's latest reported State, Healthy,
//     consecutive Failures and measured Usage (from its node's reports); plus, for
//     exclusive workloads, a record with Stopping set for each instance whose stop
//     was committed but which its node may still run (not confirmed stopped yet).
//     - Leases: per node, until when it may still run the exclusive instances
//     assigned to it (see Exclusive workloads).
//     - Now (the coordinator's clock), Seed (any number; e.g. the Raft index) and
//     Generation (a number that grows with every applied plan, e.g. the Raft index
//     the plan will be committed at: it is stamped on new placements and in their IDs).
//     Input.Validate reports malformed input with the field to fix.
//  2. Call Plan. It is fast enough to run on every change: a few milliseconds for
//     5,000 nodes and 100,000 instances when little changed.
//  3. If Result.Empty(), nothing to commit. Otherwise commit the actions to the
//     region's Raft log, then carry each out:
//     - ActionPlace: add a placement {Instance, Workload, Node, Version, Generation}
//     and deliver it to Node.
//     - ActionStop: tell Node to stop Instance and remove its record. For an exclusive
//     workload, pass the instance back as a Stopping record for as long as its node
//     still reports it running: a stop with cause drain, ineligible, failing or
//     update is that workload's migration, and the plan made once it has stopped
//     places its successor.
//     - ActionMigrate: add the new placement on Node as for place; once it reports
//     running (or at once, if the coordinator does not track the hand-over), stop
//     Replaces on From and remove its record. Start new before stopping old.
//     For Cause offload, record Now as From's LastMigrationAt.
//     Result.Apply gives the table after all actions (used by tests and by a
//     coordinator that applies a plan in one Raft entry).
//  4. Report Result.Unplaced (its Reason reads like "3 nodes filtered by label
//     camera=yes, 2 by insufficient memory") in status and metrics; the same work is
//     retried by the next plan.
//  5. Plan again when anything in the Input changes (membership, load crossing a
//     threshold, intents, instance states: a surplus instance waits for the instance
//     kept in its place to report running, see Reconciliation), and at
//     Result.RecheckAt if it is set:
//     that is when a dead node's replaceAfter expires, a lost node's lease ends, or a
//     hot node's sustainedFor or cooldown ends. Plans converge: applying a plan and planning again on an
//     unchanged fleet yields an empty plan.
//
// # How a plan is made
//
// Classification: each placement is live (alive or suspect node, or a dead node
// within the workload's ReplaceAfter of DeadSince), lost (dead past ReplaceAfter),
// or stopped at once (workload deleted or not targeting the region, node left or
// gone). Lost records on dead nodes are kept, not stopped, so that after a heal the
// reconcile rule can choose between original and replacement; except a record that
// runs an older version of its workload than the one wanted, which no rule would keep:
// it is stopped (cause update), and a replacement placed beside it supersedes nothing.
// Exclusive workloads and
// Stopping records follow the rules of the next section.
//
// # Exclusive workloads (at most once)
//
// An instance of an exclusive workload (Workload.Exclusive) must never run in two
// places at once, even across a partition. Each node holds a lease, renewed through
// its region's coordinator; a node that cannot renew stops its exclusive instances
// before the lease ends. Input.Leases says until when each node may still run them,
// and the epoch handed to an instance is its Placement.Generation. The planner:
//
//   - Holds an exclusive instance on a dead, left or gone node while the node's
//     lease has not ended: it counts as running, gets no action (no stop, move or
//     replacement), is never surplus, and RecheckAt is set to the lease's end. On a
//     dead node it is lost at max(DeadSince+ReplaceAfter, lease end), on a left or
//     gone node at the lease end; a node without a lease entry behaves as for any
//     workload (dead: after ReplaceAfter; left or gone: at once).
//   - Stops the record of a lost exclusive instance (cause node-gone) in the plan
//     that finds it lost, which is the plan that places its replacement (when one is
//     needed and fits); the replacement carries no Supersedes, since the original is
//     known stopped. The reconcile rule
//     is always keep_replacement, and an original ranks before its replacement
//     wherever either runs, so the replacement is never stopped to keep the original.
//   - Never moves one make-before-break: where another workload's instance would be
//     migrated (drain, ineligible, failing, update), the exclusive one is stopped with
//     the same cause and reason, and nothing is placed for it in that plan. Offload
//     never picks one; a hot node whose candidates are all exclusive is reported in
//     Result.Unplaced.
//   - Never places one while the workload's count is at or above desired (for a
//     global workload: while its node has one). The count includes held instances,
//     Stopping records, and instances stopped in the same plan (a preempted or moved
//     exclusive instance keeps its slot until its stop is confirmed).
//
// A Stopping record counts like a live instance of its workload (a desired slot, and
// its node's resources) for as long as an exclusive instance on its node would
// (above); it never gets an action and is never surplus, and once its node is lost
// and its lease ended it simply stops counting. Surplus (Reconciliation) is judged
// among the other live instances only: held ones are already on their way out.
//
// Reconciliation: where more live instances exist than desired (Replicas, or one
// per node for global workloads), as when a node comes back after its instances were
// replaced, the workload's reconcile rule (Workload.Reconcile, else Input.Reconcile)
// picks the instances to keep: keep_replacement (the default: the newest),
// keep_original (the oldest) or best_score (those on the best-scoring nodes, then the
// newest); "default" is the legacy rule (keep the replacement unless the original is
// healthy and older). Instances on dead nodes go first; then the rule decides each
// pair of an original and the replacement that supersedes it (before a suspicion
// does, so a node suspected for a moment around a heal does not change the outcome);
// then instances on alive nodes are preferred to those on suspect ones. The others
// are stopped, but a stop happens only once the
// survivor is confirmed running: a plan never brings the number of running
// (State running) instances of a workload below min(desired, running now). While a
// kept instance is pending or failed, a running surplus instance stands in for it and
// stays (counted, so nothing is placed in its place); the plan made once the kept
// instance reports running stops it.
//
// Workloads are then handled by priority (highest first), so a higher-priority
// workload claims capacity first and may preempt strictly lower priorities, never
// the reverse. For each: instances on draining nodes, on nodes that no longer pass
// the workload's constraints, past the failure threshold, or running an old
// Version are migrated; missing replicas are placed.
//
// Placement is a chain of named filters, each rejecting a node with a reason:
//
//	static (per node and workload):  node dead | node suspect | node left |
//	    other region | node draining | missing driver D | label k=v
//	dynamic (change as work is placed): current node | insufficient cpu |
//	    insufficient memory | offload threshold | spread across nodes |
//	    spread across zones
//
// Spread caps a node at ceil(replicas / eligible nodes) replicas and a zone at
// ceil(replicas / zones); when no node satisfies the caps they are relaxed rather
// than leaving replicas unplaced. Feasible nodes are ranked by two named scorers,
// blended 0.75/0.25: the strategy (binpack: utilisation of requests after placing;
// spread: one minus it) and load (one minus the higher live load fraction). Ties go
// to the lower seeded node key. Up to 64 eligible nodes every node is scored; above
// that, the planner walks the eligible nodes in seeded order from a per-workload
// rotating cursor and takes the best of the first ceil(log2 n) feasible ones
// (Nomad's limit for service jobs), which keeps a placement O(log n).
//
// Offload: an alive node whose load is above Input.Offload's threshold, with
// LoadHighSince at least SustainedFor ago and LastMigrationAt at least Cooldown
// ago, has one running instance migrated away, one per node per plan. The lowest
// priority goes first; among equal priorities, the smallest instance whose measured
// use (Placement.Usage, or its request when unknown) alone brings the node back under
// the threshold, else the largest. The target must stay at or under the threshold in
// both dimensions with the instance counted at max(request, usage) on top of its live
// load (filter "offload threshold"), so a hot node never receives work, a cool node
// takes work only until it would cross the threshold, and a moved instance never
// makes its target hot and comes back (no ping-pong). When no node qualifies the
// instance stays and Result.Unplaced says why ("cannot offload X: 1 node filtered by
// current node, 2 by offload threshold").
package scheduler
