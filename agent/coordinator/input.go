package coordinator

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/murmur-edge/murmur/scheduler"
)

// Snapshot is everything one plan is made from. The leader loop fills it; BuildInput
// turns it into the scheduler's Input. Nothing in it is modified.
type Snapshot struct {
	Region    string
	Now       time.Time
	Members   []gossip.Member // the whole fleet view; other regions are ignored
	State     region.State    // the applied table
	Workloads []intents.LiveIntent
	Policies  []intents.LiveIntent
	// Tombstones: deleted intents by name, with the version of the delete.
	Tombstones map[string]policy.Version
	Reports    map[string]Report   // node name → its latest report
	Hot        map[string]HotState // node name → offload bookkeeping
	// MissingSuspect: a node holding placements that is missing from Members counts
	// as suspect (instances kept and counted, no new work) instead of gone.
	MissingSuspect bool
	// UsageSettle is how long after an instance starts its node's load record may
	// still leave it out (see unmeasuredLoad). Zero means DefaultUsageSettle.
	UsageSettle time.Duration
	// Leases: node name → until when it may still run its exclusive instances
	// (lease.go); scheduler.Input.Leases.
	Leases map[string]time.Time
}

// DefaultUsageSettle covers the agent's usage sampling: a CPU figure needs two
// samples 5 s apart, then up to a second until the load record is published.
const DefaultUsageSettle = 15 * time.Second

// HotState is the offload bookkeeping the coordinator keeps per node between plans.
// (When an offload last moved work off a node is in the committed state,
// region.State.LastOffload, so the cooldown survives a failover.)
type HotState struct {
	HighSince time.Time // load above the threshold continuously since; zero when below
}

// Rejected is a Workload intent that targets the region but that the policy in force
// forbids (admission is checked again at placement, whichever node accepted it).
type Rejected struct {
	Intent  string
	Desired int // replicas (0 for a global workload)
	Reason  string
	// Held: not forbidden but unknown to this coordinator's store; its instances are
	// planned as they are (a placeholder workload) until the intent arrives.
	Held bool
}

type nodeInfo struct {
	status scheduler.NodeStatus
}

// regionPolicies returns the Policy intents that apply to region r, sorted by name.
func regionPolicies(ps []intents.LiveIntent, r string) []*policy.Intent {
	var out []*policy.Intent
	for _, p := range ps {
		if p.Policy != nil && (len(p.Policy.Regions) == 0 || slices.Contains(p.Policy.Regions, r)) {
			out = append(out, p.Intent)
		}
	}
	return out
}

// offloadPolicy is the offload rule in force in region r: a Policy naming the region
// wins over one for every region; among equals the first by name.
func offloadPolicy(ps []*policy.Intent, r string) scheduler.OffloadPolicy {
	var best *policy.Offload
	bestSpecific := false
	for _, p := range ps {
		o := p.Policy.Offload
		if o == nil {
			continue
		}
		specific := slices.Contains(p.Policy.Regions, r)
		if best == nil || (specific && !bestSpecific) {
			best, bestSpecific = o, specific
		}
	}
	if best == nil {
		return scheduler.OffloadPolicy{}
	}
	var op scheduler.OffloadPolicy
	if best.CPUAbove != nil {
		op.CPUAbove = *best.CPUAbove
	}
	if best.MemoryAbove != nil {
		op.MemoryAbove = *best.MemoryAbove
	}
	op.SustainedFor, _ = policy.ParseDuration(string(best.SustainedFor))
	op.Cooldown, _ = policy.ParseDuration(string(best.Cooldown))
	return op
}

// targets reports whether a Workload intent targets region r.
func targets(w *policy.WorkloadSpec, r string) bool {
	return len(w.Regions) == 0 || slices.Contains(w.Regions, r)
}

// admit checks w against the policies in force in region r.
func admit(w *policy.Intent, ps []*policy.Intent, r string) policy.Problems {
	cp := *w
	spec := *w.Workload
	spec.Regions = []string{r}
	cp.Workload = &spec
	return policy.Admit(&cp, ps)
}

