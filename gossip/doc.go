// Package gossip is murmur's membership and dissemination layer, a wrapper around
// hashicorp/memberlist (SWIM with Lifeguard).
//
// Every node keeps a fleet view: each known node's identity (from memberlist node
// meta: id, region, ports, version, labels, eligibility), its membership status
// (alive | suspect | dead | left) and its latest load-and-health Record (cpu and memory
// load as fractions of capacity, running instances, health, drivers, and small
// key/value State other subsystems publish). Records are versioned by (Epoch, Seq):
// newest replaces older for the same node. A node broadcasts its own record when it
// changes noticeably and at least every heartbeat; receivers that learn a newer record
// re-broadcast it (epidemic spread, as Serf does for user events), and memberlist's
// push/pull exchanges every record so anything missed is repaired.
//
// Extensions (intents, regions) register a MessageKind with a Handler and an optional
// StateExchange. Broadcast spreads small messages (<= MaxBroadcastPayload) to every
// node by gossip, deduplicated per (kind, key, payload); SendReliable sends up to
// MaxReliablePayload to one node over memberlist's TCP stream, encrypted with the
// gossip key when one is set; StateExchange payloads ride on push/pull.
//
// Concurrency contract: memberlist delegate callbacks never block. They copy the
// bytes, enqueue them on a bounded channel, count what is dropped and return; the
// goroutines started by Run decode and act. Handlers run on one dispatch goroutine and
// must return quickly. Members returns an immutable snapshot: callers must not modify
// the maps in it.
//
// Keyring (keyring.go): the gossip keys live in a memberlist Keyring, primary first
// (Config.Keyring, or one made from Config.SecretKey). KeyManager lists, installs, uses
// and removes keys on this node and on every live member over KindKeyring, persisting
// each node's keys (Config.PersistKeys) before its ring changes; Keys reads them.
//
// Lifecycle: New validates and builds; Run creates memberlist, joins the seeds with
// retry and backoff in the background (the node works alone until a seed answers),
// and on context cancellation leaves the cluster gracefully and shuts down.
//
// Imports: no project package.
package gossip
