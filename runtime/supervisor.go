package runtime

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Instance states.
const (
	StatePending   = "pending"   // desired, not started yet
	StateStarting  = "starting"  // started, health not yet confirmed
	StateRunning   = "running"   // started (and healthy, if probed)
	StateUnhealthy = "unhealthy" // failed FailureThreshold probes in a row
	StateBackoff   = "backoff"   // exited; waiting to restart
	StateFailed    = "failed"    // cannot run (see Error) or exited under a policy that forbids a restart
	StateStopped   = "stopped"   // stopped on purpose, or completed under on-failure/never
)

// Config configures a Supervisor. Zero values take the defaults noted.
type Config struct {
	// Node is this node's name (for messages).
	Node string
	// DataDir is where the desired set is persisted (desired.json). Required.
	DataDir string
	// Drivers by name ("exec", "docker"); an instance whose driver is
	// missing goes failed.
	Drivers map[string]Driver
	Clock   Clock // default RealClock
	Logger  *slog.Logger
	// Registerer receives the supervisor's metrics (nil: none).
	Registerer prometheus.Registerer
	// BackoffBase is the first restart delay (default 1s); it doubles up to
	// the instance's restart.maxBackoff (default DefaultMaxBackoff).
	BackoffBase       time.Duration
	DefaultMaxBackoff time.Duration // default 30s
	// StableAfter: a run at least this long resets the backoff (default 10s).
	StableAfter time.Duration
	// StopGrace between SIGTERM and SIGKILL (default 10s).
	StopGrace time.Duration
	// UsageInterval between usage samples (default 5s).
	UsageInterval time.Duration
	// OnChange, if set, is called after any instance's status changed. It
	// must not block (copy what you need, signal a channel, return).
	OnChange func()
}

// InstanceStatus is the report of one instance.
type InstanceStatus struct {
	ID         string    `json:"id"`
	Intent     string    `json:"intent"`
	Generation uint64    `json:"generation"`
	Driver     string    `json:"driver"`
	State      string    `json:"state"`
	Restarts   int       `json:"restarts"`
	LastExit   *int      `json:"lastExitCode,omitempty"`
	Error      string    `json:"error,omitempty"`
	LimitsNote string    `json:"limitsNote,omitempty"`
	Ref        string    `json:"ref,omitempty"` // pid or container id
	StartedAt  time.Time `json:"startedAt,omitzero"`
	// NextRestart is when a backoff ends (state backoff only).
	NextRestart time.Time `json:"nextRestart,omitzero"`
	Usage       NodeUsage `json:"usage"`

	specHash string
}

// NodeUsage is resource use in the units of the node's load record.
type NodeUsage struct {
	MilliCPU    int64 `json:"milliCPU"`
	MemoryBytes int64 `json:"memoryBytes"`
}

// Supervisor is the node's local autonomic manager: it keeps the desired
// set of instances running through the drivers, restarts them with
// backoff, probes their health, persists the desired set and adopts
// instances that survived an agent restart.
//
// New starts nothing. Run owns every goroutine and returns after they have
// exited; cancelling Run's context leaves the instances running (they must
// survive agent restarts). StopAll stops everything.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	httpc   *http.Client
	restart prometheus.Counter
	wake    chan struct{} // cap 1: reconcile now

	mu sync.Mutex // guards the fields below
	// desired is the desired set by ID, in the order given.
	desired map[string]InstanceSpec
	order   []string
	// runners are the live per-instance loops by ID (at most one per ID).
	runners map[string]*runner
	// status holds reports by ID, for desired instances and runners.
	status map[string]*InstanceStatus
	active bool          // Run is running
	exited chan struct{} // closed and replaced whenever a runner exits
}

// runner is the loop keeping one instance alive.
type runner struct {
	spec  InstanceSpec
	hash  string
	drv   Driver
	adopt *Handle // running instance found at startup
	// lateList: the driver could not list its instances at startup, so the
	// runner lists them itself before starting anything (no duplicates).
	lateList bool
	cleanup  []Handle // stale instances of this ID to stop before starting
	stopC    chan struct{}
	stopOnce sync.Once

	// guarded by Supervisor.mu
	handle  *Handle
	lastCPU time.Duration
	lastAt  time.Time
}

func (r *runner) requestStop() { r.stopOnce.Do(func() { close(r.stopC) }) }

func (r *runner) stopRequested() bool {
	select {
	case <-r.stopC:
		return true
	default:
		return false
	}
}

