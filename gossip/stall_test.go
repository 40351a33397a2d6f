package gossip

import (
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
