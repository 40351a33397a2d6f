package scheduler

import (
	"slices"
	"strings"
	"time"
)

// Per-placement flags, set while planning.
const (
	flagLive    uint8 = 1 << iota // counts toward the workload's instances
	flagLost                      // on a dead (past replaceAfter), left or gone node
	flagStopped                   // a stop action was emitted
	flagMoved                     // a migrate action replaces it
	// flagHeld (with flagLive) counts toward the workload but is never acted on: a
	// Stopping record, or an exclusive instance on a dead, left or gone node whose
	// lease has not ended. It is never surplus, moved, preempted or offloaded. On a
	// gone node its pnode is -1.
	flagHeld
)

// nodeState is the planner's working copy of one node.
type nodeState struct {
	n       *Node
	ignored bool // duplicate or empty name
	level   int8 // node-level filter index (filterDead...), or -1 when the node may take work
	// Copies of Node fields read in hot loops.
	alive, dead, left, draining bool
	zone                        int32
	key                         uint64 // seeded tie-break key

	cpuCap, memCap   int64
	cpuUsed, memUsed int64   // requests of live instances and of this plan's placements
	loadCPU, loadMem float64 // live load plus what this plan adds (estimated from requests)

	movedFrom bool // an instance is migrated away from it in this plan
}

// wlState is the planner's working copy of one workload.
type wlState struct {
	w       *Workload
	ignored bool
	global  bool
	desired int
	target  bool // targets Input.Region
	insts   []int32
	sig     *sigState

	// liveN counts live instances not stopped, held ones included (kept current by
	// stop; an exclusive workload's stopped instances stay counted, see occupies).
	liveN     int
	attention bool // some live instance may need a move (drain, constraints, failures, version)

	// Built lazily (prepare) for workloads that place or move anything.
	prepared  bool
	nodeCount map[int32]int32
	zoneCount []int32
	ids       map[string]struct{}
	nextOrd   int
	cursor    int
}

// sigState is a feasibility signature (driver + constraints) shared by the workloads
// that have it, with its memoised per-node answers and eligible node list.
type sigState struct {
	driver string
	keys   []string // constraint keys, sorted
	vals   []string
	// static holds the static filter names in chain order, with their counts once the
	// eligible list is built.
	static []FilterCount
	memo   []uint8 // per node: 0 unknown, 1 matches, 2 does not

	built    bool
	eligible []int32 // nodes passing every static filter, in seeded order
	zones    int     // distinct zones among eligible
}

// Node-level static filters, by index into sigState.static.
const (
	filterDead = iota
	filterSuspect
	filterLeft
	filterStatus
	filterRegion
	filterDraining
	filterDriver
	filterLabel0 // first label constraint; one entry per constraint follows
)

// Dynamic filter codes (0 means the node passes).
const (
	dynOK = iota
	dynExcluded
	dynCPU
	dynMemory
	dynThreshold
	dynSpreadNode
	dynSpreadZone
	numDyn
)

func dynName(code int) string {
	switch code {
	case dynExcluded:
		return "current node"
	case dynCPU:
		return "insufficient cpu"
	case dynMemory:
		return "insufficient memory"
	case dynThreshold:
		return "offload threshold"
	case dynSpreadNode:
		return "spread across nodes"
	case dynSpreadZone:
		return "spread across zones"
	}
	return "unknown"
}

// state is one planning run. Nothing survives the call.
type state struct {
	in      *Input
	now     time.Time
	nodes   []nodeState
	nodeIdx map[string]int32
	zones   int
	live    int // nodes not ignored

	wls   []wlState
	wlIdx map[string]int32
	order []int32 // workloads by priority desc, name asc

	pflag []uint8
	pnode []int32
	pwl   []int32

	sigs   map[string]*sigState
	perm   []int32   // node indexes in seeded order, built lazily
	byNode [][]int32 // placements per node, built lazily

	offloadOn bool
	lastRej   [numDyn]int // rejections of the last failed place
	res       Result
	// supersedes is the lost instance the next placement replaces (CauseReplace);
	// commitPlace stamps it on the action and clears it.
	supersedes string
}

func newState(in *Input) *state {
	s := &state{
		in:  in,
		now: in.Now,
		res: Result{Now: in.Now, Generation: in.Generation},
	}
	pol := in.Offload
	s.offloadOn = pol.CPUAbove > 0 || pol.MemoryAbove > 0
	s.indexNodes()
	s.indexWorkloads()
	return s
}