type desiredFile struct {
	Version   int            `json:"version"`
	Instances []InstanceSpec `json:"instances"`
}

const desiredFileName = "desired.json"

// New returns a supervisor over cfg.DataDir, loading the persisted desired
// set (if any). It starts nothing.
func New(cfg Config) (*Supervisor, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("supervisor: DataDir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("supervisor: create data dir: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.DefaultMaxBackoff <= 0 {
		cfg.DefaultMaxBackoff = 30 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.UsageInterval <= 0 {
		cfg.UsageInterval = 5 * time.Second
	}
	s := &Supervisor{
		cfg:     cfg,
		log:     cfg.Logger,
		clock:   cfg.Clock,
		httpc:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		wake:    make(chan struct{}, 1),
		desired: map[string]InstanceSpec{},
		runners: map[string]*runner{},
		status:  map[string]*InstanceStatus{},
		exited:  make(chan struct{}),
		restart: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_runtime_restarts_total", Help: "Instance restarts by the local supervisor."}),
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, desiredFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("supervisor: read desired set: %w", err)
	default:
		var df desiredFile
		if err := json.Unmarshal(b, &df); err != nil {
			return nil, fmt.Errorf("supervisor: decode %s: %w (remove the file to start with an empty desired set)", filepath.Join(cfg.DataDir, desiredFileName), err)
		}
		// A leased instance's lease ended with the agent that held it: it is not
		// started again (and, found running, it is stopped) until the agent is told
		// again that it holds a lease.
		kept := df.Instances[:0]
		var fenced []string
		for _, sp := range df.Instances {
			if sp.Leased {
				fenced = append(fenced, sp.ID)
				continue
			}
			kept = append(kept, sp)
		}
		if len(fenced) > 0 {
			s.log.Info("supervisor: leased instances are not restarted from the persisted desired set; they run again once a lease is held", "instances", fenced)
		}
		if err := s.applyDesiredLocked(kept); err != nil {
			return nil, fmt.Errorf("supervisor: persisted desired set: %w", err)
		}
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.restart); err != nil {
			return nil, fmt.Errorf("supervisor: register metrics: %w", err)
		}
		if err := cfg.Registerer.Register(stateCollector{s}); err != nil {
			return nil, fmt.Errorf("supervisor: register metrics: %w", err)
		}
	}
	return s, nil
}

// SetDesired replaces the desired set of this node and persists it (fsync)
// before applying it. Instances are identified by ID; a changed spec
// (including its generation) replaces the running instance. Specs that
// cannot run are accepted and reported failed; only duplicate IDs reject
// the whole call.
func (s *Supervisor) SetDesired(specs []InstanceSpec) error {
	seen := make(map[string]bool, len(specs))
	cp := make([]InstanceSpec, len(specs))
	for i, sp := range specs {
		if seen[sp.ID] {
			return fmt.Errorf("set desired: duplicate instance id %q; ids must be unique on a node", sp.ID)
		}
		seen[sp.ID] = true
		cp[i] = sp.clone()
	}
	b, err := json.MarshalIndent(desiredFile{Version: 1, Instances: cp}, "", "  ")
	if err != nil {
		return fmt.Errorf("set desired: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(s.cfg.DataDir, desiredFileName), b, 0o644); err != nil {
		return fmt.Errorf("set desired: persist: %w", err)
	}
	s.mu.Lock()
	err = s.applyDesiredLocked(cp)
	s.mu.Unlock()
	s.poke()
	s.notify()
	return err
}

func (s *Supervisor) applyDesiredLocked(specs []InstanceSpec) error {
	s.desired = make(map[string]InstanceSpec, len(specs))
	s.order = s.order[:0]
	for _, sp := range specs {
		if _, dup := s.desired[sp.ID]; dup {
			return fmt.Errorf("duplicate instance id %q", sp.ID)
		}
		s.desired[sp.ID] = sp
		s.order = append(s.order, sp.ID)
		if _, ok := s.status[sp.ID]; !ok {
			s.status[sp.ID] = &InstanceStatus{ID: sp.ID, Intent: sp.Intent, Generation: sp.Generation, Driver: sp.Driver, State: StatePending, specHash: sp.Hash()}
		}
	}
	for id := range s.status {
		if _, ok := s.desired[id]; !ok && s.runners[id] == nil {
			delete(s.status, id)
		}
	}
	return nil
}

// Desired returns a copy of the desired set.
func (s *Supervisor) Desired() []InstanceSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InstanceSpec, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.desired[id].clone())
	}
	return out
}

