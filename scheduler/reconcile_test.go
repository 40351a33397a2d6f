package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/policy"
)

// healInput is a region just after a heal: the original web-1-0 is back on n1 (live
// load 0.9) and its replacement web-5-0 runs on n2 (live load 0.1); one replica is
// desired.
func healInput(region, workload ReconcileRule, replacement InstanceState) Input {
	node := func(name string, cpu float64) Node {
		return Node{Name: name, Status: StatusAlive, Capacity: Resources{MilliCPU: 4000, MemoryBytes: 4 << 30},
			Load: Load{CPU: cpu, Memory: cpu}}
	}
	return Input{
		Region: "r", Now: baseNow, Generation: 10, Reconcile: region,
		Nodes:     []Node{node("n1", 0.9), node("n2", 0.1)},
		Workloads: []Workload{{Name: "web", Replicas: 1, Resources: Resources{MilliCPU: 500, MemoryBytes: 256 << 20}, Reconcile: workload}},
		Placements: []Placement{
			{ID: "web-1-0", Workload: "web", Node: "n1", Generation: 1, State: StateRunning, Healthy: true, StartedAt: baseNow.Add(-time.Hour)},
			{ID: "web-5-0", Workload: "web", Node: "n2", Generation: 5, State: replacement, Healthy: replacement == StateRunning, StartedAt: baseNow.Add(-time.Minute)},
		},
	}
}

// TestReconcileRuleResolution: the workload's rule wins over the region's, the
// region's applies when the workload has none, keep_replacement when neither is set,
// and the legacy "default" rule is still understood.
func TestReconcileRuleResolution(t *testing.T) {
	tests := []struct {
		name             string
		region, workload ReconcileRule
		wantStop         string
		wantRule         ReconcileRule
	}{
		{"nothing set: keep_replacement", "", "", "web-1-0", ReconcileKeepReplacement},
		{"region keep_original", ReconcileKeepOriginal, "", "web-5-0", ReconcileKeepOriginal},
		{"workload overrides region", ReconcileKeepOriginal, ReconcileKeepReplacement, "web-1-0", ReconcileKeepReplacement},
		{"workload keep_original over empty region", "", ReconcileKeepOriginal, "web-5-0", ReconcileKeepOriginal},
		{"best_score keeps the cooler node", ReconcileKeepOriginal, ReconcileBestScore, "web-1-0", ReconcileBestScore},
		{"legacy: healthy original is kept", "", ReconcileLegacy, "web-5-0", ReconcileLegacy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := healInput(tt.region, tt.workload, StateRunning)
			if err := in.Validate(); err != nil {
				t.Fatal(err)
			}
			r := Plan(in)
			if len(r.Actions) != 1 {
				t.Fatalf("want one stop, got:\n%s", render(r))
			}
			a := r.Actions[0]
			if a.Kind != ActionStop || a.Cause != CauseSurplus || a.Instance != tt.wantStop {
				t.Errorf("got %s %s [%s], want stop %s [surplus]", a.Kind, a.Instance, a.Cause, tt.wantStop)
			}
			if want := "rule " + string(tt.wantRule) + " keeps"; !strings.Contains(a.Reason, want) {
				t.Errorf("reason %q does not name %q", a.Reason, want)
			}
		})
	}
}

