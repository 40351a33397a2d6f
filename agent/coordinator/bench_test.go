package coordinator

import (
	"context"
	"fmt"
	"testing"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
)

// benchRegion is a region of n nodes with 5 workloads of n replicas each (5 instances
// per node), placed, delivered and reported running: the steady state a coordinator
// keeps. Sends are discarded (the encoding is measured; the harness does not decode).
func benchRegion(b *testing.B, n int) *harness {
	b.Helper()
	h := newHarness(b)
	h.discard = true
	for i := range n {
		h.fleet.set(gossip.Member{Name: fmt.Sprintf("n%05d", i), Region: "r1", Status: gossip.StatusAlive,
			MilliCPU: 4000, MemoryBytes: 4 << 30, Drivers: []string{"exec"}, StatusSince: h.clock.Now(), Health: gossip.HealthOK})
	}
	for w := range 5 {
		replicas := n
		h.putWorkload(fmt.Sprintf("w%d", w), &policy.WorkloadSpec{Mode: policy.ModeReplicated, Replicas: &replicas, Driver: "exec",
			Command: []string{"/bin/true"}, Resources: policy.Resources{CPU: "100m", Memory: "32Mi"}})
	}
	h.run(true)
	if got := len(h.raft.State().Placements); got != 5*n {
		b.Fatalf("placed %d instances, want %d", got, 5*n)
	}
	for _, r := range benchReports(h) {
		h.c.HandleReport(r)
	}
	h.run(true)
	return h
}

// benchReports are every node's reports of its assigned instances, running.
func benchReports(h *harness) []Report {
	st := h.raft.State()
	by := Assignments(st)
	var out []Report
	for _, m := range h.fleet.Members() {
		set := by[m.Name]
		h.reportSeq++
		r := Report{Seq: h.reportSeq, Node: m.Name, Region: "r1", Term: h.raft.Term(), Generation: st.Generation, Digest: Digest(set)}
		for _, a := range set {
			r.Instances = append(r.Instances, InstanceReport{ID: a.ID, Intent: a.Intent, Generation: a.Generation, State: runtime.StateRunning, Since: h.clock.Now()})
		}
		out = append(out, r)
	}
	return out
}

// BenchmarkRegionCoordinator measures one coordinator's work for a region of N nodes
// with 5 instances each (issue 14: the cost of a region of 1,000 nodes under one
// coordinator), with the real BuildInput, scheduler, FSM transition and assignment
// encoding (Raft's replication is BenchmarkApply in agent/region):
//   - reports: one loop step taking unchanged reports, which plans nothing: one
//     report (each report wakes the loop when they arrive apart), or a second's
//     worth (N/10: nodes report every 10 s) at once;
//   - death: a node dies and the loop replaces its 5 instances: input, plan, commit,
//     and the delivery of the changed sets. Each iteration starts from a fresh region
//     (not timed).
func BenchmarkRegionCoordinator(b *testing.B) {
	for _, n := range []int{50, 1000} {
		for _, batch := range []int{1, max(n/10, 1)} {
			b.Run(fmt.Sprintf("nodes=%d/reports-per-step=%d", n, batch), func(b *testing.B) {
				h := benchRegion(b, n)
				reports := benchReports(h)
				commits := len(h.raft.commits)
				ctx := context.Background()
				b.ResetTimer()
				for i := range b.N {
					for j := range batch {
						r := reports[(i*batch+j)%n]
						h.reportSeq++
						r.Seq = h.reportSeq
						h.c.HandleReport(r)
					}
					if again, _ := h.c.step(ctx, h.ls, false, false); again {
						b.Fatal("an unchanged report asked for another plan")
					}
					h.drainSends()
				}
				b.StopTimer()
				if c := len(h.raft.commits); c != commits {
					b.Fatalf("%d commits: unchanged reports planned something", c-commits)
				}
			})
		}
		b.Run(fmt.Sprintf("nodes=%d/death", n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				h := benchRegion(b, n)
				before := len(h.raft.commits)
				m := h.fleet.Members()[n/2]
				m.Status, m.StatusSince = gossip.StatusDead, h.clock.Now()
				b.StartTimer()
				h.fleet.set(m)
				h.run(true)
				b.StopTimer()
				if len(h.raft.commits) != before+1 || len(h.raft.commits[before].Plan.Places) != 5 {
					b.Fatalf("the death committed %d plans, want 1 placing 5 replacements", len(h.raft.commits)-before)
				}
			}
		})
	}
}
