package scheduler

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Plan decides what the region should change, from a snapshot of its nodes,
// workloads and placement table. It is pure: the same Input gives the same Result,
// and Input is not modified. See the package documentation for what the caller does
// with the result.
func Plan(in Input) Result {
	s := newState(&in)
	s.classify()
	s.reconcile()
	for _, wi := range s.order {
		ws := &s.wls[wi]
		if !ws.target {
			continue
		}
		if ws.global {
			s.planGlobal(ws)
		} else {
			s.planReplicated(ws)
		}
	}
	s.offload()
	return s.res
}

// classify sorts every placement into live, lost or to-stop, groups placements by
// workload and sums the requests of live instances per node.
func (s *state) classify() {
	P := s.in.Placements
	s.pflag = make([]uint8, len(P))
	s.pnode = make([]int32, len(P))
	s.pwl = make([]int32, len(P))
	counts := make([]int32, len(s.wls))
	lastName, lastIdx := "", int32(-1)
	for i := range P {
		p := &P[i]
		wi := lastIdx
		if p.Workload != lastName || lastIdx < 0 {
			var ok bool
			if wi, ok = s.wlIdx[p.Workload]; !ok {
				wi = -1
			}
			lastName, lastIdx = p.Workload, wi
		}
		s.pwl[i] = wi
		if wi >= 0 {
			counts[wi]++
		}
		ni, ok := s.nodeIdx[p.Node]
		if !ok {
			ni = -1
		}
		s.pnode[i] = ni
	}
	// One backing array for every workload's instance list.
	all := make([]int32, len(P))
	off := int32(0)
	for wi := range s.wls {
		s.wls[wi].insts = all[off : off : off+counts[wi]]
		off += counts[wi]
	}
	for i := range P {
		if wi := s.pwl[i]; wi >= 0 {
			s.wls[wi].insts = append(s.wls[wi].insts, int32(i))
		}
	}

	for i := range P {
		p := &P[i]
		wi, ni := s.pwl[i], s.pnode[i]
		if wi < 0 {
			if !p.Stopping {
				s.stop(int32(i), CauseRemoved, "workload "+p.Workload+" no longer exists")
			}
			continue
		}
		ws := &s.wls[wi]
		if !ws.target {
			if !p.Stopping {
				s.stop(int32(i), CauseRemoved, "workload no longer targets region "+s.in.Region)
			} else if ni >= 0 && !s.nodes[ni].dead && !s.nodes[ni].left {
				// Not counted for its workload, but it still uses its node until it stops.
				s.nodes[ni].cpuUsed += ws.w.Resources.MilliCPU
				s.nodes[ni].memUsed += ws.w.Resources.MemoryBytes
			}
			continue
		}
		// An exclusive instance (a Stopping record is one) on a node that is lost may
		// still run there until the node's lease ends: it is held, counted and left
		// alone until then.
		excl := ws.w.Exclusive || p.Stopping
		if ni < 0 || s.nodes[ni].left {
			if excl && s.holdForLease(ws, int32(i)) {
				continue
			}
			why := " is not in the region any more"
			if ni >= 0 {
				why = " left the region"
			}
			s.lose(ws, int32(i), "node "+p.Node+why)
			continue
		}
		ns := &s.nodes[ni]
		if ns.dead {
			if excl && s.holdForLease(ws, int32(i)) {
				continue
			}
			if !ns.n.DeadSince.IsZero() {
				if deadline := ns.n.DeadSince.Add(ws.w.ReplaceAfter); s.now.Before(deadline) {
					s.recheck(deadline)
					s.pflag[i] |= flagLive // still counted until replaceAfter passes
					if p.Stopping {
						s.pflag[i] |= flagHeld
					}
					ws.liveN++
					continue
				}
			}
			if excl {
				why := "node " + p.Node + " is dead"
				if !ns.n.DeadSince.IsZero() {
					why += " (since " + ns.n.DeadSince.UTC().Format(time.RFC3339) + ")"
				}
				s.lose(ws, int32(i), why)
			} else {
				s.pflag[i] |= flagLost // kept, so that after a heal the rule can choose
				if outdated(p, ws.w) {
					// Unless it runs an older version: back after a heal it could only
					// be migrated again, so no rule would keep it, and its record would
					// show the old version as lost until the node returns. Its node
					// stops the instance when it rejoins (no longer assigned).
					s.stop(int32(i), CauseUpdate, "lost with node "+p.Node+s.lostWhy(int32(i))+
						", and runs version "+p.Version.String()+", want "+ws.w.Version.String())
				}
			}
			continue
		}
		s.pflag[i] |= flagLive
		ws.liveN++
		w := ws.w
		ns.cpuUsed += w.Resources.MilliCPU
		ns.memUsed += w.Resources.MemoryBytes
		if p.Stopping {
			s.pflag[i] |= flagHeld
			continue
		}
		if !ws.attention && (ns.draining || outdated(p, w) || (w.MaxFailures > 0 && p.Failures >= w.MaxFailures) ||
			((w.Driver != "" || len(w.Constraints) > 0) && !s.sigMatch(s.sigOf(ws), ni))) {
			ws.attention = true
		}
	}
}

