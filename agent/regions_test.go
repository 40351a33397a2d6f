package agent

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
)

func TestIndexDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const step = region.LastIndexStep
	idx := func(i uint64) string { return strconv.FormatUint(i, 10) }
	tests := []struct {
		name               string
		published, current string
		at, now            time.Time
		want               bool
	}{
		{"first index (the node joined a group)", "", "7", t0, t0, true},
		{"index gone (the node left the group)", "7", "", t0, t0, true},
		{"one commit", "1000", "1001", t0, t0.Add(time.Hour), false},
		{"just under the step", "1000", idx(1000 + step - 1), t0, t0.Add(time.Hour), false},
		{"moved by the step", "1000", idx(1000 + step), t0, t0.Add(time.Second), true},
		{"moved by the step within a second", "1000", idx(1000 + 10*step), t0, t0.Add(999 * time.Millisecond), false},
		{"went back (a new log)", "1000", "3", t0, t0, true},
		{"unparsable", "x", "1000", t0, t0, true},
	}
	for _, tt := range tests {
		if got := indexDue(tt.published, tt.current, tt.at, tt.now); got != tt.want {
			t.Errorf("%s: indexDue(%q, %q, +%v) = %v, want %v", tt.name, tt.published, tt.current, tt.now.Sub(tt.at), got, tt.want)
		}
	}
	// What it is for: a nonvoter whose index is gossiped as indexDue says stays
	// promotable while it keeps up with the leader.
	if region.LastIndexStep >= region.PromoteMaxLag {
		t.Errorf("LastIndexStep %d must be under PromoteMaxLag %d, or a caught-up nonvoter can look behind", region.LastIndexStep, region.PromoteMaxLag)
	}
}

// The fleet simulator dilates every timer of the region groups an agent runs (its own
// and the ones it witnesses), the LAN profile's included: the zero Timing it once
// returned stayed undilated, so Raft ran in real time while the rest ran k times slower.
func TestRegionTimingDilates(t *testing.T) {
	for _, profile := range []string{"", "wan"} {
		a := &Agent{cfg: Config{Profile: profile}}
		base := a.regionTiming()
		got := base.Dilated(30)
		if base.HeartbeatTimeout == 0 || got.HeartbeatTimeout != 30*base.HeartbeatTimeout || got.ElectionTimeout != 30*base.ElectionTimeout {
			t.Errorf("profile %q: %+v dilated by 30 = %+v", profile, base, got)
		}
		if got.ControlTimeout != 30*region.DefaultControlTimeout {
			t.Errorf("profile %q: control timeout dilated by 30 = %v, want %v", profile, got.ControlTimeout, 30*region.DefaultControlTimeout)
		}
	}
	if regionTick(1) != 0 || regionTick(30) != 30*region.DefaultTick {
		t.Errorf("region tick: %v undilated, %v at 30", regionTick(1), regionTick(30))
	}
}

// The summaries are computed once per gossip snapshot, and a caller's copy can be
// changed without changing what the next caller gets.
func TestSummaryCachePerSnapshot(t *testing.T) {
	state := map[string]string{region.KeyState: region.StateBootstrapped, region.KeyLeader: "3", region.KeyVoters: "a,b"}
	ms := []gossip.Member{
		{Name: "a", ID: "a", Region: "r", Status: gossip.StatusAlive, State: state},
		{Name: "b", ID: "b", Region: "r", Status: gossip.StatusAlive},
	}
	var c summaryCache
	_, first := c.of(ms)
	_, again := c.of(ms)
	if len(first) != 1 || &first[0] != &again[0] {
		t.Fatalf("the same snapshot summarized twice: %p, %p", first, again)
	}
	if first[0].Coordinator != "a" || !slices.Equal(first[0].Voters, []string{"a", "b"}) {
		t.Fatalf("summary %+v, want coordinator a and voters a,b", first[0])
	}
	mine := slices.Clone(first)
	mine[0].Coordinator = "x"
	if _, next := c.of(ms); next[0].Coordinator != "a" {
		t.Fatalf("a caller's copy changed the cache: %+v", next[0])
	}
	// A new snapshot (gossip rebuilds it on any change) is summarized anew.
	ms2 := slices.Clone(ms)
	ms2[0].State = map[string]string{region.KeyState: region.StateBootstrapped, region.KeyLeader: "4", region.KeyVoters: "a,b"}
	ms2[1].State = ms2[0].State
	if _, next := c.of(ms2); next[0].Term != 4 {
		t.Fatalf("a new snapshot gave %+v, want term 4", next[0])
	}
}

func TestEventLookEvery(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{5, 100 * time.Millisecond}, {100, 100 * time.Millisecond}, {400, 400 * time.Millisecond}, {1000, time.Second}, {10000, time.Second}} {
		if got := eventLookEvery(c.n); got != c.want {
			t.Errorf("eventLookEvery(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}