// BuildInput turns a snapshot into the scheduler's input. It is pure: the same
// snapshot gives the same input. Workloads the region's policies forbid are left out
// (so their instances stop) and returned with the reason.
func BuildInput(s Snapshot) (scheduler.Input, []Rejected) {
	in := scheduler.Input{
		Region:     s.Region,
		Now:        s.Now,
		Seed:       s.State.Index,
		Generation: max(s.State.Index, s.State.Generation) + 1,
	}
	ps := regionPolicies(s.Policies, s.Region)
	in.Offload = offloadPolicy(ps, s.Region)

	for _, m := range s.Members {
		if m.Region != s.Region {
			continue
		}
		n := scheduler.Node{
			Name: m.Name, Region: m.Region, Status: scheduler.NodeStatus(m.Status),
			Capacity: scheduler.Resources{MilliCPU: m.MilliCPU, MemoryBytes: m.MemoryBytes},
			Load:     scheduler.Load{CPU: m.Load.CPU, Memory: m.Load.Memory},
			Labels:   m.Labels, Drivers: m.Drivers, Draining: s.State.Drained[m.Name],
		}
		if n.Status == scheduler.StatusDead {
			n.DeadSince = m.StatusSince
		}
		if m.Health == "" && n.Status == scheduler.StatusAlive {
			// A member whose load record has not arrived yet (right after a restart, a
			// push/pull's members can land before its records): its drivers and load
			// are unknown, so it keeps its instances and gets nothing new, as a
			// suspect node does.
			n.Status = scheduler.StatusSuspect
		}
		n.LoadHighSince = s.Hot[m.Name].HighSince
		n.LastMigrationAt = s.State.LastOffload[m.Name] // committed: a new coordinator keeps the cooldown
		in.Nodes = append(in.Nodes, n)
	}

	if s.MissingSuspect {
		seen := make(map[string]bool, len(in.Nodes))
		for _, n := range in.Nodes {
			seen[n.Name] = true
		}
		var missing []string
		for _, p := range s.State.Placements {
			if !seen[p.Node] {
				seen[p.Node] = true
				missing = append(missing, p.Node)
			}
		}
		slices.Sort(missing)
		for _, name := range missing {
			in.Nodes = append(in.Nodes, scheduler.Node{Name: name, Region: s.Region, Status: scheduler.StatusSuspect})
		}
	}

	var rejected []Rejected
	for _, li := range s.Workloads {
		w := li.Workload
		if w == nil || !targets(w, s.Region) {
			continue
		}
		if probs := admit(li.Intent, ps, s.Region); len(probs) > 0 {
			rejected = append(rejected, Rejected{Intent: li.Name(), Desired: w.ReplicaCount(), Reason: "forbidden in region " + s.Region + ": " + probs.Error()})
			continue
		}
		sw := scheduler.Workload{
			Name: li.Name(), Version: li.Version, SpecHash: w.RunHash(), Regions: w.Regions, Mode: scheduler.ModeReplicated,
			Replicas: w.ReplicaCount(), Driver: w.Driver,
			Resources:   scheduler.Resources{MilliCPU: w.CPUMilli(), MemoryBytes: w.MemoryBytes()},
			Constraints: w.Constraints.Labels,
		}
		if w.Mode == policy.ModeGlobal {
			sw.Mode = scheduler.ModeGlobal
		}
		if w.Priority != nil {
			sw.Priority = *w.Priority
		}
		sw.ReplaceAfter, _ = policy.ParseDuration(string(w.Disconnect.ReplaceAfter))
		sw.Reconcile = scheduler.ReconcileRule(w.Disconnect.Reconcile) // empty (not defaulted): keep_replacement
		sw.Exclusive = w.Exclusive
		in.Workloads = append(in.Workloads, sw)
	}

	// A placement of a workload this node's store does not know (yet) is kept as it
	// is: the store may be behind (an intent applied while this node was cut off), and
	// planning on that would stop the work everywhere. Only a tombstone at or above the
	// placement's version proves the workload deleted.
	known := make(map[string]bool, len(in.Workloads)+len(rejected))
	for _, li := range s.Workloads {
		known[li.Name()] = true
	}
	up := map[string]bool{}
	for _, n := range in.Nodes {
		up[n.Name] = n.Status == scheduler.StatusAlive || n.Status == scheduler.StatusSuspect
	}
	held := map[string]*scheduler.Workload{}
	var heldNames []string
	for _, p := range s.State.Placements {
		if known[p.Workload] || !up[p.Node] {
			continue // (a record on a dead or gone node is not one of its replicas)
		}
		if v, ok := s.Tombstones[p.Workload]; ok && !v.Less(p.Version) {
			continue
		}
		w := held[p.Workload]
		if w == nil {
			w = &scheduler.Workload{Name: p.Workload, Mode: scheduler.ModeReplicated, Version: p.Version}
			held[p.Workload] = w
			heldNames = append(heldNames, p.Workload)
		}
		w.Replicas++
		if p.Version.Less(w.Version) {
			w.Version = p.Version // the oldest: nothing is migrated as an update
		}
	}
	slices.Sort(heldNames)
	for _, n := range heldNames {
		in.Workloads = append(in.Workloads, *held[n])
		rejected = append(rejected, Rejected{Intent: n, Desired: held[n].Replicas, Held: true,
			Reason: "this coordinator's intent store does not hold " + n + " at version " + held[n].Version.String() + " yet; its instances are kept as they are"})
	}

	reported := map[string]InstanceReport{}
	for node, r := range s.Reports {
		for _, ir := range r.Instances {
			reported[node+"\x00"+ir.ID] = ir
		}
	}
	handingOver := HandingOver(s.State, up)
	ids := make([]string, 0, len(s.State.Placements))
	for id := range s.State.Placements {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := s.State.Placements[id]
		if handingOver[id] {
			continue // its replacement counts instead; it stops once that one runs
		}
		if ir, ok := reported[p.Node+"\x00"+p.ID]; ok && ir.Generation == p.Generation {
			// Running means started and, for a workload with a health check, passed it
			// (the supervisor reports "starting" until the first probe succeeds).
			p.State, p.Healthy = schedState(ir.State), ir.State == runtime.StateRunning
			if !ir.Since.IsZero() {
				p.StartedAt = ir.Since
			}
			p.Usage = scheduler.Resources{MilliCPU: ir.MilliCPU, MemoryBytes: ir.MemoryBytes}
		} else {
			p.State = scheduler.StatePending
		}
		in.Placements = append(in.Placements, p)
	}
	in.Leases = s.Leases
	in.Placements = append(in.Placements, stoppingRecords(s, in.Workloads, up)...)
	if in.Offload.CPUAbove > 0 || in.Offload.MemoryAbove > 0 {
		unmeasuredLoad(&in, s, reported, handingOver)
	}
	return in, rejected
}

