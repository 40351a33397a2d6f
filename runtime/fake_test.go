package runtime

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: timers fire when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{} // cap 1: a timer was created
}

type fakeTimer struct {
	c        chan time.Time
	deadline time.Time
	fired    bool
	clk      *fakeClock
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), added: make(chan struct{}, 1)}
}

// pending counts armed timers.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.fired {
			n++
		}
	}
	return n
}

// waitPending blocks until at least n timers are armed.
func (c *fakeClock) waitPending(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for c.pending() < n {
		select {
		case <-c.added:
		case <-deadline:
			t.Fatalf("fake clock: %d timers armed, want %d", c.pending(), n)
		}
	}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), deadline: c.now.Add(d), clk: c}
	if d <= 0 {
		t.fired = true
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.fired
	t.fired = true
	return was
}

// Advance moves time forward and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.fired {
			continue
		}
		if !t.deadline.After(c.now) {
			t.fired = true
			t.c <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// fakeDriver simulates instances in memory. Instances outlive supervisors
// (like real processes outlive the agent).
type fakeDriver struct {
	mu       sync.Mutex
	next     int
	insts    map[string]*fakeInst // by ref
	starts   int
	stops    int
	startErr map[string]error // by instance ID
	healthy  map[string]bool  // by instance ID; missing = healthy
	listErr  error
	cpuByRef map[string]time.Duration
}

type fakeInst struct {
	h      Handle
	exited bool
	es     ExitStatus
	done   chan struct{}
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{insts: map[string]*fakeInst{}, startErr: map[string]error{}, healthy: map[string]bool{}, cpuByRef: map[string]time.Duration{}}
}

func (d *fakeDriver) Name() string { return DriverExec }

func (d *fakeDriver) Start(ctx context.Context, spec InstanceSpec) (Handle, error) {
	if err := spec.Validate(); err != nil {
		return Handle{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.startErr[spec.ID]; err != nil {
		return Handle{}, err
	}
	d.next++
	d.starts++
	h := Handle{Driver: spec.Driver, InstanceID: spec.ID, Intent: spec.Intent, Generation: spec.Generation, SpecHash: spec.Hash(), Ref: "f" + strconv.Itoa(d.next), Running: true}
	d.insts[h.Ref] = &fakeInst{h: h, done: make(chan struct{})}
	return h, nil
}

func (d *fakeDriver) Wait(ctx context.Context, h Handle) (ExitStatus, error) {
	d.mu.Lock()
	in := d.insts[h.Ref]
	d.mu.Unlock()
	if in == nil {
		return ExitStatus{Code: -1}, nil
	}
	select {
	case <-in.done:
		d.mu.Lock()
		defer d.mu.Unlock()
		return in.es, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (d *fakeDriver) Stop(ctx context.Context, h Handle, grace time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	in := d.insts[h.Ref]
	if in == nil {
		return nil
	}
	d.stops++
	if !in.exited {
		in.exited, in.es = true, ExitStatus{Code: 143, Signal: "SIGTERM"}
		close(in.done)
	}
	delete(d.insts, h.Ref)
	return nil
}

func (d *fakeDriver) List(ctx context.Context) ([]Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listErr != nil {
		return nil, d.listErr
	}
	var out []Handle
	for _, in := range d.insts {
		h := in.h
		h.Running = !in.exited
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

func (d *fakeDriver) Usage(ctx context.Context, h Handle) (Usage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if in := d.insts[h.Ref]; in == nil || in.exited {
		return Usage{}, fmt.Errorf("gone")
	}
	return Usage{CPUTime: d.cpuByRef[h.Ref], MemoryBytes: 1 << 20}, nil
}

func (d *fakeDriver) ExecIn(ctx context.Context, h Handle, argv []string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ok, set := d.healthy[h.InstanceID]; set && !ok {
		return 1, nil
	}
	return 0, nil
}

// exit makes the running instance with this ID exit with code.
func (d *fakeDriver) exit(t *testing.T, id string, code int) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, in := range d.insts {
		if in.h.InstanceID == id && !in.exited {
			in.exited, in.es = true, ExitStatus{Code: code}
			close(in.done)
			return
		}
	}
	t.Fatalf("fake driver: no running instance %q", id)
}

func (d *fakeDriver) running(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, in := range d.insts {
		if in.h.InstanceID == id && !in.exited {
			n++
		}
	}
	return n
}

func (d *fakeDriver) counts() (starts, stops int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts, d.stops
}
