package gossip

import (
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// A node whose probe of a peer fails suspects it, and memberlist broadcasts the
// suspicion so that the peer hears it and refutes it with a new incarnation. When it
// is this node that is cut off (its link down, its half of a partition), those
// broadcasts' retransmits are spent on the dead link. After the heal nobody sends the
// suspicion again, and a probe that succeeds does not clear a suspicion in
// memberlist: only the peer's refutation does. So when the suspicion timeout runs out
// this node declares a healthy peer dead, and the rest of the fleet believes it — a
// dead message at the peer's current incarnation is accepted everywhere until the
// peer hears it and refutes — and a coordinator replaces the peer's instances at
// once. Issue 13's CI saw exactly this: a node healed 1 s before its suspicion of a
// connected peer ran out, and the region moved that peer's instance.
//
// So this node remembers the members its own probes failed (unheard) for as long as
// memberlist may hold them suspect, and pings each one every probe interval. As soon
// as one answers, this node sends it a notice: one small UDP message. The member
// re-announces itself alive with a new incarnation (memberlist's UpdateNode, at most
// once per probe interval), which clears the suspicion here and wherever else it
// spread before any timer runs out. A member suspected over one lost packet pays one
// more alive broadcast than it would have; a member that is really down costs this
// node one ping per probe interval until it is declared dead.

// unheard is a member this node suspected from its own failed probe.
type unheard struct {
	since    time.Time // the first failed probe of this suspicion
	inflight bool      // a ping is under way
}

// maxNoticesInFlight bounds the pings one tick starts.
const maxNoticesInFlight = 4

type noticeTarget struct{ name, addr string }

// dueNotices returns the members to ping now, marks them in flight and forgets the
// ones whose suspicion is over by now (memberlist has declared them dead, or they
// refuted).
func (g *Gossip) dueNotices(now time.Time) []noticeTarget {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.unheard) == 0 {
		return nil
	}
	longest := g.suspicionMax(len(g.nodes))
	var out []noticeTarget
	busy := 0
	for _, u := range g.unheard {
		if u.inflight {
			busy++
		}
	}
	for name, u := range g.unheard {
		e := g.nodes[name]
		if now.Sub(u.since) > longest || e == nil || e.status == StatusDead || e.status == StatusLeft {
			if !u.inflight {
				delete(g.unheard, name)
			}
			continue
		}
		if u.inflight || busy+len(out) >= maxNoticesInFlight {
			continue
		}
		u.inflight = true
		out = append(out, noticeTarget{name: name, addr: e.addr})
	}
	return out
}

// sendNotice pings t and, when it answers, tells it that this node suspects it.
func (g *Gossip) sendNotice(t noticeTarget) {
	sent := false
	defer func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if u := g.unheard[t.name]; u != nil {
			u.inflight = false
			if sent {
				delete(g.unheard, t.name)
			}
		}
	}()
	ml := g.ml.Load()
	ua, err := net.ResolveUDPAddr("udp", t.addr)
	if err != nil || ml == nil {
		return
	}
	if _, err := ml.Ping(t.name, ua); err != nil {
		return // still unreachable: the next tick tries again
	}
	msg, err := encodeFrame(frameNotice, 0, envelope{From: g.cfg.Name})
	if err != nil {
		return
	}
	to := &memberlist.Node{Name: t.name, Addr: ua.IP, Port: uint16(ua.Port)}
	if err := ml.SendBestEffort(to, msg); err != nil {
		g.log.Debug("suspicion notice", "to", t.name, "err", err)
		return
	}
	sent = true
	g.metrics.sent("notice", len(msg))
	g.metrics.notices.WithLabelValues("sent").Inc()
}

// onNotice handles a peer's notice that its probe of this node failed: this node
// re-announces itself alive with a new incarnation, at most once per probe interval.
func (g *Gossip) onNotice(from string) {
	g.metrics.notices.WithLabelValues("received").Inc()
	ml := g.ml.Load()
	if ml == nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	if !g.noticeRefuted.IsZero() && now.Sub(g.noticeRefuted) < g.probeEvery {
		g.mu.Unlock()
		return
	}
	g.noticeRefuted = now
	g.mu.Unlock()
	g.log.Debug("a member's probe of this node failed; announcing itself alive", "from", from)
	// UpdateNode takes the new incarnation and queues the broadcast before it waits
	// for the broadcast to leave; the wait is not needed here.
	_ = ml.UpdateNode(time.Millisecond)
}