// Instances returns the report of every desired or still-running instance,
// sorted by ID.
func (s *Supervisor) Instances() []InstanceStatus {
	s.mu.Lock()
	out := make([]InstanceStatus, 0, len(s.status))
	for _, st := range s.status {
		c := *st
		if st.LastExit != nil {
			v := *st.LastExit
			c.LastExit = &v
		}
		out = append(out, c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Usage is the sum of the instances' last usage samples, for the node's
// load record.
func (s *Supervisor) Usage() NodeUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var u NodeUsage
	for _, st := range s.status {
		u.MilliCPU += st.Usage.MilliCPU
		u.MemoryBytes += st.Usage.MemoryBytes
	}
	return u
}

func (s *Supervisor) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Supervisor) notify() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

// update changes the status of id under the lock and notifies.
func (s *Supervisor) update(id string, f func(st *InstanceStatus)) {
	s.mu.Lock()
	st, ok := s.status[id]
	if !ok {
		st = &InstanceStatus{ID: id}
		s.status[id] = st
	}
	f(st)
	s.mu.Unlock()
	s.notify()
}

// Run adopts surviving instances, then reconciles until ctx ends. It
// returns after every goroutine it started has exited; instances keep
// running.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.active {
		s.mu.Unlock()
		return errors.New("supervisor: Run called twice")
	}
	s.active = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active = false
		s.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	found, unlisted := s.discover(ctx)

	wg.Add(1)
	go func() {
		defer wg.Done()
		s.usageLoop(ctx)
	}()

	for {
		s.reconcile(ctx, &wg, found, unlisted)
		found, unlisted = nil, nil
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// discover lists what the drivers hold for this node, by instance ID.
func (s *Supervisor) discover(ctx context.Context) (found map[string][]Handle, unlisted map[string]bool) {
	found, unlisted = map[string][]Handle{}, map[string]bool{}
	names := make([]string, 0, len(s.cfg.Drivers))
	for n := range s.cfg.Drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		hs, err := s.cfg.Drivers[n].List(ctx)
		if err != nil {
			s.log.Warn("supervisor: list instances; will retry before starting any", "driver", n, "err", err)
			unlisted[n] = true
			continue
		}
		for _, h := range hs {
			found[h.InstanceID] = append(found[h.InstanceID], h)
		}
	}
	return found, unlisted
}

// reconcile starts runners for desired instances that have none and asks
// runners of unwanted or changed instances to stop. found (first pass
// only) holds surviving instances to adopt or stop.
func (s *Supervisor) reconcile(ctx context.Context, wg *sync.WaitGroup, found map[string][]Handle, unlisted map[string]bool) {
	s.mu.Lock()
	var start []*runner
	for id, r := range s.runners {
		if sp, ok := s.desired[id]; !ok || sp.Hash() != r.hash {
			r.requestStop()
		}
	}
	for _, id := range s.order {
		if s.runners[id] != nil {
			continue
		}
		sp := s.desired[id]
		r := &runner{spec: sp, hash: sp.Hash(), drv: s.cfg.Drivers[sp.Driver], stopC: make(chan struct{}), lateList: unlisted[sp.Driver]}
		if st := s.status[id]; st != nil && st.specHash != r.hash {
			*st = InstanceStatus{ID: id, Intent: sp.Intent, Generation: sp.Generation, Driver: sp.Driver, State: StatePending, specHash: r.hash}
		}
		for _, h := range found[id] {
			if r.adopt == nil && h.Running && h.Driver == sp.Driver && h.Generation == sp.Generation && h.SpecHash == r.hash {
				hc := h
				r.adopt = &hc
				continue
			}
			r.cleanup = append(r.cleanup, h)
		}
		delete(found, id)
		s.runners[id] = r
		start = append(start, r)
	}
	// Instances no longer desired: a runner stops each, then exits.
	for id, hs := range found {
		r := &runner{spec: InstanceSpec{ID: id}, cleanup: hs, stopC: make(chan struct{})}
		r.requestStop()
		if s.runners[id] == nil {
			s.runners[id] = r
			start = append(start, r)
		}
	}
	s.mu.Unlock()
	for _, r := range start {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runInstance(ctx, r)
		}()
	}
}

func (s *Supervisor) runnerExited(r *runner) {
	s.mu.Lock()
	id := r.spec.ID
	if s.runners[id] == r {
		delete(s.runners, id)
	}
	if _, ok := s.desired[id]; !ok {
		delete(s.status, id)
	}
	close(s.exited)
	s.exited = make(chan struct{})
	s.mu.Unlock()
	s.poke()
	s.notify()
}