// stoppingRecords are the exclusive instances whose stop was committed and that may
// still run, as scheduler records with Stopping set: they occupy their slot, so no
// successor starts while they may run. Two sources:
//
//   - State.Stopping: every exclusive instance a plan stopped (Plan.Hold), until the
//     stop is confirmed (StopConfirmed), on any node, up or not (on a lost node the
//     scheduler holds it until the node's lease ends);
//   - the reports of nodes that are up: an exclusive instance a node reports running
//     (or starting, or in backoff) that the table does not hold on it.
//
// A node's report alone cannot say an instance is stopped: a report made before the
// node applied the stop, or before a lease grant let a fenced node start the
// instance again (after an agent restart), does not list it although it is about to
// run. Hence State.Stopping and the generation test in StopConfirmed.
func stoppingRecords(s Snapshot, ws []scheduler.Workload, up map[string]bool) []scheduler.Placement {
	exclusive := ExclusiveWorkloads(ws)
	if len(exclusive) == 0 {
		return nil
	}
	var out []scheduler.Placement
	seen := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(s.State.Stopping)) {
		sp := s.State.Stopping[id]
		if !exclusive[sp.Placement.Workload] || StopConfirmed(s, sp) {
			continue
		}
		seen[id] = true
		p := sp.Placement
		p.State, p.Stopping = scheduler.StateRunning, true
		for _, ir := range s.Reports[p.Node].Instances {
			if ir.ID == id {
				p.State, p.StartedAt = schedState(ir.State), ir.Since
			}
		}
		out = append(out, p)
	}
	for _, n := range slices.Sorted(maps.Keys(s.Reports)) {
		if !up[n] {
			continue
		}
		for _, ir := range s.Reports[n].Instances {
			if !exclusive[ir.Intent] || !activeState(ir.State) || seen[ir.ID] {
				continue
			}
			if p, ok := s.State.Placements[ir.ID]; ok && p.Node == n {
				continue
			}
			out = append(out, scheduler.Placement{ID: ir.ID, Workload: ir.Intent, Node: n, Generation: ir.Generation,
				State: schedState(ir.State), StartedAt: ir.Since, Stopping: true})
		}
	}
	return out
}

