package scheduler

import (
	"fmt"
	"github.com/murmur-edge/murmur/policy"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

var baseNow = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

type genOpts struct {
	maxNodes, maxWorkloads, maxPlacements int
	balanced                              bool // every node alive, loads below the offload threshold
}

// randomInput builds a random but valid region from r.
func randomInput(r *rand.Rand, o genOpts) Input {
	const mi = 1 << 20
	in := Input{Region: "r1", Now: baseNow, Seed: r.Uint64(), Generation: uint64(10 + r.IntN(5))}
	nn := 1 + r.IntN(o.maxNodes)
	for i := range nn {
		n := Node{
			Name:     "n" + strconv.Itoa(i),
			Status:   StatusAlive,
			Capacity: Resources{MilliCPU: int64(500 * (2 + r.IntN(15))), MemoryBytes: int64(256*mi) * int64(2+r.IntN(30))},
			Labels:   map[string]string{},
			Drivers:  []string{"exec"},
		}
		if !o.balanced {
			switch x := r.IntN(100); {
			case x < 8:
				n.Status = StatusSuspect
			case x < 16:
				n.Status = StatusDead
				if r.IntN(4) > 0 {
					n.DeadSince = baseNow.Add(-time.Duration(r.IntN(120)) * time.Second)
				}
			case x < 20:
				n.Status = StatusLeft
			}
			n.Draining = r.IntN(20) == 0
			if r.IntN(25) == 0 {
				n.Region = "r2"
			}
		}
		if r.IntN(10) < 7 {
			n.Labels["zone"] = string(rune('a' + r.IntN(3)))
		}
		if r.IntN(2) == 0 {
			n.Labels["camera"] = "yes"
		}
		if r.IntN(10) < 6 {
			n.Drivers = append(n.Drivers, "docker")
		}
		if o.balanced {
			n.Load = Load{CPU: 0.5 * r.Float64(), Memory: 0.5 * r.Float64()}
			n.LoadHighSince = baseNow.Add(-time.Hour) // must be ignored: load is below the threshold
		} else {
			n.Load = Load{CPU: r.Float64(), Memory: r.Float64()}
			if n.Load.CPU > 0.8 || n.Load.Memory > 0.9 {
				n.LoadHighSince = baseNow.Add(-time.Duration(r.IntN(60)) * time.Second)
				if r.IntN(3) == 0 {
					n.LastMigrationAt = baseNow.Add(-time.Duration(r.IntN(60)) * time.Second)
				}
			}
		}
		in.Nodes = append(in.Nodes, n)
	}
	nw := 1 + r.IntN(o.maxWorkloads)
	for i := range nw {
		w := Workload{
			Name:      "w" + strconv.Itoa(i),
			Replicas:  r.IntN(7),
			Resources: Resources{MilliCPU: int64(100 * (1 + r.IntN(15))), MemoryBytes: int64(64*mi) * int64(1+r.IntN(16))},
			Priority:  r.IntN(100),
			Version:   policy.Version{Wall: int64(r.IntN(3))},
		}
		if r.IntN(7) == 0 {
			w.Mode = ModeGlobal
		}
		w.Driver = []string{"", "exec", "docker"}[r.IntN(3)]
		if r.IntN(10) < 3 {
			w.Constraints = map[string]string{"camera": "yes"}
		}
		if r.IntN(10) < 2 {
			if w.Constraints == nil {
				w.Constraints = map[string]string{}
			}
			w.Constraints["zone"] = "a"
		}
		if r.IntN(2) == 0 {
			w.Strategy = StrategySpread
		}
		w.ReplaceAfter = []time.Duration{0, 30 * time.Second, 2 * time.Minute}[r.IntN(3)]
		w.MaxFailures = []int{0, 3}[r.IntN(2)]
		if r.IntN(3) == 0 {
			w.Reconcile = []ReconcileRule{ReconcileKeepReplacement, ReconcileKeepOriginal, ReconcileBestScore, ReconcileLegacy}[r.IntN(4)]
		}
		if !o.balanced && r.IntN(15) == 0 {
			w.Regions = []string{"r2"}
		}
		in.Workloads = append(in.Workloads, w)
	}
	np := r.IntN(o.maxPlacements + 1)
	for i := range np {
		p := Placement{
			ID:         "p" + strconv.Itoa(i),
			Workload:   "w" + strconv.Itoa(r.IntN(nw+1)), // sometimes a deleted workload
			Node:       "n" + strconv.Itoa(r.IntN(nn+1)), // sometimes a gone node
			Version:    policy.Version{Wall: int64(r.IntN(3))},
			Generation: uint64(r.IntN(10)),
			State:      []InstanceState{StatePending, StateRunning, StateRunning, StateFailed}[r.IntN(4)],
			StartedAt:  baseNow.Add(-time.Duration(r.IntN(3600)) * time.Second),
			Failures:   r.IntN(5),
			Healthy:    r.IntN(3) > 0,
		}
		if r.IntN(2) == 0 { // measured use: sometimes far above the request
			p.Usage = Resources{MilliCPU: int64(50 * r.IntN(40)), MemoryBytes: int64(32*mi) * int64(r.IntN(20))}
		}
		in.Placements = append(in.Placements, p)
	}
	if r.IntN(2) == 0 || o.balanced {
		in.Offload = OffloadPolicy{CPUAbove: 0.8, MemoryAbove: 0.9, SustainedFor: 10 * time.Second, Cooldown: 30 * time.Second}
	}
	in.Reconcile = []ReconcileRule{"", ReconcileKeepOriginal, ReconcileKeepReplacement, ReconcileBestScore, ReconcileLegacy}[r.IntN(5)]
	addExclusive(r, &in, nn)
	return in
}

// addExclusive makes about a third of the workloads exclusive, gives about two thirds
// of the nodes (and the gone node n<nn>) a lease that has ended or not, and marks
// some instances of exclusive workloads Stopping.
func addExclusive(r *rand.Rand, in *Input, nn int) {
	exclusive := map[string]bool{}
	for i := range in.Workloads {
		if w := &in.Workloads[i]; r.IntN(3) == 0 {
			w.Exclusive = true
			if w.Reconcile != ReconcileKeepReplacement {
				w.Reconcile = "" // anything else is invalid with exclusive
			}
			exclusive[w.Name] = true
		}
	}
	for i := range nn + 1 {
		switch r.IntN(3) {
		case 0: // no lease
		case 1: // ended (or ends now)
			if in.Leases == nil {
				in.Leases = map[string]time.Time{}
			}
			in.Leases["n"+strconv.Itoa(i)] = baseNow.Add(-time.Duration(r.IntN(60)) * time.Second)
		case 2:
			if in.Leases == nil {
				in.Leases = map[string]time.Time{}
			}
			in.Leases["n"+strconv.Itoa(i)] = baseNow.Add(time.Duration(1+r.IntN(60)) * time.Second)
		}
	}
	for i := range in.Placements {
		if p := &in.Placements[i]; exclusive[p.Workload] && r.IntN(6) == 0 {
			p.Stopping = true
		}
	}
}

// TestPropertyInvariants: on random regions, every plan places only on feasible
// nodes, never over capacity, is deterministic and leaves its input untouched.
func TestPropertyInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[Cause]int{}
	defer func() {
		// The generator must exercise every rule, or the properties prove little.
		for _, c := range []Cause{CauseMissing, CauseReplace, CauseGlobal, CauseRemoved, CauseNodeGone, CauseSurplus,
			CauseIneligible, CausePreempted, CauseDrain, CauseFailing, CauseUpdate, CauseOffload} {
			if seen[c] == 0 {
				t.Errorf("no random case produced an action with cause %s", c)
			}
		}
		t.Logf("actions by cause over random cases: %v", seen)
	}()
	for i := range 400 {
		in := randomInput(r, genOpts{maxNodes: 30, maxWorkloads: 8, maxPlacements: 40})
		if err := in.Validate(); err != nil {
			t.Fatalf("case %d: generator made invalid input: %v", i, err)
		}
		before := fmt.Sprintf("%#v", in)
		got := Plan(in)
		for _, a := range got.Actions {
			seen[a.Cause]++
		}
		if after := fmt.Sprintf("%#v", in); after != before {
			t.Fatalf("case %d: Plan modified its input", i)
		}
		checkPlan(t, in, got)
		checkRunningFloor(t, in, got)
		checkExclusive(t, in, got)
		if again := Plan(in); !reflect.DeepEqual(got, again) {
			t.Fatalf("case %d: same input gave different plans:\n%s\nvs\n%s", i, render(got), render(again))
		}
		if t.Failed() {
			t.Fatalf("case %d failed; plan:\n%s", i, render(got))
		}
	}
}

