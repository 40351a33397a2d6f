// Package events is one node's stream of decisions with their reasons: every
// placement, replacement, migration, stop, unplaced instance, node death or return,
// coordinator change and headless region becomes an Event, kept in a bounded
// in-memory Ring and served at GET /v1/events (NDJSON or Server-Sent Events).
//
// Contract:
//
//   - NewRing(size, boot, reg) makes the ring; it starts nothing. Sources (the Raft
//     FSM, gossip) call Ring.Add, which never blocks: it takes one mutex for a few
//     memory operations, does no I/O and calls nothing back. Add panics on an
//     invalid Type (a programmer error: use the Type constants).
//   - Event IDs grow across restarts of the agent: id = boot.UnixMilli()*1000 + seq,
//     seq counting from 1 in each run. This holds while the agent adds fewer than
//     1000 events per millisecond of uptime on average and the wall clock is not
//     stepped back between runs; within one run IDs are strictly increasing whatever
//     the clock does. A client that resumes with ?since=<id> after the agent
//     restarted therefore gets every event of the new run. Events of the old run it
//     had not read yet died with that process.
//   - Handler(ring, log) returns the HTTP handler of GET /v1/events. The caller mounts
//     it, wraps it with access control, and calls Server.Close when it shuts the HTTP
//     server down (http.Server.RegisterOnShutdown(s.Close)): Shutdown waits for
//     handlers and does not end streaming ones by itself.
//   - Decoder reads what the handler writes (both formats), for Go clients such as
//     `murmur events`.
//
// The wire formats are written out on Server.
//
// Imports: agent/api (the error envelope) and no other project package.
package events