// ExclusiveWorkloads is the set of the exclusive workloads' names. Pure.
func ExclusiveWorkloads(ws []scheduler.Workload) map[string]bool {
	out := map[string]bool{}
	for _, w := range ws {
		if w.Exclusive {
			out[w.Name] = true
		}
	}
	return out
}

// activeState: an instance in this state may run (or be about to).
func activeState(st string) bool {
	return st != runtime.StateStopped && st != runtime.StateFailed
}

// StopConfirmed reports whether the exclusive instance of sp is known stopped on its
// node, so that its State.Stopping entry can be released:
//   - the node's report says it applied an assignment at least as new as the plan
//     that stopped the instance (so it was told to stop it, and a fenced node can no
//     longer start it), and does not list it as running, starting or in backoff; or
//   - the node's lease has ended in this coordinator's view (Snapshot.Leases), or it
//     has none: it runs no exclusive instance then, and can start one again only after
//     a new grant and an assignment at least as new as the grant's table, which holds
//     no such stop.
//
// Pure.
func StopConfirmed(s Snapshot, sp region.Stopping) bool {
	node, id := sp.Placement.Node, sp.Placement.ID
	if r, ok := s.Reports[node]; ok && r.Generation >= sp.Generation {
		running := false
		for _, ir := range r.Instances {
			if ir.ID == id && activeState(ir.State) {
				running = true
			}
		}
		if !running {
			return true
		}
	}
	until, ok := s.Leases[node]
	return !ok || !s.Now.Before(until)
}

// Released lists the State.Stopping entries to forget in the next plan: those whose
// stop is confirmed (StopConfirmed), or whose workload is no longer exclusive (not in
// exclusive, ExclusiveWorkloads of the plan's input). It also returns the earliest
// lease end among the others, when the plan should be made again (zero if none). Pure.
func Released(s Snapshot, exclusive map[string]bool) (release []string, recheck time.Time) {
	for _, id := range slices.Sorted(maps.Keys(s.State.Stopping)) {
		sp := s.State.Stopping[id]
		if !exclusive[sp.Placement.Workload] || StopConfirmed(s, sp) {
			release = append(release, id)
			continue
		}
		if until := s.Leases[sp.Placement.Node]; recheck.IsZero() || until.Before(recheck) {
			recheck = until
		}
	}
	return release, recheck
}

