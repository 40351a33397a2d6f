package scheduler

import (
	"slices"
	"strconv"
	"strings"

	"github.com/murmur-edge/murmur/policy"
)

// offload moves one instance away from each node whose load has stayed above the
// policy threshold for SustainedFor, unless the node is in its Cooldown or already
// loses an instance in this plan.
//
// Which instance: the lowest priority first. Among equal priorities, an instance
// whose move alone brings the node back under the threshold in every hot dimension
// goes first, the smallest such one (least work disturbed, easiest to fit); else the
// largest. Size is the measured usage (Placement.Usage), or the request when the
// usage is unknown, as fractions of the node's capacity in its hot dimensions; ties
// go to the instance ID.
//
// Never an exclusive instance: an exclusive workload moves only when its node is lost
// (a move would stop it first, for load alone). A hot node whose candidates are all
// exclusive is reported unplaced, naming one of them.
//
// Where: the best node that stays at or under the threshold after the move, counting
// the instance at max(request, usage) (the "offload threshold" filter, see dyn). A
// hot node therefore never receives work, so nothing moves between hot nodes and an
// instance never makes its target hot and comes back; a cool node takes work until
// it would cross the threshold. The load each move adds is carried to the next
// decisions of the same plan.
func (s *state) offload() {
	if !s.offloadOn {
		return
	}
	P := s.in.Placements
	pol := &s.in.Offload
	type cand struct {
		pi       int32
		prio     int
		relieves bool    // moving it alone brings the node under the threshold
		size     float64 // usage (or request) over capacity, summed over the hot dimensions
	}
	var cands []cand
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
		exclusive, nExclusive := int32(-1), 0 // the first exclusive instance skipped, and how many
		for _, pi := range s.nodePlacements()[ni] {
			if s.pflag[pi]&(flagLive|flagStopped|flagMoved|flagHeld) != flagLive || P[pi].State != StateRunning {
				continue
			}
			ws := &s.wls[s.pwl[pi]]
			if !ws.target || ws.global {
				continue
			}
			if ws.w.Exclusive {
				if exclusive < 0 || P[pi].ID < P[exclusive].ID {
					exclusive = pi
				}
				nExclusive++
				continue
			}
			use := measured(&P[pi], &ws.w.Resources)
			c := cand{pi: pi, prio: ws.w.Priority, relieves: true}
			if hotCPU {
				f := frac(use.MilliCPU, ns.cpuCap)
				c.size += f
				c.relieves = n.Load.CPU-f <= pol.CPUAbove
			}
			if hotMem {
				f := frac(use.MemoryBytes, ns.memCap)
				c.size += f
				c.relieves = c.relieves && n.Load.Memory-f <= pol.MemoryAbove
			}
			cands = append(cands, c)
		}
		if len(cands) == 0 {
			if exclusive >= 0 {
				s.unplacedExclusive(int32(ni), exclusive, nExclusive)
			}
			continue
		}
		slices.SortFunc(cands, func(a, b cand) int {
			if a.prio != b.prio {
				return a.prio - b.prio
			}
			if a.relieves != b.relieves {
				if a.relieves {
					return -1
				}
				return 1
			}
			if a.size != b.size {
				if (a.size < b.size) == a.relieves { // smallest that suffices, else largest
					return -1
				}
				return 1
			}
			return strings.Compare(P[a.pi].ID, P[b.pi].ID)
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
		for _, c := range cands {
			p := &P[c.pi]
			ws := &s.wls[s.pwl[c.pi]]
			reason := why.String() + "; lowest-priority movable instance (priority " + strconv.Itoa(ws.w.Priority) + ")"
			if p.Usage != (Resources{}) {
				reason += ", measured use cpu " + policy.FormatCPU(p.Usage.MilliCPU) + ", memory " + policy.FormatMemory(p.Usage.MemoryBytes)
			}
			cost := offloadUse(p, &ws.w.Resources)
			if _, ok := s.place(ws, int32(ni), CauseOffload, reason, p.ID, p.Node, &cost); ok {
				s.pflag[c.pi] |= flagMoved
				ns.movedFrom = true
				moved = true
				break
			}
		}
		if !moved {
			last := cands[len(cands)-1].pi
			s.unplaced(&s.wls[s.pwl[last]], P[last].ID, 1, int32(ni), true)
		}
	}
}

// unplacedExclusive reports a hot node whose only candidates are exclusive, naming the
// first of them by ID: "cannot offload db-3-0: node n1's candidates are all exclusive
// (2), and an exclusive instance moves only when its node is lost".
func (s *state) unplacedExclusive(ni, pi int32, n int) {
	p := &s.in.Placements[pi]
	s.res.Unplaced = append(s.res.Unplaced, Unplaced{
		Workload: p.Workload, Instance: p.ID, Count: 1, NodesEvaluated: s.live,
		Reason: "cannot offload " + p.ID + ": node " + s.nodes[ni].n.Name + "'s candidates are all exclusive (" +
			strconv.Itoa(n) + "), and an exclusive instance moves only when its node is lost",
	})
}

// measured is what an instance uses: its measured usage, or its request when the
// usage is unknown (zero).
func measured(p *Placement, req *Resources) Resources {
	if p.Usage == (Resources{}) {
		return *req
	}
	return p.Usage
}

// offloadUse is what an offloaded instance is counted at on its target:
// max(request, usage) in each dimension. A process that requests 100m and burns 900m
// must find 900m of headroom, or it would make the target hot and move again.
func offloadUse(p *Placement, req *Resources) Resources {
	return Resources{MilliCPU: max(req.MilliCPU, p.Usage.MilliCPU), MemoryBytes: max(req.MemoryBytes, p.Usage.MemoryBytes)}
}
