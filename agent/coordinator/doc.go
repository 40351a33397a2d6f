// Package coordinator connects placement end to end: the region coordinator's
// leader-only loop (fleet view + intents + the Raft table → scheduler.Plan → commit →
// deliver from the applied state) and each node's side of it (apply assignments,
// run them through the supervisor, report back).
//
// # The coordinator (Coordinator)
//
// Every node runs one; it works only while its node leads the region's Raft group.
// The caller (the agent) must:
//
//  1. Build it with New before anything runs: the region's Raft node, the gossip fleet
//     view, the intent store, a Send function that reaches any node of the fleet (the
//     agent: gossip's reliable TCP channel, a direct call for itself), the clock, and
//     ViewReady (the agent: a majority of the region's voters alive in its view).
//  2. Run it with a context that ends before the region's Raft node stops. Run follows
//     leadership like Nomad's monitorLeadership: on winning it starts a leader loop,
//     on losing it (or when the term changes) it stops the loop and waits for it.
//  3. Pass every Report that arrives for this node to HandleReport (it never blocks).
//  4. Serve View to readers (GET /v1/workloads): it is nil-safe and lock-free.
//
// The leader loop, in order, every time (like etcd raft's Ready loop: persist, send,
// apply, never out of order):
//
//  1. Barrier, once per term, so it plans on everything its predecessor committed.
//  2. Wait for a change: membership or a record (gossip Subscribe), an intent (store
//     Changed), a report that changes an instance's state, Result.RecheckAt, a resend
//     that is due, or the safety tick (5 s).
//  3. If the fleet view cannot be trusted yet (ViewReady false), deliver only; never
//     plan. For 30 s after the view is first ready, a node holding placements but
//     missing from the view counts as suspect, not gone (a restarted node never hears
//     of nodes already dead); so does a member whose load record has not arrived. A
//     placement of a workload the intent store does not hold is kept as it is: only a
//     tombstone proves a workload deleted.
//  4. Build the input with BuildInput (pure, golden-tested): nodes of the region with
//     status, capacity (minus reserve), load, labels, drivers, drain flags; the
//     Workload intents that target the region and that its Policies admit (admission
//     is checked again here, whichever node accepted the intent); the table joined
//     with the nodes' reports, each instance with its measured usage (the offload
//     rule counts a move at max(request, usage)); the offload bookkeeping (UpdateHot).
//     While an offload rule is in force, a node's load also counts the instances its
//     load record cannot show yet (assigned, starting, or started less than
//     UsageSettle ago without a CPU figure), at their request or what the instance
//     they replace used: otherwise a neighbour that just took one hot node's work
//     looks empty for ~10 s and takes the next hot node's too.
//  5. Plan. A non-empty result is committed as one OpPlan entry whose Base is the
//     table's generation (the FSM refuses a stale plan; plan again). Migrations are
//     two-phase: the new placement records what it Replaces; the old one is left out
//     of the input while its replacement's node is up, and stopped (Handovers) in the
//     plan after the replacement is reported running (for a workload with a health
//     check, "running" means its first probe passed; until then it is "starting").
//  6. Deliver: read the applied state (never the plan in memory), group it by node,
//     and send each node whose acknowledged digest differs its whole set. Retry with
//     backoff (500 ms doubling to 4 s) until the node acknowledges it in a report or
//     gossips the digest at the generation sent or later. A new leader contacts every
//     node once, so each reports to it.
//
// # The node side (Local)
//
// Every node runs one. The caller must build it with NewLocal once its supervisor
// exists, route every message of the assignment channel to HandleMessage, call
// NotifyInstances from the supervisor's OnChange, and Run it. Local:
//
//   - refuses an assignment for another node or region, or older than the one it
//     applied (cluster, term, generation);
//   - persists it (assignment.json, fsync) before acting on it;
//   - resolves each instance into a runtime.InstanceSpec from the local intent store:
//     an instance the supervisor already runs keeps its spec; a new one waits until
//     the store holds the assigned version (or a newer one). A half-known spec is
//     never started;
//   - hands the whole set to the supervisor (which persists it and adopts what it
//     finds), gossips "<digest>@<generation>" under StateKeyApplied, and reports its
//     instances (in order, newest wins) to the coordinator, on every change and every
//     10 s;
//   - on start, re-applies the persisted assignment: a node rebooted without network
//     runs its last known instances, except exclusive ones;
//   - runs an exclusive workload's instances only under a lease renewed through the
//     coordinator, stops them before it ends, and after a lapse or a reboot starts
//     them only from an assignment at least as new as its next grant (lease.go).
//
// Imports: agent/region, agent/intents, gossip, policy, scheduler, runtime. Nothing
// but the agent imports it.
package coordinator
