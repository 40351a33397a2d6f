package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// harness runs one Supervisor over a fake driver and a fake clock.
type harness struct {
	t       *testing.T
	sup     *Supervisor
	clk     *fakeClock
	drv     *fakeDriver
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T, dir string, drv *fakeDriver, clk *fakeClock) *harness {
	t.Helper()
	h := &harness{t: t, clk: clk, drv: drv, changed: make(chan struct{}, 1)}
	sup, err := New(Config{
		Node:          "n1",
		DataDir:       dir,
		Drivers:       map[string]Driver{DriverExec: drv},
		Clock:         clk,
		UsageInterval: time.Hour, // one armed timer, never fired by these tests unless asked
		StableAfter:   10 * time.Second,
		Registerer:    prometheus.NewRegistry(),
		OnChange: func() {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.sup = sup
	return h
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.sup.Run(ctx) }()
	h.t.Cleanup(h.abandon)
}

// abandon ends Run without stopping instances (an agent crash, as far as
// the instances can tell).
func (h *harness) abandon() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("Run did not return after cancel")
	}
}

func (h *harness) status(id string) (InstanceStatus, bool) {
	for _, st := range h.sup.Instances() {
		if st.ID == id {
			return st, true
		}
	}
	return InstanceStatus{}, false
}

// waitFor blocks until cond holds for the reports (woken by OnChange).
func (h *harness) waitFor(what string, cond func(map[string]InstanceStatus) bool) map[string]InstanceStatus {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		m := map[string]InstanceStatus{}
		for _, st := range h.sup.Instances() {
			m[st.ID] = st
		}
		if cond(m) {
			return m
		}
		select {
		case <-h.changed:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s; instances: %+v", what, m)
		}
	}
}

func (h *harness) waitState(id, state string) InstanceStatus {
	h.t.Helper()
	return h.waitFor(id+" "+state, func(m map[string]InstanceStatus) bool { return m[id].State == state })[id]
}

func spec(id string) InstanceSpec {
	return InstanceSpec{ID: id, Intent: "web", Generation: 1, Driver: DriverExec, Command: []string{"/bin/true"}}
}

func TestSupervisorStartsAndStopsExtra(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	if err := h.sup.SetDesired([]InstanceSpec{spec("a"), spec("b")}); err != nil {
		t.Fatal(err)
	}
	if got := h.sup.Instances(); len(got) != 2 || got[0].State != StatePending {
		t.Fatalf("before Run: got %+v, want 2 pending", got)
	}
	h.run()
	h.waitFor("a and b running", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateRunning && m["b"].State == StateRunning
	})
	if err := h.sup.SetDesired([]InstanceSpec{spec("a")}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("b gone", func(m map[string]InstanceStatus) bool { _, ok := m["b"]; return !ok })
	if n := h.drv.running("b"); n != 0 {
		t.Errorf("b still running %d times after the desired set shrank", n)
	}
	if n := h.drv.running("a"); n != 1 {
		t.Errorf("a running %d times, want 1", n)
	}
	if starts, stops := h.drv.counts(); starts != 2 || stops != 1 {
		t.Errorf("starts, stops = %d, %d; want 2, 1", starts, stops)
	}
}

func TestSupervisorBackoffDoublesCapsAndResets(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	sp := spec("a")
	sp.Restart = RestartSpec{Policy: RestartAlways, MaxBackoff: 4 * time.Second}
	if err := h.sup.SetDesired([]InstanceSpec{sp}); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.waitState("a", StateRunning)
	steps := []struct {
		ranFor    time.Duration // how long the instance ran before crashing
		wantDelay time.Duration
	}{
		{0, 1 * time.Second},
		{0, 2 * time.Second},
		{0, 4 * time.Second},
		{0, 4 * time.Second},                // capped by maxBackoff
		{10 * time.Second, 1 * time.Second}, // a stable run resets the backoff
		{0, 2 * time.Second},
	}
	for i, st := range steps {
		h.clk.Advance(st.ranFor)
		h.drv.exit(t, "a", 7)
		got := h.waitState("a", StateBackoff)
		if delay := got.NextRestart.Sub(h.clk.Now()); delay != st.wantDelay {
			t.Errorf("crash %d: backoff %v, want %v", i+1, delay, st.wantDelay)
		}
		if got.LastExit == nil || *got.LastExit != 7 {
			t.Errorf("crash %d: last exit %v, want 7", i+1, got.LastExit)
		}
		h.clk.Advance(st.wantDelay - time.Millisecond)
		if s, _ := h.status("a"); s.State != StateBackoff {
			t.Errorf("crash %d: state %s before the backoff ended, want backoff", i+1, s.State)
		}
		h.clk.Advance(time.Millisecond)
		h.waitFor("restart", func(m map[string]InstanceStatus) bool {
			return m["a"].State == StateRunning && m["a"].Restarts == i+1
		})
	}
	if starts, _ := h.drv.counts(); starts != len(steps)+1 {
		t.Errorf("starts = %d, want %d", starts, len(steps)+1)
	}
}

