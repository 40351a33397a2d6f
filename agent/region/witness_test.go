package region

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// smallAndBig starts a region "small" of n eligible nodes and a region "big" of 3 (the
// witness pool).
func smallAndBig(t *testing.T, n int) (f *fleet, small, big []*tnode) {
	return smallAndBigWith(t, n, nil)
}

// smallAndBigWith is smallAndBig with opts applied to every node's config.
func smallAndBigWith(t *testing.T, n int, opts func(*Config)) (f *fleet, small, big []*tnode) {
	f = newFleet(t, opts)
	for i := range n {
		small = append(small, f.add(fmt.Sprintf("s%d", i+1), "small", true, ""))
	}
	for i := range 3 {
		big = append(big, f.add(fmt.Sprintf("b%d", i+1), "big", true, ""))
	}
	for _, tn := range append(slices.Clone(small), big...) {
		f.start(tn)
	}
	f.waitStable("big", 3, 15*time.Second)
	return f, small, big
}

// waitWitnessed waits for one leader of region among local, with the local voters
// `locals` (ids) and exactly one witness voter from pool, and returns leader and witness.
func (f *fleet) waitWitnessed(region string, local []*tnode, pool []*tnode, timeout time.Duration) (leader, witness *tnode) {
	f.t.Helper()
	waitFor(f.t, timeout, "a leader of "+region+" with its voters and one witness", func() (bool, string) {
		ls := f.leaders(region)
		if len(ls) != 1 {
			return false, fmt.Sprintf("%d leaders", len(ls))
		}
		leader = ls[0]
		v, nv := configOf(leader)
		var locals, witnesses []string
		for _, id := range v {
			if i := slices.IndexFunc(pool, func(tn *tnode) bool { return tn.id == id }); i >= 0 {
				witnesses = append(witnesses, id)
				witness = pool[i]
			} else {
				locals = append(locals, id)
			}
		}
		want := make([]string, 0, len(local))
		for _, tn := range local {
			want = append(want, tn.id)
		}
		slices.Sort(want)
		if !slices.Equal(locals, want) || len(witnesses) != 1 {
			return false, fmt.Sprintf("voters %v nonvoters %v", v, nv)
		}
		if !witness.alive {
			return false, "witness " + witness.name + " is not running"
		}
		return true, ""
	})
	return leader, witness
}

func other(tns []*tnode, not *tnode) *tnode {
	for _, tn := range tns {
		if tn != not {
			return tn
		}
	}
	return nil
}

func TestTwoNodeRegionBorrowsAWitness(t *testing.T) {
	f, small, big := smallAndBig(t, 2)
	leader, w := f.waitWitnessed("small", small, big, 20*time.Second)
	if f.witnessOf(w, "small") == nil {
		t.Fatalf("witness %s runs no group of small", w.name)
	}
	// The summary names the witness, from every node's gossip.
	waitFor(t, 5*time.Second, "summary with the witness", func() (bool, string) {
		var peers []Peer
		for _, tn := range f.running("") {
			st := tn.n.PublishedState()
			if g := f.witnessOf(tn, "small"); g != nil {
				for k, v := range g.PublishedState() {
					st[k] = v
				}
			}
			peers = append(peers, Peer{ID: tn.id, Name: tn.name, Region: tn.region, Alive: true, State: st})
		}
		for _, s := range Summarize(peers) {
			if s.Name == "small" {
				return s.Coordinator == leader.name && slices.Equal(s.Witnesses, []string{w.name}) && len(s.Voters) == 3, fmt.Sprintf("%+v", s)
			}
		}
		return false, "no summary of small"
	})

	// Host death of the leader: the other node of the region leads, with the witness's vote.
	f.kill(leader)
	survivor := other(small, leader)
	waitFor(t, 10*time.Second, "the survivor leads", func() (bool, string) {
		ls := f.leaders("small")
		return len(ls) == 1 && ls[0] == survivor, fmt.Sprintf("leaders %v", names(ls))
	})
	// A witness never keeps the lead while a voter of the region is alive.
	if g := f.witnessOf(w, "small"); g != nil && g.IsLeader() {
		t.Errorf("witness %s leads small", w.name)
	}
}

