package gossip

import (
	"slices"
	"testing"
	"time"
)

// TestDueConflicts checks when a member refused at a new address is re-admitted:
// left at once, dead only after the reclaim time, alive never (two nodes share a
// name), and that stale or resolved conflicts are forgotten.
func TestDueConflicts(t *testing.T) {
	g, err := New(Config{Name: "self", BindAddr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	g.reclaimAfter = 10 * time.Second
	now := time.Unix(1_000_000, 0)
	g.nodes = map[string]*nodeEntry{
		"left":       {name: "left", addr: "10.0.0.1:7946", status: StatusLeft, since: now.Add(-time.Second)},
		"dead-old":   {name: "dead-old", addr: "10.0.0.2:7946", status: StatusDead, since: now.Add(-11 * time.Second)},
		"dead-fresh": {name: "dead-fresh", addr: "10.0.0.3:7946", status: StatusDead, since: now.Add(-9 * time.Second)},
		"twin":       {name: "twin", addr: "10.0.0.4:7946", status: StatusAlive, since: now.Add(-time.Hour)},
		"back":       {name: "back", addr: "10.0.1.5:7946", status: StatusAlive, since: now},
	}
	for name, addr := range map[string]string{
		"left": "10.0.1.1:7946", "dead-old": "10.0.1.2:7946", "dead-fresh": "10.0.1.3:7946",
		"twin": "10.0.1.4:7946", "back": "10.0.1.5:7946", "unknown": "10.0.1.6:7946",
	} {
		g.noteConflict(name, addr)
	}
	for name, c := range g.conflicts {
		c.seen = now.Add(-time.Minute)
		g.conflicts[name] = c
	}

	due := g.dueConflicts(now)
	slices.Sort(due)
	if want := []string{"10.0.1.1:7946", "10.0.1.2:7946"}; !slices.Equal(due, want) {
		t.Errorf("due = %v, want %v (left at once, dead after the reclaim time)", due, want)
	}
	for _, gone := range []string{"back", "unknown"} {
		if _, ok := g.conflicts[gone]; ok {
			t.Errorf("conflict %q kept: it is resolved (alive at the new address) or the member is unknown", gone)
		}
	}
	if _, ok := g.conflicts["twin"]; !ok {
		t.Error("conflict with a live member at another address dropped before its TTL")
	}

	// Once the fresh death passes the reclaim time it is due too; after the TTL the
	// live twin's conflict is forgotten, never acted on.
	due = g.dueConflicts(now.Add(2 * time.Second))
	if !slices.Contains(due, "10.0.1.3:7946") || slices.Contains(due, "10.0.1.4:7946") {
		t.Errorf("due two seconds later = %v, want the dead member's new address and not the twin's", due)
	}
	g.dueConflicts(now.Add(conflictTTL))
	if _, ok := g.conflicts["twin"]; ok {
		t.Error("conflict with a live member kept past conflictTTL")
	}
}