// TestReconcileWaitsForSurvivor: whatever the rule, the instance that goes is stopped
// only once the one that stays reports running; until then neither is stopped and
// nothing new is placed.
func TestReconcileWaitsForSurvivor(t *testing.T) {
	for _, st := range []InstanceState{StatePending, StateFailed} {
		for _, rule := range []ReconcileRule{"", ReconcileKeepReplacement, ReconcileBestScore} {
			in := healInput("", rule, st) // every rule here keeps web-5-0 on n2
			r := Plan(in)
			if !r.Empty() {
				t.Errorf("replacement %s, rule %q: want an empty plan, got:\n%s", st, rule, render(r))
			}
			in.Placements[1].State, in.Placements[1].Healthy = StateRunning, true
			r = Plan(in)
			if len(r.Actions) != 1 || r.Actions[0].Instance != "web-1-0" {
				t.Errorf("replacement now running, rule %q: want web-1-0 stopped, got:\n%s", rule, render(r))
			}
		}
	}
	// Neither runs: stopping the surplus one does not lower the running count.
	in := healInput("", "", StatePending)
	in.Placements[0].State = StateFailed
	if r := Plan(in); len(r.Actions) != 1 || r.Actions[0].Instance != "web-1-0" {
		t.Errorf("neither running: want web-1-0 stopped at once, got:\n%s", render(r))
	}
}

// TestReconcileKeepsDesiredRunning: three replicas desired, six instances after a
// heal, some kept ones still pending: exactly enough running stand-ins survive to keep
// three running, the best-ranked ones, and the rest stop.
func TestReconcileKeepsDesiredRunning(t *testing.T) {
	in := Input{
		Region: "r", Now: baseNow, Generation: 20,
		Nodes:     []Node{{Name: "a", Status: StatusAlive, Capacity: Resources{MilliCPU: 8000, MemoryBytes: 8 << 30}}},
		Workloads: []Workload{{Name: "w", Replicas: 3, Resources: Resources{MilliCPU: 100, MemoryBytes: 64 << 20}}},
	}
	for i, st := range []InstanceState{StateRunning, StateRunning, StateRunning, StateRunning, StatePending, StatePending} {
		// w-0 is the oldest; keep_replacement keeps w-5, w-4, w-3.
		in.Placements = append(in.Placements, Placement{ID: "w-" + string(rune('0'+i)), Workload: "w", Node: "a",
			Generation: uint64(i + 1), State: st})
	}
	r := Plan(in)
	var stopped []string
	for _, a := range r.Actions {
		stopped = append(stopped, a.Instance)
	}
	// Running now: w-0..w-3 (4). Kept: w-5, w-4 (pending), w-3 (running). Two stand-ins
	// needed: w-2 and w-1 (best-ranked running surplus); w-0 stops.
	if strings.Join(stopped, ",") != "w-0" {
		t.Errorf("stopped %v, want [w-0]\n%s", stopped, render(r))
	}
	if !strings.Contains(r.Actions[0].Reason, "w-2, w-1 kept running while waiting for w-5, w-4 to run") {
		t.Errorf("reason %q does not name the stand-ins", r.Actions[0].Reason)
	}
	checkRunningFloor(t, in, r)
}

// A node suspected for a moment around a heal does not change which instance the rule
// stops: the original/replacement pair is decided first; the sibling on the suspect
// node is not part of it and keeps running.
func TestReconcilePairBeforeSuspicion(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	caps := Resources{MilliCPU: 4000, MemoryBytes: 4 << 30}
	run := func(id, node string, gen uint64, supersedes string) Placement {
		return Placement{ID: id, Workload: "late", Node: node, Generation: gen, State: StateRunning, Healthy: true, Supersedes: supersedes}
	}
	for _, tc := range []struct {
		rule ReconcileRule
		stop string
	}{{ReconcileKeepReplacement, "late-11-0"}, {ReconcileKeepOriginal, "late-12-0"}} {
		in := Input{Region: "r", Now: now, Generation: 13,
			Nodes:      []Node{{Name: "back", Status: StatusAlive, Capacity: caps}, {Name: "sus", Status: StatusSuspect, Capacity: caps}, {Name: "new", Status: StatusAlive, Capacity: caps}},
			Workloads:  []Workload{{Name: "late", Replicas: 2, Reconcile: tc.rule}},
			Placements: []Placement{run("late-11-0", "back", 11, ""), run("late-11-1", "sus", 11, ""), run("late-12-0", "new", 12, "late-11-0")},
		}
		res := Plan(in)
		var stops []string
		for _, a := range res.Actions {
			if a.Kind == ActionStop {
				stops = append(stops, a.Instance)
			}
		}
		if len(stops) != 1 || stops[0] != tc.stop {
			t.Errorf("rule %s: stops %v, want [%s]", tc.rule, stops, tc.stop)
		}
	}
}

