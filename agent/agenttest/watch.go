package agenttest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sample is one look at a replicated workload: its live instance processes fleet-wide
// and what an observer's view says of it.
type Sample struct {
	Procs int // live instance processes, from the process tables
	// View is how many instances the observer's /v1/workloads shows running; -1 when
	// it did not answer.
	View int
	// States lists the instances as " id@node:state", for the failure message. A view
	// with an instance in state "unknown" (a coordinator just elected that has not
	// heard from its node yet) cannot claim that nothing runs: View 0 then counts as
	// not knowing.
	States string
}

// Watch samples a workload every 20 ms, from Start until Check (at most for max), and
// remembers whether it ever saw nothing running: the promise that a replicated
// workload never drops to zero instances while partitions cut and heal.
type Watch struct {
	stop, done chan struct{}
	mu         sync.Mutex // guards the fields below
	samples    int
	minProcs   int
	minView    int // -1 until the view answered once
	zeroAt     []string
}

// StartWatch starts sampling with sample until Check or max.
func StartWatch(sample func() Sample, max time.Duration) *Watch {
	w := &Watch{stop: make(chan struct{}), done: make(chan struct{}), minProcs: 1 << 30, minView: -1}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		end := time.NewTimer(max)
		defer end.Stop()
		for {
			s := sample()
			w.mu.Lock()
			w.samples++
			w.minProcs = min(w.minProcs, s.Procs)
			if s.View >= 0 && (w.minView < 0 || s.View < w.minView) {
				w.minView = s.View
			}
			if (s.Procs == 0 || s.View == 0 && !strings.Contains(s.States, ":unknown")) && len(w.zeroAt) < 5 {
				w.zeroAt = append(w.zeroAt, fmt.Sprintf("%s procs=%d view=%d [%s]", time.Now().Format("15:04:05.000"), s.Procs, s.View, strings.TrimSpace(s.States)))
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-end.C:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Check stops the watch and fails the test if a sample saw no running instance, or
// fewer live processes than want (the loser of a heal stops only after the survivor
// runs).
func (w *Watch) Check(t testing.TB, what string, want int) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("%s: %d samples, fewest live processes %d, fewest running in the view %d", what, w.samples, w.minProcs, w.minView)
	if len(w.zeroAt) > 0 {
		t.Errorf("%s: no running instance at some moment: %v", what, w.zeroAt)
	}
	if w.minProcs < want {
		t.Errorf("%s: only %d live processes at one moment, want at least %d (the loser stops only after the survivor runs)", what, w.minProcs, want)
	}
}
