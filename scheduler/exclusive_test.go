package scheduler

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// exclusiveRegion is a region of three alive nodes a, b and x (x's status is set by
// each test) with one exclusive workload db of one replica, running as db-1-0 on x.
func exclusiveRegion() Input {
	caps := Resources{MilliCPU: 4000, MemoryBytes: 4 << 30}
	return Input{
		Region: "r", Now: baseNow, Seed: 1, Generation: 20,
		Nodes: []Node{
			{Name: "a", Status: StatusAlive, Capacity: caps},
			{Name: "b", Status: StatusAlive, Capacity: caps},
			{Name: "x", Status: StatusAlive, Capacity: caps},
		},
		Workloads:  []Workload{{Name: "db", Replicas: 1, Exclusive: true, Resources: Resources{MilliCPU: 500, MemoryBytes: 256 << 20}}},
		Placements: []Placement{{ID: "db-1-0", Workload: "db", Node: "x", Generation: 1, State: StateRunning, Healthy: true}},
	}
}

// brief renders a plan's actions as "stop db-1-0 [node-gone]" and "place db [replace]"
// (new instance IDs and nodes depend on scoring, not on the rule under test).
func brief(r Result) []string {
	var out []string
	for _, a := range r.Actions {
		switch a.Kind {
		case ActionStop:
			out = append(out, "stop "+a.Instance+" ["+string(a.Cause)+"]")
		case ActionMigrate:
			out = append(out, "migrate "+a.Replaces+" ["+string(a.Cause)+"]")
		default:
			out = append(out, "place "+a.Workload+" ["+string(a.Cause)+"]")
		}
	}
	return out
}

func plan(t *testing.T, in Input) Result {
	t.Helper()
	if err := in.Validate(); err != nil {
		t.Fatalf("invalid input: %v", err)
	}
	r := Plan(in)
	checkPlan(t, in, r)
	checkExclusive(t, in, r)
	return r
}

func setNode(in *Input, name string, f func(n *Node)) {
	for i := range in.Nodes {
		if in.Nodes[i].Name == name {
			f(&in.Nodes[i])
		}
	}
}

func dead(since time.Time) func(*Node) {
	return func(n *Node) { n.Status, n.DeadSince = StatusDead, since }
}

func lease(in *Input, node string, until time.Time) {
	if in.Leases == nil {
		in.Leases = map[string]time.Time{}
	}
	in.Leases[node] = until
}