// holdForLease holds exclusive placement pi, on a dead, left or gone node, while the
// node's lease has not ended: the node may still run it. It reports whether it did,
// and records a recheck at the lease's end.
func (s *state) holdForLease(ws *wlState, pi int32) bool {
	until, held := s.leaseEnd(s.in.Placements[pi].Node)
	if !held {
		return false
	}
	s.recheck(until)
	s.pflag[pi] |= flagLive | flagHeld
	ws.liveN++
	return true
}

// lose marks placement pi lost with its node and stops its record (cause node-gone),
// except a Stopping record, which gets no action: it simply stops counting. For an
// exclusive workload the reason says why the instance is known stopped (its node's
// lease ended, or it held none).
func (s *state) lose(ws *wlState, pi int32, reason string) {
	p := &s.in.Placements[pi]
	if p.Stopping {
		return
	}
	s.pflag[pi] |= flagLost
	if ws.w.Exclusive {
		if until, ok := s.in.Leases[p.Node]; ok {
			reason += "; its lease ended at " + until.UTC().Format(time.RFC3339) + ", so the instance has stopped"
		} else {
			reason += "; it holds no lease, so the instance has stopped"
		}
	}
	s.stop(pi, CauseNodeGone, reason)
}

// stop emits a stop action for placement pi and releases its resources.
func (s *state) stop(pi int32, cause Cause, reason string) {
	p := &s.in.Placements[pi]
	f := s.pflag[pi]
	s.pflag[pi] = f | flagStopped
	if f&(flagLive|flagStopped) == flagLive {
		ni := s.pnode[pi]
		if wi := s.pwl[pi]; wi >= 0 {
			ws := &s.wls[wi]
			ns := &s.nodes[ni]
			if !ns.dead {
				ns.cpuUsed -= ws.w.Resources.MilliCPU
				ns.memUsed -= ws.w.Resources.MemoryBytes
			}
			// A stopped exclusive instance keeps its slot (see occupies): nothing
			// replaces it in this plan.
			if !ws.w.Exclusive {
				ws.liveN--
				if ws.prepared {
					ws.nodeCount[ni]--
					ws.zoneCount[ns.zone]--
				}
			}
		}
	}
	s.res.Actions = append(s.res.Actions, Action{
		Kind: ActionStop, Cause: cause, Workload: p.Workload, Instance: p.ID, Node: p.Node, Reason: reason,
	})
}