// TestPropertyConvergence: planning and applying repeatedly reaches an empty plan
// within a few rounds, with every workload at its desired count unless the plan
// reports it unplaced.
func TestPropertyConvergence(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		in := randomInput(r, genOpts{maxNodes: 25, maxWorkloads: 8, maxPlacements: 30})
		var last Result
		converged := false
		for round := 0; round < 8; round++ {
			last = Plan(in)
			checkPlan(t, in, last)
			checkRunningFloor(t, in, last)
			checkExclusive(t, in, last)
			if last.Empty() && !hasStopping(in.Placements) {
				converged = true
				break
			}
			in = settle(in, last)
		}
		if !converged {
			t.Fatalf("case %d: no empty plan after 8 rounds; last plan:\n%s", i, render(last))
		}
		checkCounts(t, i, in, last)
	}
}

// checkCounts verifies desired counts against an independent reading of the table.
func checkCounts(t *testing.T, i int, in Input, final Result) {
	t.Helper()
	unplaced := map[string]bool{}
	for _, u := range final.Unplaced {
		if u.Instance == "" {
			unplaced[u.Workload] = true
		}
	}
	nodes := map[string]*Node{}
	for k := range in.Nodes {
		nodes[in.Nodes[k].Name] = &in.Nodes[k]
	}
	for wi := range in.Workloads {
		w := &in.Workloads[wi]
		live, held, perNode := 0, 0, map[string]int{}
		for _, p := range in.Placements {
			if p.Workload != w.Name {
				continue
			}
			n := nodes[p.Node]
			switch {
			case w.Exclusive && (n == nil || n.Status == StatusLeft || n.Status == StatusDead) && in.Now.Before(in.Leases[p.Node]):
				held++ // on a lost node: counted until its lease ends, never surplus
				perNode[p.Node]++
			case w.Exclusive && mayRun(in, w, n, &p):
				live++
				perNode[p.Node]++
			case w.Exclusive && n != nil && n.Status == StatusDead:
				t.Errorf("case %d: exclusive %s still on dead node %s after its lease ended", i, p.ID, p.Node)
			case n == nil, n.Status == StatusLeft:
				t.Errorf("case %d: %s still on gone/left node %s after convergence", i, p.ID, p.Node)
			case n.Status == StatusDead && (n.DeadSince.IsZero() || !in.Now.Before(n.DeadSince.Add(w.ReplaceAfter))):
				// lost: kept for reconciliation, not counted
			default:
				live++
				perNode[p.Node]++
			}
		}
		if len(w.Regions) > 0 && !slices.Contains(w.Regions, in.Region) {
			if live > 0 {
				t.Errorf("case %d: %s does not target %s but has %d live instances", i, w.Name, in.Region, live)
			}
			continue
		}
		if w.Mode == ModeGlobal {
			for k := range in.Nodes {
				n := &in.Nodes[k]
				if infeasible(in, n, w) == "" && perNode[n.Name] != 1 && !unplaced[w.Name] {
					t.Errorf("case %d: global %s has %d instances on eligible node %s", i, w.Name, perNode[n.Name], n.Name)
				}
			}
			continue
		}
		// Held instances are on their way out: they are not surplus, but they do
		// count toward desired (nothing is placed in their stead yet).
		if live > w.Replicas || (live+held < w.Replicas && !unplaced[w.Name]) {
			t.Errorf("case %d: %s has %d live instances and %d held, want %d (unplaced=%v)\n%s", i, w.Name, live, held, w.Replicas, unplaced[w.Name], render(final))
		}
	}
}

