package region

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestPromiseIsExclusive(t *testing.T) {
	clk := &fakeClock{t: time.Unix(100, 0)}
	n, err := New(Config{NodeID: "b", Name: "b", Region: "r", Eligible: true, inmemStores: true, RaftBind: "127.0.0.1:1", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := []string{"a", "b", "c"}, []string{"b", "c", "d"}
	n.setMyList(l1)
	steps := []struct {
		name     string
		do       func() ControlResponse
		wantOK   bool
		wantText string
	}{
		{"a list I do not compute is refused", func() ControlResponse { return n.promiseTo("b", l2) }, false, "disagree"},
		{"promise to a", func() ControlResponse { return n.promiseTo("a", l1) }, true, ""},
		{"a again (refresh)", func() ControlResponse { return n.promiseTo("a", l1) }, true, ""},
		{"same list, other proposer: refused", func() ControlResponse { return n.promiseTo("c", l1) }, false, "promised to a"},
		{"release by someone else: no effect", func() ControlResponse {
			n.handleControl(ControlRequest{Kind: CtlRelease, From: "c"})
			return n.promiseTo("c", l1)
		}, false, "promised to a"},
		{"release by a frees it", func() ControlResponse {
			n.handleControl(ControlRequest{Kind: CtlRelease, From: "a"})
			return n.promiseTo("c", l1)
		}, true, ""},
		{"expired promise can be replaced", func() ControlResponse {
			clk.t = clk.t.Add(promiseTTL + time.Second)
			return n.promiseTo("a", l1)
		}, true, ""},
		{"view changed: old proposal refused", func() ControlResponse {
			n.setMyList(l2)
			return n.promiseTo("a", l1)
		}, false, "disagree"},
	}
	for _, s := range steps {
		got := s.do()
		if got.OK != s.wantOK || (s.wantText != "" && !strings.Contains(got.Reason, s.wantText)) {
			t.Errorf("%s: got %+v, want ok=%v reason containing %q", s.name, got, s.wantOK, s.wantText)
		}
	}
	ineligible, _ := New(Config{NodeID: "x", Name: "x", Region: "r", inmemStores: true, RaftBind: "127.0.0.1:1"})
	ineligible.setMyList(l1)
	if got := ineligible.promiseTo("a", l1); got.OK {
		t.Error("an ineligible node promised")
	}
}

func TestBootstrapExpectWaitsForAllExpected(t *testing.T) {
	f := newFleet(t, func(c *Config) { c.BootstrapExpect = 3 })
	var tns []*tnode
	for i := range 3 {
		tns = append(tns, f.add(fmt.Sprintf("x%d", i), "r", true, ""))
	}
	f.start(tns[0])
	f.start(tns[1])
	// Far past the 300 ms settle period: without --bootstrap-expect they would have
	// bootstrapped by now.
	time.Sleep(time.Second)
	if got := bootstraps(tns[:2]); got != 0 {
		t.Fatalf("bootstrapped with 2 of 3 expected nodes")
	}
	f.start(tns[2])
	f.waitStable("r", 3, 15*time.Second)
	if got := bootstraps(tns); got != 1 {
		t.Errorf("bootstraps = %d, want 1", got)
	}
}

// Two halves that never saw each other at first start (the documented limit of the
// settle rule) form two groups; once they see each other, the leader refuses to absorb
// the foreign node and reports it instead of silently merging diverged state.
func TestSplitBrainIsReportedNotAbsorbed(t *testing.T) {
	f := newFleet(t, nil)
	var tns []*tnode
	for i := range 3 {
		tns = append(tns, f.add(fmt.Sprintf("m%d", i), "r", true, ""))
	}
	lone := f.add("lone", "r", true, "")
	f.mu.Lock()
	far := time.Now().Add(time.Hour)
	f.known[lone.id] = map[string]time.Time{}
	for _, tn := range tns {
		f.known[lone.id][tn.id] = far
		f.known[tn.id] = map[string]time.Time{lone.id: far}
		for _, o := range tns {
			f.known[tn.id][o.id] = time.Time{}
		}
	}
	f.mu.Unlock()
	for _, tn := range append(tns, lone) {
		f.start(tn)
	}
	var leader *tnode
	waitFor(t, 15*time.Second, "the three-node group's leader", func() (bool, string) {
		for _, tn := range tns {
			if v, _ := configOf(tn); tn.n.IsLeader() && len(v) == 3 && tn.n.fsm.ClusterID() != "" {
				leader = tn
				return true, ""
			}
		}
		return false, ""
	})
	waitFor(t, 10*time.Second, "the lone node leads its own group", func() (bool, string) {
		return lone.n.IsLeader() && lone.n.fsm.ClusterID() != "", ""
	})
	f.mu.Lock()
	f.known = map[string]map[string]time.Time{} // heal: everyone sees everyone
	f.mu.Unlock()
	waitFor(t, 10*time.Second, "the foreign node reported", func() (bool, string) {
		return metricValue(leader.n.m.foreign) == 1, ""
	})
	time.Sleep(500 * time.Millisecond) // several autopilot ticks: it must still not be added
	if v, nv := configOf(leader); slices.Contains(append(v, nv...), lone.id) {
		t.Errorf("foreign node absorbed: voters %v nonvoters %v", v, nv)
	}
}

// What keeps a node from bootstrapping a second cluster of its region: a node of the
// region in a cluster, alive or dead (the chaos campaign's case: a wiped node whose
// only regional peer was unreachable for a moment bootstrapped alone and split its
// region for good), or a live witness of the region in another region. A node that
// left does not count, nor does a witness that is dead.
func TestClusterEvidence(t *testing.T) {
	in := map[string]string{KeyState: StateBootstrapped, KeyCluster: "r-1"}
	tests := []struct {
		name   string
		region []Peer
		others []Peer
		want   string // "" or a substring of the reason
	}{
		{"nothing", []Peer{{ID: "a", Alive: true, State: map[string]string{KeyState: StateNone}}}, nil, ""},
		{"alive in a cluster", []Peer{{ID: "a", Name: "c6", Alive: true, State: in}}, nil, "c6 is already in a cluster"},
		{"dead in a cluster", []Peer{{ID: "a", Name: "c6", State: in}}, nil, "c6 is in a cluster (unreachable now"},
		{"cluster id only", []Peer{{ID: "a", Alive: true, State: map[string]string{KeyCluster: "r-1"}}}, nil, "in a cluster"},
		{"left", []Peer{{ID: "a", Left: true, State: in}}, nil, ""},
		{"self", []Peer{{ID: "me", Alive: true, State: in}}, nil, ""},
		{"live witness", nil, []Peer{{ID: "w", Name: "c3", Region: "hub", Alive: true, State: map[string]string{KeyWitnessing: "other,r"}}}, "c3 of region hub is a witness of this region"},
		{"dead witness", nil, []Peer{{ID: "w", Region: "hub", State: map[string]string{KeyWitnessing: "r"}}}, ""},
		{"witness of another region", nil, []Peer{{ID: "w", Region: "hub", Alive: true, State: map[string]string{KeyWitnessing: "r2"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm, om := map[string]Peer{}, map[string]Peer{}
			for _, p := range tt.region {
				rm[p.ID] = p
			}
			for _, p := range tt.others {
				om[p.ID] = p
			}
			got := clusterEvidence("me", "r", rm, om)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("clusterEvidence = %q, want %q", got, tt.want)
			}
		})
	}
}

// A node that sees a dead clustered peer of its region refuses a bootstrap promise,
// and its own bootstrap attempt waits and restarts the settle period.
func TestNoBootstrapWhileARegionPeerIsInACluster(t *testing.T) {
	clk := &fakeClock{t: time.Unix(100, 0)}
	n, err := New(Config{NodeID: "b", Name: "b", Region: "r", Eligible: true, inmemStores: true, RaftBind: "127.0.0.1:1", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	n.UpdatePeers([]Peer{
		{ID: "b", Name: "b", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:1"},
		{ID: "a", Name: "c6", Region: "r", Eligible: true, RaftAddr: "127.0.0.1:2", State: map[string]string{KeyState: StateBootstrapped, KeyCluster: "r-1"}},
	})
	n.setMyList([]string{"b"})
	if got := n.promiseTo("b", []string{"b"}); got.OK || !strings.Contains(got.Reason, "c6 is in a cluster") {
		t.Errorf("promise with a dead clustered peer: %+v, want a refusal naming c6", got)
	}
	region, others, _ := n.regionView()
	ls := &loopState{candKey: "b", candSince: clk.t.Add(-time.Hour)} // a settled view of itself
	n.tryBootstrap(t.Context(), nil, nil, ls, region, others, clk.t)
	if ls.candKey != "" || !strings.Contains(ls.waitReason, "c6 is in a cluster") {
		t.Errorf("tryBootstrap left candKey %q, reason %q; want the settle period restarted and a wait naming c6", ls.candKey, ls.waitReason)
	}
	if slices.Contains(n.myList, "b") {
		t.Errorf("list %v computed while the region has a cluster", n.myList)
	}
}

// A region peer whose record has not arrived (its membership has, with its Raft
// address) may be in a cluster already: the node waits for the record instead of
// bootstrapping beside it, and settles again once it came (issue 14: second Raft
// groups in a 1,000-agent simulation whose records lagged minutes behind).
func TestNoBootstrapBeforeEveryRegionPeerPublished(t *testing.T) {
	n, clk, region, others, ls := bootstrapView(t, "a,b",
		Peer{ID: "b", Name: "late", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:2"})
	n.tryBootstrap(t.Context(), nil, &fakeControl{}, ls, region, others, clk.t)
	if ls.candKey != "" || !strings.Contains(ls.waitReason, "late has not published its raft state") {
		t.Errorf("tryBootstrap left candKey %q, reason %q; want the settle period restarted and a wait naming late", ls.candKey, ls.waitReason)
	}
	if len(n.myList) != 0 {
		t.Errorf("list %v computed before every peer published", n.myList)
	}
}

// A peer whose gossiped record still says "none" but whose Raft port answers that it
// is in a cluster stops the bootstrap: its record is older than its bootstrap.
func TestNoBootstrapWhenAProbeAnswersInACluster(t *testing.T) {
	none := map[string]string{KeyState: StateNone}
	n, clk, region, others, ls := bootstrapView(t, "a,b,c",
		Peer{ID: "b", Name: "b", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:2", State: none},
		Peer{ID: "c", Name: "c", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:3", State: none})
	ctl := &fakeControl{hasState: map[string]bool{"127.0.0.1:3": true}}
	n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, clk.t)
	if !strings.Contains(ls.waitReason, "c answers that it is in a cluster") {
		t.Errorf("reason %q, want a wait naming c", ls.waitReason)
	}
	if ctl.proposals != 0 {
		t.Errorf("%d promises asked, want none", ctl.proposals)
	}
	// Without it the same view proceeds to the promise round.
	ctl = &fakeControl{}
	ls = newLoopState()
	ls.candKey, ls.candSince = "a,b,c", clk.t.Add(-time.Hour)
	n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, clk.t)
	if ctl.proposals == 0 {
		t.Errorf("no promise asked of an all-empty region (reason %q)", ls.waitReason)
	}
}

// An alive candidate whose Raft port does not answer holds the bootstrap back for
// unreachableGrace settle periods (it may be an overloaded member of a group this node
// has not heard of); after that it is left out, and the others bootstrap.
func TestUnreachableCandidateHoldsBootstrapBack(t *testing.T) {
	none := map[string]string{KeyState: StateNone}
	n, clk, region, others, ls := bootstrapView(t, "a,b,c",
		Peer{ID: "b", Name: "b", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:2", State: none},
		Peer{ID: "c", Name: "slow", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:3", State: none})
	ctl := &fakeControl{down: map[string]bool{"127.0.0.1:3": true}}
	grace := unreachableGrace * n.cfg.SettlePeriod
	for _, after := range []time.Duration{0, grace / 2, grace - time.Millisecond} {
		ls.probes = map[string]probeResult{} // probe again
		n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, clk.t.Add(after))
		if !strings.Contains(ls.waitReason, "slow is alive but its raft port 127.0.0.1:3 does not answer") || ctl.proposals != 0 {
			t.Fatalf("%v after the first probe: reason %q, %d promises asked; want a wait naming slow and none asked", after, ls.waitReason, ctl.proposals)
		}
	}
	// It answers once: the grace starts again from its next silence.
	ctl.setDown("127.0.0.1:3", false)
	ls.probes = map[string]probeResult{}
	n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, clk.t.Add(grace))
	if _, held := ls.unreachSince["c"]; held {
		t.Fatal("a candidate that answered is still counted unreachable")
	}
	ctl.setDown("127.0.0.1:3", true)
	ctl.proposals = 0
	start := clk.t.Add(grace + time.Second)
	ls.probes = map[string]probeResult{}
	n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, start)
	if ctl.proposals != 0 {
		t.Fatalf("the grace did not start again: %d promises asked", ctl.proposals)
	}
	ls.probes = map[string]probeResult{}
	ls.retryAt = time.Time{}
	n.tryBootstrap(t.Context(), nil, ctl, ls, region, others, start.Add(grace))
	if ctl.proposals == 0 {
		t.Fatalf("after the grace the others do not bootstrap without it: reason %q", ls.waitReason)
	}
}

// bootstrapView is node a of region r, eligible, at 127.0.0.1:1, seeing peers (a with
// raft.state none is added first), its region and other regions split as the loop
// splits them, and a settled loop state for candidates key.
func bootstrapView(t *testing.T, key string, peers ...Peer) (*Node, *fakeClock, map[string]Peer, map[string]Peer, *loopState) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(100, 0)}
	n, err := New(Config{NodeID: "a", Name: "a", Region: "r", Eligible: true, inmemStores: true, RaftBind: "127.0.0.1:1", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	self := Peer{ID: "a", Name: "a", Region: "r", Eligible: true, Alive: true, RaftAddr: "127.0.0.1:1", State: map[string]string{KeyState: StateNone}}
	n.UpdatePeers(append([]Peer{self}, peers...))
	region, others, _ := n.regionView()
	ls := newLoopState()
	ls.candKey, ls.candSince = key, clk.t.Add(-time.Hour)
	return n, clk, region, others, ls
}

// fakeControl answers probes (HasState for the addresses in hasState; nothing from
// those in down) and refuses every promise, counting them.
type fakeControl struct {
	mu        sync.Mutex
	hasState  map[string]bool
	down      map[string]bool // these addresses do not answer
	proposals int
}

func (f *fakeControl) setDown(addr string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[addr] = down
}

func (f *fakeControl) Call(_ context.Context, addr string, req ControlRequest) (ControlResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[addr] {
		return ControlResponse{}, fmt.Errorf("dial %s: connection refused", addr)
	}
	switch req.Kind {
	case CtlProbe:
		return ControlResponse{OK: true, HasState: f.hasState[addr]}, nil
	case CtlPropose:
		f.proposals++
		return ControlResponse{Reason: "refused by the fake"}, nil
	}
	return ControlResponse{OK: true}, nil
}

func (f *fakeControl) Serve(func(ControlRequest) ControlResponse) {}