func TestTwoNodeRegionSurvivesEitherLoss(t *testing.T) {
	f, small, big := smallAndBig(t, 2)
	leader, _ := f.waitWitnessed("small", small, big, 20*time.Second)
	follower := other(small, leader)
	f.kill(follower)
	// The leader keeps leading (2 of 3 voters), and can still commit.
	applyPlacements(t, leader, "after-loss", 1)
	if ls := f.leaders("small"); len(ls) != 1 || ls[0] != leader {
		t.Errorf("leaders after the follower's death: %v, want %s", names(ls), leader.name)
	}
}

func TestWitnessLossChoosesANewWitness(t *testing.T) {
	f, small, big := smallAndBig(t, 2)
	leader, w := f.waitWitnessed("small", small, big, 20*time.Second)
	f.kill(w)
	// Nothing moves: the region keeps its leader…
	if ls := f.leaders("small"); len(ls) != 1 || ls[0] != leader {
		t.Fatalf("leaders after the witness's death: %v, want %s", names(ls), leader.name)
	}
	// …and after the dead grace another node of big becomes the witness.
	rest := slices.DeleteFunc(slices.Clone(big), func(tn *tnode) bool { return tn == w })
	_, w2 := f.waitWitnessed("small", small, rest, 20*time.Second)
	if w2 == w {
		t.Errorf("the dead witness is still the witness")
	}
	if ls := f.leaders("small"); len(ls) != 1 || ls[0] != leader {
		t.Errorf("leaders after the new witness: %v, want %s", names(ls), leader.name)
	}
}

// A partition 1 + 1 where only one side reaches the witness: only that side leads.
func TestTwoNodeRegionPartitionOnlyWitnessSideLeads(t *testing.T) {
	f, small, big := smallAndBig(t, 2)
	leader, w := f.waitWitnessed("small", small, big, 20*time.Second)
	for _, cutOff := range []*tnode{leader, other(small, leader)} {
		keep := other(small, cutOff)
		var rest []string
		for _, tn := range append(slices.Clone(big), keep) {
			rest = append(rest, tn.addr)
		}
		f.net.Partition([]string{cutOff.addr}, rest)
		waitFor(t, 10*time.Second, keep.name+" leads alone", func() (bool, string) {
			ls := f.leaders("small")
			return len(ls) == 1 && ls[0] == keep, fmt.Sprintf("leaders %v", names(ls))
		})
		// The cut-off node never leads while cut off (it would need the witness's vote).
		for range 20 {
			if cutOff.n.IsLeader() {
				t.Fatalf("%s leads while cut off from %s and the witness %s", cutOff.name, keep.name, w.name)
			}
			time.Sleep(10 * time.Millisecond) // sampling the cut-off side's role
		}
		f.net.Heal()
		f.waitWitnessed("small", small, big, 20*time.Second)
	}
}

func TestOneNodeRegionGetsNoWitness(t *testing.T) {
	f, small, _ := smallAndBig(t, 1)
	leader := f.waitStable("small", 1, 15*time.Second)
	if leader != small[0] {
		t.Fatalf("leader %s, want %s", leader.name, small[0].name)
	}
	// Autopilot runs every tick: give it a few and check it never adds a witness.
	for range 20 {
		if v, nv := configOf(leader); len(v)+len(nv) != 1 {
			t.Fatalf("a one-node region got servers %v %v: it keeps its autonomy alone", v, nv)
		}
		time.Sleep(50 * time.Millisecond) // one autopilot tick
	}
	if want := leader.n.PublishedState()[KeyWitnessWant]; want != "" {
		t.Errorf("a one-node region wants witnesses %q", want)
	}
}

