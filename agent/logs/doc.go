// Package logs carries instances' output from the node that runs them to the API of
// any node: GET /v1/instances/{id}/logs and `murmur logs`.
//
// Two formats live here.
//
// The HTTP body (frame.go) is Docker's multiplexed stream format: frames of an
// 8-byte header (stream type, three zero bytes, payload size as a big-endian
// uint32) and the payload. Type 1 is stdout, 2 stderr, 3 a message from the agent
// ending the stream with an error after the answer's status was sent. FrameReader
// bounds a frame to MaxFrameBytes; it is the decoder of bytes from the network on
// the client's side (fuzzed).
//
// Between agents (wire.go, service.go) the output travels on gossip's reliable
// channel, authenticated like every agent-to-agent stream (mutual TLS or the gossip
// key), so it works when nodes' HTTP APIs are bound to loopback and needs no API
// token of the peer. The protocol is pulled by the asking node: a Pull opens a
// session on the node that runs the instance, which reads the instance's output
// into a bounded buffer; each further Pull acknowledges the last chunk received
// and asks for the next, which the serving node sends as soon as it has output, or
// empty after Hold. A lost pull or answer is sent again (the serving node keeps its
// last chunk until it is acknowledged), so nothing is lost or sent twice; a
// session nobody pulls for Idle ends and stops reading. Messages are checked on
// decoding (fuzzed).
//
// Contract: New starts nothing; Run owns every goroutine of the sessions this node
// serves and returns after they have exited. HandleMessage never blocks (it runs
// on gossip's dispatch goroutine). Stream blocks in the caller's goroutine.
//
// Imports: runtime (LogOptions, LogSink, errors) and go-msgpack; no other murmur
// package.
package logs
