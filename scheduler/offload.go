package scheduler

import (
	"slices"
	"strconv"
	"strings"
)

// offload moves one instance away from each node whose load has stayed above the
// policy threshold for SustainedFor, unless the node is in its Cooldown or already
// loses an instance in this plan. The lowest-priority movable instance goes first
// (then the largest request in the hot dimension); it lands on the best node that
// the move would not push above the threshold, so nothing moves back.
func (s *state) offload() {
	if !s.offloadOn {
		return
	}
	P := s.in.Placements
	pol := &s.in.Offload
	var cands []int32
	for ni := range s.nodes {
		ns := &s.nodes[ni]
		n := ns.n
		if ns.ignored || n.Status != StatusAlive {
			continue
		}
		hotCPU := pol.CPUAbove > 0 && n.Load.CPU > pol.CPUAbove
		hotMem := pol.MemoryAbove > 0 && n.Load.Memory > pol.MemoryAbove
		if !hotCPU && !hotMem || n.LoadHighSince.IsZero() {
			continue
		}
		if due := n.LoadHighSince.Add(pol.SustainedFor); s.now.Before(due) {
			s.recheck(due)
			continue
		}
		if !n.LastMigrationAt.IsZero() {
			if end := n.LastMigrationAt.Add(pol.Cooldown); s.now.Before(end) {
				s.recheck(end)
				continue
			}
		}
		if ns.movedFrom {
			continue
		}
		cands = cands[:0]
		for _, pi := range s.nodePlacements()[ni] {
			if s.pflag[pi]&(flagLive|flagStopped|flagMoved) != flagLive || P[pi].State != StateRunning {
				continue
			}
			if ws := &s.wls[s.pwl[pi]]; ws.target && !ws.global {
				cands = append(cands, pi)
			}
		}
		if len(cands) == 0 {
			continue
		}
		size := func(pi int32) int64 {
			r := s.wls[s.pwl[pi]].w.Resources
			if hotCPU {
				return r.MilliCPU
			}
			return r.MemoryBytes
		}
		slices.SortFunc(cands, func(a, b int32) int {
			pa, pb := s.wls[s.pwl[a]].w.Priority, s.wls[s.pwl[b]].w.Priority
			if pa != pb {
				return pa - pb
			}
			if sa, sb := size(a), size(b); sa != sb {
				if sa > sb {
					return -1
				}
				return 1
			}
			return strings.Compare(P[a].ID, P[b].ID)
		})
		var why strings.Builder
		why.WriteString("node ")
		why.WriteString(n.Name)
		if hotCPU {
			why.WriteString(" cpu " + strconv.FormatFloat(n.Load.CPU, 'f', 2, 64) + " > " + strconv.FormatFloat(pol.CPUAbove, 'f', 2, 64))
		}
		if hotMem {
			why.WriteString(" memory " + strconv.FormatFloat(n.Load.Memory, 'f', 2, 64) + " > " + strconv.FormatFloat(pol.MemoryAbove, 'f', 2, 64))
		}
		why.WriteString(" since " + n.LoadHighSince.UTC().Format("15:04:05") + " (sustainedFor " + pol.SustainedFor.String() + ")")
		moved := false
		for _, pi := range cands {
			ws := &s.wls[s.pwl[pi]]
			reason := why.String() + "; lowest-priority movable instance (priority " + strconv.Itoa(ws.w.Priority) + ")"
			if _, ok := s.place(ws, int32(ni), CauseOffload, reason, P[pi].ID, P[pi].Node, true); ok {
				s.pflag[pi] |= flagMoved
				ns.movedFrom = true
				moved = true
				break
			}
		}
		if !moved {
			last := cands[len(cands)-1]
			s.unplaced(&s.wls[s.pwl[last]], P[last].ID, 1, int32(ni), true)
		}
	}
}