// A region of 3 loses one node past the dead grace (it is removed: 2 eligible left,
// so a witness completes the voters), then a second: the survivor keeps leading with
// the witness. When the witness is gone too, the survivor reports headless.
func TestThreeNodeRegionLosesTwo(t *testing.T) {
	// The witness must die before the grace removes the second dead voter: once that
	// is gone the region has one eligible node, autopilot drops the witness too, and
	// the survivor rightly leads alone. With the harness's 1 s grace, a CI machine
	// under load took longer than that between the two kills; 5 s leaves room.
	f, mid, big := smallAndBigWith(t, 3, func(c *Config) { c.DeadGrace = 5 * time.Second })
	leader := f.waitStable("small", 3, 15*time.Second)
	var first *tnode
	for _, tn := range mid {
		if tn != leader {
			first = tn
			break
		}
	}
	f.kill(first)
	left := slices.DeleteFunc(slices.Clone(mid), func(tn *tnode) bool { return tn == first })
	leader, w := f.waitWitnessed("small", left, big, 20*time.Second)
	second := other(left, leader)
	f.kill(second)
	waitFor(t, 10*time.Second, "the survivor keeps leading", func() (bool, string) {
		ls := f.leaders("small")
		return len(ls) == 1 && ls[0] == leader, fmt.Sprintf("leaders %v", names(ls))
	})
	applyPlacements(t, leader, "after-two-losses", 1)

	// Now the witness goes too (before the grace removes the dead voter): no majority.
	f.kill(w)
	waitFor(t, 10*time.Second, "the survivor reports headless", func() (bool, string) {
		st := leader.n.PublishedState()
		return st[KeyHeadless] == "1" && !leader.n.IsLeader(), fmt.Sprintf("leader=%v headless=%q", leader.n.IsLeader(), st[KeyHeadless])
	})
}

func names(tns []*tnode) []string {
	var out []string
	for _, tn := range tns {
		out = append(out, tn.name)
	}
	return out
}

