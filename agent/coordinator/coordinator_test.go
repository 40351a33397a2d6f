package coordinator

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/scheduler"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestRunFollowsLeadership: the loop starts on winning leadership with a barrier,
// commits and delivers; it stops (and View says so) when leadership is lost, and
// starts again, barrier first, on winning it back.
func TestRunFollowsLeadership(t *testing.T) {
	clk := newFakeClock()
	raft := newFakeRaft()
	raft.leader = false
	raft.applied = make(chan region.Command, 16)
	fleet := &fakeFleet{}
	store := newFakeIntents()
	for _, n := range []string{"n1", "n2"} {
		fleet.set(gossip.Member{Name: n, Region: "r1", Status: gossip.StatusAlive, MilliCPU: 1000, MemoryBytes: 1 << 30, Drivers: []string{"exec"}, Health: gossip.HealthOK})
	}
	one := 1
	store.put(intents.LiveIntent{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "web"},
		Workload: &policy.WorkloadSpec{Mode: policy.ModeReplicated, Replicas: &one, Driver: "exec"}}, Version: policy.Version{Wall: 1, Node: "x"}})
	sent := make(chan Assignment, 16)
	c, err := New(Config{Region: "r1", Node: "n1", Raft: raft, Fleet: fleet, Intents: store, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Send: func(node string, b []byte) error {
			m, err := Decode(b)
			if err != nil {
				t.Errorf("decode: %v", err)
				return err
			}
			sent <- m.(Assignment)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}, 4)
	c.loopExited = func() { exited <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	raft.setLeader(true)
	cmd := <-raft.applied
	if raft.barriers != 1 {
		t.Errorf("barriers before the first commit = %d, want 1", raft.barriers)
	}
	if cmd.Op != region.OpPlan || len(cmd.Plan.Places) != 1 {
		t.Fatalf("first commit = %+v, want a plan placing web", cmd)
	}
	got := map[string]int{}
	for range 2 {
		a := <-sent
		got[a.Node] = len(a.Instances)
		if a.Term != 2 || a.Cluster != "c1" {
			t.Errorf("assignment term %d cluster %q, want term 2 cluster c1", a.Term, a.Cluster)
		}
	}
	if got[cmd.Plan.Places[0].Node] != 1 || len(got) != 2 {
		t.Errorf("deliveries = %v, want both nodes, one instance on %s", got, cmd.Plan.Places[0].Node)
	}

	raft.setLeader(false)
	<-exited
	if _, ok := c.View(""); ok || c.Leading() {
		t.Error("View answers after leadership was lost")
	}
	raft.setLeader(true)
	// Winning again: a barrier, then every node hears from the new term.
	for range 2 {
		if a := <-sent; a.Term != 3 {
			t.Errorf("after re-election: term %d, want 3", a.Term)
		}
	}
	if raft.barriers != 2 {
		t.Errorf("barriers = %d, want 2", raft.barriers)
	}
	// A flap whose two signals coalesce: the old term's loop is replaced all the same.
	raft.setLeader(false)
	raft.setLeader(true)
	for range 2 {
		if a := <-sent; a.Term != 4 {
			t.Errorf("after a flap: term %d, want 4", a.Term)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.Leading() {
		t.Error("Leading after Run returned")
	}
}

// TestBuildInputGolden: the translation from fleet view, intents, table and reports
// into the scheduler's input.
func TestBuildInputGolden(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	three, prio := 3, 70
	cpu, mem := 0.8, 0.9
	st := region.NewState()
	st.Index, st.Generation = 41, 40
	st.Drained["n3"] = true
	st.Placements["web-40-0"] = region.Placement{ID: "web-40-0", Workload: "web", Node: "n1", Version: policy.Version{Wall: 5, Node: "a"}, Generation: 40, StartedAt: now.Add(-time.Hour)}
	st.Placements["web-40-1"] = region.Placement{ID: "web-40-1", Workload: "web", Node: "n2", Version: policy.Version{Wall: 5, Node: "a"}, Generation: 40, StartedAt: now.Add(-time.Hour)}
	st.Placements["old-3-0"] = region.Placement{ID: "old-3-0", Workload: "old", Node: "n2", Generation: 3}
	st.Placements["late-30-0"] = region.Placement{ID: "late-30-0", Workload: "late", Node: "n1", Generation: 30, Version: policy.Version{Wall: 9, Node: "b"}}
	st.Placements["late-30-1"] = region.Placement{ID: "late-30-1", Workload: "late", Node: "n3", Generation: 30, Version: policy.Version{Wall: 8, Node: "b"}}
	snap := Snapshot{
		Region: "site-a", Now: now,
		Members: []gossip.Member{
			{Name: "n1", Region: "site-a", Status: "alive", Health: "ok", MilliCPU: 2000, MemoryBytes: 1 << 30, Load: gossip.Load{CPU: 0.9, Memory: 0.2}, Labels: map[string]string{"zone": "z1"}, Drivers: []string{"exec"}},
			{Name: "n2", Region: "site-a", Status: "dead", StatusSince: now.Add(-2 * time.Second), MilliCPU: 1000, MemoryBytes: 512 << 20, Drivers: []string{"exec", "docker"}},
			{Name: "n3", Region: "site-a", Status: "suspect", MilliCPU: 1000, MemoryBytes: 512 << 20},
			{Name: "x1", Region: "site-b", Status: "alive", Health: "ok", MilliCPU: 4000, MemoryBytes: 4 << 30},
			{Name: "n4", Region: "site-a", Status: "alive", MilliCPU: 1000, MemoryBytes: 512 << 20}, // no load record yet: suspect
		},
		State: st,
		Workloads: []intents.LiveIntent{
			{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "web"}, Workload: &policy.WorkloadSpec{
				Mode: "replicated", Replicas: &three, Driver: "exec", Priority: &prio, Resources: policy.Resources{CPU: "250m", Memory: "64Mi"},
				Constraints: policy.Constraints{Labels: map[string]string{"zone": "z1"}}, Disconnect: policy.Disconnect{ReplaceAfter: "5s"}}},
				Version: policy.Version{Wall: 6, Node: "a"}},
			{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "agent"}, Workload: &policy.WorkloadSpec{Mode: "global", Driver: "exec"}},
				Version: policy.Version{Wall: 2, Node: "b"}},
			{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "elsewhere"}, Workload: &policy.WorkloadSpec{Mode: "replicated", Replicas: &three, Driver: "exec", Regions: []string{"site-b"}}},
				Version: policy.Version{Wall: 2, Node: "b"}},
			{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "vm"}, Workload: &policy.WorkloadSpec{Mode: "replicated", Replicas: &three, Driver: "docker", Image: "evil:1"}},
				Version: policy.Version{Wall: 2, Node: "b"}},
		},
		Policies: []intents.LiveIntent{
			{Intent: &policy.Intent{Kind: policy.KindPolicy, Metadata: policy.Metadata{Name: "all"}, Policy: &policy.PolicySpec{Offload: &policy.Offload{CPUAbove: &mem, SustainedFor: "1m"}}}},
			{Intent: &policy.Intent{Kind: policy.KindPolicy, Metadata: policy.Metadata{Name: "site"}, Policy: &policy.PolicySpec{Regions: []string{"site-a"},
				Offload:   &policy.Offload{CPUAbove: &cpu, SustainedFor: "10s", Cooldown: "30s"},
				Admission: &policy.Admission{AllowedImages: []string{"registry.local/*"}}}}},
		},
		Tombstones: map[string]policy.Version{"old": {Wall: 1, Node: "a"}}, // "late" is unknown here: held
		Reports: map[string]Report{
			"n1": {Node: "n1", Instances: []InstanceReport{{ID: "web-40-0", Generation: 40, State: "running", Since: now.Add(-time.Minute), MilliCPU: 600, MemoryBytes: 48 << 20}}},
			"n2": {Node: "n2", Instances: []InstanceReport{{ID: "web-40-1", Generation: 39, State: "running"}}}, // an older generation: not this placement
		},
		Hot: map[string]HotState{"n1": {HighSince: now.Add(-15 * time.Second)}},
	}
	in, rejected := BuildInput(snap)
	got, err := json.MarshalIndent(map[string]any{"input": in, "rejected": rejected}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "input.golden")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)+"\n"); d != "" {
		t.Errorf("BuildInput differs from %s (-want +got; rerun with -update after checking):\n%s", path, d)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("the built input does not validate: %v", err)
	}
	// The result plans without surprises: the dead node's instance counts until 5 s.
	res := scheduler.Plan(in)
	if res.RecheckAt.IsZero() {
		t.Error("want a recheck when n2's replaceAfter ends")
	}
}