// TestPropertyBalancedRegion: a healthy region below the offload threshold converges
// without a single migration, and its steady state does not depend on the seed.
func TestPropertyBalancedRegion(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 100 {
		in := randomInput(r, genOpts{maxNodes: 30, maxWorkloads: 8, maxPlacements: 0, balanced: true})
		for round := 0; round < 6; round++ {
			p := Plan(in)
			for _, a := range p.Actions {
				if a.Kind == ActionMigrate {
					t.Fatalf("case %d: balanced region produced a migration: %+v", i, a)
				}
			}
			if p.Empty() {
				break
			}
			in = settle(in, p)
		}
		for k := range 5 {
			in.Seed += uint64(k + 1)
			if p := Plan(in); !p.Empty() {
				t.Fatalf("case %d: steady state with seed %d is not empty:\n%s", i, in.Seed, render(p))
			}
		}
	}
}

// TestDeterminismAcrossOrder: the same input gives the same plan, byte for byte,
// including at scale where candidate sampling is used.
func TestDeterminismLarge(t *testing.T) {
	in := benchRegion(500, 40, 25)
	a, b := Plan(in), Plan(in)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same large input gave different plans")
	}
	in.Seed++
	c := Plan(in)
	if reflect.DeepEqual(a.Actions, c.Actions) {
		t.Error("a different seed gave the identical placement; the seed should break ties")
	}
	checkPlan(t, in, c)
	if len(c.Unplaced) != 0 {
		t.Errorf("large region left work unplaced: %+v", c.Unplaced[0])
	}
}

// FuzzPlan feeds generated regions to the planner and checks the invariants.
func FuzzPlan(f *testing.F) {
	for _, s := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(s, uint8(10), uint8(5), uint8(20))
	}
	f.Fuzz(func(t *testing.T, seed uint64, nodes, workloads, placements uint8) {
		r := rand.New(rand.NewPCG(seed, uint64(nodes)<<16|uint64(workloads)<<8|uint64(placements)))
		in := randomInput(r, genOpts{maxNodes: 1 + int(nodes%40), maxWorkloads: 1 + int(workloads%10), maxPlacements: int(placements % 60)})
		p := Plan(in)
		checkPlan(t, in, p)
		checkRunningFloor(t, in, p)
		checkExclusive(t, in, p)
		if q := Plan(in); !reflect.DeepEqual(p, q) {
			t.Fatal("nondeterministic plan")
		}
	})
}