func (s *state) indexNodes() {
	in := s.in
	s.nodes = make([]nodeState, len(in.Nodes))
	s.nodeIdx = make(map[string]int32, len(in.Nodes))
	zoneIdx := make(map[string]int32)
	for i := range in.Nodes {
		n := &in.Nodes[i]
		ns := &s.nodes[i]
		ns.n = n
		if _, dup := s.nodeIdx[n.Name]; dup || n.Name == "" {
			ns.ignored = true
			ns.level = filterStatus
			continue
		}
		s.live++
		s.nodeIdx[n.Name] = int32(i)
		ns.level = -1
		ns.alive, ns.dead, ns.left, ns.draining = n.Status == StatusAlive, n.Status == StatusDead, n.Status == StatusLeft, n.Draining
		switch {
		case n.Status == StatusDead:
			ns.level = filterDead
		case n.Status == StatusSuspect:
			ns.level = filterSuspect
		case n.Status == StatusLeft:
			ns.level = filterLeft
		case n.Status != StatusAlive:
			ns.level = filterStatus
		case n.Region != "" && in.Region != "" && n.Region != in.Region:
			ns.level = filterRegion
		case n.Draining:
			ns.level = filterDraining
		}
		ns.cpuCap, ns.memCap = n.Capacity.MilliCPU, n.Capacity.MemoryBytes
		ns.loadCPU, ns.loadMem = n.Load.CPU, n.Load.Memory
		z := n.Labels[ZoneLabel]
		zi, ok := zoneIdx[z]
		if !ok {
			zi = int32(len(zoneIdx))
			zoneIdx[z] = zi
		}
		ns.zone = zi
		ns.key = hashString(in.Seed, n.Name)
	}
	s.zones = len(zoneIdx)
}

func (s *state) indexWorkloads() {
	in := s.in
	s.wls = make([]wlState, len(in.Workloads))
	s.wlIdx = make(map[string]int32, len(in.Workloads))
	s.order = make([]int32, 0, len(in.Workloads))
	for i := range in.Workloads {
		w := &in.Workloads[i]
		ws := &s.wls[i]
		ws.w = w
		if _, dup := s.wlIdx[w.Name]; dup || w.Name == "" {
			ws.ignored = true
			continue
		}
		s.wlIdx[w.Name] = int32(i)
		ws.global = w.Mode == ModeGlobal
		ws.desired = max(w.Replicas, 0)
		ws.target = len(w.Regions) == 0 || in.Region == "" || slices.Contains(w.Regions, in.Region)
		s.order = append(s.order, int32(i))
	}
	slices.SortFunc(s.order, func(a, b int32) int {
		wa, wb := s.wls[a].w, s.wls[b].w
		if wa.Priority != wb.Priority {
			return wb.Priority - wa.Priority
		}
		return strings.Compare(wa.Name, wb.Name)
	})
}

// sigOf returns the workload's feasibility signature, creating it on first use.
func (s *state) sigOf(ws *wlState) *sigState {
	if ws.sig != nil {
		return ws.sig
	}
	w := ws.w
	keys := make([]string, 0, len(w.Constraints))
	for k := range w.Constraints {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(w.Driver)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(w.Constraints[k])
	}
	id := b.String()
	if sg, ok := s.sigs[id]; ok {
		ws.sig = sg
		return sg
	}
	sg := &sigState{driver: w.Driver, keys: keys}
	sg.static = []FilterCount{
		filterDead:     {Filter: "node dead"},
		filterSuspect:  {Filter: "node suspect"},
		filterLeft:     {Filter: "node left"},
		filterStatus:   {Filter: "node status unknown"},
		filterRegion:   {Filter: "other region"},
		filterDraining: {Filter: "node draining"},
		filterDriver:   {Filter: "missing driver " + w.Driver},
	}
	for _, k := range keys {
		v := w.Constraints[k]
		sg.vals = append(sg.vals, v)
		sg.static = append(sg.static, FilterCount{Filter: "label " + k + "=" + v})
	}
	if s.sigs == nil {
		s.sigs = make(map[string]*sigState)
	}
	s.sigs[id] = sg
	ws.sig = sg
	return sg
}

// sigFilter returns the index of the first signature filter (driver, labels) that
// rejects node ni, or -1.
func (s *state) sigFilter(sg *sigState, ni int32) int {
	n := s.nodes[ni].n
	if sg.driver != "" && !slices.Contains(n.Drivers, sg.driver) {
		return filterDriver
	}
	for i, k := range sg.keys {
		if v, ok := n.Labels[k]; !ok || v != sg.vals[i] {
			return filterLabel0 + i
		}
	}
	return -1
}

