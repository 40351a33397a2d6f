package gossip

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// pushPullScaleThreshold is the fleet size up to which push/pull runs at the profile's
// interval (memberlist's own threshold).
const pushPullScaleThreshold = 32

// pushPullInterval is the time between two push/pulls a node starts in a fleet of n,
// for a profile interval of base.
//
// A push/pull carries every member's state both ways: memberlist's entry and node
// meta (~80 bytes per member once compressed) and our record (~75-100). Each node
// starts one per interval and answers one on average, so it sends 2 × n × ~170 bytes
// per interval. memberlist stretches its interval by ceil(log2(n/32))+1, which still
// lets those bytes grow as n/log n: 5.7 KB/s per node at 1,000 nodes on the LAN
// profile, three times the fleet's 2 KB/s goal on its own. Stretching in proportion
// to n above 32 nodes (never less than memberlist's stretch) holds them at what 32
// nodes cost, ~1.1 KB/s. The price is slower repair of what broadcasts missed: a
// member waits half an interval on average, 2.5 min at 1,000 nodes. Broadcasts
// (records, intents announcements, memberlist's alive/dead) do not wait for it.
func pushPullInterval(base time.Duration, n int) time.Duration {
	if n <= pushPullScaleThreshold {
		return base
	}
	logStretch := math.Ceil(math.Log2(float64(n))-math.Log2(pushPullScaleThreshold)) + 1
	linear := float64(n) / pushPullScaleThreshold
	return time.Duration(float64(base) * math.Max(logStretch, linear))
}

// pushPullLoop replaces memberlist's periodic push/pull (which Run turns off) with one
// on pushPullInterval: every interval, a full state exchange with one random live
// member. memberlist offers no call for its periodic exchange, so this is a Join to
// the member's address, the same exchange with the join flag set, which changes
// nothing here (the delegate ignores the flag), as the stall watch's push/pulls.
func (g *Gossip) pushPullLoop(ctx context.Context, base time.Duration) {
	wait := rand.N(base) // memberlist's stagger: nodes started together spread out
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if peers := g.livePeers(); len(peers) > 0 {
			if _, err := g.ml.Load().Join(peers[:1]); err != nil {
				g.log.Debug("push/pull failed", "addr", peers[0], "err", err)
			}
		}
		// Between half and one and a half intervals: memberlist staggers only the first
		// wait, over the base interval, so once the interval stretches every node's
		// exchange falls in the same part of it (seen at 50 nodes: all push/pulls in
		// 10 s of every 20). Jitter spreads them; the mean stays the interval.
		iv := pushPullInterval(base, g.numNodes())
		wait = iv/2 + rand.N(iv)
	}
}

// livePeers returns the addresses of the members alive in this node's view, itself
// left out, in random order.
func (g *Gossip) livePeers() []string {
	g.mu.Lock()
	var addrs []string
	for _, e := range g.nodes {
		if e.status == StatusAlive && e.name != g.cfg.Name && e.addr != "" {
			addrs = append(addrs, e.addr)
		}
	}
	g.mu.Unlock()
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return addrs
}