// runInstance keeps one instance alive until it is asked to stop (stops
// it) or ctx ends (leaves it running).
func (s *Supervisor) runInstance(ctx context.Context, r *runner) {
	defer s.runnerExited(r)
	id := r.spec.ID
	for _, h := range r.cleanup {
		if err := h.stopWith(ctx, s.cfg.Drivers[h.Driver], s.cfg.StopGrace); err != nil {
			s.log.Warn("supervisor: stop stale instance", "instance", id, "ref", h.Ref, "err", err)
		}
	}
	if r.stopRequested() || ctx.Err() != nil {
		return
	}
	if r.drv == nil {
		s.fail(id, fmt.Sprintf("driver %s is not available on node %s", r.spec.Driver, s.cfg.Node))
		s.park(ctx, r)
		return
	}
	if err := r.spec.Validate(); err != nil {
		s.fail(id, err.Error())
		s.park(ctx, r)
		return
	}
	policy := r.spec.restartPolicy()
	maxBackoff := r.spec.Restart.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = s.cfg.DefaultMaxBackoff
	}
	backoff := s.cfg.BackoffBase
	health := healthDefaults(r.spec.Health)
	upState := StateRunning
	if r.spec.Health.Enabled() {
		upState = StateStarting
	}

	for r.lateList {
		hs, err := r.drv.List(ctx)
		if err == nil {
			r.lateList = false
			for _, h := range hs {
				if h.InstanceID != id {
					continue
				}
				if r.adopt == nil && h.Running && h.Generation == r.spec.Generation && h.SpecHash == r.hash {
					hc := h
					r.adopt = &hc
				} else if err := r.drv.Stop(context.WithoutCancel(ctx), h, s.cfg.StopGrace); err != nil {
					s.log.Warn("supervisor: stop stale instance", "instance", id, "ref", h.Ref, "err", err)
				}
			}
			break
		}
		msg := fmt.Sprintf("cannot list %s instances, so not starting yet (no duplicates): %v", r.spec.Driver, err)
		s.update(id, func(st *InstanceStatus) { st.Error = msg })
		if !s.backoffWait(ctx, r, &backoff, maxBackoff) {
			return
		}
	}
	var h Handle
	var startedAt time.Time
	if r.adopt != nil {
		h = *r.adopt
		startedAt = s.clock.Now()
		s.setHandle(r, &h, upState)
		s.log.Info("supervisor: adopted instance", "instance", id, "ref", h.Ref)
	}
	for {
		if r.adopt == nil || h.Ref == "" {
			s.update(id, func(st *InstanceStatus) { st.State = StateStarting; st.NextRestart = time.Time{} })
			var err error
			h, err = r.drv.Start(ctx, r.spec)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, ErrInvalidSpec) {
					s.fail(id, err.Error())
					s.park(ctx, r)
					return
				}
				s.log.Warn("supervisor: start instance", "instance", id, "err", err)
				s.update(id, func(st *InstanceStatus) { st.Error = err.Error() })
				if !s.backoffWait(ctx, r, &backoff, maxBackoff) {
					return
				}
				continue
			}
			// Before the state is published: whoever sees "running" may already
			// move the clock on (a stable run resets the backoff).
			startedAt = s.clock.Now()
			s.setHandle(r, &h, upState)
		}
		r.adopt = nil

		out := s.watch(ctx, r, h, health)
		switch out.kind {
		case outCtx:
			return
		case outStop:
			if err := r.drv.Stop(context.WithoutCancel(ctx), h, cmp.Or(r.spec.StopGrace, s.cfg.StopGrace)); err != nil {
				s.log.Warn("supervisor: stop instance", "instance", id, "err", err)
			}
			s.update(id, func(st *InstanceStatus) { st.State = StateStopped; st.Usage = NodeUsage{} })
			s.setHandle(r, nil, "")
			return
		}
		// Exited or unhealthy: clean up what the driver holds.
		if err := r.drv.Stop(context.WithoutCancel(ctx), h, s.cfg.StopGrace); err != nil {
			s.log.Warn("supervisor: clean up exited instance", "instance", id, "err", err)
		}
		s.setHandle(r, nil, "")
		code := out.exit.Code
		reason := fmt.Sprintf("exited with code %d", code)
		if out.exit.Signal != "" {
			reason = "killed by " + out.exit.Signal
		}
		if out.exit.OOMKilled {
			reason += " (out of memory)"
		}
		failure := code != 0
		if out.kind == outUnhealthy {
			reason, failure = "restarted after failing health checks: "+out.err, true
		}
		s.update(id, func(st *InstanceStatus) {
			c := code
			st.LastExit = &c
			st.Error = reason
			st.Usage = NodeUsage{}
		})
		s.log.Info("supervisor: instance ended", "instance", id, "reason", reason)
		if policy == RestartNever || (policy == RestartOnFailure && !failure) {
			state := StateStopped
			if failure {
				state = StateFailed
			}
			s.update(id, func(st *InstanceStatus) { st.State = state })
			s.park(ctx, r)
			return
		}
		if s.clock.Now().Sub(startedAt) >= s.cfg.StableAfter {
			backoff = s.cfg.BackoffBase
		}
		if !s.backoffWait(ctx, r, &backoff, maxBackoff) {
			return
		}
		s.restart.Inc()
		s.update(id, func(st *InstanceStatus) { st.Restarts++ })
	}
}

