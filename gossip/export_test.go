package gossip

import "time"

// SimulateStall runs the stall watch's refutation as if this node had just been
// frozen for gap (a test cannot SIGSTOP one goroutine set of a process).
func (g *Gossip) SimulateStall(gap time.Duration) {
	g.refuteStall(g.ml.Load(), gap)
}