func TestWitnessAutopilotRule(t *testing.T) {
	now := time.Unix(1000, 0)
	peer := func(id, region string, alive bool, st map[string]string) Peer {
		return Peer{ID: id, Name: id, Region: region, RaftAddr: "addr-" + id, Eligible: true, Alive: alive, State: st}
	}
	voter := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress("addr-" + id)}
	}
	nonvoter := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress("addr-" + id)}
	}
	caught := map[string]string{KeyLastIndex: "10"}
	wcaught := map[string]string{WitnessKey("r", KeyLastIndex): "10", KeyWitnessing: "r"}
	base := func() apInput {
		return apInput{
			name: "r", now: now, leaderID: "a",
			region:    map[string]Peer{"a": peer("a", "r", true, caught), "b": peer("b", "r", true, caught)},
			others:    map[string]Peer{"w": peer("w", "o", true, wcaught), "x": peer("x", "o", true, nil)},
			witnesses: []string{"w", "x"},
			names:     map[string]string{}, badSince: map[string]time.Time{}, nvSince: map[string]time.Time{"b": now.Add(-time.Minute), "w": now.Add(-time.Minute)},
			reachable: map[string]bool{"b": true, "w": true, "x": true},
			lastIndex: 10, standbys: 2, deadGrace: 30 * time.Second, stable: 2 * time.Second, maxLag: 100,
		}
	}
	tests := []struct {
		name    string
		servers []raft.Server
		mod     func(*apInput)
		want    string // kind:id
	}{
		{"one voter, local nonvoter: the witness comes first", []raft.Server{voter("a"), nonvoter("b")}, nil, "add-nonvoter:w"},
		{"witness joining: promoted once caught up", []raft.Server{voter("a"), nonvoter("b"), nonvoter("w")}, nil, "promote:w"},
		{"witness votes: the second local voter follows", []raft.Server{voter("a"), nonvoter("b"), voter("w")}, nil, "promote:b"},
		{"three voters: stable", []raft.Server{voter("a"), voter("b"), voter("w")}, nil, "none:"},
		{"two local voters, no witness: a witness joins, nobody is demoted", []raft.Server{voter("a"), voter("b")}, nil, "add-nonvoter:w"},
		{"two local voters, no witness reachable: demote to one", []raft.Server{voter("a"), voter("b")}, func(in *apInput) { in.reachable = map[string]bool{"b": true} }, "demote:b"},
		{"voters=1 never borrows", []raft.Server{voter("a"), nonvoter("b")}, func(in *apInput) { in.maxVoters = 1 }, "none:"},
		{"one eligible node: no witness, the old one leaves", []raft.Server{voter("a"), voter("w")}, func(in *apInput) { delete(in.region, "b") }, "remove:w"},
		{"a third local node: promoted, then the witness leaves", []raft.Server{voter("a"), voter("b"), voter("w"), nonvoter("c")}, func(in *apInput) {
			in.region["c"] = peer("c", "r", true, caught)
			in.reachable["c"] = true
			in.nvSince["c"] = now.Add(-time.Minute)
		}, "promote:c"},
		{"four voters with a witness: the witness leaves first", []raft.Server{voter("a"), voter("b"), voter("w"), voter("c")}, func(in *apInput) {
			in.region["c"] = peer("c", "r", true, caught)
			in.reachable["c"] = true
		}, "remove:w"},
		{"dead witness removed after the grace", []raft.Server{voter("a"), voter("b"), voter("w")}, func(in *apInput) {
			in.others["w"] = peer("w", "o", false, nil)
			in.badSince["w"] = now.Add(-time.Minute)
		}, "remove:w"},
		{"a witness that withdrew its offer is unhealthy", []raft.Server{voter("a"), voter("b"), voter("w")}, func(in *apInput) {
			in.others["w"] = peer("w", "o", true, map[string]string{KeyWitnessOffer: OfferOff})
			in.badSince["w"] = now.Add(-time.Minute)
		}, "remove:w"},
		{"a witness whose group does not run is removed after the grace", []raft.Server{voter("a"), voter("b"), voter("w")}, func(in *apInput) {
			in.others["w"] = peer("w", "o", true, map[string]string{KeyWitnessing: "elsewhere"})
			in.badSince["w"] = now.Add(-time.Minute)
		}, "remove:w"},
		{"unreachable best candidate: the next", []raft.Server{voter("a"), voter("b")}, func(in *apInput) { in.reachable["w"] = false }, "add-nonvoter:x"},
	}
	for _, tc := range tests {
		in := base()
		in.servers = tc.servers
		if tc.mod != nil {
			tc.mod(&in)
		}
		a := planAutopilot(in)
		if got := a.kind.String() + ":" + a.id; got != tc.want {
			t.Errorf("%s: got %s (%s), want %s", tc.name, got, a.reason, tc.want)
		}
	}
}

func TestRankWitnesses(t *testing.T) {
	p := func(id, region string, st map[string]string) Peer {
		return Peer{ID: id, Name: id, Region: region, RaftAddr: "a-" + id, Eligible: true, Alive: true, State: st}
	}
	peers := []Peer{
		p("self1", "r", nil),
		p("busy", "o", map[string]string{KeyWitnessing: "x,y"}),
		p("free", "o", nil),
		p("pref", "o", map[string]string{KeyWitnessOffer: OfferString(false, []string{"q", "r"}), KeyWitnessing: "x,y,z"}),
		p("off", "o", map[string]string{KeyWitnessOffer: OfferOff}),
		{ID: "dead", Region: "o", RaftAddr: "a", Eligible: true},
		{ID: "inel", Region: "o", RaftAddr: "a", Alive: true},
	}
	got := RankWitnesses("r", peers)
	if want := []string{"pref", "free", "busy"}; !slices.Equal(got, want) {
		t.Errorf("RankWitnesses = %v, want %v", got, want)
	}
	if !slices.Equal(got, RankWitnesses("r", slices.Clone(peers))) {
		t.Error("not deterministic")
	}
}