// stopWith stops h with drv; a missing driver is an error.
func (h Handle) stopWith(ctx context.Context, drv Driver, grace time.Duration) error {
	if drv == nil {
		return fmt.Errorf("driver %s is not available", h.Driver)
	}
	return drv.Stop(context.WithoutCancel(ctx), h, grace)
}

func (s *Supervisor) setHandle(r *runner, h *Handle, state string) {
	s.mu.Lock()
	r.handle = h
	r.lastAt = time.Time{}
	st := s.status[r.spec.ID]
	if st == nil {
		st = &InstanceStatus{ID: r.spec.ID}
		s.status[r.spec.ID] = st
	}
	st.Intent, st.Generation, st.Driver = r.spec.Intent, r.spec.Generation, r.spec.Driver
	if h != nil {
		st.State = state
		st.Ref = h.Ref
		st.StartedAt = h.StartedAt
		st.LimitsNote = h.LimitsNote
		st.NextRestart = time.Time{}
	} else {
		st.Ref = ""
	}
	s.mu.Unlock()
	s.notify()
}

func (s *Supervisor) fail(id, reason string) {
	s.log.Warn("supervisor: instance failed", "instance", id, "reason", reason)
	s.update(id, func(st *InstanceStatus) { st.State = StateFailed; st.Error = reason })
}

// park holds a finished runner until it is asked to stop or ctx ends, so
// that its report stays and the instance is not started again until its
// spec changes.
func (s *Supervisor) park(ctx context.Context, r *runner) {
	select {
	case <-ctx.Done():
	case <-r.stopC:
		s.update(r.spec.ID, func(st *InstanceStatus) { st.State = StateStopped })
	}
}

// backoffWait waits *backoff in state backoff and doubles it (capped). It
// returns false when the runner must exit.
func (s *Supervisor) backoffWait(ctx context.Context, r *runner, backoff *time.Duration, max time.Duration) bool {
	d := min(*backoff, max)
	t := s.clock.NewTimer(d) // before the state change, so observers of "backoff" find the timer armed
	defer t.Stop()
	s.update(r.spec.ID, func(st *InstanceStatus) { st.State = StateBackoff; st.NextRestart = s.clock.Now().Add(d) })
	select {
	case <-ctx.Done():
		return false
	case <-r.stopC:
		s.update(r.spec.ID, func(st *InstanceStatus) { st.State = StateStopped; st.NextRestart = time.Time{} })
		return false
	case <-t.C():
	}
	*backoff = min(2*d, max)
	return true
}

type outcomeKind int

const (
	outExited outcomeKind = iota
	outUnhealthy
	outStop
	outCtx
)

type outcome struct {
	kind outcomeKind
	exit ExitStatus
	err  string
}

