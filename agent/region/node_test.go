package region

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func startRegion(f *fleet, region string, n int, dirs bool) []*tnode {
	var tns []*tnode
	for i := range n {
		dir := ""
		if dirs {
			dir = f.t.(*testing.T).TempDir()
		}
		tns = append(tns, f.add(fmt.Sprintf("%s-n%d", region, i), region, true, dir))
	}
	for _, tn := range tns {
		f.start(tn)
	}
	return tns
}

func applyPlacements(t *testing.T, leader *tnode, prefix string, count int) {
	t.Helper()
	var cmds []Command
	for i := range count {
		cmds = append(cmds, Place(fmt.Sprintf("%s-%d", prefix, i), prefix, "node-x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := leader.n.Apply(ctx, Batch(cmds...)); err != nil {
		t.Fatalf("Apply on leader %s: %v", leader.name, err)
	}
}

func TestFiveNodesElectThreeVotersAndOneLeader(t *testing.T) {
	f := newFleet(t, nil)
	tns := startRegion(f, "r1", 5, false)
	leader := f.waitStable("r1", 3, 15*time.Second)
	if got := bootstraps(tns); got != 1 {
		t.Errorf("bootstraps = %d, want 1", got)
	}
	// The other two are standby nonvoters, and the voters are the top 3 by rank.
	waitFor(t, 5*time.Second, "2 standby nonvoters", func() (bool, string) {
		v, nv := configOf(leader)
		return len(nv) == 2, fmt.Sprintf("voters %v nonvoters %v", v, nv)
	})
	v, _ := configOf(leader)
	var ids []string
	for _, tn := range tns {
		ids = append(ids, tn.id)
	}
	want := BootstrapList(0, ids)
	slices.Sort(want)
	if !slices.Equal(v, want) {
		t.Errorf("voters = %v, want the rank rule's %v", v, want)
	}
	// Apply on a follower fails clearly.
	for _, tn := range tns {
		if tn == leader {
			continue
		}
		_, err := tn.n.Apply(context.Background(), Place("a", "b", "c"))
		if !errors.Is(err, ErrNotLeader) {
			t.Errorf("Apply on follower %s: err = %v, want ErrNotLeader", tn.name, err)
		}
		break
	}
	// Everyone's published view summarises to one coordinator with three voters.
	waitFor(t, 5*time.Second, "summary", func() (bool, string) {
		var peers []Peer
		for _, tn := range tns {
			peers = append(peers, Peer{ID: tn.id, Name: tn.name, Region: tn.region, Alive: true, State: tn.n.PublishedState()})
		}
		s := Summarize(peers)
		ok := len(s) == 1 && s[0].Coordinator == leader.name && len(s[0].Voters) == 3 && s[0].Nodes == 5 && s[0].Term > 0 && s[0].LastIndex > 0
		return ok, fmt.Sprintf("%+v", s)
	})
}

func TestKillLeaderKeepsCommittedPlacements(t *testing.T) {
	f := newFleet(t, nil)
	startRegion(f, "r1", 5, false)
	leader := f.waitStable("r1", 3, 15*time.Second)
	applyPlacements(t, leader, "web", 50)
	want := leader.n.State().Placements
	// murmur_region_term follows raft's term: the election after the kill raises it.
	var oldTerm float64
	waitFor(t, 5*time.Second, "murmur_region_term on the leader", func() (bool, string) {
		v, _ := leader.n.LocalView()
		oldTerm = metricValue(leader.n.m.term)
		return v.Term > 0 && oldTerm == float64(v.Term), fmt.Sprintf("gauge %v, raft term %d", oldTerm, v.Term)
	})
	f.kill(leader)
	var next *tnode
	waitFor(t, 10*time.Second, "a new leader", func() (bool, string) {
		ls := f.leaders("r1")
		if len(ls) != 1 {
			return false, fmt.Sprintf("%d leaders", len(ls))
		}
		next = ls[0]
		return true, ""
	})
	if next == leader {
		t.Fatal("the killed node is still leader")
	}
	// A new leader commits a no-op first: everything committed before is applied.
	waitFor(t, 5*time.Second, "placements on the new leader", func() (bool, string) {
		got := next.n.State().Placements
		return len(got) == len(want), fmt.Sprintf("%d placements", len(got))
	})
	waitFor(t, 5*time.Second, "murmur_region_term above the old leader's", func() (bool, string) {
		got := metricValue(next.n.m.term)
		return got > oldTerm, fmt.Sprintf("term %v, old leader's %v", got, oldTerm)
	})
	got := next.n.State().Placements
	for k, p := range want {
		if got[k] != p {
			t.Errorf("placement %s = %+v, want %+v", k, got[k], p)
		}
	}
	// The new leader heartbeats at Timing.HeartbeatInterval; the others keep the
	// follower timeout. setLeader runs from raft's notify channel, so wait for it.
	d := DefaultTiming()
	waitFor(t, 5*time.Second, "leader and follower raft timing", func() (bool, string) {
		ls := f.leaders("r1")
		if len(ls) != 1 {
			return false, fmt.Sprintf("%d leaders", len(ls))
		}
		for _, tn := range f.running("r1") {
			want := d.HeartbeatTimeout
			if tn == ls[0] {
				want = 10 * d.HeartbeatInterval
			}
			if got := tn.n.raftHeartbeatTimeout(); got != want {
				return false, fmt.Sprintf("%s: raft HeartbeatTimeout %s, want %s", tn.name, got, want)
			}
		}
		return true, ""
	})
	// And the region goes back to 3 healthy voters after the grace period.
	f.waitStable("r1", 3, 15*time.Second)
}

func TestDeadVoterReplacedAfterGrace(t *testing.T) {
	f := newFleet(t, func(c *Config) { c.DeadGrace = 1500 * time.Millisecond })
	tns := startRegion(f, "r1", 5, false)
	leader := f.waitStable("r1", 3, 15*time.Second)
	v, _ := configOf(leader)
	var victim *tnode
	for _, tn := range tns {
		if tn != leader && slices.Contains(v, tn.id) {
			victim = tn
		}
	}
	killed := time.Now()
	f.kill(victim)
	waitFor(t, 15*time.Second, "the dead voter replaced", func() (bool, string) {
		ls := f.leaders("r1")
		if len(ls) != 1 {
			return false, "no single leader"
		}
		v, nv := configOf(ls[0])
		return len(v) == 3 && !slices.Contains(v, victim.id) && !slices.Contains(nv, victim.id), fmt.Sprintf("voters %v nonvoters %v", v, nv)
	})
	if took := time.Since(killed); took < 1500*time.Millisecond {
		t.Errorf("replaced after %v, before the 1.5 s grace period", took)
	}
}

func TestFlappingVoterNotReplaced(t *testing.T) {
	// A voter unreachable for less than the grace period keeps its seat.
	f := newFleet(t, func(c *Config) { c.DeadGrace = 3 * time.Second })
	tns := startRegion(f, "r1", 4, false)
	leader := f.waitStable("r1", 3, 15*time.Second)
	v, _ := configOf(leader)
	var victim *tnode
	for _, tn := range tns {
		if tn != leader && slices.Contains(v, tn.id) {
			victim = tn
		}
	}
	f.mu.Lock()
	victim.alive = false // gossip says dead…
	f.mu.Unlock()
	time.Sleep(time.Second) // …for one second of real time, well under the 3 s grace (the point of the test)
	f.mu.Lock()
	victim.alive = true
	f.mu.Unlock()
	time.Sleep(2500 * time.Millisecond) // past the point where a non-reset timer would have fired
	if got, _ := configOf(leader); !slices.Equal(got, v) {
		t.Errorf("voters changed from %v to %v after a 1 s flap", v, got)
	}
}

func TestTwoRegionsElectIndependently(t *testing.T) {
	f := newFleet(t, nil)
	a := startRegion(f, "a", 3, false)
	b := startRegion(f, "b", 3, false)
	la := f.waitStable("a", 3, 15*time.Second)
	lb := f.waitStable("b", 3, 15*time.Second)
	if la.n.fsm.ClusterID() == lb.n.fsm.ClusterID() {
		t.Errorf("both regions have cluster id %q", la.n.fsm.ClusterID())
	}
	for _, pair := range []struct {
		leader *tnode
		own    []*tnode
	}{{la, a}, {lb, b}} {
		v, nv := configOf(pair.leader)
		for _, id := range append(v, nv...) {
			if !slices.ContainsFunc(pair.own, func(tn *tnode) bool { return tn.id == id }) {
				t.Errorf("region %s config holds foreign server %s", pair.leader.region, id)
			}
		}
	}
	if got := bootstraps(a) + bootstraps(b); got != 2 {
		t.Errorf("bootstraps = %d, want 2", got)
	}
}

func TestSimultaneousStartNeverTwoClusters(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 5
	}
	for run := range runs {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(run), 42))
			f := newFleet(t, nil)
			var tns []*tnode
			for i := range 5 {
				tns = append(tns, f.add(fmt.Sprintf("n%d-%d", run, i), "r", true, ""))
			}
			rng.Shuffle(len(tns), func(i, j int) { tns[i], tns[j] = tns[j], tns[i] })
			f.shuffleKnown(rng, tns, 250*time.Millisecond)
			for _, tn := range tns {
				f.start(tn)
			}
			leader := f.waitStable("r", 3, 15*time.Second)
			waitFor(t, 5*time.Second, "every node in the one cluster", func() (bool, string) {
				v, nv := configOf(leader)
				return len(v)+len(nv) == 5, fmt.Sprintf("voters %v nonvoters %v", v, nv)
			})
			if got := bootstraps(tns); got != 1 {
				t.Fatalf("run %d: %d bootstraps, want exactly 1", run, got)
			}
			cid := leader.n.fsm.ClusterID()
			for _, tn := range tns {
				if got := tn.n.PublishedState()[KeyCluster]; got != cid {
					t.Errorf("run %d: %s in cluster %q, leader's is %q", run, tn.name, got, cid)
				}
			}
		})
	}
}

