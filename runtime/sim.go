package runtime

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// SimDriver "runs" instances in memory: Start returns at once, nothing executes, and
// an instance lives until it is stopped. It is the driver of the fleet simulator
// (murmur-bench sim), where thousands of agents share one process and what is measured
// is placement, not processes. It reports under the name it is given (e.g. "exec", so
// that exec workloads place on simulated nodes). Safe for concurrent use.
type SimDriver struct {
	name string

	mu   sync.Mutex // guards live and seq
	live map[string]*simInstance
	seq  uint64
}

type simInstance struct {
	h       Handle
	done    chan struct{}
	stopped bool // kept until Wait has seen the stop, so a late Wait still gets it
}

// NewSimDriver returns an empty simulated driver named name.
func NewSimDriver(name string) *SimDriver {
	return &SimDriver{name: name, live: map[string]*simInstance{}}
}

// Name implements Driver.
func (d *SimDriver) Name() string { return d.name }

// Start implements Driver: the instance runs from now on.
func (d *SimDriver) Start(_ context.Context, spec InstanceSpec) (Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	h := Handle{Driver: d.name, InstanceID: spec.ID, Intent: spec.Intent, Generation: spec.Generation, SpecHash: spec.Hash(),
		Ref: fmt.Sprintf("sim-%d", d.seq), StartedAt: time.Now()}
	d.live[h.Ref] = &simInstance{h: h, done: make(chan struct{})}
	return h, nil
}

// Wait implements Driver: it returns when the instance is stopped (exit code 0) or
// ctx ends.
func (d *SimDriver) Wait(ctx context.Context, h Handle) (ExitStatus, error) {
	d.mu.Lock()
	in := d.live[h.Ref]
	d.mu.Unlock()
	if in == nil {
		return ExitStatus{Code: -1}, nil
	}
	select {
	case <-in.done:
		d.mu.Lock()
		delete(d.live, h.Ref)
		d.mu.Unlock()
		return ExitStatus{Code: 0}, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

// Stop implements Driver.
func (d *SimDriver) Stop(_ context.Context, h Handle, _ time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if in := d.live[h.Ref]; in != nil && !in.stopped {
		close(in.done)
		in.stopped = true
	}
	return nil
}

// List implements Driver.
func (d *SimDriver) List(context.Context) ([]Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Handle, 0, len(d.live))
	for _, in := range d.live {
		if in.stopped {
			continue
		}
		h := in.h
		h.Running = true
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Handle) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// Usage implements Driver: a simulated instance uses nothing.
func (d *SimDriver) Usage(context.Context, Handle) (Usage, error) { return Usage{}, nil }

// Running is how many instances run.
func (d *SimDriver) Running() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, in := range d.live {
		if !in.stopped {
			n++
		}
	}
	return n
}