func TestSupervisorRestartPolicies(t *testing.T) {
	tests := []struct {
		policy    string
		code      int
		wantState string
	}{
		{RestartAlways, 0, StateBackoff},
		{RestartAlways, 3, StateBackoff},
		{RestartOnFailure, 0, StateStopped},
		{RestartOnFailure, 3, StateBackoff},
		{RestartNever, 0, StateStopped},
		{RestartNever, 3, StateFailed},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/exit%d", tt.policy, tt.code), func(t *testing.T) {
			h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
			sp := spec("a")
			sp.Restart.Policy = tt.policy
			if err := h.sup.SetDesired([]InstanceSpec{sp}); err != nil {
				t.Fatal(err)
			}
			h.run()
			h.waitState("a", StateRunning)
			h.drv.exit(t, "a", tt.code)
			got := h.waitFor("exit handled", func(m map[string]InstanceStatus) bool { return m["a"].LastExit != nil })["a"]
			got = h.waitState("a", tt.wantState)
			if *got.LastExit != tt.code {
				t.Errorf("last exit = %d, want %d", *got.LastExit, tt.code)
			}
		})
	}
}

func TestSupervisorUnhealthyRestarts(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	sp := spec("a")
	sp.Health = HealthSpec{Exec: []string{"probe"}, Interval: 5 * time.Second, FailureThreshold: 2}
	if err := h.sup.SetDesired([]InstanceSpec{sp}); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.waitState("a", StateStarting)
	h.clk.waitPending(t, 2) // usage + health
	h.clk.Advance(5 * time.Second)
	h.waitState("a", StateRunning)

	h.drv.mu.Lock()
	h.drv.healthy["a"] = false
	h.drv.mu.Unlock()
	for i := 0; i < 2; i++ {
		h.clk.waitPending(t, 2)
		if s, _ := h.status("a"); s.State != StateRunning {
			t.Fatalf("after %d failed probes: state %s, want running (threshold 2)", i, s.State)
		}
		h.clk.Advance(5 * time.Second)
	}
	got := h.waitState("a", StateBackoff)
	if !strings.Contains(got.Error, "health") {
		t.Errorf("error = %q, want it to mention the health checks", got.Error)
	}
	if n := h.drv.running("a"); n != 0 {
		t.Errorf("unhealthy instance still running (%d)", n)
	}
	h.clk.Advance(time.Second)
	h.waitFor("restarted", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateStarting && m["a"].Restarts == 1
	})
}