// unmeasuredLoad adds to each node's load the instances its load record cannot show
// yet. A node's load is what its supervisor measured, and a CPU figure takes two
// samples: for up to DefaultUsageSettle after an instance is placed its node looks
// emptier than it is. The offload rule would then send a second hot node's work to
// the neighbour that has just taken the first one's, and push it over the threshold.
// So an instance that is assigned, starting, or running but not measured yet (no CPU
// figure, started less than UsageSettle ago) counts at its request, or at what the
// instance it replaces measured if that is more, minus what it already reports. An
// instance in backoff or failed counts nothing. Only while an offload rule is in
// force (it is what reads load this closely).
func unmeasuredLoad(in *scheduler.Input, s Snapshot, reported map[string]InstanceReport, handingOver map[string]bool) {
	settle := s.UsageSettle
	if settle <= 0 {
		settle = DefaultUsageSettle
	}
	req := make(map[string]scheduler.Resources, len(in.Workloads))
	for _, w := range in.Workloads {
		req[w.Name] = w.Resources
	}
	node := make(map[string]int, len(in.Nodes))
	for i, n := range in.Nodes {
		node[n.Name] = i
	}
	fresh := func(t time.Time) bool { return !t.IsZero() && s.Now.Sub(t) < settle }
	for _, p := range in.Placements {
		ni, ok := node[p.Node]
		if !ok || handingOver[p.ID] {
			continue
		}
		n := &in.Nodes[ni]
		if n.Status != scheduler.StatusAlive && n.Status != scheduler.StatusSuspect {
			continue
		}
		var own scheduler.Resources
		switch ir, ok := reported[p.Node+"\x00"+p.ID]; {
		case !ok || ir.Generation != p.Generation:
			if !fresh(p.StartedAt) {
				continue // placed long ago and not reported (yet, to this coordinator)
			}
		case schedState(ir.State) == scheduler.StateFailed:
			continue
		case schedState(ir.State) == scheduler.StateRunning && (ir.MilliCPU > 0 || !fresh(ir.Since)):
			continue // measured
		default:
			own = scheduler.Resources{MilliCPU: ir.MilliCPU, MemoryBytes: ir.MemoryBytes}
		}
		est := req[p.Workload]
		if old, ok := s.State.Placements[p.Replaces]; ok && p.Replaces != "" {
			if ir, ok := reported[old.Node+"\x00"+old.ID]; ok && ir.Generation == old.Generation {
				est.MilliCPU, est.MemoryBytes = max(est.MilliCPU, ir.MilliCPU), max(est.MemoryBytes, ir.MemoryBytes)
			}
		}
		if n.Capacity.MilliCPU > 0 && est.MilliCPU > own.MilliCPU {
			n.Load.CPU += float64(est.MilliCPU-own.MilliCPU) / float64(n.Capacity.MilliCPU)
		}
		if n.Capacity.MemoryBytes > 0 && est.MemoryBytes > own.MemoryBytes {
			n.Load.Memory += float64(est.MemoryBytes-own.MemoryBytes) / float64(n.Capacity.MemoryBytes)
		}
	}
}

// HandingOver returns the placements a migration is replacing: those named by the
// Replaces of a placement whose node is up (alive or suspect, by up). They keep
// running, left out of the planner's input so they are neither counted twice nor
// moved again. When the replacement's node is down, the old one counts again. Pure.
func HandingOver(st region.State, up map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, p := range st.Placements {
		if p.Replaces == "" || !up[p.Node] {
			continue
		}
		if _, ok := st.Placements[p.Replaces]; ok {
			out[p.Replaces] = true
		}
	}
	return out
}

