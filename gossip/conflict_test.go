package gossip

import (
	"slices"
	"testing"
	"time"
)

func dueAddrs(ts []conflictTarget) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.addr)
	}
	slices.Sort(out)
	return out
}

// TestDueConflicts checks when a member refused at a new address is re-admitted:
// after its old entry has been dead or left for the reclaim time (plus its jitter),
// never while the old entry is alive (two nodes share a name), with a backoff after
// each attempt; stale and resolved conflicts are forgotten.
func TestDueConflicts(t *testing.T) {
	g, err := New(Config{Name: "self", BindAddr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	g.reclaimAfter = 10 * time.Second
	now := time.Unix(1_000_000, 0)
	g.nodes = map[string]*nodeEntry{
		"left-old":   {name: "left-old", addr: "10.0.0.1:7946", status: StatusLeft, since: now.Add(-11 * time.Second)},
		"dead-old":   {name: "dead-old", addr: "10.0.0.2:7946", status: StatusDead, since: now.Add(-11 * time.Second)},
		"dead-fresh": {name: "dead-fresh", addr: "10.0.0.3:7946", status: StatusDead, since: now.Add(-9 * time.Second)},
		"twin":       {name: "twin", addr: "10.0.0.4:7946", status: StatusAlive, since: now.Add(-time.Hour)},
		"back":       {name: "back", addr: "10.0.1.5:7946", status: StatusAlive, since: now},
	}
	for name, addr := range map[string]string{
		"left-old": "10.0.1.1:7946", "dead-old": "10.0.1.2:7946", "dead-fresh": "10.0.1.3:7946",
		"twin": "10.0.1.4:7946", "back": "10.0.1.5:7946", "unknown": "10.0.1.6:7946",
	} {
		g.noteConflict(name, addr)
	}
	for name, c := range g.conflicts {
		if c.jitter < 0 || c.jitter >= g.reclaimAfter/2 {
			t.Errorf("%s: jitter %s, want within [0, %s)", name, c.jitter, g.reclaimAfter/2)
		}
		c.seen, c.jitter = now.Add(-time.Minute), 0
		g.conflicts[name] = c
	}

	due := g.dueConflicts(now)
	if got, want := dueAddrs(due), []string{"10.0.1.1:7946", "10.0.1.2:7946"}; !slices.Equal(got, want) {
		t.Errorf("due = %v, want %v (dead or left for longer than the reclaim time)", got, want)
	}
	for _, gone := range []string{"back", "unknown"} {
		if _, ok := g.conflicts[gone]; ok {
			t.Errorf("conflict %q kept: it is resolved (alive at the new address) or the member is unknown", gone)
		}
	}
	if _, ok := g.conflicts["twin"]; !ok {
		t.Error("conflict with a live member at another address dropped before its TTL")
	}

	// A join was tried: no retry before the backoff, then one.
	g.markRejoined(now, due)
	if got := g.dueConflicts(now.Add(time.Second)); slices.Contains(dueAddrs(got), "10.0.1.2:7946") {
		t.Errorf("due one second after a join = %v, want the backoff (2 s) respected", dueAddrs(got))
	}
	// Two seconds on, the fresh death has passed the reclaim time and the backoff is over;
	// the live twin is never due.
	due = g.dueConflicts(now.Add(2 * time.Second))
	if got, want := dueAddrs(due), []string{"10.0.1.1:7946", "10.0.1.2:7946", "10.0.1.3:7946"}; !slices.Equal(got, want) {
		t.Errorf("due two seconds later = %v, want %v", got, want)
	}
	g.dueConflicts(now.Add(conflictTTL))
	if _, ok := g.conflicts["twin"]; ok {
		t.Error("conflict with a live member kept past conflictTTL")
	}
}