// watch waits for the instance to exit, become unhealthy (when its policy
// allows a restart), be asked to stop, or ctx to end.
func (s *Supervisor) watch(ctx context.Context, r *runner, h Handle, health HealthSpec) outcome {
	wctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()

	exitC := make(chan ExitStatus, 1)
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			es, err := r.drv.Wait(wctx, h)
			if err == nil {
				exitC <- es
				return
			}
			if wctx.Err() != nil {
				return
			}
			s.log.Warn("supervisor: wait for instance; retrying", "instance", r.spec.ID, "err", err)
			t := s.clock.NewTimer(time.Second)
			select {
			case <-wctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
	}()

	var tick <-chan time.Time
	var timer Timer
	probeC := make(chan error, 1)
	probing := false
	fails := 0
	if r.spec.Health.Enabled() {
		timer = s.clock.NewTimer(health.Interval)
		tick = timer.C()
		defer func() { timer.Stop() }()
	}
	for {
		select {
		case <-ctx.Done():
			return outcome{kind: outCtx}
		case <-r.stopC:
			return outcome{kind: outStop}
		case es := <-exitC:
			return outcome{kind: outExited, exit: es}
		case <-tick:
			tick = nil
			if !probing {
				probing = true
				bg.Add(1)
				go func() {
					defer bg.Done()
					probeC <- probe(wctx, s.httpc, r.drv, h, health)
				}()
			}
		case err := <-probeC:
			probing = false
			timer = s.clock.NewTimer(health.Interval)
			tick = timer.C()
			if err == nil {
				fails = 0
				s.update(r.spec.ID, func(st *InstanceStatus) {
					if st.State == StateStarting || st.State == StateUnhealthy {
						st.State = StateRunning
					}
				})
				continue
			}
			fails++
			if fails < health.FailureThreshold {
				continue
			}
			msg := err.Error()
			s.update(r.spec.ID, func(st *InstanceStatus) { st.State = StateUnhealthy; st.Error = msg })
			if r.spec.restartPolicy() != RestartNever {
				return outcome{kind: outUnhealthy, exit: ExitStatus{Code: -1}, err: msg}
			}
		}
	}
}

// usageLoop samples every live instance's usage each UsageInterval.
func (s *Supervisor) usageLoop(ctx context.Context) {
	for {
		t := s.clock.NewTimer(s.cfg.UsageInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		s.SampleUsage(ctx)
	}
}

// SampleUsage takes one usage sample of every live instance now (Run does
// this every UsageInterval). Milli-CPU is the CPU time consumed since the
// previous sample over the time elapsed, so the first sample of an
// instance reports memory only.
func (s *Supervisor) SampleUsage(ctx context.Context) {
	type item struct {
		r *runner
		h Handle
	}
	s.mu.Lock()
	items := make([]item, 0, len(s.runners))
	for _, r := range s.runners {
		if r.handle != nil && r.drv != nil {
			items = append(items, item{r, *r.handle})
		}
	}
	s.mu.Unlock()
	for _, it := range items {
		u, err := it.r.drv.Usage(ctx, it.h)
		if err != nil {
			continue // exited meanwhile; the runner reports it
		}
		now := s.clock.Now()
		s.mu.Lock()
		if it.r.handle != nil && it.r.handle.Ref == it.h.Ref {
			st := s.status[it.r.spec.ID]
			if st != nil {
				st.Usage.MemoryBytes = u.MemoryBytes
				if !it.r.lastAt.IsZero() && now.After(it.r.lastAt) && u.CPUTime >= it.r.lastCPU {
					st.Usage.MilliCPU = int64((u.CPUTime - it.r.lastCPU) * 1000 / now.Sub(it.r.lastAt))
				}
			}
			it.r.lastCPU, it.r.lastAt = u.CPUTime, now
		}
		s.mu.Unlock()
	}
	s.notify()
}

// StopAll empties the desired set (persisted), stops every instance and
// removes what the drivers hold for this node, including instances no
// runner knows. For drain and tests; Run may or may not be running.
func (s *Supervisor) StopAll(ctx context.Context) error {
	if err := s.SetDesired(nil); err != nil {
		return fmt.Errorf("stop all: %w", err)
	}
	for {
		s.mu.Lock()
		n := len(s.runners)
		exited := s.exited
		active := s.active
		for _, r := range s.runners {
			r.requestStop()
		}
		s.mu.Unlock()
		if n == 0 || !active {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop all: %w", ctx.Err())
		case <-exited:
		}
	}
	var errs []error
	for name, drv := range s.cfg.Drivers {
		hs, err := drv.List(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("stop all: list %s: %w", name, err))
			continue
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		sem := make(chan struct{}, 16)
		for _, h := range hs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := drv.Stop(ctx, h, s.cfg.StopGrace); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop all: %w", err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// stateCollector exports the number of instances per state.
type stateCollector struct{ s *Supervisor }

var instancesDesc = prometheus.NewDesc("murmur_runtime_instances", "Local instances by state.", []string{"state"}, nil)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- instancesDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, st := range []string{StatePending, StateStarting, StateRunning, StateUnhealthy, StateBackoff, StateFailed, StateStopped} {
		counts[st] = 0
	}
	for _, in := range c.s.Instances() {
		counts[in.State]++
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(n), st)
	}
}
