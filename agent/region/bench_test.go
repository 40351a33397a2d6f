package region

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// waitNewLeader polls (1 ms) until a running node other than old leads, then until
// every running node's Raft knows it. Returns both durations since start.
func waitNewLeader(b *testing.B, f *fleet, old *tnode, start time.Time) (elected, known time.Duration, leader *tnode) {
	deadline := start.Add(20 * time.Second)
	for leader == nil {
		for _, tn := range f.running("r") {
			if tn != old && tn.n.IsLeader() {
				leader = tn
				elected = time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no new leader within 20 s")
		}
		time.Sleep(time.Millisecond)
	}
	for {
		all := true
		for _, tn := range f.running("r") {
			if id, _ := tn.n.Leader(); tn != old && id != leader.id {
				all = false
			}
		}
		if all {
			return elected, time.Since(start), leader
		}
		if time.Now().After(deadline) {
			b.Fatal("new leader not known everywhere within 20 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkFailover: SIGKILL-like stop of the leader of a 5-node region (default
// timing, WAL on disk) → new leader elected / known by every Raft member. 20 kills per
// iteration; run with -benchtime 1x.
func BenchmarkFailover(b *testing.B) {
	for range b.N {
		f := newFleet(b, func(c *Config) { c.DeadGrace = time.Hour })
		var tns []*tnode
		for i := range 5 {
			tns = append(tns, f.add(fmt.Sprintf("n%d", i), "r", true, b.TempDir()))
		}
		for _, tn := range tns {
			f.start(tn)
		}
		// Quiet period: count leadership changes with nobody killed (false elections).
		f.waitStable("r", 3, 20*time.Second)
		changes := func() (c float64) {
			for _, tn := range f.running("r") {
				c += metricValue(tn.n.m.leaderChanges)
			}
			return c
		}
		before := changes()
		time.Sleep(5 * time.Second) // the observation window itself
		b.ReportMetric(changes()-before, "quiet-5s-leader-changes")
		var elected, known []time.Duration
		for range 20 {
			leader := f.waitStable("r", 3, 20*time.Second)
			// Let the cluster settle (heartbeats flowing) before the kill.
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			f.kill(leader)
			e, k, _ := waitNewLeader(b, f, leader, start)
			elected, known = append(elected, e), append(known, k)
			f.start(leader) // restart with its data dir: rejoins as before
		}
		b.ReportMetric(float64(percentile(elected, 0.5).Milliseconds()), "elect-p50-ms")
		b.ReportMetric(float64(percentile(elected, 0.99).Milliseconds()), "elect-p99-ms")
		b.ReportMetric(float64(percentile(known, 0.5).Milliseconds()), "known-p50-ms")
		b.ReportMetric(float64(percentile(known, 0.99).Milliseconds()), "known-p99-ms")
		b.Logf("elected: %v", elected)
	}
}

// BenchmarkTransfer: graceful stop (SIGTERM path) of the leader → new leader. 20
// handoffs per iteration; run with -benchtime 1x.
func BenchmarkTransfer(b *testing.B) {
	for range b.N {
		f := newFleet(b, func(c *Config) { c.DeadGrace = time.Hour })
		var tns []*tnode
		for i := range 5 {
			tns = append(tns, f.add(fmt.Sprintf("n%d", i), "r", true, b.TempDir()))
		}
		for _, tn := range tns {
			f.start(tn)
		}
		var took []time.Duration
		for range 20 {
			leader := f.waitStable("r", 3, 20*time.Second)
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			go leader.cancel()
			e, _, _ := waitNewLeader(b, f, leader, start)
			took = append(took, e)
			<-leader.done
			f.mu.Lock()
			leader.alive = false
			f.mu.Unlock()
			f.net.Down(leader.addr)
			f.start(leader)
		}
		b.ReportMetric(float64(percentile(took, 0.5).Microseconds())/1000, "transfer-p50-ms")
		b.ReportMetric(float64(percentile(took, 0.99).Microseconds())/1000, "transfer-p99-ms")
	}
}

// BenchmarkApply: commits through the leader of a 3-node region (WAL on disk, fsync),
// one op = one Raft entry; batch = placements per entry.
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f := newFleet(b, func(c *Config) { c.DeadGrace = time.Hour })
			for i := range 3 {
				f.start(f.add(fmt.Sprintf("n%d", i), "r", true, b.TempDir()))
			}
			leader := f.waitStable("r", 3, 20*time.Second)
			cmds := make([]Command, batch)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				for j := range cmds {
					cmds[j] = Place(fmt.Sprintf("i-%d", j), "w", fmt.Sprintf("node-%d", i%7))
				}
				if _, err := leader.n.Apply(ctx, Batch(cmds...)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/sec, "commits/s")
			b.ReportMetric(float64(b.N*batch)/sec, "placements/s")
		})
	}
}
