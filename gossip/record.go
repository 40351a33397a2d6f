package gossip

import (
	"math"
	"slices"
	"time"
)

// What a broadcast costs, and so when the local record is broadcast.
//
// A record is relayed by every node that learns it (epidemic spread): each of the n
// nodes hands each new version of a record to memberlist RetransmitMult (8 on the LAN
// profile, see memberlistConfig) × ceil(log10(n+1)) times, ~130 bytes each. One version
// thus costs every node 2 KB at 20 nodes and 4 KB at 1,000, and what each node sends for
// records is n × (versions per node per second) × that. A record broadcast every 5 s by
// every node, changed or not, was 9 of the 10 KB/s each node sent at 20 nodes and 18 of
// 20 KB/s at 50 (and saturates memberlist's packets, ~21 KB/s, from ~100 nodes on).
//
// So a record is broadcast only when it changed in a way that matters: a change of
// instances, health, drivers, state or leaving goes at once (those are events: a new
// coordinator, an assignment applied); load goes only when it moved by LoadStep from
// the last broadcast value, at most once per LoadInterval. Every change gives the
// record a new Seq, so push/pull, which carries every record, brings the rest.

// maybeBroadcastLocal queues the local record if recordDue says so.
func (g *Gossip) maybeBroadcastLocal(now time.Time) {
	g.mu.Lock()
	r := g.local
	due, loadOnly := recordDue(g.lastSent, r, g.lastLoadAt, now, g.cfg.LoadStep, g.cfg.LoadInterval)
	if due {
		g.lastSent = r
		if loadOnly {
			g.lastLoadAt = now
		}
	}
	g.mu.Unlock()
	if !due {
		return
	}
	b, err := encode(r)
	if err != nil {
		g.log.Error("encode local record", "err", err)
		return
	}
	g.queue.QueueBroadcast(&broadcast{name: "r/" + r.Node, msg: append([]byte{frameRecord}, b...)})
}

// recordDue decides whether the local record cur is broadcast at now, given last, the
// record last broadcast (zero before the first), and loadAt, when load alone last
// caused a broadcast. loadOnly reports that load is the only reason. Pure.
func recordDue(last, cur Record, loadAt, now time.Time, step float64, every time.Duration) (due, loadOnly bool) {
	switch {
	case cur.Seq == last.Seq && last.Node != "":
		return false, false // nothing changed since
	case last.Node == "" || changedBeyondLoad(last, cur):
		return true, false
	case loadMoved(last, cur, step) && now.Sub(loadAt) >= every:
		return true, true
	}
	return false, false
}

// loadMoved reports whether CPU or memory load moved by step or more from a to b.
func loadMoved(a, b Record, step float64) bool {
	// A hair under step, so that 0.30 → 0.35 in floating point counts as 0.05.
	const slack = 1e-9
	return math.Abs(a.CPU-b.CPU) >= step-slack || math.Abs(a.Memory-b.Memory) >= step-slack
}

// changedBeyondLoad reports whether b differs from a in anything but load and Seq:
// what the fleet must hear of at once.
func changedBeyondLoad(a, b Record) bool {
	return a.Instances != b.Instances || a.Health != b.Health || a.Left != b.Left ||
		a.Epoch != b.Epoch || a.ID != b.ID ||
		!slices.Equal(a.Drivers, b.Drivers) || !mapsEqual(a.State, b.State)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// relayRepaired broadcasts a record that a push/pull brought and that changed beyond
// load from the version this node held: a broadcast of it was missed (a lost packet,
// a partition that healed), and most of the fleet likely missed it too. Each version
// is relayed once per node at most, like any broadcast, so this costs nothing while
// the fleet is in sync.
func (g *Gossip) relayRepaired(r Record) {
	b, err := encode(r)
	if err != nil {
		return
	}
	g.queue.QueueBroadcast(&broadcast{name: "r/" + r.Node, msg: append([]byte{frameRecord}, b...)})
}
