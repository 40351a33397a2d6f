package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// render prints a plan one line per action, the way the golden files hold it.
func render(r Result) string {
	var b strings.Builder
	for _, a := range r.Actions {
		switch a.Kind {
		case ActionMigrate:
			fmt.Fprintf(&b, "migrate  %s on %s (replaces %s on %s) [%s] %s\n", a.Instance, a.Node, a.Replaces, a.From, a.Cause, a.Reason)
		default:
			fmt.Fprintf(&b, "%-8s %s on %s [%s] %s\n", a.Kind, a.Instance, a.Node, a.Cause, a.Reason)
		}
	}
	for _, u := range r.Unplaced {
		inst := ""
		if u.Instance != "" {
			inst = " " + u.Instance
		}
		fmt.Fprintf(&b, "unplaced %s%s x%d (%d nodes evaluated): %s\n", u.Workload, inst, u.Count, u.NodesEvaluated, u.Reason)
	}
	if !r.RecheckAt.IsZero() {
		fmt.Fprintf(&b, "recheck at %s\n", r.RecheckAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if b.Len() == 0 {
		return "(empty plan)\n"
	}
	return b.String()
}

// settle models the caller after a plan: applies it, marks every instance running
// and healthy with no failures, and stamps LastMigrationAt on offload sources.
func settle(in Input, r Result) Input {
	out := in
	out.Placements = r.Apply(in.Placements)
	for i := range out.Placements {
		p := &out.Placements[i]
		p.State, p.Healthy, p.Failures = StateRunning, true, 0
	}
	out.Nodes = slices.Clone(in.Nodes)
	for _, a := range r.Actions {
		if a.Cause != CauseOffload {
			continue
		}
		for i := range out.Nodes {
			if out.Nodes[i].Name == a.From {
				out.Nodes[i].LastMigrationAt = in.Now
			}
		}
	}
	out.Generation = in.Generation + 1
	return out
}

// checkPlan verifies the invariants every plan must hold, computed independently
// of the planner: new instances land only on feasible nodes, no node that receives
// work ends up over capacity, actions refer to real instances, IDs are fresh.
func checkPlan(t *testing.T, in Input, r Result) {
	t.Helper()
	nodes := map[string]*Node{}
	for i := range in.Nodes {
		if _, dup := nodes[in.Nodes[i].Name]; !dup {
			nodes[in.Nodes[i].Name] = &in.Nodes[i]
		}
	}
	wls := map[string]*Workload{}
	for i := range in.Workloads {
		if _, dup := wls[in.Workloads[i].Name]; !dup {
			wls[in.Workloads[i].Name] = &in.Workloads[i]
		}
	}
	ids := map[string]*Placement{}
	for i := range in.Placements {
		ids[in.Placements[i].ID] = &in.Placements[i]
	}
	stopped := map[string]bool{}
	newIDs := map[string]bool{}
	added := map[string]Resources{}
	loadAdded := map[string]Resources{} // what placements add to live load: offload moves count max(request, usage)
	for _, a := range r.Actions {
		switch a.Kind {
		case ActionStop:
			if ids[a.Instance] == nil {
				t.Errorf("stop of unknown instance %s", a.Instance)
			}
			if stopped[a.Instance] {
				t.Errorf("instance %s stopped twice", a.Instance)
			}
			stopped[a.Instance] = true
		case ActionPlace, ActionMigrate:
			if ids[a.Instance] != nil || newIDs[a.Instance] {
				t.Errorf("new instance id %s is not fresh", a.Instance)
			}
			newIDs[a.Instance] = true
			n, w := nodes[a.Node], wls[a.Workload]
			if n == nil || w == nil {
				t.Fatalf("action %+v names unknown node or workload", a)
			}
			if why := infeasible(in, n, w); why != "" {
				t.Errorf("%s %s placed on infeasible node %s: %s", a.Kind, a.Instance, a.Node, why)
			}
			if a.Kind == ActionMigrate {
				old := ids[a.Replaces]
				if old == nil || old.Node != a.From || old.Workload != a.Workload {
					t.Errorf("migrate %s replaces %s from %s: no such instance", a.Instance, a.Replaces, a.From)
				}
				if stopped[a.Replaces] {
					t.Errorf("migrate %s replaces stopped instance %s", a.Instance, a.Replaces)
				}
			}
			add := added[a.Node]
			add.MilliCPU += w.Resources.MilliCPU
			add.MemoryBytes += w.Resources.MemoryBytes
			added[a.Node] = add
			use := w.Resources
			if old := ids[a.Replaces]; a.Cause == CauseOffload && old != nil {
				use.MilliCPU = max(use.MilliCPU, old.Usage.MilliCPU)
				use.MemoryBytes = max(use.MemoryBytes, old.Usage.MemoryBytes)
			}
			la := loadAdded[a.Node]
			la.MilliCPU += use.MilliCPU
			la.MemoryBytes += use.MemoryBytes
			loadAdded[a.Node] = la
		}
	}
	// Preemption only ever evicts strictly lower priority for a placement on that node.
	for _, a := range r.Actions {
		if a.Cause != CausePreempted {
			continue
		}
		victim := wls[ids[a.Instance].Workload]
		ok := false
		for _, b := range r.Actions {
			if (b.Kind == ActionPlace || b.Kind == ActionMigrate) && b.Node == a.Node && wls[b.Workload].Priority > victim.Priority {
				ok = true
			}
		}
		if !ok {
			t.Errorf("instance %s (priority %d) preempted on %s without a higher-priority placement there", a.Instance, victim.Priority, a.Node)
		}
	}
	// No placement pushes a node above the offload threshold (no ping-pong), with
	// offloaded instances counted at what they really use.
	if pol := in.Offload; pol.CPUAbove > 0 || pol.MemoryAbove > 0 {
		for name, add := range loadAdded {
			n := nodes[name]
			cpu := n.Load.CPU + float64(add.MilliCPU)/float64(max(n.Capacity.MilliCPU, 1))
			mem := n.Load.Memory + float64(add.MemoryBytes)/float64(max(n.Capacity.MemoryBytes, 1))
			if (pol.CPUAbove > 0 && cpu > pol.CPUAbove+1e-9) || (pol.MemoryAbove > 0 && mem > pol.MemoryAbove+1e-9) {
				t.Errorf("node %s pushed over the offload threshold: cpu %.3f mem %.3f", name, cpu, mem)
			}
		}
	}
	for name, add := range added {
		used := add
		for _, p := range in.Placements {
			if w := wls[p.Workload]; p.Node == name && w != nil && !stopped[p.ID] {
				used.MilliCPU += w.Resources.MilliCPU
				used.MemoryBytes += w.Resources.MemoryBytes
			}
		}
		c := nodes[name].Capacity
		if used.MilliCPU > c.MilliCPU || used.MemoryBytes > c.MemoryBytes {
			t.Errorf("node %s over capacity after plan: uses %+v of %+v", name, used, c)
		}
	}
}

// infeasible re-implements the static filters independently.
func infeasible(in Input, n *Node, w *Workload) string {
	switch {
	case n.Status != StatusAlive:
		return "status " + string(n.Status)
	case n.Draining:
		return "draining"
	case n.Region != "" && in.Region != "" && n.Region != in.Region:
		return "other region"
	case w.Driver != "" && !slices.Contains(n.Drivers, w.Driver):
		return "driver"
	}
	for k, v := range w.Constraints {
		if n.Labels[k] != v {
			return "label " + k
		}
	}
	return ""
}

// checkRunningFloor verifies, independently of the planner, that surplus stops never
// leave a workload with fewer running instances than min(desired, running before the
// plan): a survivor must be confirmed running before what it replaces is stopped. For
// a global workload the same holds per node, with one desired. Only surplus stops are
// judged; preemption, removal, ineligibility and gone nodes stop instances on purpose.
func checkRunningFloor(t *testing.T, in Input, r Result) {
	t.Helper()
	nodes := map[string]*Node{}
	for i := range in.Nodes {
		if _, dup := nodes[in.Nodes[i].Name]; !dup {
			nodes[in.Nodes[i].Name] = &in.Nodes[i]
		}
	}
	wls := map[string]*Workload{}
	for i := range in.Workloads {
		if _, dup := wls[in.Workloads[i].Name]; !dup {
			wls[in.Workloads[i].Name] = &in.Workloads[i]
		}
	}
	surplus := map[string]bool{}
	for _, a := range r.Actions {
		if a.Kind == ActionStop && a.Cause == CauseSurplus {
			surplus[a.Instance] = true
		}
	}
	type key struct{ workload, node string }
	before, after := map[key]int{}, map[key]int{}
	for _, p := range in.Placements {
		w, n := wls[p.Workload], nodes[p.Node]
		if w == nil || n == nil || n.Status == StatusLeft || p.State != StateRunning {
			continue
		}
		if n.Status == StatusDead && (n.DeadSince.IsZero() || !in.Now.Before(n.DeadSince.Add(w.ReplaceAfter))) {
			continue // lost: not counted, never a surplus
		}
		k := key{workload: w.Name}
		if w.Mode == ModeGlobal {
			k.node = p.Node
		}
		before[k]++
		if !surplus[p.ID] {
			after[k]++
		}
	}
	for k, b := range before {
		desired := max(wls[k.workload].Replicas, 0)
		if k.node != "" {
			desired = 1
		}
		if floor := min(desired, b); after[k] < floor {
			t.Errorf("%s%s: surplus stops leave %d running of %d before (desired %d); want at least %d\n%s",
				k.workload, map[bool]string{true: " on " + k.node}[k.node != ""], after[k], b, desired, floor, render(r))
		}
	}
}
