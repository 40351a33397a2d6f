// Package gossiptest runs many gossip nodes in one process: an in-memory memberlist
// transport with kill, partition, latency and loss control, and test helpers.
//
// memberlist ships a MockNetwork, but its maps are unsynchronised and its channels
// unbuffered, so a packet to a stopped node blocks the sender forever. This network
// behaves like UDP and TCP on a LAN instead: packets to an unreachable node are lost,
// dials to it fail, and nothing ever blocks.
//
// Imports: gossip (the package under test) only.
package gossiptest
