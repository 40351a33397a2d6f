// Package region runs this node's part of its region's Raft group: the group that elects
// the region's coordinator (the Raft leader) and replicates the region's state (the FSM:
// placement table, intent versions acted on, node drain flags).
//
// Contract:
//
//   - New(Config) validates and starts nothing. Run(ctx) opens the stores in
//     <DataDir>/raft, starts the transport and Raft, owns every goroutine it starts and
//     returns after they have all exited. Cancelling ctx is a clean stop: a leader first
//     tries raft.LeadershipTransfer, then Raft is shut down.
//   - The agent feeds the fleet view with UpdatePeers (every membership change and
//     every second; all peers of the fleet, self included). UpdatePeers never blocks.
//   - The agent gossips PublishedState() (gossip.SetState for each key; "" deletes).
//     Everything other nodes need to know (who leads, the voters, the cluster id,
//     whether the region is headless) travels that way; Summarize turns the gossiped
//     state of all peers into the /v1/regions answer without any Raft call.
//   - Voters, bootstrap and autopilot follow documented, deterministic rules: see
//     docs/regions.md and rules.go. Bootstrap follows Consul's bootstrap_expect pattern
//     plus an explicit promise round (tryBootstrap in node.go) so one region never forms
//     two clusters from one view of the fleet.
//   - Apply (leader only) commits one Command (use Batch for a whole plan) and returns its
//     log index, the generation of the placements it made; State() is a deep copy of the
//     applied state; Subscribe() signals leadership and published-state changes.
//   - ApplyCommand (the FSM transition) is a pure function over State, unit-tested
//     without Raft; Restore discards the previous state.
//   - The Raft TCP transport speaks a small handshake carrying the region name. One
//     port (Mux, stream.go) serves every group the node runs: its own region's and the
//     witness groups it runs for regions of two eligible nodes (witness.go; a Node with
//     Config.Witness). A group admits its own region's nodes and, of other regions,
//     only its witnesses; a region the port runs no group of is refused.
//   - A region of exactly two eligible nodes completes its voters with one witness
//     from another region (planAutopilot in rules.go, wantWitnesses, RankWitnesses);
//     the agent runs the groups WitnessDuty says this node should. A witness that
//     wins an election hands the lead to a voter of the region (autopilot.go).
//   - Run (and CheckDataDir, which the agent calls before it joins the fleet) refuses
//     damaged Raft storage with a one-line *DamageError naming the file and the way
//     back (SetAside, `murmur operator rejoin`): every commit batch must match its
//     checksum, and every entry this node applied (its evidence, raft/log-evidence)
//     must still be there. Only a torn last write beyond that evidence is dropped, as
//     raft-wal does (integrity.go, docs/regions.md "Damage to the Raft log").
//   - OpPlan commits one scheduler plan; its Base must be the table's current
//     Generation (optimistic concurrency: a plan made on an old table is refused with
//     ErrStalePlan and planned again). Barrier (leader only) waits until everything
//     committed before it is applied, and a new coordinator calls it before planning.
//
// Allowed imports: the standard library, hashicorp/raft, raft-wal, go-msgpack/v2,
// go-hclog (the slog bridge), prometheus client_golang, the pure scheduler (whose
// Placement is the table's row type) and policy packages, and runtime for its one
// atomic file write (WriteFileAtomic). Not gossip: the agent adapts gossip.Member into
// Peer.
package region