func TestUpdateHot(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	op := scheduler.OffloadPolicy{CPUAbove: 0.8}
	ms := func(cpu float64) []gossip.Member {
		return []gossip.Member{{Name: "a", Region: "r", Load: gossip.Load{CPU: cpu}}, {Name: "b", Region: "other", Load: gossip.Load{CPU: 1}}}
	}
	h := UpdateHot(nil, ms(0.9), "r", op, t0)
	if !h["a"].HighSince.Equal(t0) || len(h) != 1 {
		t.Fatalf("hot node: %+v", h)
	}
	h = UpdateHot(h, ms(0.95), "r", op, t0.Add(time.Second))
	if !h["a"].HighSince.Equal(t0) {
		t.Errorf("still hot: HighSince moved to %v", h["a"].HighSince)
	}
	h = UpdateHot(h, ms(0.5), "r", op, t0.Add(2*time.Second))
	if _, ok := h["a"]; ok {
		t.Errorf("cooled node still tracked: %+v", h["a"])
	}
}

func TestHandovers(t *testing.T) {
	st := region.NewState()
	put := func(id, node, replaces string, gen uint64) {
		st.Placements[id] = region.Placement{ID: id, Workload: "w", Node: node, Generation: gen, Replaces: replaces}
	}
	put("w-1-0", "a", "", 1)
	put("w-2-0", "b", "w-1-0", 2) // a migration of w-1-0, itself migrated again:
	put("w-3-0", "c", "w-2-0", 3)
	put("x-4-0", "d", "gone", 4) // replaces something no longer in the table
	up := map[string]bool{"a": true, "b": true, "c": true, "d": true}
	if got := HandingOver(st, up); len(got) != 2 || !got["w-1-0"] || !got["w-2-0"] {
		t.Errorf("HandingOver = %v, want w-1-0 and w-2-0", got)
	}
	up["c"] = false // the newest replacement's node is down: w-2-0 counts again
	if got := HandingOver(st, up); len(got) != 1 || !got["w-1-0"] {
		t.Errorf("HandingOver with c down = %v, want w-1-0 only", got)
	}
	running := func(node, id string, gen uint64, state string) map[string]Report {
		return map[string]Report{node: {Node: node, Instances: []InstanceReport{{ID: id, Generation: gen, State: state}}}}
	}
	if got := Handovers(st, running("c", "w-3-0", 3, "starting")); len(got) != 0 {
		t.Errorf("not yet running: Handovers = %v, want none", got)
	}
	if got := Handovers(st, running("c", "w-3-0", 2, "running")); len(got) != 0 {
		t.Errorf("another generation running: Handovers = %v, want none", got)
	}
	if got := Handovers(st, running("c", "w-3-0", 3, "running")); !slices.Equal(got, []string{"w-1-0", "w-2-0"}) {
		t.Errorf("Handovers = %v, want the whole chain w-1-0, w-2-0", got)
	}
	if got := PlanCommand(3, scheduler.Result{Generation: 4}, []string{"w-1-0"}, nil, nil); len(got.Plan.Stops) != 1 || got.Plan.Base != 3 {
		t.Errorf("PlanCommand with a hand-over only = %+v", got.Plan)
	}
}

// The unplaced list is committed again only when the decision changes, not when the
// node counts inside a reason move with membership or load.
func TestSameUnplacedIgnoresCounts(t *testing.T) {
	a := region.Unplaced{Workload: "cam", Count: 1, Reason: "4 nodes filtered by label camera=yes"}
	for _, tc := range []struct {
		b    region.Unplaced
		same bool
	}{
		{region.Unplaced{Workload: "cam", Count: 1, Reason: "3 nodes filtered by label camera=yes"}, true},
		{region.Unplaced{Workload: "cam", Count: 2, Reason: "4 nodes filtered by label camera=yes"}, false},
		{region.Unplaced{Workload: "cam", Count: 1, Reason: "3 nodes filtered by label camera=yes, 1 by node dead"}, false},
		{region.Unplaced{Workload: "cam", Instance: "cam-1-0", Count: 1, Reason: "4 nodes filtered by label camera=yes"}, false},
	} {
		if got := sameUnplaced(a, tc.b); got != tc.same {
			t.Errorf("sameUnplaced(%q, %+v) = %v, want %v", a.Reason, tc.b, got, tc.same)
		}
	}
}
