package scheduler

import (
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// exactBelow is the eligible-node count up to which every node is scored. Above it,
// the planner scores a seeded sample of candidateLimit(n) feasible nodes, as Nomad
// does (log2 n for service jobs): placement stays O(log n) per instance instead of
// O(n), and the rotating cursor spreads successive replicas over the whole region.
const exactBelow = 64

func candidateLimit(n int) int {
	if n <= exactBelow {
		return n
	}
	return bits.Len(uint(n)) // ceil(log2(n+1)): 13 for 5,000 nodes
}

// Scorer weights: the strategy (binpack or spread) dominates, live load breaks the
// near-ties so a node that is busier than its requests suggest is avoided.
const (
	weightStrategy = 0.75
	weightLoad     = 0.25
)

// dyn runs the dynamic filters (those that change as the plan places work) against
// node ni and returns the first that rejects it, or dynOK.
//
//	current node        the instance being moved is there now
//	insufficient cpu    requests + this one > capacity
//	insufficient memory requests + this one > capacity
//	offload threshold   live load + this instance would exceed the offload threshold
//	spread across nodes the node already has ceil(replicas / eligible nodes) replicas
//	spread across zones the zone already has ceil(replicas / zones) replicas
//
// use is what the instance adds to the node's live load: nil for a new instance (its
// request), and for an offload move max(request, measured usage) per dimension
// (offloadUse), so that a move never makes its target hot: the target must stay at or
// under the threshold in both dimensions with the instance counted at what it really
// uses. (A target that is hot already, whatever its LoadHighSince, fails that too.)
func (s *state) dyn(ws *wlState, ni, exclude int32, spread bool, maxNode, maxZone int32, use *Resources) int {
	if ni == exclude {
		return dynExcluded
	}
	ns := &s.nodes[ni]
	r := &ws.w.Resources
	if ns.cpuUsed+r.MilliCPU > ns.cpuCap {
		return dynCPU
	}
	if ns.memUsed+r.MemoryBytes > ns.memCap {
		return dynMemory
	}
	if s.offloadOn {
		if use == nil {
			use = r
		}
		if s.overThreshold(ns, use) {
			return dynThreshold
		}
	}
	if spread {
		if ws.nodeCount[ni] >= maxNode {
			return dynSpreadNode
		}
		if maxZone > 0 && ws.zoneCount[ns.zone] >= maxZone {
			return dynSpreadZone
		}
	}
	return dynOK
}

// overThreshold reports whether adding r (a request, or an offload move's use) would
// push the node's load above the offload threshold. Load added by this plan is
// estimated from requests, or from max(request, usage) for offload moves.
func (s *state) overThreshold(ns *nodeState, r *Resources) bool {
	pol := &s.in.Offload
	if pol.CPUAbove > 0 && ns.loadCPU+frac(r.MilliCPU, ns.cpuCap) > pol.CPUAbove {
		return true
	}
	if pol.MemoryAbove > 0 && ns.loadMem+frac(r.MemoryBytes, ns.memCap) > pol.MemoryAbove {
		return true
	}
	return false
}

// scoreParts returns the named scorers for node ni: the strategy score (binpack:
// mean cpu/memory utilisation after placing; spread: one minus it) and the load
// score (one minus the higher live load fraction). Both are in [0, 1].
func (s *state) scoreParts(ws *wlState, ni int32, adding bool) (strategy, load float64) {
	ns := &s.nodes[ni]
	cpu, mem := ns.cpuUsed, ns.memUsed
	if adding {
		cpu += ws.w.Resources.MilliCPU
		mem += ws.w.Resources.MemoryBytes
	}
	u := clamp01((frac(cpu, ns.cpuCap) + frac(mem, ns.memCap)) / 2)
	if ws.w.Strategy == StrategySpread {
		u = 1 - u
	}
	return u, 1 - clamp01(max(ns.loadCPU, ns.loadMem))
}

func (s *state) scoreNode(ws *wlState, ni int32, adding bool) float64 {
	st, ld := s.scoreParts(ws, ni, adding)
	return weightStrategy*st + weightLoad*ld
}

func clamp01(x float64) float64 {
	if x < 0 || x != x {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// pick walks the eligible list from the workload's cursor and returns the best of
// the first candidateLimit feasible nodes (-1 if none), how many were feasible, and
// per-filter rejections. Ties go to the lower seeded key.
func (s *state) pick(ws *wlState, list []int32, exclude int32, spread bool, maxNode, maxZone int32, use *Resources) (best int32, feasible int, rej [numDyn]int) {
	n := len(list)
	best = -1
	if n == 0 {
		return best, 0, rej
	}
	limit := candidateLimit(n)
	start := ws.cursor % n
	var bestScore float64
	visited := 0
	for ; visited < n && feasible < limit; visited++ {
		idx := start + visited
		if idx >= n {
			idx -= n
		}
		ni := list[idx]
		if c := s.dyn(ws, ni, exclude, spread, maxNode, maxZone, use); c != dynOK {
			rej[c]++
			continue
		}
		feasible++
		sc := s.scoreNode(ws, ni, true)
		if best < 0 || sc > bestScore || (sc == bestScore && s.nodes[ni].key < s.nodes[best].key) {
			best, bestScore = ni, sc
		}
	}
	ws.cursor = start + visited
	return best, feasible, rej
}

// place chooses a node for one new instance of ws and commits it. replaces/from are
// set for a migration. Spread is a hard filter while some node satisfies it, and is
// relaxed otherwise; when nothing fits, a higher-priority workload may preempt
// (never during offload). offload is non-nil for an offload move: what the moved
// instance adds to its target's load (see dyn).
func (s *state) place(ws *wlState, exclude int32, cause Cause, reason, replaces, from string, offload *Resources) (int32, bool) {
	s.prepare(ws)
	sg := s.sigOf(ws)
	list := s.eligible(sg)
	spread := ws.desired > 1 && len(list) > 0
	var maxNode, maxZone int32
	if spread {
		maxNode = int32((ws.desired + len(list) - 1) / len(list))
		if sg.zones > 1 {
			maxZone = int32((ws.desired + sg.zones - 1) / sg.zones)
		}
	}
	best, feasible, rej := s.pick(ws, list, exclude, spread, maxNode, maxZone, offload)
	if best < 0 && spread && rej[dynSpreadNode]+rej[dynSpreadZone] > 0 {
		best, feasible, rej = s.pick(ws, list, exclude, false, 0, 0, offload)
		if best >= 0 {
			reason += "; spread relaxed, no node satisfies it"
		}
	}
	if best < 0 && offload == nil {
		if best = s.preempt(ws, list, exclude); best >= 0 {
			feasible = 1
		}
	}
	if best < 0 {
		s.lastRej = rej
		return -1, false
	}
	s.commitPlace(ws, best, cause, reason, replaces, from, feasible, offload)
	return best, true
}

// commitPlace records a new instance of ws on node ni. use is what it adds to the
// node's live load (nil: its request).
func (s *state) commitPlace(ws *wlState, ni int32, cause Cause, reason, replaces, from string, feasible int, use *Resources) {
	ns := &s.nodes[ni]
	r := &ws.w.Resources
	st, ld := s.scoreParts(ws, ni, true)
	ns.cpuUsed += r.MilliCPU
	ns.memUsed += r.MemoryBytes
	if use == nil {
		use = r
	}
	ns.loadCPU += frac(use.MilliCPU, ns.cpuCap)
	ns.loadMem += frac(use.MemoryBytes, ns.memCap)
	ws.nodeCount[ni]++
	ws.zoneCount[ns.zone]++

	strategy := "binpack"
	if ws.w.Strategy == StrategySpread {
		strategy = "spread"
	}
	var b strings.Builder
	b.Grow(len(reason) + 64)
	b.WriteString(reason)
	b.WriteString("; score ")
	b.WriteString(strconv.FormatFloat(weightStrategy*st+weightLoad*ld, 'f', 3, 64))
	b.WriteString(" (")
	b.WriteString(strategy)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(st, 'f', 2, 64))
	b.WriteString(", load ")
	b.WriteString(strconv.FormatFloat(ld, 'f', 2, 64))
	b.WriteByte(')')
	if feasible > 1 {
		b.WriteString(", best of ")
		b.WriteString(strconv.Itoa(feasible))
	}
	kind := ActionPlace
	if replaces != "" {
		kind = ActionMigrate
	}
	s.res.Actions = append(s.res.Actions, Action{
		Kind: kind, Cause: cause, Workload: ws.w.Name, Instance: s.newID(ws), Node: ns.n.Name,
		Version: ws.w.Version, SpecHash: ws.w.SpecHash, Replaces: replaces, From: from, Reason: b.String(), Supersedes: s.supersedes,
	})
	s.supersedes = ""
}

// newID returns <workload>-<generation>-<ordinal>, skipping IDs in the table.
func (s *state) newID(ws *wlState) string {
	buf := make([]byte, 0, len(ws.w.Name)+24)
	for {
		buf = append(buf[:0], ws.w.Name...)
		buf = append(buf, '-')
		buf = strconv.AppendUint(buf, s.in.Generation, 10)
		buf = append(buf, '-')
		buf = strconv.AppendInt(buf, int64(ws.nextOrd), 10)
		ws.nextOrd++
		id := string(buf)
		if _, taken := ws.ids[id]; !taken {
			return id
		}
	}
}

// preempt looks for the node among list where stopping instances of strictly lower
// priority frees enough cpu and memory for one instance of ws, preferring the
// lowest highest-victim priority, then the fewest victims, then the seeded key. It
// stops the victims and returns the node, or -1.
func (s *state) preempt(ws *wlState, list []int32, exclude int32) int32 {
	P := s.in.Placements
	prio := ws.w.Priority
	r := &ws.w.Resources
	byNode := s.nodePlacements()
	best := int32(-1)
	var bestVictims, cands []int32
	bestMax, bestCount := 0, 0
	for _, ni := range list {
		if ni == exclude {
			continue
		}
		ns := &s.nodes[ni]
		if s.offloadOn && s.overThreshold(ns, r) {
			continue // stopping instances does not lower the measured load now
		}
		needCPU := ns.cpuUsed + r.MilliCPU - ns.cpuCap
		needMem := ns.memUsed + r.MemoryBytes - ns.memCap
		if needCPU <= 0 && needMem <= 0 {
			continue
		}
		cands = cands[:0]
		for _, pi := range byNode[ni] {
			if s.pflag[pi]&(flagLive|flagStopped|flagMoved|flagHeld) != flagLive {
				continue
			}
			if wi := s.pwl[pi]; wi >= 0 && s.wls[wi].w.Priority < prio {
				cands = append(cands, pi)
			}
		}
		if len(cands) == 0 {
			continue
		}
		slices.SortFunc(cands, func(a, b int32) int {
			wa, wb := s.wls[s.pwl[a]].w, s.wls[s.pwl[b]].w
			if wa.Priority != wb.Priority {
				return wa.Priority - wb.Priority
			}
			if sa, sb := wa.Resources.MilliCPU+wa.Resources.MemoryBytes>>20, wb.Resources.MilliCPU+wb.Resources.MemoryBytes>>20; sa != sb {
				if sa > sb {
					return -1
				}
				return 1
			}
			return strings.Compare(P[a].ID, P[b].ID)
		})
		n, maxP := 0, 0
		for _, pi := range cands {
			if needCPU <= 0 && needMem <= 0 {
				break
			}
			vw := s.wls[s.pwl[pi]].w
			needCPU -= vw.Resources.MilliCPU
			needMem -= vw.Resources.MemoryBytes
			n++
			maxP = vw.Priority
		}
		if needCPU > 0 || needMem > 0 {
			continue
		}
		if best < 0 || maxP < bestMax || (maxP == bestMax && (n < bestCount ||
			(n == bestCount && ns.key < s.nodes[best].key))) {
			best, bestMax, bestCount = ni, maxP, n
			bestVictims = append(bestVictims[:0], cands[:n]...)
		}
	}
	if best < 0 {
		return -1
	}
	for _, pi := range bestVictims {
		vw := s.wls[s.pwl[pi]].w
		s.stop(pi, CausePreempted, "preempted by "+ws.w.Name+" (priority "+strconv.Itoa(prio)+" > "+
			strconv.Itoa(vw.Priority)+") for resources on "+s.nodes[best].n.Name)
	}
	return best
}

// unplaced records why work of ws could not be placed, using the static filter
// counts of its signature and the dynamic rejections of the last attempt.
func (s *state) unplaced(ws *wlState, instance string, count int, exclude int32, offload bool) {
	sg := s.sigOf(ws)
	s.eligible(sg)
	u := Unplaced{Workload: ws.w.Name, Instance: instance, Count: count, NodesEvaluated: s.live}
	for _, fc := range sg.static {
		if fc.Nodes > 0 {
			u.Filtered = append(u.Filtered, fc)
		}
	}
	for code := 1; code < numDyn; code++ {
		if s.lastRej[code] > 0 {
			u.Filtered = append(u.Filtered, FilterCount{Filter: dynName(code), Nodes: s.lastRej[code]})
		}
	}
	u.Reason = renderFiltered(u.Filtered)
	switch {
	case offload:
		u.Reason = "cannot offload " + instance + ": " + u.Reason
	case instance != "":
		u.Reason = "cannot move " + instance + ": " + u.Reason
	}
	s.res.Unplaced = append(s.res.Unplaced, u)
}

// renderFiltered renders filter counts the way an operator reads them:
// "3 nodes filtered by label camera=yes, 2 by insufficient memory".
func renderFiltered(fs []FilterCount) string {
	if len(fs) == 0 {
		return "no nodes in the region"
	}
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(f.Nodes))
		if i == 0 {
			if f.Nodes == 1 {
				b.WriteString(" node filtered by ")
			} else {
				b.WriteString(" nodes filtered by ")
			}
		} else {
			b.WriteString(" by ")
		}
		b.WriteString(f.Filter)
	}
	return b.String()
}
