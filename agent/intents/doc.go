// Package intents is one node's intent service: the durable intent store in the data
// directory, the /v1/intents HTTP API, and fleet-wide dissemination over gossip.
//
// Contract:
//
//   - New(Config) loads the trusted keys and the store; it starts nothing.
//   - The caller registers the service with gossip before gossip runs:
//     g.Register(gossip.KindIntents, svc.HandleMessage, svc) — HandleMessage and
//     MergeRemoteState never block (they enqueue; drops are counted and repaired by
//     anti-entropy).
//   - Register(mux) adds the HTTP routes; the caller wraps write routes with auth.
//   - Run(ctx) owns the service's goroutines (receive loop, two senders, tombstone GC)
//     and returns after they exit.
//   - Apply answers only after every accepted intent is fsynced (file, then directory).
//     Versions only go up: a record equal to or older than the stored one is ignored,
//     whoever sends it.
//   - With trusted keys, every intent — from the API or from a peer — must carry a
//     valid signature by one of them, covering its version; rejected peer versions are
//     counted (murmur_intents_gossip_rejected_total) and logged once per name@version.
//   - A signed intent or delete is stored at the version its signature covers, never a
//     minted one; the API refuses (409) one that is not above the version held for the
//     name, so an older signed record is never accepted again, through any node
//     (docs/intents.md, "Signed intents and replay").
//
// Dissemination: the accepting node broadcasts {name, version, hash} (msgAnnounce)
// and also sends, over reliable messages to up to Config.EagerPushNodes alive members,
// the record itself when it is small (≤ Config.EagerPushBytes) or the announcement
// when it is large. Receivers with an older version fetch the body from the announcer
// (msgFetch → msgRecords), verify and store it, and acknowledge it to the origin
// (msgAck), which is how WaitFleet (?wait=fleet) knows who has it. The push/pull
// digest (name → version for every record, tombstones included) lets a node that
// missed anything fetch it from the peer it exchanged with.
//
// Imports: agent/api, gossip (types only), policy, and libraries.
package intents
