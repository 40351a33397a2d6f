// Package secure authenticates the TCP connections agents open to each other: the
// region's Raft port (Raft RPCs and its control requests) and gossip's reliable streams
// (intent bodies, assignments, push/pull state).
//
// A connection is authenticated in one of two modes, chosen by the agent's
// configuration; both ends of a fleet must use the same one:
//
//   - Mutual TLS 1.3 (crypto/tls), when the agent has --tls-ca, --tls-cert and
//     --tls-key. Each side verifies the other's certificate chain against the fleet's
//     CA and reads the peer's Identity (node and region) from the certificate's
//     murmur URI SAN (see Identity.URI). The Channel's check decides whether that
//     identity may use it (a Raft port accepts only members of its own region).
//     Certificates and the CA are read again on Source.Reload, so rotation needs no
//     restart; connections already open keep their session.
//   - Gossip-key challenge-response, when the agent has a gossip key and no
//     certificates: both sides prove they know a key of the gossip keyring with
//     HMAC-SHA256 over both nonces and the channel's purpose (see handshake.go). It
//     authenticates the start of the connection, not each byte after it: against an
//     attacker who can rewrite packets on the path, use TLS.
//
// With neither (a loopback fleet, or --insecure), connections pass through unchanged.
//
// Refused connections are counted in murmur_secure_refused_total{channel,reason}.
//
// The package imports no project package; agent wires it into gossip.Config.StreamAuth
// and region.Config.ConnAuth, whose interfaces Channel satisfies.
package secure
