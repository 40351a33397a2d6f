package gossip

import (
	"math"
	"testing"
	"time"
)

func TestStallWatch(t *testing.T) {
	w := stallWatch{every: 50 * time.Millisecond, tolerance: 100 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		after   time.Duration
		stalled bool
	}{
		{0, false},                      // the first wake-up has nothing to compare with
		{50 * time.Millisecond, false},  // on time
		{140 * time.Millisecond, false}, // late, within the tolerance: a busy scheduler
		{150 * time.Millisecond, false}, // exactly every+tolerance is not yet a stall
		{151 * time.Millisecond, true},  // peers' probes may have gone unanswered
		{50 * time.Millisecond, false},  // measured from the late wake-up, not the missed ones
		{3 * time.Second, true},         // a long freeze
		{50 * time.Millisecond, false},
	}
	now := t0
	for i, s := range steps {
		now = now.Add(s.after)
		gap, stalled := w.observe(now)
		if stalled != s.stalled {
			t.Fatalf("step %d (+%v): stalled=%v, want %v", i, s.after, stalled, s.stalled)
		}
		if stalled && gap != s.after {
			t.Fatalf("step %d: gap %v, want %v", i, gap, s.after)
		}
	}
}

func TestPushPullInterval(t *testing.T) {
	const base = 10 * time.Second
	tests := []struct {
		n    int
		want time.Duration
	}{
		{1, base},
		{32, base},
		{33, 2 * base},                  // memberlist's log2 stretch: ceil(log2(33/32)) + 1
		{50, 2 * base},                  // log2 stretch (2) over linear (1.56)
		{100, 3125 * time.Second / 100}, // linear: 100/32
		{1000, 3125 * time.Second / 10}, // linear: 1000/32, 312.5 s
		{5000, 5000 * base / 32},        // bytes per node stay at 32 nodes' cost
	}
	for _, tt := range tests {
		if got := pushPullInterval(base, tt.n); got != tt.want {
			t.Errorf("pushPullInterval(%v, %d) = %v, want %v", base, tt.n, got, tt.want)
		}
	}
	// Never more often than memberlist would push/pull.
	for n := 33; n <= 5000; n++ {
		mult := 1 + int(math.Ceil(math.Log2(float64(n))-5))
		if got := pushPullInterval(base, n); got < time.Duration(mult)*base {
			t.Fatalf("pushPullInterval(%v, %d) = %v, under memberlist's %v", base, n, got, time.Duration(mult)*base)
		}
	}
}

// A node that keeps stalling (starved of CPU) refutes at most once per probe interval
// and pushes its state at most once per stallPushPullSpacing intervals, backing off
// while it keeps stalling; a single freeze gets both at once.
func TestStallBudget(t *testing.T) {
	const probe = 200 * time.Millisecond
	b := stallBudget{refuteEvery: probe, pushEvery: stallPushPullSpacing * probe,
		maxPushEvery: stallPushPullMaxSpacing * probe, quiet: stallQuiet * probe}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at           time.Duration
		refute, push bool
	}{
		{0, true, true},                        // the first stall: everything
		{100 * time.Millisecond, false, false}, // again within a probe interval
		{200 * time.Millisecond, true, false},  // a refutation, the push/pulls are spent
		{350 * time.Millisecond, false, false}, // 150 ms after the last refutation
		{1700 * time.Millisecond, true, false}, // still within 2 s of the push/pulls
		{2000 * time.Millisecond, true, true},  // 2 s on: push/pulls again; still stalling, so the spacing doubles to 4 s
		{2100 * time.Millisecond, false, false},
		{4 * time.Second, true, false},  // 2 s after, under the 4 s spacing
		{6 * time.Second, true, true},   // 4 s after: spacing 8 s
		{10 * time.Second, true, false}, //
		{14 * time.Second, true, true},  // 8 s after: spacing 16 s
		{29 * time.Second, true, false}, // 15 s after
		{60 * time.Second, true, true},  // 31 s without a stall: from 2 s again
		{62 * time.Second, true, true},  // 2 s after: push/pulls; spacing 4 s
	}
	for i, s := range steps {
		refute, push := b.take(t0.Add(s.at))
		if refute != s.refute || push != s.push {
			t.Fatalf("step %d (+%v): refute=%v push=%v, want %v %v", i, s.at, refute, push, s.refute, s.push)
		}
	}
	// A node that never stops stalling settles at the longest spacing.
	b = stallBudget{refuteEvery: probe, pushEvery: stallPushPullSpacing * probe,
		maxPushEvery: stallPushPullMaxSpacing * probe, quiet: stallQuiet * probe}
	pushes := 0
	for at := time.Duration(0); at < 10*time.Minute; at += 300 * time.Millisecond {
		if _, push := b.take(t0.Add(at)); push {
			pushes++
		}
	}
	if pushes > 20 {
		t.Fatalf("%d push/pull rounds in 10 minutes of stalling, want at most 20 (backing off to %v)", pushes, b.maxPushEvery)
	}
}
