// Package agent composes one murmur node: gossip membership, the intent service, the
// region's Raft group and coordinator, the local supervisor, the HTTP API and metrics.
//
// Lifecycle: New validates a Config and builds the components; it starts nothing. Run
// opens the HTTP listener first (the API answers from the first second, before any
// seed does), starts gossip, joins in the background, samples load every second, and
// on cancellation leaves the fleet gracefully and returns once every goroutine it
// started has exited.
//
// API access (acl.go): tokens with roles read < write < admin from --acl-file and
// --api-token-file; with any token every request needs one, without tokens the API must
// be loopback and is open. Every write request is appended to <data-dir>/audit.log
// (audit.go), served at GET /v1/audit to admin tokens. The dashboard's static files
// (agent/ui, at /ui/) are served without a token: the page sends one with each API call.
//
// Instances' output (instancelogs.go): GET /v1/instances/{id}/logs, from any node. The
// local supervisor serves its own instances; another node's are found in the regions'
// workloads views and fetched over gossip's reliable channel (agent/logs). It needs
// role write: workloads print secrets.
//
// Node load means the same thing when several agents share one host: the usage of
// this node's own workloads plus a fixed reserve, over the node's capacity (given, or
// detected from the host).
//
// Imports: gossip, scheduler, policy, runtime and agent subpackages. Nothing imports
// agent but cmd/murmur.
package agent
