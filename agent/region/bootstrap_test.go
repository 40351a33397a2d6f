package region

import (
	"fmt"
	"slices"
	"strings"
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