func TestWitnessKeys(t *testing.T) {
	k := WitnessKey("site-1.a", KeyLeader)
	if r, key, ok := parseWitnessKey(k); !ok || r != "site-1.a" || key != KeyLeader {
		t.Errorf("parseWitnessKey(%q) = %q %q %v", k, r, key, ok)
	}
	for _, bad := range []string{"raftw/", "raftw/r", "raftw//leader", "raft.leader"} {
		if _, _, ok := parseWitnessKey(bad); ok {
			t.Errorf("parseWitnessKey(%q) accepted", bad)
		}
	}
	if !strings.HasPrefix(k, "raftw/") {
		t.Errorf("key %q", k)
	}
}

func TestWitnessDutyStartsAndRetires(t *testing.T) {
	now := time.Unix(1000, 0)
	d := NewWitnessDuty("w", "o", true)
	lead := func(want, voters string) []Peer {
		return []Peer{{ID: "a", Region: "r", Alive: true, State: map[string]string{KeyLeader: "3", KeyWitnessWant: want, KeyVoters: voters}}}
	}
	if start, _ := d.Update(lead("w", "a"), nil, now); !slices.Equal(start, []string{"r"}) {
		t.Fatalf("start = %v, want [r]", start)
	}
	// Wanted no more, but still a voter: keeps running.
	if _, stop := d.Update(lead("", "a,w"), []string{"r"}, now.Add(time.Hour)); len(stop) != 0 {
		t.Fatalf("stopped while a voter: %v", stop)
	}
	// Neither wanted nor a voter: stops after RetireAfter.
	if _, stop := d.Update(lead("", "a,b"), []string{"r"}, now); len(stop) != 0 {
		t.Fatalf("stopped at once: %v", stop)
	}
	if _, stop := d.Update(lead("", "a,b"), []string{"r"}, now.Add(RetireAfter)); !slices.Equal(stop, []string{"r"}) {
		t.Fatalf("stop = %v, want [r]", stop)
	}
	// No coordinator in sight: keeps running (it may be the vote the region needs).
	if _, stop := d.Update(nil, []string{"r"}, now.Add(2*RetireAfter)); len(stop) != 0 {
		t.Fatalf("stopped without a coordinator: %v", stop)
	}
	// A node that does not offer the duty never starts one; nor beyond the cap.
	off := NewWitnessDuty("w", "o", false)
	if start, _ := off.Update(lead("w", "a"), nil, now); len(start) != 0 {
		t.Errorf("started while not offered: %v", start)
	}
	if start, _ := d.Update(lead("w", "a"), []string{"1", "2", "3", "4"}, now); len(start) != 0 {
		t.Errorf("started beyond %d duties: %v", MaxWitnessDuties, start)
	}
}

// FuzzWitnessGroups: gossiped state comes from peers; splitting it into witness groups
// must not panic, and every group it returns names a region and keys of a group.
func FuzzWitnessGroups(f *testing.F) {
	f.Add("raftw/site/leader", "7", "raftw/site/voters", "a,b,w")
	f.Add("raftw//x", "", "raftw/a/b/c", "1")
	f.Add(KeyWitnessing, "r1,r2", KeyWitnessOffer, "prefer:r1")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		st := map[string]string{k1: v1, k2: v2}
		for r, g := range WitnessGroups(st) {
			if r == "" || strings.Contains(r, "/") {
				t.Fatalf("region %q from %v", r, st)
			}
			for k := range g {
				if !strings.HasPrefix(k, "raft.") {
					t.Fatalf("key %q from %v", k, st)
				}
			}
		}
		p := Peer{ID: "x", Region: "o", Alive: true, Eligible: true, RaftAddr: "a", State: st}
		_ = RankWitnesses("r", []Peer{p})
		_, _ = offers(p, "r")
	})
}