// TestExclusiveLostNode: an exclusive instance on a dead, left or gone node counts as
// running until max(DeadSince+ReplaceAfter, lease end) (left or gone: the lease end),
// with a recheck then; once lost, its record is stopped (node-gone) in the plan that
// replaces it, and the replacement supersedes nothing.
func TestExclusiveLostNode(t *testing.T) {
	now := baseNow
	tests := []struct {
		name    string
		setup   func(in *Input)
		want    []string
		recheck time.Time
		reason  string // substring of the first action's reason
	}{
		{
			name: "dead, lease not ended: held, recheck at the lease end",
			setup: func(in *Input) {
				setNode(in, "x", dead(now.Add(-10*time.Second)))
				lease(in, "x", now.Add(20*time.Second))
			},
			recheck: now.Add(20 * time.Second),
		},
		{
			name: "dead, lease ended: record stopped and replaced",
			setup: func(in *Input) {
				setNode(in, "x", dead(now.Add(-10*time.Second)))
				lease(in, "x", now.Add(-time.Second))
			},
			want:   []string{"stop db-1-0 [node-gone]", "place db [replace]"},
			reason: "node x is dead (since 2025-01-01T11:59:50Z); its lease ended at 2025-01-01T11:59:59Z, so the instance has stopped",
		},
		{
			name:  "dead, lease ends exactly now: ended",
			setup: func(in *Input) { setNode(in, "x", dead(now.Add(-10*time.Second))); lease(in, "x", now) },
			want:  []string{"stop db-1-0 [node-gone]", "place db [replace]"},
		},
		{
			name:   "dead, no lease entry: replaced as any workload, record stopped",
			setup:  func(in *Input) { setNode(in, "x", dead(now.Add(-10*time.Second))) },
			want:   []string{"stop db-1-0 [node-gone]", "place db [replace]"},
			reason: "it holds no lease",
		},
		{
			name: "dead, lease ended, replaceAfter not passed: waits for replaceAfter",
			setup: func(in *Input) {
				in.Workloads[0].ReplaceAfter = time.Minute
				setNode(in, "x", dead(now.Add(-10*time.Second)))
				lease(in, "x", now.Add(-time.Second))
			},
			recheck: now.Add(50 * time.Second),
		},
		{
			name: "dead, replaceAfter passed, lease not ended: waits for the lease",
			setup: func(in *Input) {
				in.Workloads[0].ReplaceAfter = 5 * time.Second
				setNode(in, "x", dead(now.Add(-10*time.Second)))
				lease(in, "x", now.Add(30*time.Second))
			},
			recheck: now.Add(30 * time.Second),
		},
		{
			name:    "dead since unknown, lease not ended: held",
			setup:   func(in *Input) { setNode(in, "x", dead(time.Time{})); lease(in, "x", now.Add(5*time.Second)) },
			recheck: now.Add(5 * time.Second),
		},
		{
			name: "left, lease not ended: held, not stopped",
			setup: func(in *Input) {
				setNode(in, "x", func(n *Node) { n.Status = StatusLeft })
				lease(in, "x", now.Add(15*time.Second))
			},
			recheck: now.Add(15 * time.Second),
		},
		{
			name: "left, lease ended: stopped and replaced",
			setup: func(in *Input) {
				setNode(in, "x", func(n *Node) { n.Status = StatusLeft })
				lease(in, "x", now.Add(-15*time.Second))
			},
			want:   []string{"stop db-1-0 [node-gone]", "place db [replace]"},
			reason: "node x left the region; its lease ended at",
		},
		{
			name:    "gone, lease not ended: held",
			setup:   func(in *Input) { in.Nodes = in.Nodes[:2]; lease(in, "x", now.Add(15*time.Second)) },
			recheck: now.Add(15 * time.Second),
		},
		{
			name:   "gone, no lease: stopped and replaced at once",
			setup:  func(in *Input) { in.Nodes = in.Nodes[:2] },
			want:   []string{"stop db-1-0 [node-gone]", "place db [replace]"},
			reason: "node x is not in the region any more; it holds no lease",
		},
		{
			name: "suspect, lease ended: kept and counted, as for any workload",
			setup: func(in *Input) {
				setNode(in, "x", func(n *Node) { n.Status = StatusSuspect })
				lease(in, "x", now.Add(-time.Minute))
			},
		},
		{
			name: "not exclusive: the lease is ignored, the lost record kept for reconciliation",
			setup: func(in *Input) {
				in.Workloads[0].Exclusive = false
				setNode(in, "x", dead(now.Add(-10*time.Second)))
				lease(in, "x", now.Add(20*time.Second))
			},
			want: []string{"place db [replace]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exclusiveRegion()
			tt.setup(&in)
			r := plan(t, in)
			if got := brief(r); !slices.Equal(got, tt.want) {
				t.Errorf("actions = %q, want %q\n%s", got, tt.want, render(r))
			}
			if !r.RecheckAt.Equal(tt.recheck) {
				t.Errorf("recheck at %v, want %v", r.RecheckAt, tt.recheck)
			}
			if tt.reason != "" && (len(r.Actions) == 0 || !strings.Contains(r.Actions[0].Reason, tt.reason)) {
				t.Errorf("first reason does not contain %q:\n%s", tt.reason, render(r))
			}
			for _, a := range r.Actions {
				if a.Kind == ActionPlace && in.Workloads[0].Exclusive && a.Supersedes != "" {
					t.Errorf("exclusive replacement %s supersedes %s; want no pairing", a.Instance, a.Supersedes)
				}
				if a.Kind == ActionPlace && !in.Workloads[0].Exclusive && a.Supersedes != "db-1-0" {
					t.Errorf("replacement %s supersedes %q, want db-1-0", a.Instance, a.Supersedes)
				}
			}
		})
	}
}