// reconcile stops surplus instances of every workload: beyond Replicas for a
// replicated workload, beyond one per node for a global one. The workload's rule
// (ruleOf) picks the instances to keep; stopSurplus holds back the stops that would
// leave fewer instances running than desired.
func (s *state) reconcile() {
	P := s.in.Placements
	var live []int32
	for _, wi := range s.order {
		ws := &s.wls[wi]
		if !ws.target || (!ws.global && ws.liveN <= ws.desired) {
			continue
		}
		rule := s.ruleOf(ws)
		live = live[:0]
		for _, pi := range ws.insts {
			// Held instances are never surplus, and are not weighed against desired
			// here: they are on their way out (stopping, or until their lease ends).
			if s.pflag[pi]&(flagLive|flagStopped|flagHeld) == flagLive {
				live = append(live, pi)
			}
		}
		if ws.global {
			s.reconcileGlobal(ws, live, rule)
			continue
		}
		if len(live) <= ws.desired {
			continue
		}
		s.sortKeep(ws, live, rule)
		reason := "surplus: " + strconv.Itoa(len(live)) + " instances for " + strconv.Itoa(ws.desired) +
			" desired; rule " + string(rule) + " keeps " + keptList(P, live[:ws.desired])
		s.stopSurplus(live, ws.desired, reason)
	}
}

// ruleOf returns the reconcile rule in force for a workload: its own, else the
// region's, else keep_replacement. An exclusive workload always keeps the
// replacement: its original was known stopped when it was replaced.
func (s *state) ruleOf(ws *wlState) ReconcileRule {
	if ws.w.Exclusive {
		return ReconcileKeepReplacement
	}
	if r := ws.w.Reconcile; r != "" {
		return r
	}
	if r := s.in.Reconcile; r != "" {
		return r
	}
	return ReconcileKeepReplacement
}

// stopSurplus stops the instances of list (sorted by sortKeep) beyond the first keep,
// but never so many running ones that fewer than min(keep, running now) would still
// run. A kept instance that is pending or failed has not proved itself yet: a running
// surplus instance (the best-ranked first) stands in for it and is not stopped in
// this plan. It stays in the table and is counted, so nothing is placed for it; the
// caller plans again when the kept instance reports running, and that plan stops it.
// The stand-in leaves no other trace than the stops it does not emit.
func (s *state) stopSurplus(list []int32, keep int, reason string) {
	P := s.in.Placements
	running, keptRunning := 0, 0
	for i, pi := range list {
		if P[pi].State == StateRunning {
			running++
			if i < keep {
				keptRunning++
			}
		}
	}
	standIn := min(keep, running) - keptRunning
	var held []int32
	if standIn > 0 {
		for _, pi := range list[keep:] {
			if len(held) < standIn && P[pi].State == StateRunning {
				held = append(held, pi)
			}
		}
		var waiting []int32
		for _, pi := range list[:keep] {
			if P[pi].State != StateRunning {
				waiting = append(waiting, pi)
			}
		}
		reason += "; " + keptList(P, held) + " kept running while waiting for " + keptList(P, waiting) + " to run"
	}
	for _, pi := range list[keep:] {
		if len(held) > 0 && pi == held[0] {
			held = held[1:]
			continue
		}
		s.stop(pi, CauseSurplus, reason)
	}
}

func (s *state) reconcileGlobal(ws *wlState, live []int32, rule ReconcileRule) {
	P := s.in.Placements
	// Group by node; live is in input order, so sort a copy by node.
	if len(live) < 2 {
		return
	}
	byNode := slices.Clone(live)
	slices.SortStableFunc(byNode, func(a, b int32) int { return int(s.pnode[a] - s.pnode[b]) })
	for i := 0; i < len(byNode); {
		j := i + 1
		for j < len(byNode) && s.pnode[byNode[j]] == s.pnode[byNode[i]] {
			j++
		}
		if j-i > 1 {
			group := byNode[i:j]
			s.sortKeep(ws, group, rule)
			reason := "surplus: " + strconv.Itoa(j-i) + " instances of a global workload on node " +
				P[group[0]].Node + "; rule " + string(rule) + " keeps " + P[group[0]].ID
			s.stopSurplus(group, 1, reason)
		}
		i = j
	}
}

