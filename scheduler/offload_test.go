package scheduler

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// simNode describes one node of an offload simulation: its fixed reserve (load
// fraction not due to instances) and its instances' measured cpu use.
type simNode struct {
	name    string
	reserve float64
	burners []int64 // per instance: measured milli-cpu (each requests 100m)
}

// offloadSim runs plans round after round on a region whose loads follow the
// instances' measured usage, as the fleet view would: each round recomputes every
// node's load from the usages of the instances on it, keeps LoadHighSince and
// LastMigrationAt as the coordinator does, plans, applies the plan (new instances
// inherit the usage of those they replace and report running), and advances Now.
// It fails the test if an instance ever moves back to a node it left, or an offload
// lands on a node that was hot or would be after the move; it returns the number of
// offload migrations and the last plan.
func offloadSim(t *testing.T, nodes []simNode, rounds int) (moves int, last Result, final Input) {
	t.Helper()
	const capCPU, capMem = 4000, 4 << 30
	pol := OffloadPolicy{CPUAbove: 0.85, MemoryAbove: 0.9, SustainedFor: 10 * time.Second, Cooldown: 20 * time.Second}
	in := Input{Region: "r", Now: baseNow, Seed: 1, Generation: 2, Offload: pol}
	reserve := map[string]float64{}
	for _, sn := range nodes {
		in.Nodes = append(in.Nodes, Node{Name: sn.name, Status: StatusAlive, Capacity: Resources{MilliCPU: capCPU, MemoryBytes: capMem}})
		reserve[sn.name] = sn.reserve
		for i, use := range sn.burners {
			name := "burn-" + sn.name + "-" + strconv.Itoa(i)
			in.Workloads = append(in.Workloads, Workload{Name: name, Replicas: 1, Priority: 10,
				Resources: Resources{MilliCPU: 100, MemoryBytes: 64 << 20}})
			in.Placements = append(in.Placements, Placement{ID: name + "-1-0", Workload: name, Node: sn.name,
				Generation: 1, State: StateRunning, Healthy: true, Usage: Resources{MilliCPU: use, MemoryBytes: 64 << 20}})
		}
	}
	left := map[string]map[string]bool{} // workload -> nodes its instance left
	for round := 0; round < rounds; round++ {
		used := map[string]int64{}
		for _, p := range in.Placements {
			used[p.Node] += p.Usage.MilliCPU
		}
		hot := map[string]bool{}
		for i := range in.Nodes {
			n := &in.Nodes[i]
			n.Load = Load{CPU: reserve[n.Name] + float64(used[n.Name])/capCPU, Memory: 0.2}
			hot[n.Name] = n.Load.CPU > pol.CPUAbove
			switch {
			case !hot[n.Name]:
				n.LoadHighSince = time.Time{}
			case n.LoadHighSince.IsZero():
				n.LoadHighSince = in.Now
			}
		}
		last = Plan(in)
		checkPlan(t, in, last)
		byID := map[string]Placement{}
		for _, p := range in.Placements {
			byID[p.ID] = p
		}
		for _, a := range last.Actions {
			if a.Kind != ActionMigrate || a.Cause != CauseOffload {
				t.Fatalf("round %d: unexpected action %+v", round, a)
			}
			moves++
			if hot[a.Node] {
				t.Errorf("round %d: %s offloaded from %s onto hot node %s", round, a.Replaces, a.From, a.Node)
			}
			if left[a.Workload][a.Node] {
				t.Errorf("round %d: %s moves back to %s, which it left", round, a.Workload, a.Node)
			}
			if left[a.Workload] == nil {
				left[a.Workload] = map[string]bool{}
			}
			left[a.Workload][a.From] = true
		}
		next := settle(in, last)
		for i := range next.Placements {
			p := &next.Placements[i]
			if p.Replaces != "" {
				p.Usage = byID[p.Replaces].Usage
				p.Replaces = ""
			}
		}
		next.Now = in.Now.Add(10 * time.Second)
		in = next
	}
	// However long it ran, no node that received work is above the threshold.
	used := map[string]int64{}
	for _, p := range in.Placements {
		used[p.Node] += p.Usage.MilliCPU
	}
	for _, n := range in.Nodes {
		load := reserve[n.Name] + float64(used[n.Name])/capCPU
		if len(left) > 0 && load > pol.CPUAbove+1e-9 && receivedWork(in.Placements, n.Name) {
			t.Errorf("node %s ends at cpu %.3f > %.2f after receiving offloaded work", n.Name, load, pol.CPUAbove)
		}
	}
	return moves, last, in
}

func receivedWork(ps []Placement, node string) bool {
	for _, p := range ps {
		if p.Node == node && p.Cause == CauseOffload {
			return true
		}
	}
	return false
}