// TestExclusiveFailover follows one failover through time: nothing moves while the
// dead node's lease holds, the replacement starts in the plan made at the lease's end
// (the RecheckAt of the first), and the plan after that is empty.
func TestExclusiveFailover(t *testing.T) {
	in := exclusiveRegion()
	setNode(&in, "x", dead(baseNow.Add(-2*time.Second)))
	lease(&in, "x", baseNow.Add(8*time.Second))
	r := plan(t, in)
	if !r.Empty() || !r.RecheckAt.Equal(baseNow.Add(8*time.Second)) {
		t.Fatalf("while the lease holds: want an empty plan and a recheck at its end, got:\n%s", render(r))
	}
	in.Now = r.RecheckAt
	r = plan(t, in)
	if got, want := brief(r), []string{"stop db-1-0 [node-gone]", "place db [replace]"}; !slices.Equal(got, want) {
		t.Fatalf("at the lease end: actions = %q, want %q", got, want)
	}
	in = settle(in, r)
	if r = plan(t, in); !r.Empty() {
		t.Errorf("after the failover: want an empty plan, got:\n%s", render(r))
	}
	if n := len(in.Placements); n != 1 || in.Placements[0].Node == "x" || in.Placements[0].Supersedes != "" {
		t.Errorf("table after the failover = %+v, want one instance off x superseding nothing", in.Placements)
	}
}