func keptList(P []Placement, kept []int32) string {
	if len(kept) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, pi := range kept {
		if i == 3 {
			b.WriteString(", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(P[pi].ID)
	}
	return b.String()
}

// sortKeep orders instances so that those to keep come first, by the rule.
func (s *state) sortKeep(ws *wlState, list []int32, rule ReconcileRule) {
	P := s.in.Placements
	var score map[int32]float64
	if rule == ReconcileBestScore {
		score = make(map[int32]float64, len(list))
		for _, pi := range list {
			score[pi] = s.scoreNode(ws, s.pnode[pi], false)
		}
	}
	good := func(p *Placement) bool { return p.Healthy && p.State == StateRunning }
	// Pairs of a lost original and the replacement placed for it, both in list (after
	// a heal): keep_replacement stops the original of a pair first, keep_original its
	// replacement, whatever the ages of the other instances.
	inList := make(map[string]bool, len(list))
	for _, pi := range list {
		inList[P[pi].ID] = true
	}
	superseded := map[string]bool{} // originals whose replacement is in list
	superseding := map[string]bool{}
	for _, pi := range list {
		if o := P[pi].Supersedes; o != "" && inList[o] {
			superseded[o], superseding[P[pi].ID] = true, true
		}
	}
	lastIf := func(a, b bool) int { // sorts the one that is true after the other
		switch {
		case a == b:
			return 0
		case a:
			return 1
		}
		return -1
	}
	older := func(a, b *Placement) int { // <0 when a is older
		if a.Generation != b.Generation {
			if a.Generation < b.Generation {
				return -1
			}
			return 1
		}
		return a.StartedAt.Compare(b.StartedAt)
	}
	exclusive := ws.w.Exclusive
	slices.SortStableFunc(list, func(x, y int32) int {
		a, b := &P[x], &P[y]
		sa, sb := s.nodes[s.pnode[x]].n.Status, s.nodes[s.pnode[y]].n.Status
		// An exclusive workload's original goes before its replacement, wherever
		// either runs: the replacement is never stopped to keep the original.
		if exclusive {
			if c := lastIf(superseded[a.ID], superseded[b.ID]); c != 0 {
				return c
			}
		}
		// Instances on dead nodes (still within their ReplaceAfter) go first.
		if c := lastIf(sa == StatusDead, sb == StatusDead); c != 0 {
			return c
		}
		// Then the rule decides each original/replacement pair, before a suspicion
		// does: a node suspected for a moment around a heal must not make the rule
		// stop an instance that is not part of any pair.
		switch rule {
		case ReconcileKeepReplacement, "":
			if c := lastIf(superseded[a.ID], superseded[b.ID]); c != 0 {
				return c
			}
		case ReconcileKeepOriginal:
			if c := lastIf(superseding[a.ID], superseding[b.ID]); c != 0 {
				return c
			}
		}
		if c := lastIf(sa != StatusAlive, sb != StatusAlive); c != 0 {
			return c
		}
		switch rule {
		case ReconcileKeepOriginal:
			if c := older(a, b); c != 0 {
				return c
			}
		case ReconcileLegacy:
			ga, gb := good(a), good(b)
			if ga != gb {
				if ga {
					return -1
				}
				return 1
			}
			if c := older(a, b); c != 0 {
				if ga {
					return c // both healthy: keep the original
				}
				return -c // neither healthy: keep the replacement
			}
		case ReconcileBestScore:
			if sa, sb := score[x], score[y]; sa != sb {
				if sa > sb {
					return -1
				}
				return 1
			}
			fallthrough
		default: // keep_replacement
			if c := older(a, b); c != 0 {
				return -c
			}
		}
		// Where the rule does not tell them apart (same age: an original and the
		// siblings it was placed with), a healthy running instance is kept first.
		if ga, gb := good(a), good(b); ga != gb {
			if ga {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// planReplicated moves instances that must move, then places missing replicas.
func (s *state) planReplicated(ws *wlState) {
	if !ws.attention && ws.liveN >= ws.desired {
		return // steady: nothing to move, nothing missing
	}
	P := s.in.Placements
	w := ws.w
	sg := s.sigOf(ws)
	liveN := 0
	var lost []int32
	for _, pi := range ws.insts {
		f := s.pflag[pi]
		if f&flagLost != 0 {
			lost = append(lost, pi)
		}
		if f&(flagLive|flagStopped|flagHeld) != flagLive {
			if s.occupies(ws, pi) {
				liveN++ // held, or exclusive and stopped in this plan: its slot is taken
			}
			continue
		}
		liveN++
		ni := s.pnode[pi]
		ns := &s.nodes[ni]
		if !ns.alive {
			// Dead (waiting for replaceAfter) or suspect: kept where it is, as Node
			// says; what is known of such a node may be stale, so nothing is moved.
			continue
		}
		p := &P[pi]
		var cause Cause
		var reason string
		exclude := int32(-1)
		switch {
		case ns.draining:
			cause, reason, exclude = CauseDrain, "node "+p.Node+" is draining", ni
		case !s.sigMatch(sg, ni):
			cause, reason, exclude = CauseIneligible, "node "+p.Node+" no longer passes "+s.staticReason(sg, ni), ni
		case w.MaxFailures > 0 && p.Failures >= w.MaxFailures:
			cause, reason, exclude = CauseFailing, "failed "+strconv.Itoa(p.Failures)+" times on "+p.Node+
				" (threshold "+strconv.Itoa(w.MaxFailures)+")", ni
		case outdated(p, w):
			cause, reason = CauseUpdate, "runs version "+p.Version.String()+", want "+w.Version.String()
		default:
			continue
		}
		if w.Exclusive {
			s.stopToMove(pi, cause, reason)
			continue
		}
		s.move(ws, pi, exclude, cause, reason)
	}
	missing := ws.desired - liveN
	if missing <= 0 {
		return
	}
	// Mention the most recent lost instances in the reason.
	slices.SortStableFunc(lost, func(a, b int32) int {
		ga, gb := P[a].Generation, P[b].Generation
		switch {
		case ga > gb:
			return -1
		case ga < gb:
			return 1
		}
		return strings.Compare(P[a].ID, P[b].ID)
	})
	for k := 0; k < missing; k++ {
		cause := CauseMissing
		reason := "replica " + strconv.Itoa(liveN+k+1) + " of " + strconv.Itoa(ws.desired)
		if k < len(lost) {
			lp := &P[lost[k]]
			cause = CauseReplace
			reason += ", replaces " + lp.ID + " lost with node " + lp.Node + s.lostWhy(lost[k])
			// An exclusive original is known stopped, and its record goes in this plan;
			// so does an outdated one (above).
			if !w.Exclusive && s.pflag[lost[k]]&flagStopped == 0 {
				s.supersedes = lp.ID
			}
		}
		_, ok := s.place(ws, -1, cause, reason, "", "", nil)
		s.supersedes = ""
		if !ok {
			s.unplaced(ws, "", missing-k, -1, false)
			return
		}
	}
}

func (s *state) lostWhy(pi int32) string {
	ni := s.pnode[pi]
	if ni < 0 {
		return " (gone)"
	}
	n := s.nodes[ni].n
	switch n.Status {
	case StatusLeft:
		return " (left)"
	case StatusDead:
		if n.DeadSince.IsZero() {
			return " (dead)"
		}
		return " (dead since " + n.DeadSince.UTC().Format("2006-01-02T15:04:05Z07:00") + ")"
	}
	return " (" + string(n.Status) + ")"
}

// move migrates instance pi to another node (or, for updates, any node). On failure
// the instance stays and an Unplaced entry says why. (Offload moves go through
// offload, which tries several instances before it reports one unplaced.)
func (s *state) move(ws *wlState, pi, exclude int32, cause Cause, reason string) bool {
	p := &s.in.Placements[pi]
	if _, ok := s.place(ws, exclude, cause, reason, p.ID, p.Node, nil); !ok {
		s.unplaced(ws, p.ID, 1, exclude, false)
		return false
	}
	s.pflag[pi] |= flagMoved
	if src := s.pnode[pi]; src >= 0 {
		s.nodes[src].movedFrom = true
	}
	return true
}

// stopToMove is what a move is for an exclusive workload: no make-before-break. It
// stops instance pi with the move's cause and reason and places nothing: the instance
// keeps its slot (see occupies), the caller passes it back as a Stopping record while
// its node still runs it, and a later plan places its successor as a missing replica.
func (s *state) stopToMove(pi int32, cause Cause, reason string) {
	s.stop(pi, cause, reason)
	s.nodes[s.pnode[pi]].movedFrom = true
}

// planGlobal places one instance on every eligible node that has none, and stops
// instances on nodes that are no longer eligible. A node with a held instance
// (stopping, or kept by a lease) or an exclusive one stopped in this plan counts as
// having one.
func (s *state) planGlobal(ws *wlState) {
	P := s.in.Placements
	sg := s.sigOf(ws)
	s.prepare(ws)
	for _, pi := range ws.insts {
		if s.pflag[pi]&(flagLive|flagStopped|flagHeld) != flagLive {
			continue
		}
		ni := s.pnode[pi]
		ns := &s.nodes[ni]
		switch {
		case ns.n.Status != StatusAlive:
			// suspect or dead within replaceAfter: leave it
		case ns.n.Draining:
			s.stop(pi, CauseIneligible, "node "+P[pi].Node+" is draining")
		case !s.sigMatch(sg, ni) || ns.level >= 0:
			s.stop(pi, CauseIneligible, "node "+P[pi].Node+" no longer passes "+s.staticReason(sg, ni))
		}
	}
	var rej [numDyn]int
	failed := 0
	for ni := range s.nodes {
		ns := &s.nodes[ni]
		if ns.level >= 0 || !s.sigMatch(sg, int32(ni)) || ws.nodeCount[int32(ni)] > 0 {
			continue
		}
		code := s.dyn(ws, int32(ni), -1, false, 0, 0, nil)
		if code != dynOK && (code == dynCPU || code == dynMemory) {
			if s.preempt(ws, []int32{int32(ni)}, -1) >= 0 {
				code = dynOK
			}
		}
		if code != dynOK {
			rej[code]++
			failed++
			continue
		}
		s.commitPlace(ws, int32(ni), CauseGlobal, "global workload missing on node "+ns.n.Name, "", "", 1, nil)
	}
	if failed > 0 {
		u := Unplaced{Workload: ws.w.Name, Count: failed, NodesEvaluated: s.live}
		for code := 1; code < numDyn; code++ {
			if rej[code] > 0 {
				u.Filtered = append(u.Filtered, FilterCount{Filter: dynName(code), Nodes: rej[code]})
			}
		}
		u.Reason = renderFiltered(u.Filtered)
		s.res.Unplaced = append(s.res.Unplaced, u)
	}
}

// outdated reports whether placement p runs an older spec than workload w wants: an
// older version whose spec differs (or is not known by its hash on either side). An
// older version with the same SpecHash runs exactly what w runs and stays.
func outdated(p *Placement, w *Workload) bool {
	if !p.Version.Less(w.Version) {
		return false
	}
	return p.SpecHash == "" || w.SpecHash == "" || p.SpecHash != w.SpecHash
}
