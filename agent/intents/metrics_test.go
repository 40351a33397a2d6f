package intents

import (
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/prometheus/client_golang/prometheus"
)

// gathered returns the value of the unlabelled metric name in reg: a gauge's or
// counter's value, a histogram's sample count. ok is false when reg does not export it.
func gathered(t *testing.T, reg prometheus.Gatherer, name string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustGather(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	v, ok := gathered(t, reg, name)
	if !ok {
		t.Fatalf("%s is not exported", name)
	}
	return v
}

// TestStoreDigestMetrics: murmur_intents_digest and the newest version's timestamp
// follow the store, and a tombstone past its TTL counts as collected before the GC
// runs (every node's GC removes it at its own moment).
func TestStoreDigestMetrics(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	reg := prometheus.NewRegistry()
	s, _ := single(t, t.TempDir(), clock, func(c *Config) { c.TombstoneTTL = 48 * time.Hour; c.Registerer = reg })
	digest := func() float64 { return mustGather(t, reg, "murmur_intents_digest") }
	newest := func() float64 { return mustGather(t, reg, "murmur_intents_newest_version_timestamp_seconds") }
	if d, n := digest(), newest(); d != 0 || n != 0 {
		t.Fatalf("empty store: digest %v newest %v, want 0 and 0", d, n)
	}
	// Every stored label value of the API counters is there from the start.
	for _, name := range []string{"murmur_intents_applied_total", "murmur_intents_api_rejected_total", "murmur_intents_gossip_rejected_total"} {
		mfs, _ := reg.Gather()
		found := false
		for _, mf := range mfs {
			found = found || (mf.GetName() == name && len(mf.GetMetric()) > 0)
		}
		if !found {
			t.Errorf("%s is not exported before its first event", name)
		}
	}

	res, err := s.Apply([]byte(workloadYAML("a", "/bin/x")))
	if err != nil {
		t.Fatal(err)
	}
	afterA := digest()
	if afterA == 0 || afterA >= 1<<53 {
		t.Errorf("digest with one intent = %v, want in (0, 2^53)", afterA)
	}
	if got, want := newest(), float64(res[0].Version.Wall)/1000; got != want {
		t.Errorf("newest = %v, want %v (the version of a)", got, want)
	}
	clock.Add(time.Hour)
	del, err := s.Delete("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := digest(); d == afterA || d == 0 {
		t.Errorf("digest after the delete = %v, want a new non-zero value (before: %v)", d, afterA)
	}
	if got, want := newest(), float64(del.Version.Wall)/1000; got != want {
		t.Errorf("newest after the delete = %v, want %v (the tombstone's version)", got, want)
	}
	clock.Add(48 * time.Hour) // the tombstone is past its TTL; the GC has not run
	if d, n := digest(), newest(); d != 0 || n != 0 {
		t.Errorf("tombstone past its TTL: digest %v newest %v, want 0 and 0 (as after the GC)", d, n)
	}
	s.collectGarbage()
	if d, n := digest(), newest(); d != 0 || n != 0 {
		t.Errorf("after the GC: digest %v newest %v, want 0 and 0", d, n)
	}
}

// TestFleetDigestAndReplicationLag: nodes that hold the same intents export the same
// digest and newest version; a node cut off while the others took a write exports an
// older one. Every version a node stores from a peer is observed in the lag histogram.
func TestFleetDigestAndReplicationLag(t *testing.T) {
	f := newFleet(t)
	nodes := f.startN(3, nil)
	if r := do(t, nodes[0].mux, "POST", "/v1/intents?wait=fleet&timeout=10s", workloadYAML("a", "/bin/a")); r.status != 200 {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	converged(t, nodes, "a", 10*time.Second)
	want := mustGather(t, nodes[0].reg, "murmur_intents_digest")
	for _, n := range nodes {
		if got := mustGather(t, n.reg, "murmur_intents_digest"); got != want || got == 0 {
			t.Errorf("%s: digest %v, want %v (non-zero, as node-1's)", n.name, got, want)
		}
	}
	for _, n := range nodes[1:] {
		stored := mustGather(t, n.reg, "murmur_intents_replicated_total")
		if lag := mustGather(t, n.reg, "murmur_intents_replication_lag_seconds"); stored < 1 || lag != stored {
			t.Errorf("%s: %v lag observations for %v versions stored from peers, want as many (at least 1)", n.name, lag, stored)
		}
	}
	if lag := mustGather(t, nodes[0].reg, "murmur_intents_replication_lag_seconds"); lag != 0 {
		t.Errorf("node-1 accepted the intent itself, yet observed %v replication lags", lag)
	}

	down := f.kill("node-3")
	gossiptest.Eventually(t, 10*time.Second, "node-3 to be seen dead", func() bool {
		return gossiptest.StatusOf(nodes[0].g.Gossip, "node-3") != "alive"
	})
	if r := do(t, nodes[0].mux, "POST", "/v1/intents?wait=fleet&timeout=10s", workloadYAML("b", "/bin/b")); r.status != 200 {
		t.Fatalf("apply while node-3 is down: %d %s", r.status, r.body)
	}
	converged(t, nodes[:2], "b", 10*time.Second)
	d1, d2, d3 := mustGather(t, nodes[0].reg, "murmur_intents_digest"), mustGather(t, nodes[1].reg, "murmur_intents_digest"), mustGather(t, down.reg, "murmur_intents_digest")
	if d1 != d2 || d1 == d3 || d3 != want {
		t.Errorf("digests node-1 %v node-2 %v node-3 %v: want node-1 = node-2, and node-3 still at %v", d1, d2, d3, want)
	}
	n1, n3 := mustGather(t, nodes[0].reg, "murmur_intents_newest_version_timestamp_seconds"), mustGather(t, down.reg, "murmur_intents_newest_version_timestamp_seconds")
	if n1 <= n3 {
		t.Errorf("newest version: node-1 %v, cut-off node-3 %v: want node-1 ahead", n1, n3)
	}
}