// sigMatch reports whether node ni passes the signature filters, memoised.
func (s *state) sigMatch(sg *sigState, ni int32) bool {
	if sg.driver == "" && len(sg.keys) == 0 {
		return true
	}
	if sg.memo == nil {
		sg.memo = make([]uint8, len(s.nodes))
	}
	switch sg.memo[ni] {
	case 1:
		return true
	case 2:
		return false
	}
	ok := s.sigFilter(sg, ni) < 0
	if ok {
		sg.memo[ni] = 1
	} else {
		sg.memo[ni] = 2
	}
	return ok
}

// staticReason names why node ni is not eligible for the signature, or "".
func (s *state) staticReason(sg *sigState, ni int32) string {
	if l := s.nodes[ni].level; l >= 0 {
		return sg.static[l].Filter
	}
	if f := s.sigFilter(sg, ni); f >= 0 {
		return sg.static[f].Filter
	}
	return ""
}

// eligible returns the nodes that pass every static filter of the signature, in
// the plan's seeded order, counting rejections per filter.
func (s *state) eligible(sg *sigState) []int32 {
	if sg.built {
		return sg.eligible
	}
	sg.built = true
	perm := s.permutation()
	zones := make([]bool, s.zones)
	for _, ni := range perm {
		ns := &s.nodes[ni]
		if ns.level >= 0 {
			sg.static[ns.level].Nodes++
			continue
		}
		if f := s.sigFilter(sg, ni); f >= 0 {
			sg.static[f].Nodes++
			continue
		}
		sg.eligible = append(sg.eligible, ni)
		if !zones[ns.zone] {
			zones[ns.zone] = true
			sg.zones++
		}
	}
	return sg.eligible
}

// permutation returns the non-ignored node indexes ordered by their seeded key.
func (s *state) permutation() []int32 {
	if s.perm != nil {
		return s.perm
	}
	s.perm = make([]int32, 0, s.live)
	for i := range s.nodes {
		if !s.nodes[i].ignored {
			s.perm = append(s.perm, int32(i))
		}
	}
	slices.SortFunc(s.perm, func(a, b int32) int {
		ka, kb := s.nodes[a].key, s.nodes[b].key
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return int(a - b)
	})
	return s.perm
}

// nodePlacements returns the placements on each node, built on first use.
func (s *state) nodePlacements() [][]int32 {
	if s.byNode != nil {
		return s.byNode
	}
	s.byNode = make([][]int32, len(s.nodes))
	for i, ni := range s.pnode {
		if ni >= 0 && s.pflag[i]&flagLive != 0 {
			s.byNode[ni] = append(s.byNode[ni], int32(i))
		}
	}
	return s.byNode
}

// prepare builds a workload's per-node and per-zone instance counts and its ID set.
func (s *state) prepare(ws *wlState) {
	if ws.prepared {
		return
	}
	ws.prepared = true
	ws.nodeCount = make(map[int32]int32, len(ws.insts))
	ws.zoneCount = make([]int32, s.zones)
	ws.ids = make(map[string]struct{}, len(ws.insts))
	ws.cursor = int(hashString(s.in.Seed, ws.w.Name) >> 1)
	P := s.in.Placements
	for _, pi := range ws.insts {
		ws.ids[P[pi].ID] = struct{}{}
		if s.occupies(ws, pi) {
			if ni := s.pnode[pi]; ni >= 0 {
				ws.nodeCount[ni]++
				ws.zoneCount[s.nodes[ni].zone]++
			}
		}
	}
}

// occupies reports whether placement pi of ws takes one of the workload's desired
// slots in this plan: it is live and not stopped, or held, or it is an exclusive
// instance stopped in this plan (it may run until its node confirms the stop, and the
// caller passes it back as a Stopping record until then).
func (s *state) occupies(ws *wlState, pi int32) bool {
	f := s.pflag[pi]
	return f&flagLive != 0 && (f&flagStopped == 0 || ws.w.Exclusive)
}

// leaseEnd returns the end of the lease node holds (Input.Leases), and whether it
// has not ended yet.
func (s *state) leaseEnd(node string) (time.Time, bool) {
	until, ok := s.in.Leases[node]
	return until, ok && s.now.Before(until)
}

// recheck records a future time at which the plan would change.
func (s *state) recheck(t time.Time) {
	if !t.After(s.now) {
		return
	}
	if s.res.RecheckAt.IsZero() || t.Before(s.res.RecheckAt) {
		s.res.RecheckAt = t
	}
}

// hashString mixes a seed and a string into a well-distributed 64-bit key
// (FNV-1a followed by the splitmix64 finaliser).
func hashString(seed uint64, str string) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(str); i++ {
		h ^= uint64(str[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func frac(used, capacity int64) float64 {
	if capacity <= 0 {
		if used <= 0 {
			return 0
		}
		return 1
	}
	return float64(used) / float64(capacity)
}