func TestGracefulStopTransfersLeadership(t *testing.T) {
	f := newFleet(t, nil)
	startRegion(f, "r1", 3, false)
	leader := f.waitStable("r1", 3, 15*time.Second)
	start := time.Now()
	sub, cancel := leader.n.Subscribe()
	defer cancel()
	go leader.cancel()
	var next *tnode
	waitFor(t, 5*time.Second, "the transfer", func() (bool, string) {
		for _, tn := range f.running("r1") {
			if tn != leader && tn.n.IsLeader() {
				next = tn
				return true, ""
			}
		}
		return false, "no new leader"
	})
	took := time.Since(start)
	<-sub
	if err := <-leader.done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	leader.alive = false
	f.mu.Unlock()
	// The old leader handed over (TimeoutNow) rather than vanishing into an election.
	// Timing is in BenchmarkTransfer (~6 ms); here only a loose bound, the machine may
	// be loaded.
	if got := metricValue(leader.n.m.transfers.WithLabelValues("ok")); got != 1 {
		t.Errorf("successful transfers = %v, want 1", got)
	}
	if took > 3*time.Second {
		t.Errorf("new leader %s after %v", next.name, took)
	}
	t.Logf("leadership transferred to %s in %v", next.name, took)
}

func TestSingleNodeRegionBootstrapsAlone(t *testing.T) {
	f := newFleet(t, nil)
	tns := startRegion(f, "solo", 1, false)
	f.waitStable("solo", 1, 10*time.Second)
	// A second and third node join: the region grows to 3 voters, never sits at 2.
	more := []*tnode{f.add("solo-n1", "solo", true, ""), f.add("solo-n2", "solo", true, "")}
	f.start(more[0])
	waitFor(t, 10*time.Second, "the second node added as a nonvoter", func() (bool, string) {
		v, nv := configOf(tns[0])
		return len(v) == 1 && len(nv) == 1, fmt.Sprintf("voters %v nonvoters %v", v, nv)
	})
	f.start(more[1])
	f.waitStable("solo", 3, 15*time.Second)
	if got := bootstraps(append(tns, more...)); got != 1 {
		t.Errorf("bootstraps = %d, want 1", got)
	}
}

