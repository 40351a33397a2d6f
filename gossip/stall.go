package gossip

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// A node that does not run for a while — SIGSTOP, a paused VM, a host starved of
// CPU, a long page-in on a small device — misses its peers' probes, and they suspect
// it. memberlist refutes a suspicion only when the suspicion message reaches the node
// itself, by gossip, after it wakes: on a 7-node fleet with 200 ms gossip rounds that
// costs a few rounds, out of the 800 ms a confirmed suspicion lasts (profile.go), and
// on a loaded machine it sometimes did not make it (issue 13: 2 of 75 thawed nodes
// were declared dead after a 400 ms freeze).
//
// The stall watch closes that gap from the node's side: a goroutine wakes every
// stallEvery and compares the monotonic clock with its last wake-up. A gap that
// exceeds the period by more than the probe timeout means peers may have probed this
// node and got no answer, so it re-announces itself alive with a new incarnation at
// once (memberlist's UpdateNode), and hands its state with the new incarnation
// straight to up to stallPushPulls peers by push/pull (memberlist's Join to their
// addresses), in parallel: the refutation does not wait for a gossip round, or for
// the node to hear that it is suspected. On a loaded machine the epidemic alone was
// still too slow now and then (a third false death in a 500-fault campaign with
// only the broadcast). A node that was not suspected pays one alive broadcast and a
// few push/pulls.
//
// Both are rationed (stallBudget): a node starved of CPU, rather than frozen once,
// stalls again and again, and a refutation with push/pulls of the whole state on
// every one adds load that starves it further. A 300-agent simulation on 2 cores
// (issue 14) spent 17 % of its CPU in those push/pulls and never converged. So a
// node re-announces itself at most once per probe interval (a suspicion takes
// longer than that to be confirmed) and pushes its state directly at most once per
// stallPushPullSpacing probe intervals, backing off to stallPushPullMaxSpacing while
// it keeps stalling; between those, the alive broadcast alone refutes.

// stallWatch decides, from successive wake-ups, whether the process stalled.
type stallWatch struct {
	every     time.Duration // the wake-up period
	tolerance time.Duration // a longer gap than every+tolerance is a stall
	last      time.Time     // the previous wake-up (monotonic)
}

// observe records a wake-up at now and reports the gap since the previous one when it
// is a stall.
func (s *stallWatch) observe(now time.Time) (time.Duration, bool) {
	prev := s.last
	s.last = now
	if prev.IsZero() {
		return 0, false
	}
	gap := now.Sub(prev)
	return gap, gap > s.every+s.tolerance
}

// stallBudget rations the refutations of a node that keeps stalling. Push/pulls back
// off: each one that comes while the node keeps stalling (no quiet gap since the
// previous stall) doubles the spacing, up to maxPushEvery; a node that ran smoothly
// for quiet starts again from pushEvery. A one-off freeze always gets its push/pulls
// at once.
type stallBudget struct {
	refuteEvery, pushEvery, maxPushEvery, quiet time.Duration
	refuted, pushed, last                       time.Time     // the last refutation, push/pulls and stall (monotonic)
	spacing                                     time.Duration // the current push/pull spacing (0: pushEvery)
}

// take reports whether a stall seen at now may be refuted, and whether with
// push/pulls, and books what it allows.
func (b *stallBudget) take(now time.Time) (refute, push bool) {
	fresh := b.spacing == 0 || (!b.last.IsZero() && now.Sub(b.last) >= b.quiet)
	if fresh {
		b.spacing = b.pushEvery
	}
	b.last = now
	if !b.refuted.IsZero() && now.Sub(b.refuted) < b.refuteEvery {
		return false, false
	}
	b.refuted = now
	if !b.pushed.IsZero() && now.Sub(b.pushed) < b.spacing {
		return true, false
	}
	if !b.pushed.IsZero() && !fresh {
		b.spacing = min(2*b.spacing, b.maxPushEvery) // still stalling: back off
	}
	b.pushed = now
	return true, true
}

// Push/pull spacing of a stalling node, in probe intervals (2 s to 51 s on the LAN
// profile), and how long it must run smoothly to start again from the shortest.
const (
	stallPushPullSpacing    = 10
	stallPushPullMaxSpacing = 256
	stallQuiet              = 150
)

// stallEvery is the stall watch's period: short beside the probe interval, so a stall
// is noticed within a fraction of a gossip round after the node runs again.
func stallEvery(mlc *memberlist.Config) time.Duration {
	return max(mlc.ProbeInterval/4, 20*time.Millisecond)
}

// stallLoop runs the stall watch until ctx ends. refute is called on the loop's own
// goroutine, so two refutations never overlap; push says whether it may push/pull.
func (g *Gossip) stallLoop(ctx context.Context, every, tolerance time.Duration, budget stallBudget, refute func(gap time.Duration, push bool)) {
	w := stallWatch{every: every, tolerance: tolerance}
	tick := time.NewTicker(every)
	defer tick.Stop()
	w.observe(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// time.Now, not the tick's value: that is when the tick was due, which
			// after a stall is long past.
			now := time.Now()
			gap, stalled := w.observe(now)
			if !stalled {
				continue
			}
			g.metrics.stalls.Inc()
			if ok, push := budget.take(now); ok {
				refute(gap, push)
				w.observe(time.Now()) // the refutation's own time is not a stall
			}
		}
	}
}

// stallPushPulls bounds the peers a thawed node pushes its state to directly. On a
// small fleet that is every peer; on a large one the broadcast reaches the rest.
const stallPushPulls = 8

// refuteStall re-announces this node alive with a new incarnation after a stall of
// gap and, with push, pushes that state to a few peers at once. It returns when the
// push/pulls are done or failed (each bounded by memberlist's TCP timeout).
func (g *Gossip) refuteStall(ml *memberlist.Memberlist, gap time.Duration, push bool) {
	g.log.Info("this node stalled; announcing itself alive", "stalled_for", gap.Round(time.Millisecond), "push_pull", push)
	// UpdateNode takes the new incarnation and queues the broadcast before it waits
	// for the broadcast to leave; the wait is not needed here.
	_ = ml.UpdateNode(time.Millisecond)
	if !push {
		return
	}
	peers := g.livePeers()
	var wg sync.WaitGroup
	for _, addr := range peers[:min(len(peers), stallPushPulls)] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ml.Join([]string{addr}); err != nil {
				g.log.Debug("stall refutation push/pull", "peer", addr, "err", err)
			}
		}()
	}
	wg.Wait()
}
