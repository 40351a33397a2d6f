package scheduler

import (
	"github.com/murmur-edge/murmur/policy"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Input{
		Now:        baseNow,
		Nodes:      []Node{{Name: "n1", Status: StatusAlive}},
		Workloads:  []Workload{{Name: "w", Replicas: 1}},
		Placements: []Placement{{ID: "w-1-0", Workload: "w", Node: "n1"}},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid input: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Input)
		want   string
	}{
		{"zero now", func(in *Input) { in.Now = time.Time{} }, "now:"},
		{"bad rule", func(in *Input) { in.Reconcile = "newest" }, "reconcile:"},
		{"bad workload rule", func(in *Input) { in.Workloads[0].Reconcile = "newest" }, "workloads[0].reconcile:"},
		{"exclusive keep_original", func(in *Input) {
			in.Workloads[0].Exclusive, in.Workloads[0].Reconcile = true, ReconcileKeepOriginal
		}, "workloads[0].reconcile:"},
		{"negative threshold", func(in *Input) { in.Offload.CPUAbove = -1 }, "offload:"},
		{"duplicate node", func(in *Input) { in.Nodes = append(in.Nodes, in.Nodes[0]) }, "nodes[1].name"},
		{"bad status", func(in *Input) { in.Nodes[0].Status = "up" }, "nodes[0].status"},
		{"empty workload name", func(in *Input) { in.Workloads[0].Name = "" }, "workloads[0].name"},
		{"negative replicas", func(in *Input) { in.Workloads[0].Replicas = -2 }, "workloads[0].replicas"},
		{"bad mode", func(in *Input) { in.Workloads[0].Mode = "daemon" }, "workloads[0].mode"},
		{"bad strategy", func(in *Input) { in.Workloads[0].Strategy = "random" }, "workloads[0].strategy"},
		{"negative replaceAfter", func(in *Input) { in.Workloads[0].ReplaceAfter = -time.Second }, "workloads[0].replaceAfter"},
		{"duplicate id", func(in *Input) { in.Placements = append(in.Placements, in.Placements[0]) }, "placements[1].id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ok
			in.Nodes = append([]Node(nil), ok.Nodes...)
			in.Workloads = append([]Workload(nil), ok.Workloads...)
			in.Placements = append([]Placement(nil), ok.Placements...)
			tt.mutate(&in)
			err := in.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error starting with %q", err, tt.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	v2 := policy.Version{Wall: 2, Node: "n0"}
	table := []Placement{{ID: "a", Workload: "w", Node: "n1"}, {ID: "b", Workload: "w", Node: "n2"}, {ID: "c", Workload: "w", Node: "n3"}}
	r := Result{Now: baseNow, Generation: 7, Actions: []Action{
		{Kind: ActionStop, Instance: "a", Node: "n1"},
		{Kind: ActionMigrate, Instance: "w-7-0", Workload: "w", Node: "n4", Version: v2, Replaces: "b", From: "n2"},
		{Kind: ActionPlace, Instance: "w-7-1", Workload: "w", Node: "n5", Version: v2},
	}}
	got := r.Apply(table)
	want := []string{"c@n3", "w-7-0@n4", "w-7-1@n5"}
	if len(got) != len(want) {
		t.Fatalf("Apply gave %d placements, want %d: %+v", len(got), len(want), got)
	}
	for i, p := range got {
		if p.ID+"@"+p.Node != want[i] {
			t.Errorf("placement %d = %s@%s, want %s", i, p.ID, p.Node, want[i])
		}
	}
	if p := got[1]; p.Generation != 7 || p.Version != v2 || p.State != StatePending || !p.StartedAt.Equal(baseNow) {
		t.Errorf("new placement = %+v, want generation 7, version 2, pending, started at plan time", p)
	}
	if table[0].ID != "a" || len(table) != 3 {
		t.Error("Apply modified its argument")
	}
}

func TestRenderFiltered(t *testing.T) {
	got := renderFiltered([]FilterCount{{"label camera=yes", 3}, {"insufficient memory", 2}})
	if want := "3 nodes filtered by label camera=yes, 2 by insufficient memory"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := renderFiltered([]FilterCount{{"node dead", 1}}); got != "1 node filtered by node dead" {
		t.Errorf("singular: got %q", got)
	}
}

// TestSpreadAtScale: in a sampled (non-exact) region, replicas respect the node and
// zone caps unless the plan says it relaxed them.
func TestSpreadAtScale(t *testing.T) {
	in := benchRegion(500, 40, 25)
	p := Plan(in)
	in = settle(in, p)
	relaxed := map[string]bool{}
	for _, a := range p.Actions {
		if strings.Contains(a.Reason, "spread relaxed") {
			relaxed[a.Workload] = true
		}
	}
	zoneOf := map[string]string{}
	for _, n := range in.Nodes {
		zoneOf[n.Name] = n.Labels["zone"]
	}
	for _, w := range in.Workloads {
		eligible, zones := 0, map[string]bool{}
		for i := range in.Nodes {
			if infeasible(in, &in.Nodes[i], &w) == "" {
				eligible++
				zones[in.Nodes[i].Labels["zone"]] = true
			}
		}
		perNode, perZone := map[string]int{}, map[string]int{}
		for _, pl := range in.Placements {
			if pl.Workload == w.Name {
				perNode[pl.Node]++
				perZone[zoneOf[pl.Node]]++
			}
		}
		capNode := (w.Replicas + eligible - 1) / eligible
		capZone := (w.Replicas + len(zones) - 1) / len(zones)
		for n, c := range perNode {
			if c > capNode && !relaxed[w.Name] {
				t.Errorf("%s has %d replicas on %s, cap %d", w.Name, c, n, capNode)
			}
		}
		for z, c := range perZone {
			if c > capZone && !relaxed[w.Name] {
				t.Errorf("%s has %d replicas in zone %s, cap %d", w.Name, c, z, capZone)
			}
		}
	}
}

// TestSuspectNodeKeepsItsInstances: an instance on a suspect node is kept and counted,
// even when what is known of the node (no drivers, other labels) would make it move.
func TestSuspectNodeKeepsItsInstances(t *testing.T) {
	in := Input{
		Region: "r", Now: baseNow, Generation: 9,
		Nodes: []Node{
			{Name: "a", Status: StatusAlive, Capacity: Resources{MilliCPU: 1000, MemoryBytes: 1 << 30}, Drivers: []string{"exec"}},
			{Name: "b", Status: StatusSuspect}, // nothing known: no drivers, no capacity
		},
		Workloads:  []Workload{{Name: "w", Replicas: 2, Driver: "exec", Constraints: map[string]string{"k": "v"}}},
		Placements: []Placement{{ID: "w-1-0", Workload: "w", Node: "b", Generation: 1}},
	}
	in.Nodes[0].Labels = map[string]string{"k": "v"}
	res := Plan(in)
	for _, a := range res.Actions {
		if a.Instance == "w-1-0" || a.Replaces == "w-1-0" {
			t.Errorf("the suspect node's instance was acted on: %+v", a)
		}
	}
	if len(res.Actions) != 1 || res.Actions[0].Kind != ActionPlace || res.Actions[0].Node != "a" {
		t.Errorf("actions = %+v, want one placement on a", res.Actions)
	}
}

// A newer version of a workload migrates an instance only when what the instance runs
// changed: the same SpecHash (replicas changed, or the same spec written again) keeps
// it; a different hash, or none known on either side, migrates it as an update.
func TestUpdateMigratesOnlyAChangedSpec(t *testing.T) {
	tests := []struct {
		name         string
		placed, want string
		migrate      bool
	}{
		{name: "same spec", placed: "h1", want: "h1"},
		{name: "spec changed", placed: "h1", want: "h2", migrate: true},
		{name: "older table without hash", placed: "", want: "h1", migrate: true},
		{name: "workload without hash", placed: "h1", want: "", migrate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exclusiveRegion()
			in.Workloads[0].Exclusive = false
			in.Workloads[0].Version.Wall, in.Workloads[0].SpecHash = 2, tt.want
			in.Placements[0].Version.Wall, in.Placements[0].SpecHash = 1, tt.placed
			r := plan(t, in)
			if !tt.migrate {
				if !r.Empty() {
					t.Fatalf("same spec at a newer version: want an empty plan, got:\n%s", render(r))
				}
				// Scaling up at the new version places the new replica with it.
				in.Workloads[0].Replicas = 2
				r = plan(t, in)
				if got := brief(r); len(got) != 1 || got[0] != "place db [missing]" {
					t.Fatalf("scale up: want one place, got:\n%s", render(r))
				}
				if a := r.Actions[0]; a.Version != in.Workloads[0].Version || a.SpecHash != tt.want {
					t.Errorf("new replica runs %s/%q, want %s/%q", a.Version, a.SpecHash, in.Workloads[0].Version, tt.want)
				}
				if ps := r.Apply(in.Placements); ps[len(ps)-1].SpecHash != tt.want {
					t.Errorf("applied placement lost its spec hash: %+v", ps[len(ps)-1])
				}
				return
			}
			if got := brief(r); len(got) != 1 || got[0] != "migrate db-1-0 [update]" {
				t.Fatalf("want one update migration, got:\n%s", render(r))
			}
		})
	}
}