func TestIneligibleNodeNeverVotes(t *testing.T) {
	f := newFleet(t, nil)
	var tns []*tnode
	for i := range 3 {
		tns = append(tns, f.add(fmt.Sprintf("e%d", i), "r", i != 0, ""))
	}
	for _, tn := range tns {
		f.start(tn)
	}
	leader := f.waitStable("r", 1, 15*time.Second)
	v, nv := configOf(leader)
	if slices.Contains(append(v, nv...), tns[0].id) {
		t.Errorf("ineligible node in the configuration: voters %v nonvoters %v", v, nv)
	}
}

func TestUnreachableRaftPortNeverChosen(t *testing.T) {
	f := newFleet(t, nil)
	tns := startRegion(f, "r", 3, false)
	// A phantom peer: alive and eligible in gossip, best rank of all, raft port dead.
	phantom := ""
	for i := 0; ; i++ {
		id := fmt.Sprintf("phantom-%d", i)
		if !slices.ContainsFunc(tns, func(tn *tnode) bool { return byRank(tn.id, id) < 0 }) {
			phantom = id
			break
		}
	}
	f.mu.Lock()
	ph := &tnode{id: phantom, name: "phantom", region: "r", addr: "addr-phantom", eligible: true, alive: true}
	ph.n, _ = New(Config{NodeID: phantom, Name: "phantom", Region: "r", Eligible: true, inmemStores: true, Transport: tns[0].n.cfg.Transport, Control: tns[0].n.cfg.Control})
	f.nodes = append(f.nodes, ph) // published state only; never started, never on the network
	f.mu.Unlock()
	leader := f.waitStable("r", 3, 15*time.Second)
	time.Sleep(500 * time.Millisecond) // several autopilot ticks
	v, nv := configOf(leader)
	if slices.Contains(append(v, nv...), phantom) {
		t.Errorf("unreachable node chosen: voters %v nonvoters %v", v, nv)
	}
	f.mu.Lock()
	ph.alive = false
	f.mu.Unlock()
}