func TestSupervisorBadInputFailsOnlyThatInstance(t *testing.T) {
	drv := newFakeDriver()
	drv.startErr["nobin"] = fmt.Errorf("%w: command: /nope not found", ErrInvalidSpec)
	h := newHarness(t, t.TempDir(), drv, newFakeClock())
	noCmd := spec("nocmd")
	noCmd.Command = nil
	badMem := spec("badmem")
	badMem.Resources.MemoryBytes = -1
	dock := spec("dock")
	dock.Driver, dock.Image = DriverDocker, "vision:1.4"
	if err := h.sup.SetDesired([]InstanceSpec{spec("good"), noCmd, badMem, spec("nobin"), dock}); err != nil {
		t.Fatal(err)
	}
	h.run()
	m := h.waitFor("all settled", func(m map[string]InstanceStatus) bool {
		return m["good"].State == StateRunning && m["nocmd"].State == StateFailed &&
			m["badmem"].State == StateFailed && m["nobin"].State == StateFailed && m["dock"].State == StateFailed
	})
	want := map[string]string{
		"nocmd":  "command",
		"badmem": "resources.memory",
		"nobin":  "/nope not found",
		"dock":   "driver docker is not available on node n1",
	}
	for id, sub := range want {
		if !strings.Contains(m[id].Error, sub) {
			t.Errorf("%s: error %q, want it to contain %q", id, m[id].Error, sub)
		}
	}
	// Fixing the spec replaces the failed instance.
	noCmd.Command = []string{"/bin/true"}
	if err := h.sup.SetDesired([]InstanceSpec{spec("good"), noCmd}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("fixed", func(m map[string]InstanceStatus) bool {
		return m["nocmd"].State == StateRunning && len(m) == 2
	})
}

func TestSupervisorDuplicateIDsRejected(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	err := h.sup.SetDesired([]InstanceSpec{spec("a"), spec("a")})
	if err == nil || !strings.Contains(err.Error(), `duplicate instance id "a"`) {
		t.Fatalf("err = %v, want duplicate id error", err)
	}
}

func TestSupervisorAdoptsAfterCrashNoDuplicate(t *testing.T) {
	dir, drv, clk := t.TempDir(), newFakeDriver(), newFakeClock()
	h1 := newHarness(t, dir, drv, clk)
	old := spec("stale")
	if err := h1.sup.SetDesired([]InstanceSpec{spec("a"), spec("b"), old}); err != nil {
		t.Fatal(err)
	}
	h1.run()
	before := h1.waitFor("running", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateRunning && m["b"].State == StateRunning && m["stale"].State == StateRunning
	})
	h1.abandon() // the agent is killed: instances keep running
	if drv.running("a") != 1 || drv.running("b") != 1 {
		t.Fatalf("instances did not survive the supervisor")
	}
	drv.exit(t, "b", 1) // b dies while no agent watches
	// The persisted desired set changed meanwhile: stale is no longer wanted.
	if err := writeDesiredForTest(dir, []InstanceSpec{spec("a"), spec("b")}); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, dir, drv, clk)
	if diff := cmp.Diff([]InstanceSpec{spec("a"), spec("b")}, h2.sup.Desired()); diff != "" {
		t.Fatalf("persisted desired set (-want +got):\n%s", diff)
	}
	h2.run()
	// The leftover is never in h2's status (it is not desired); its cleanup runner
	// stops it and then notifies, so wait on the driver too.
	after := h2.waitFor("adopted and stale stopped", func(m map[string]InstanceStatus) bool {
		_, staleLeft := m["stale"]
		return m["a"].State == StateRunning && m["b"].State == StateRunning && !staleLeft && drv.running("stale") == 0
	})
	if after["a"].Ref != before["a"].Ref {
		t.Errorf("a: ref %s, want the adopted %s", after["a"].Ref, before["a"].Ref)
	}
	if after["b"].Ref == before["b"].Ref {
		t.Errorf("b exited while the agent was down but was not started again")
	}
	for _, id := range []string{"a", "b"} {
		if n := drv.running(id); n != 1 {
			t.Errorf("%s running %d times, want exactly 1", id, n)
		}
	}
	if n := drv.running("stale"); n != 0 {
		t.Errorf("stale still running after adoption")
	}
	if starts, _ := drv.counts(); starts != 4 {
		t.Errorf("starts = %d, want 4 (a, b, stale, then b again)", starts)
	}
}

func TestSupervisorWaitsForListBeforeStarting(t *testing.T) {
	dir, drv, clk := t.TempDir(), newFakeDriver(), newFakeClock()
	h1 := newHarness(t, dir, drv, clk)
	if err := h1.sup.SetDesired([]InstanceSpec{spec("a")}); err != nil {
		t.Fatal(err)
	}
	h1.run()
	h1.waitState("a", StateRunning)
	h1.abandon()

	drv.mu.Lock()
	drv.listErr = errors.New("engine down")
	drv.mu.Unlock()
	h2 := newHarness(t, dir, drv, clk)
	h2.run()
	got := h2.waitState("a", StateBackoff)
	if !strings.Contains(got.Error, "cannot list") {
		t.Errorf("error = %q, want it to say listing failed", got.Error)
	}
	drv.mu.Lock()
	drv.listErr = nil
	drv.mu.Unlock()
	h2.clk.Advance(time.Second)
	h2.waitState("a", StateRunning)
	if starts, _ := drv.counts(); starts != 1 || drv.running("a") != 1 {
		t.Errorf("starts = %d, running = %d; want the survivor adopted, no duplicate", starts, drv.running("a"))
	}
}