// Handovers returns the placements to stop because their replacement runs: for each
// placement reported running at its generation, what it replaces, and what that one
// replaced in turn. Sorted. Pure. "Running" is the supervisor's word for started and,
// when the workload has a health check, healthy: until its first probe passes an
// instance is "starting", so the old one keeps serving until the new one is healthy.
func Handovers(st region.State, reports map[string]Report) []string {
	running := map[string]bool{}
	for node, r := range reports {
		for _, ir := range r.Instances {
			if ir.State == runtime.StateRunning {
				running[node+"\x00"+ir.ID+"\x00"+strconv.FormatUint(ir.Generation, 10)] = true
			}
		}
	}
	stop := map[string]bool{}
	for _, p := range st.Placements {
		if p.Replaces == "" || !running[p.Node+"\x00"+p.ID+"\x00"+strconv.FormatUint(p.Generation, 10)] {
			continue
		}
		for id, hops := p.Replaces, 0; id != "" && hops < len(st.Placements); hops++ {
			old, ok := st.Placements[id]
			if !ok || stop[id] {
				break
			}
			stop[id] = true
			id = old.Replaces
		}
	}
	out := make([]string, 0, len(stop))
	for id := range stop {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// schedState maps a runtime instance state to the scheduler's.
func schedState(s string) scheduler.InstanceState {
	switch s {
	case runtime.StateRunning, runtime.StateUnhealthy:
		return scheduler.StateRunning
	case runtime.StateBackoff, runtime.StateFailed, runtime.StateStopped:
		return scheduler.StateFailed
	}
	return scheduler.StatePending
}

// UpdateHot advances the offload bookkeeping: a node above the threshold keeps (or
// starts) its HighSince; one below loses it. Nodes gone from the region are dropped.
// It returns a new map; hot is not modified.
func UpdateHot(hot map[string]HotState, members []gossip.Member, regionName string, op scheduler.OffloadPolicy, now time.Time) map[string]HotState {
	out := make(map[string]HotState, len(hot))
	for _, m := range members {
		if m.Region != regionName {
			continue
		}
		h := hot[m.Name]
		above := (op.CPUAbove > 0 && m.Load.CPU > op.CPUAbove) || (op.MemoryAbove > 0 && m.Load.Memory > op.MemoryAbove)
		switch {
		case above && h.HighSince.IsZero():
			h.HighSince = now
		case !above:
			h.HighSince = time.Time{}
		}
		if h != (HotState{}) {
			out[m.Name] = h
		}
	}
	return out
}

// summaries lists every Workload intent targeting the region with its desired count
// and, when work is unplaced, the reason. Pure.
func summaries(s Snapshot, in scheduler.Input, res scheduler.Result, rejected []Rejected) []Summary {
	byName := map[string]*Summary{}
	var out []Summary
	for _, w := range in.Workloads {
		d := w.Replicas
		if w.Mode == scheduler.ModeGlobal {
			d = 0 // counted below: placed + unplaced
		}
		out = append(out, Summary{Intent: w.Name, Desired: d})
	}
	for _, r := range rejected {
		if r.Held {
			continue // listed with the workloads (its placeholder), reason added below
		}
		out = append(out, Summary{Intent: r.Intent, Desired: r.Desired, Unplaced: r.Desired, Reason: r.Reason})
	}
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(a.Intent, b.Intent) })
	for i := range out {
		byName[out[i].Intent] = &out[i]
	}
	for _, r := range rejected {
		if sm := byName[r.Intent]; sm != nil && r.Held {
			sm.Reason = r.Reason
		}
	}
	global := map[string]bool{}
	for _, w := range in.Workloads {
		global[w.Name] = w.Mode == scheduler.ModeGlobal
	}
	for _, p := range res.Apply(in.Placements) {
		if sm := byName[p.Workload]; sm != nil && global[p.Workload] {
			sm.Desired++
		}
	}
	for _, u := range res.Unplaced {
		sm := byName[u.Workload]
		if sm == nil {
			continue
		}
		if u.Instance == "" {
			sm.Unplaced += u.Count
			if global[u.Workload] {
				sm.Desired += u.Count
			}
		}
		reason := u.Reason
		if u.Instance != "" && !strings.Contains(reason, u.Instance) {
			// (The scheduler names the instance itself: "cannot offload x: …".)
			reason = "cannot move " + u.Instance + ": " + reason
		}
		if sm.Reason == "" {
			sm.Reason = reason
		} else if !strings.Contains(sm.Reason, reason) {
			sm.Reason += "; " + reason
		}
	}
	return out
}
