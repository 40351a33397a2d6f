package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
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
// and healthy with no failures, and stamps LastMigrationAt on offload sources. It
// also models the coordinator's Stopping records: those of the input have stopped by
// now and go; an exclusive instance this plan stopped on a node that still reports
// (alive or suspect) comes back as a Stopping record for the next plan.
func settle(in Input, r Result) Input {
	out := in
	out.Placements = r.Apply(in.Placements)
	if stopping := stillStopping(in, r); len(stopping) > 0 || hasStopping(out.Placements) {
		kept := out.Placements[:0]
		for _, p := range out.Placements {
			if !p.Stopping {
				kept = append(kept, p)
			}
		}
		out.Placements = append(kept, stopping...)
	}
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

func hasStopping(ps []Placement) bool {
	return slices.ContainsFunc(ps, func(p Placement) bool { return p.Stopping })
}

// stillStopping returns, as Stopping records, the exclusive instances r stops on
// nodes that can still report them running (alive or suspect).
func stillStopping(in Input, r Result) []Placement {
	var out []Placement
	for _, a := range r.Actions {
		if a.Kind != ActionStop {
			continue
		}
		w := workloadNamed(in, a.Workload)
		n := nodeNamed(in, a.Node)
		if w == nil || !w.Exclusive || n == nil || (n.Status != StatusAlive && n.Status != StatusSuspect) {
			continue
		}
		for _, p := range in.Placements {
			if p.ID == a.Instance {
				p.Stopping = true
				out = append(out, p)
			}
		}
	}
	return out
}

func workloadNamed(in Input, name string) *Workload {
	for i := range in.Workloads {
		if in.Workloads[i].Name == name {
			return &in.Workloads[i]
		}
	}
	return nil
}

func nodeNamed(in Input, name string) *Node {
	for i := range in.Nodes {
		if in.Nodes[i].Name == name {
			return &in.Nodes[i]
		}
	}
	return nil
}

// mayRun re-implements, independently of the planner, whether a record of an
// exclusive workload (or a Stopping record) may still run, and so counts toward its
// workload: on an alive or suspect node, yes; on a dead node, while its lease has not
// ended or within ReplaceAfter of DeadSince; on a left or gone node (n nil), while its
// lease has not ended.
func mayRun(in Input, w *Workload, n *Node, p *Placement) bool {
	leased := in.Now.Before(in.Leases[p.Node])
	switch {
	case n == nil || n.Status == StatusLeft:
		return leased
	case n.Status == StatusDead:
		return leased || (!n.DeadSince.IsZero() && in.Now.Before(n.DeadSince.Add(w.ReplaceAfter)))
	}
	return true
}

// checkExclusive verifies the at-most-once invariants of a plan, computed
// independently of the planner. For every exclusive workload, the instances that may
// run after the plan (the applied table's live records, Stopping records and records
// held by an unexpired lease, plus the instances the plan stopped that may still run
// until their stop is confirmed) never exceed desired when the plan starts one (per
// node for a global workload), and never exceed what may run before the plan
// otherwise. It is never migrated or offloaded, its replacements carry no Supersedes,
// a record held by an unexpired lease gets no action and is never named as replaced,
// and no action ever names a Stopping record.
func checkExclusive(t *testing.T, in Input, r Result) {
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
	byID := map[string]*Placement{}
	for i := range in.Placements {
		byID[in.Placements[i].ID] = &in.Placements[i]
	}
	targets := func(w *Workload) bool {
		return len(w.Regions) == 0 || in.Region == "" || slices.Contains(w.Regions, in.Region)
	}
	acted := map[string]bool{}
	stopped := map[string]bool{}
	placed := map[string]bool{} // workload, or workload@node for a global one
	for _, a := range r.Actions {
		acted[a.Instance], acted[a.Replaces] = true, true
		w := wls[a.Workload]
		if a.Kind == ActionStop {
			stopped[a.Instance] = true
		}
		if w == nil || !w.Exclusive || a.Kind == ActionStop {
			continue
		}
		if a.Kind == ActionMigrate || a.Cause == CauseOffload {
			t.Errorf("exclusive %s: %s %s [%s]; an exclusive instance is never migrated", a.Workload, a.Kind, a.Instance, a.Cause)
		}
		if a.Supersedes != "" {
			t.Errorf("exclusive %s: %s supersedes %s; an exclusive replacement is never paired with its original", a.Workload, a.Instance, a.Supersedes)
		}
		placed[a.Workload] = true
		placed[a.Workload+"@"+a.Node] = true
	}
	for _, p := range in.Placements {
		if p.Stopping && acted[p.ID] {
			t.Errorf("Stopping record %s was acted on:\n%s", p.ID, render(r))
		}
		w, n := wls[p.Workload], nodes[p.Node]
		if w == nil || !w.Exclusive || !targets(w) || (n != nil && n.Status != StatusDead && n.Status != StatusLeft) || !in.Now.Before(in.Leases[p.Node]) {
			continue
		}
		// On a lost node whose lease has not ended: it may run, so it is left alone
		// (unless its workload was deleted or retargeted: then nothing replaces it).
		if acted[p.ID] {
			t.Errorf("exclusive %s on %s (lease until %s) was acted on before its lease ended:\n%s", p.ID, p.Node, in.Leases[p.Node].Format(time.RFC3339), render(r))
		}
		for _, a := range r.Actions {
			if a.Workload == p.Workload && a.Kind == ActionPlace && strings.Contains(a.Reason, "replaces "+p.ID+" ") {
				t.Errorf("exclusive %s placed as the replacement of %s, whose node's lease has not ended", a.Instance, p.ID)
			}
		}
	}
	count := func(ps []Placement) map[string]int {
		c := map[string]int{}
		for i := range ps {
			p := &ps[i]
			w := wls[p.Workload]
			if w == nil || !w.Exclusive || !targets(w) || !mayRun(in, w, nodes[p.Node], p) {
				continue
			}
			c[p.Workload]++
			c[p.Workload+"@"+p.Node]++
		}
		return c
	}
	before := count(in.Placements)
	// After: the applied table, plus what the plan stopped that may still run (its
	// node has not confirmed the stop yet; the coordinator passes it back as Stopping).
	mayStill := map[string]bool{}
	for id := range stopped {
		if p := byID[id]; p != nil {
			if w := wls[p.Workload]; w != nil && w.Exclusive && mayRun(in, w, nodes[p.Node], p) {
				mayStill[id] = true
			}
		}
	}
	after := count(append(r.Apply(in.Placements), keptStopped(in.Placements, mayStill)...))
	for name, w := range wls {
		if !w.Exclusive || !targets(w) {
			continue
		}
		keys, desired := []string{name}, max(w.Replicas, 0)
		if w.Mode == ModeGlobal {
			keys, desired = nil, 1
			for k := range after {
				if strings.HasPrefix(k, name+"@") {
					keys = append(keys, k)
				}
			}
		}
		for _, k := range keys {
			if placed[k] && after[k] > desired {
				t.Errorf("exclusive %s: a plan that starts an instance leaves %d that may run, want at most %d desired\n%s", k, after[k], desired, render(r))
			}
			if after[k] > max(desired, before[k]) {
				t.Errorf("exclusive %s: %d may run after the plan, %d before, %d desired\n%s", k, after[k], before[k], desired, render(r))
			}
		}
	}
}

// keptStopped returns the placements named in ids, for counting them after the plan.
func keptStopped(ps []Placement, ids map[string]bool) []Placement {
	var out []Placement
	for _, p := range ps {
		if ids[p.ID] {
			out = append(out, p)
		}
	}
	return out
}