// TestLostOutdatedRecordDropped: a non-exclusive instance lost with a dead node keeps
// its record (after a heal the reconcile rule chooses between it and its
// replacement), unless the workload was updated since: back after a heal it could only
// be migrated again, so its record is stopped (cause update) and the replacement
// placed in the same plan supersedes nothing. Seen in the e2e update test: the table
// showed the old version "lost" on the dead coordinator's host for as long as the host
// stayed dead.
func TestLostOutdatedRecordDropped(t *testing.T) {
	v1, v2 := policy.Version{Wall: 1, Node: "n0"}, policy.Version{Wall: 2, Node: "n0"}
	caps := Resources{MilliCPU: 4000, MemoryBytes: 4 << 30}
	region := func(want policy.Version, ps ...Placement) Input {
		return Input{
			Region: "r", Now: baseNow, Generation: 20,
			Nodes: []Node{
				{Name: "a", Status: StatusAlive, Capacity: caps},
				{Name: "b", Status: StatusAlive, Capacity: caps},
				{Name: "x", Status: StatusDead, DeadSince: baseNow.Add(-time.Minute), Capacity: caps},
			},
			Workloads: []Workload{{Name: "web", Replicas: 2, Version: want, SpecHash: "h" + want.String(),
				Resources: Resources{MilliCPU: 100, MemoryBytes: 64 << 20}}},
			Placements: ps,
		}
	}
	run := func(id, node string, v policy.Version, supersedes string) Placement {
		return Placement{ID: id, Workload: "web", Node: node, Generation: 1, Version: v, SpecHash: "h" + v.String(),
			State: StateRunning, Healthy: true, Supersedes: supersedes}
	}

	// Current version, replaced already: the record stays for the rule.
	in := region(v2, run("web-1-0", "a", v2, ""), run("web-1-1", "x", v2, ""), run("web-3-0", "b", v2, "web-1-1"))
	if r := plan(t, in); !r.Empty() {
		t.Errorf("lost record of the current version: want an empty plan, got:\n%s", render(r))
	}

	// Updated since the replacement: the survivors migrate and the lost record goes.
	in = region(v2, run("web-1-0", "a", v1, ""), run("web-1-1", "x", v1, ""), run("web-3-0", "b", v1, "web-1-1"))
	r := plan(t, in)
	got := brief(r)
	if !slices.Contains(got, "stop web-1-1 [update]") || len(got) != 3 {
		t.Fatalf("update with a lost v1 record: actions = %q, want its record stopped [update] and two migrations\n%s", got, render(r))
	}
	for _, a := range r.Actions {
		if a.Instance == "web-1-1" && !strings.Contains(a.Reason, "lost with node x (dead since") {
			t.Errorf("reason %q does not say the instance was lost with x", a.Reason)
		}
	}
	in = settle(in, r)
	if r := plan(t, in); !r.Empty() {
		t.Errorf("after the update: want an empty plan, got:\n%s", render(r))
	}

	// Updated and the node died in the same window (no replacement yet): the record
	// goes, and the replacement (new version) supersedes nothing.
	in = region(v2, run("web-1-0", "a", v1, ""), run("web-1-1", "x", v1, ""))
	r = plan(t, in)
	if got := brief(r); !slices.Contains(got, "stop web-1-1 [update]") || !slices.Contains(got, "place web [replace]") {
		t.Fatalf("actions = %q, want the lost record stopped and a replacement placed\n%s", got, render(r))
	}
	for _, a := range r.Actions {
		if a.Kind == ActionPlace && a.Supersedes != "" {
			t.Errorf("replacement %s supersedes %s, a record stopped in the same plan", a.Instance, a.Supersedes)
		}
	}
}
