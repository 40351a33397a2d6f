package scheduler

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// benchRegion builds a region of nodes nodes and workloads workloads of replicas
// replicas each, with an empty placement table. Nodes: 16 cores, 32 GiB, 10 zones,
// 20% with camera=yes, 90% with docker, live load 0.1–0.5. Workloads: 100–400m cpu,
// 64–256 MiB, 10% constrained to camera=yes, 5% needing docker, a third with the
// spread strategy, random priorities. No global workloads, so the instance count is
// exactly workloads × replicas (global mode is covered by the golden tests).
func benchRegion(nodes, workloads, replicas int) Input {
	r := rand.New(rand.NewPCG(11, 12))
	const gi = 1 << 30
	in := Input{
		Region: "r1", Now: baseNow, Seed: 99, Generation: 1,
		Offload: OffloadPolicy{CPUAbove: 0.85, MemoryAbove: 0.9, SustainedFor: 30 * time.Second, Cooldown: time.Minute},
	}
	in.Nodes = make([]Node, nodes)
	for i := range in.Nodes {
		n := Node{
			Name:     "node-" + strconv.Itoa(i),
			Status:   StatusAlive,
			Capacity: Resources{MilliCPU: 16000, MemoryBytes: 32 * gi},
			Load:     Load{CPU: 0.1 + 0.4*r.Float64(), Memory: 0.1 + 0.4*r.Float64()},
			Labels:   map[string]string{"zone": "z" + strconv.Itoa(i%10)},
			Drivers:  []string{"exec"},
		}
		if i%5 == 0 {
			n.Labels["camera"] = "yes"
		}
		if i%10 != 0 {
			n.Drivers = append(n.Drivers, "docker")
		}
		in.Nodes[i] = n
	}
	in.Workloads = make([]Workload, workloads)
	for i := range in.Workloads {
		w := Workload{
			Name:      "wl-" + strconv.Itoa(i),
			Replicas:  replicas,
			Resources: Resources{MilliCPU: int64(100 + 100*r.IntN(4)), MemoryBytes: int64(64<<20) * int64(1+r.IntN(4))},
			Priority:  r.IntN(100),
			Driver:    "exec",
		}
		if i%10 == 0 {
			w.Constraints = map[string]string{"camera": "yes"}
		}
		if i%20 == 1 {
			w.Driver = "docker"
		}
		if i%3 == 0 {
			w.Strategy = StrategySpread
		}
		in.Workloads[i] = w
	}
	return in
}

// settledRegion is the region after its cold-start plan was applied and every
// instance reported running.
func settledRegion(b testing.TB) Input {
	in := benchRegion(5000, 1000, 100)
	p := Plan(in)
	if n := len(p.Actions); n != 100_000 || len(p.Unplaced) != 0 {
		b.Fatalf("cold start placed %d of 100000 (unplaced %v)", n, p.Unplaced)
	}
	in = settle(in, p)
	if p := Plan(in); !p.Empty() {
		b.Fatalf("settled region is not steady: %d actions", len(p.Actions))
	}
	return in
}

// BenchmarkPlanColdStart: 100,000 instances onto 5,000 nodes from an empty table.
func BenchmarkPlanColdStart(b *testing.B) {
	in := benchRegion(5000, 1000, 100)
	placed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p := Plan(in)
		placed += len(p.Actions)
	}
	b.StopTimer()
	if placed != 100_000*b.N {
		b.Fatalf("placed %d, want %d", placed, 100_000*b.N)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
}

// BenchmarkPlanNodeDeath: the settled region after one node dies.
func BenchmarkPlanNodeDeath(b *testing.B) {
	in := settledRegion(b)
	in.Nodes[1234].Status = StatusDead
	in.Nodes[1234].DeadSince = baseNow.Add(-time.Minute)
	lost := 0
	for _, p := range in.Placements {
		if p.Node == in.Nodes[1234].Name {
			lost++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p := Plan(in)
		if len(p.Actions) != lost {
			b.Fatalf("replaced %d, want %d", len(p.Actions), lost)
		}
	}
	b.ReportMetric(float64(lost), "replaced/op")
}

// BenchmarkPlanSteadyState: the settled region, nothing changed.
func BenchmarkPlanSteadyState(b *testing.B) {
	in := settledRegion(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if p := Plan(in); !p.Empty() {
			b.Fatal("steady state produced actions")
		}
	}
}