// TestOffloadNoPingPong: offload over many plans with loads that follow measured
// usage. A burner that requests 100m but uses far more is moved only where its real
// use fits, never back, never between hot nodes, and the moves stop.
func TestOffloadNoPingPong(t *testing.T) {
	tests := []struct {
		name      string
		nodes     []simNode
		wantMoves int
		unplaced  string // substring of the last plan's unplaced reason, if any
	}{
		{
			// Counted at its 100m request, the 3000m burner fits on b (0.30 + 0.025), makes
			// b hot (1.05) and a cool, and comes back after sustainedFor: ping-pong. Counted
			// at its use, b has no room and nothing moves.
			name:     "burner too big for anyone",
			nodes:    []simNode{{"a", 0.15, []int64{3000}}, {"b", 0.30, nil}},
			unplaced: "cannot offload burn-a-0-1-0: 1 node filtered by current node, 1 by offload threshold",
		},
		{
			name:      "burner fits once",
			nodes:     []simNode{{"a", 0.15, []int64{3000}}, {"b", 0.05, nil}},
			wantMoves: 1,
		},
		{
			// a and b each need three 500m burners gone (1.175 → 0.80); c (0.15) takes
			// 0.125 per burner up to 0.85: five. Both hot nodes offload to c every
			// cooldown until c is full; one stays hot and says why.
			name: "two hot nodes, one cool",
			nodes: []simNode{
				{"a", 0.05, []int64{500, 500, 500, 500, 500, 500, 500, 500, 500}},
				{"b", 0.05, []int64{500, 500, 500, 500, 500, 500, 500, 500, 500}},
				{"c", 0.15, nil},
			},
			wantMoves: 5,
			unplaced:  "2 by offload threshold",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moves, last, final := offloadSim(t, tt.nodes, 40)
			if moves != tt.wantMoves {
				t.Errorf("%d offload moves, want %d", moves, tt.wantMoves)
			}
			if tt.unplaced == "" && len(last.Unplaced) > 0 {
				t.Errorf("last plan leaves work unplaced: %+v", last.Unplaced)
			}
			if tt.unplaced != "" && (len(last.Unplaced) != 1 || !strings.Contains(last.Unplaced[0].Reason, tt.unplaced)) {
				t.Errorf("last plan's unplaced = %+v, want one saying %q", last.Unplaced, tt.unplaced)
			}
			// Between hot nodes nothing moved: every migrated instance is on c (or b in
			// the two-node cases), never on another originally hot node.
			for _, p := range final.Placements {
				if p.Cause == CauseOffload && p.Node != tt.nodes[len(tt.nodes)-1].name {
					t.Errorf("%s was offloaded to %s, a node that was hot", p.ID, p.Node)
				}
			}
		})
	}
}

// TestOffloadChoosesByUsage: among instances of the same priority, the smallest whose
// measured use brings the node back under the threshold moves; without one, the
// largest; a lower priority always goes first.
func TestOffloadChoosesByUsage(t *testing.T) {
	node := func(name string, cpu float64) Node {
		n := Node{Name: name, Status: StatusAlive, Capacity: Resources{MilliCPU: 4000, MemoryBytes: 4 << 30}, Load: Load{CPU: cpu, Memory: 0.2}}
		if cpu > 0.85 {
			n.LoadHighSince = baseNow.Add(-time.Minute)
		}
		return n
	}
	base := func(usage map[string]int64, prio map[string]int) Input {
		in := Input{Region: "r", Now: baseNow, Generation: 9,
			Offload: OffloadPolicy{CPUAbove: 0.85, SustainedFor: 10 * time.Second, Cooldown: time.Minute},
			Nodes:   []Node{node("hot", 0.95), node("cool", 0.05)}}
		for _, id := range []string{"a", "b", "c", "d"} {
			p, ok := prio[id]
			if !ok {
				p = 10
			}
			in.Workloads = append(in.Workloads, Workload{Name: id, Replicas: 1, Priority: p, Resources: Resources{MilliCPU: 100, MemoryBytes: 64 << 20}})
			in.Placements = append(in.Placements, Placement{ID: id + "-1-0", Workload: id, Node: "hot", Generation: 1, State: StateRunning,
				Usage: Resources{MilliCPU: usage[id]}})
		}
		return in
	}
	tests := []struct {
		name  string
		usage map[string]int64
		prio  map[string]int
		want  string
	}{
		// 0.95 - 0.85 = 0.10 to free: 400m. b (600m) and c (1000m) suffice; b is smaller.
		{"smallest that suffices", map[string]int64{"a": 200, "b": 600, "c": 1000, "d": 300}, nil, "b-1-0"},
		// Nothing frees 400m: the largest goes.
		{"else the largest", map[string]int64{"a": 200, "b": 300, "c": 350, "d": 100}, nil, "c-1-0"},
		// Unknown usage counts as the request (100m): a's 390m is the largest.
		{"unknown usage is the request", map[string]int64{"a": 390}, nil, "a-1-0"},
		// Priority first: d (priority 5) moves although c would suffice.
		{"priority first", map[string]int64{"a": 200, "b": 600, "c": 1000, "d": 50}, map[string]int{"d": 5}, "d-1-0"},
		// Equal use: ties by ID.
		{"ties by id", map[string]int64{"a": 500, "b": 500, "c": 500, "d": 500}, nil, "a-1-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base(tt.usage, tt.prio)
			r := Plan(in)
			checkPlan(t, in, r)
			if len(r.Actions) != 1 || r.Actions[0].Replaces != tt.want || r.Actions[0].Node != "cool" {
				t.Errorf("want %s moved to cool, got:\n%s", tt.want, render(r))
			}
		})
	}
}