func TestSupervisorUsage(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	if err := h.sup.SetDesired([]InstanceSpec{spec("a"), spec("b")}); err != nil {
		t.Fatal(err)
	}
	h.run()
	m := h.waitFor("running", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateRunning && m["b"].State == StateRunning
	})
	ctx := context.Background()
	h.sup.SampleUsage(ctx)
	h.drv.mu.Lock()
	h.drv.cpuByRef[m["a"].Ref] = 500 * time.Millisecond
	h.drv.cpuByRef[m["b"].Ref] = 250 * time.Millisecond
	h.drv.mu.Unlock()
	h.clk.Advance(time.Second)
	h.sup.SampleUsage(ctx)
	want := NodeUsage{MilliCPU: 750, MemoryBytes: 2 << 20}
	if got := h.sup.Usage(); got != want {
		t.Errorf("Usage() = %+v, want %+v", got, want)
	}
}

func TestSupervisorStopAll(t *testing.T) {
	h := newHarness(t, t.TempDir(), newFakeDriver(), newFakeClock())
	if err := h.sup.SetDesired([]InstanceSpec{spec("a"), spec("b")}); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.waitFor("running", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateRunning && m["b"].State == StateRunning
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sup.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	if h.drv.running("a")+h.drv.running("b") != 0 {
		t.Errorf("instances left after StopAll")
	}
	if got := h.sup.Desired(); len(got) != 0 {
		t.Errorf("desired after StopAll = %v, want empty", got)
	}
}

func TestNewRejectsCorruptDesiredFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, desiredFileName), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), desiredFileName) {
		t.Fatalf("New = %v, want an error naming %s", err, desiredFileName)
	}
}

func writeDesiredForTest(dir string, specs []InstanceSpec) error {
	s, err := New(Config{DataDir: dir})
	if err != nil {
		return err
	}
	return s.SetDesired(specs)
}

// A leased (at-most-once) instance's lease ends with the agent: a restarted
// supervisor neither starts it from the persisted desired set nor adopts it, but
// stops it where it still runs, and runs it again only when told to.
func TestSupervisorLeasedNotRestartedFromPersistedSet(t *testing.T) {
	dir, drv, clk := t.TempDir(), newFakeDriver(), newFakeClock()
	h1 := newHarness(t, dir, drv, clk)
	lock := spec("lock")
	lock.Leased = true
	if err := h1.sup.SetDesired([]InstanceSpec{spec("a"), lock}); err != nil {
		t.Fatal(err)
	}
	h1.run()
	h1.waitFor("running", func(m map[string]InstanceStatus) bool {
		return m["a"].State == StateRunning && m["lock"].State == StateRunning
	})
	h1.abandon() // the agent dies; with a fake driver the instance outlives it

	h2 := newHarness(t, dir, drv, clk)
	if diff := cmp.Diff([]InstanceSpec{spec("a")}, h2.sup.Desired()); diff != "" {
		t.Fatalf("desired set after restart (-want +got):\n%s", diff)
	}
	h2.run()
	h2.waitFor("a adopted, lock stopped", func(m map[string]InstanceStatus) bool {
		_, has := m["lock"]
		return m["a"].State == StateRunning && !has && drv.running("lock") == 0
	})
	if starts, _ := drv.counts(); starts != 2 {
		t.Errorf("starts = %d, want 2 (a and lock, once each): a leased instance was started from the persisted set", starts)
	}
	// Told again (the agent holds a lease): it runs.
	if err := h2.sup.SetDesired([]InstanceSpec{spec("a"), lock}); err != nil {
		t.Fatal(err)
	}
	h2.waitState("lock", StateRunning)
	if n := drv.running("lock"); n != 1 {
		t.Errorf("lock running %d times, want 1", n)
	}
}