// TestExclusiveStopping: a Stopping record counts (slot and resources) but is never
// acted on, never surplus, never preempted; once its lost node's lease has ended it
// no longer counts.
func TestExclusiveStopping(t *testing.T) {
	stopping := func(in *Input, id, node string) {
		in.Placements = append(in.Placements, Placement{ID: id, Workload: "db", Node: node, Generation: 1, State: StateRunning, Stopping: true})
	}
	tests := []struct {
		name    string
		setup   func(in *Input)
		want    []string
		recheck time.Time
		check   func(t *testing.T, in Input, r Result)
	}{
		{
			name:  "fills the slot: nothing placed",
			setup: func(in *Input) { in.Placements = nil; stopping(in, "db-1-0", "a") },
		},
		{
			name:  "with a live instance beyond desired: neither is stopped",
			setup: func(in *Input) { stopping(in, "db-0-0", "a") },
		},
		{
			name: "two desired, one stopping: one placed",
			setup: func(in *Input) {
				in.Workloads[0].Replicas = 3
				stopping(in, "db-0-0", "a")
			},
			want: []string{"place db [missing]"},
		},
		{
			name: "workload deleted: no action",
			setup: func(in *Input) {
				in.Workloads = []Workload{{Name: "web", Replicas: 0}}
				in.Placements = nil
				stopping(in, "db-1-0", "a")
			},
		},
		{
			name: "on a draining node that fails the constraints: still no action",
			setup: func(in *Input) {
				in.Placements = nil
				stopping(in, "db-1-0", "a")
				in.Workloads[0].Constraints = map[string]string{"k": "v"}
				setNode(in, "a", func(n *Node) { n.Draining = true })
				in.Placements[0].Failures, in.Workloads[0].MaxFailures = 9, 3
				in.Workloads[0].Version.Wall = 5
			},
		},
		{
			name: "on a dead node whose lease ended: no longer counts, no action for it",
			setup: func(in *Input) {
				in.Placements = nil
				stopping(in, "db-1-0", "a")
				setNode(in, "a", dead(baseNow.Add(-time.Minute)))
				lease(in, "a", baseNow.Add(-time.Second))
			},
			want: []string{"place db [missing]"},
		},
		{
			name: "on a dead node whose lease holds: counts, recheck at its end",
			setup: func(in *Input) {
				in.Placements = nil
				stopping(in, "db-1-0", "a")
				setNode(in, "a", dead(baseNow.Add(-time.Minute)))
				lease(in, "a", baseNow.Add(time.Second))
			},
			recheck: baseNow.Add(time.Second),
		},
		{
			name: "uses its node's resources",
			setup: func(in *Input) {
				in.Nodes = in.Nodes[:1]
				in.Nodes[0].Capacity = Resources{MilliCPU: 1000, MemoryBytes: 1 << 30}
				in.Placements = nil
				stopping(in, "db-1-0", "a")
				in.Workloads = append(in.Workloads, Workload{Name: "web", Replicas: 1, Resources: Resources{MilliCPU: 600}})
			},
			check: func(t *testing.T, in Input, r Result) {
				if len(r.Unplaced) != 1 || !strings.Contains(r.Unplaced[0].Reason, "insufficient cpu") {
					t.Errorf("want web unplaced for insufficient cpu, got:\n%s", render(r))
				}
			},
		},
		{
			name: "never preempted",
			setup: func(in *Input) {
				in.Nodes = in.Nodes[:1]
				in.Nodes[0].Capacity = Resources{MilliCPU: 1000, MemoryBytes: 1 << 30}
				in.Placements = nil
				stopping(in, "db-1-0", "a")
				in.Workloads = append(in.Workloads, Workload{Name: "web", Replicas: 1, Priority: 99, Resources: Resources{MilliCPU: 600}})
			},
			check: func(t *testing.T, in Input, r Result) {
				if len(r.Unplaced) != 1 || r.Unplaced[0].Workload != "web" {
					t.Errorf("want web unplaced, got:\n%s", render(r))
				}
			},
		},
		{
			name: "global: no instance on its node",
			setup: func(in *Input) {
				in.Workloads[0].Mode = ModeGlobal
				in.Nodes = in.Nodes[:2]
				in.Placements = nil
				stopping(in, "db-1-0", "a")
			},
			want: []string{"place db [global]"},
			check: func(t *testing.T, in Input, r Result) {
				if r.Actions[0].Node != "b" {
					t.Errorf("global instance placed on %s, want b (a has a Stopping instance)", r.Actions[0].Node)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exclusiveRegion()
			tt.setup(&in)
			r := plan(t, in)
			if got := brief(r); !slices.Equal(got, tt.want) {
				t.Errorf("actions = %q, want %q\n%s", got, tt.want, render(r))
			}
			if !r.RecheckAt.Equal(tt.recheck) {
				t.Errorf("recheck at %v, want %v", r.RecheckAt, tt.recheck)
			}
			if tt.check != nil {
				tt.check(t, in, r)
			}
		})
	}
}

// TestExclusiveMovesStopFirst: where another workload's instance would be migrated, an
// exclusive one is stopped with the same cause and reason, and nothing is placed for
// it; while its node reports it (a Stopping record) nothing is placed either; once it
// has stopped, the next plan places its successor as a missing replica.
func TestExclusiveMovesStopFirst(t *testing.T) {
	tests := []struct {
		name  string
		cause Cause
		setup func(in *Input)
	}{
		{"drain", CauseDrain, func(in *Input) { setNode(in, "x", func(n *Node) { n.Draining = true }) }},
		{"ineligible", CauseIneligible, func(in *Input) {
			in.Workloads[0].Constraints = map[string]string{"k": "v"}
			for i := range in.Nodes {
				in.Nodes[i].Labels = map[string]string{"k": "v"}
			}
			in.Nodes[2].Labels = nil
		}},
		{"failing", CauseFailing, func(in *Input) { in.Workloads[0].MaxFailures, in.Placements[0].Failures = 3, 3 }},
		{"update", CauseUpdate, func(in *Input) { in.Workloads[0].Version.Wall = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exclusiveRegion()
			tt.setup(&in)

			// The same region with an at-least-once workload migrates.
			other := in
			other.Workloads = slices.Clone(in.Workloads)
			other.Workloads[0].Exclusive = false
			m := plan(t, other)
			if len(m.Actions) != 1 || m.Actions[0].Kind != ActionMigrate || m.Actions[0].Cause != tt.cause {
				t.Fatalf("at-least-once: want one migrate [%s], got:\n%s", tt.cause, render(m))
			}

			r := plan(t, in)
			if got, want := brief(r), []string{"stop db-1-0 [" + string(tt.cause) + "]"}; !slices.Equal(got, want) {
				t.Fatalf("exclusive: actions = %q, want %q\n%s", got, want, render(r))
			}
			if base, _, _ := strings.Cut(m.Actions[0].Reason, "; score "); r.Actions[0].Reason != base {
				t.Errorf("stop reason %q, want the migration's %q", r.Actions[0].Reason, base)
			}

			// The coordinator passes the stopped instance back while x still runs it.
			in = settle(in, r)
			if !hasStopping(in.Placements) {
				t.Fatal("settle did not pass the stopped instance back as Stopping")
			}
			if r = plan(t, in); !r.Empty() {
				t.Errorf("while the old instance is stopping: want an empty plan, got:\n%s", render(r))
			}
			// It has stopped: the successor is placed as a missing replica.
			in = settle(in, r)
			r = plan(t, in)
			if got, want := brief(r), []string{"place db [missing]"}; !slices.Equal(got, want) {
				t.Errorf("once stopped: actions = %q, want %q\n%s", got, want, render(r))
			}
		})
	}
}

// TestExclusiveOffload: offload never moves an exclusive instance, even of a lower
// priority, and says so when a hot node has nothing else to move.
func TestExclusiveOffload(t *testing.T) {
	hot := func(in *Input) {
		in.Offload = OffloadPolicy{CPUAbove: 0.85, SustainedFor: 10 * time.Second, Cooldown: time.Minute}
		setNode(in, "x", func(n *Node) { n.Load, n.LoadHighSince = Load{CPU: 0.95, Memory: 0.2}, baseNow.Add(-time.Minute) })
	}
	t.Run("only exclusive candidates", func(t *testing.T) {
		in := exclusiveRegion()
		hot(&in)
		r := plan(t, in)
		if !r.Empty() {
			t.Errorf("want no action, got:\n%s", render(r))
		}
		want := "cannot offload db-1-0: node x's candidates are all exclusive (1), and an exclusive instance moves only when its node is lost"
		if len(r.Unplaced) != 1 || r.Unplaced[0].Reason != want || r.Unplaced[0].Instance != "db-1-0" {
			t.Errorf("unplaced = %+v, want one with reason %q", r.Unplaced, want)
		}
	})
	t.Run("another instance moves instead", func(t *testing.T) {
		in := exclusiveRegion()
		hot(&in)
		in.Workloads = append(in.Workloads, Workload{Name: "web", Replicas: 1, Priority: 50, Resources: Resources{MilliCPU: 500, MemoryBytes: 256 << 20}})
		in.Placements = append(in.Placements, Placement{ID: "web-1-0", Workload: "web", Node: "x", Generation: 1, State: StateRunning})
		r := plan(t, in)
		if got, want := brief(r), []string{"migrate web-1-0 [offload]"}; !slices.Equal(got, want) {
			t.Errorf("actions = %q, want %q\n%s", got, want, render(r))
		}
	})
}

// TestExclusivePreemptionKeepsSlot: an exclusive instance preempted by a higher
// priority keeps its slot: its successor is not placed in the same plan, nor while
// it is stopping, only once it has stopped.
func TestExclusivePreemptionKeepsSlot(t *testing.T) {
	in := exclusiveRegion()
	setNode(&in, "x", func(n *Node) {
		n.Capacity, n.Labels = Resources{MilliCPU: 1000, MemoryBytes: 1 << 30}, map[string]string{"gpu": "yes"}
	})
	in.Workloads = append(in.Workloads, Workload{Name: "web", Replicas: 1, Priority: 90, Constraints: map[string]string{"gpu": "yes"},
		Resources: Resources{MilliCPU: 600, MemoryBytes: 256 << 20}})
	in.Workloads[0].Resources.MilliCPU = 600
	r := plan(t, in)
	if got, want := brief(r), []string{"stop db-1-0 [preempted]", "place web [missing]"}; !slices.Equal(got, want) {
		t.Fatalf("actions = %q, want %q\n%s", got, want, render(r))
	}
	in = settle(in, r)
	if r = plan(t, in); !r.Empty() {
		t.Errorf("while the preempted instance is stopping: want an empty plan, got:\n%s", render(r))
	}
	in = settle(in, r)
	r = plan(t, in)
	if got, want := brief(r), []string{"place db [missing]"}; !slices.Equal(got, want) {
		t.Errorf("once stopped: actions = %q, want %q\n%s", got, want, render(r))
	}
}

// TestExclusiveReconcileKeepsReplacement: whatever rule the region or the workload
// names, and wherever either runs, an exclusive workload never stops a replacement to
// keep its original.
func TestExclusiveReconcileKeepsReplacement(t *testing.T) {
	pair := func(rule ReconcileRule, mutate func(in *Input)) Input {
		in := exclusiveRegion()
		in.Reconcile = rule
		in.Placements = []Placement{
			{ID: "db-1-0", Workload: "db", Node: "a", Generation: 1, State: StateRunning, Healthy: true, StartedAt: baseNow.Add(-time.Hour)},
			{ID: "db-5-0", Workload: "db", Node: "b", Generation: 5, State: StateRunning, Healthy: true, Supersedes: "db-1-0", StartedAt: baseNow.Add(-time.Minute)},
		}
		if mutate != nil {
			mutate(&in)
		}
		return in
	}
	tests := []struct {
		name string
		in   Input
		want []string
	}{
		{"region keep_original", pair(ReconcileKeepOriginal, nil), []string{"stop db-1-0 [surplus]"}},
		{"region legacy, original healthy and older", pair(ReconcileLegacy, nil), []string{"stop db-1-0 [surplus]"}},
		{"region best_score, original on the cooler node", pair(ReconcileBestScore, func(in *Input) {
			setNode(in, "b", func(n *Node) { n.Load = Load{CPU: 0.9, Memory: 0.9} })
		}), []string{"stop db-1-0 [surplus]"}},
		{"replacement on a dead node within replaceAfter", pair("", func(in *Input) {
			in.Workloads[0].ReplaceAfter = time.Minute
			setNode(in, "b", dead(baseNow.Add(-5*time.Second)))
		}), []string{"stop db-1-0 [surplus]"}},
		{"replacement on a dead node held by its lease: not surplus, nothing stops", pair(ReconcileKeepOriginal, func(in *Input) {
			setNode(in, "b", dead(baseNow.Add(-5*time.Second)))
			lease(in, "b", baseNow.Add(time.Minute))
		}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := plan(t, tt.in)
			if got := brief(r); !slices.Equal(got, tt.want) {
				t.Errorf("actions = %q, want %q\n%s", got, tt.want, render(r))
			}
			for _, a := range r.Actions {
				if a.Kind == ActionStop && a.Cause == CauseSurplus && !strings.Contains(a.Reason, "rule keep_replacement") {
					t.Errorf("surplus reason %q does not name keep_replacement", a.Reason)
				}
			}
		})
	}
	// A workload rule that Validate refuses is ignored by Plan all the same.
	in := pair("", nil)
	in.Workloads[0].Reconcile = ReconcileKeepOriginal
	if err := in.Validate(); err == nil || !strings.HasPrefix(err.Error(), "workloads[0].reconcile:") {
		t.Errorf("Validate() = %v, want a workloads[0].reconcile error", err)
	}
	if got, want := brief(Plan(in)), []string{"stop db-1-0 [surplus]"}; !slices.Equal(got, want) {
		t.Errorf("workload keep_original: actions = %q, want %q", got, want)
	}
}

// TestExclusiveHeldNotSurplus: an instance held by its lost node's lease is never
// surplus; the surplus among the others is judged against desired alone, since the
// held one is on its way out.
func TestExclusiveHeldNotSurplus(t *testing.T) {
	in := exclusiveRegion()
	setNode(&in, "x", dead(baseNow.Add(-time.Minute)))
	lease(&in, "x", baseNow.Add(10*time.Second))
	in.Placements = append(in.Placements,
		Placement{ID: "db-2-0", Workload: "db", Node: "a", Generation: 2, State: StateRunning, Healthy: true},
		Placement{ID: "db-2-1", Workload: "db", Node: "b", Generation: 2, State: StateRunning, Healthy: true})
	r := plan(t, in)
	if got, want := brief(r), []string{"stop db-2-1 [surplus]"}; !slices.Equal(got, want) {
		t.Errorf("actions = %q, want %q\n%s", got, want, render(r))
	}
	if !r.RecheckAt.Equal(baseNow.Add(10 * time.Second)) {
		t.Errorf("recheck at %v, want the lease end", r.RecheckAt)
	}
}

// TestStoppingNeverCommitted: Placement.Stopping is input only: the msgpack encoding
// the region's Raft log uses, and the JSON one when it is false, are unchanged by it.
func TestStoppingNeverCommitted(t *testing.T) {
	p := Placement{ID: "db-1-0", Workload: "db", Node: "a", Generation: 7, Cause: CauseReplace, Reason: "r"}
	enc := func(v Placement) []byte {
		var b []byte
		h := &codec.MsgpackHandle{}
		h.RawToString = true
		if err := codec.NewEncoderBytes(&b, h).Encode(v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := p
	s.Stopping = true
	if !bytes.Equal(enc(p), enc(s)) {
		t.Error("msgpack encoding of a placement changes with Stopping; want it left out (codec:\"-\")")
	}
	j, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(j, []byte("stopping")) {
		t.Errorf("json of a placement that is not stopping names it: %s", j)
	}
}
