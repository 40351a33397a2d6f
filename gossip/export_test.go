package gossip

import "time"

// SimulateStall does what the stall watch does when it sees this node had just been
// frozen for gap, with its budget unspent (a test cannot SIGSTOP one goroutine set of
// a process).
func (g *Gossip) SimulateStall(gap time.Duration) {
	g.metrics.stalls.Inc()
	g.refuteStall(g.ml.Load(), gap, true)
}
