package coordinator

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
)

// offloadRig is a region of one small node ("hot", 1000m) and two big ones, with a
// Policy offloading above 80 % CPU after 2 s, cooldown 10 s. Instances are put in the
// table directly, so the test decides where they run.
type offloadRig struct {
	*harness
	seq uint64
}

func newOffloadRig(t *testing.T) *offloadRig {
	h := newHarness(t)
	r := &offloadRig{harness: h}
	for _, n := range []struct {
		name string
		cpu  int64
	}{{"hot", 1000}, {"cool1", 4000}, {"cool2", 4000}} {
		r.member(n.name, n.cpu, 0.1)
	}
	above := 0.8
	h.version++
	h.intents.put(intents.LiveIntent{Intent: &policy.Intent{APIVersion: policy.APIVersion, Kind: policy.KindPolicy,
		Metadata: policy.Metadata{Name: "site"}, Policy: &policy.PolicySpec{Offload: &policy.Offload{CPUAbove: &above, SustainedFor: "2s", Cooldown: "10s"}}},
		Version: policy.Version{Wall: h.version, Node: "op"}})
	return r
}

// member sets a node of the region with capacity cpu (milli) and CPU load.
func (r *offloadRig) member(name string, cpu int64, load float64) {
	r.fleet.set(gossip.Member{Name: name, Region: "r1", Status: gossip.StatusAlive, MilliCPU: cpu, MemoryBytes: 4 << 30,
		Load: gossip.Load{CPU: load, Memory: 0.1}, Drivers: []string{"exec"}, Health: gossip.HealthOK, StatusSince: r.clock.Now()})
}

// workload adds a Workload intent (1 replica, 200m) and its instance <name>-1-0 on node.
func (r *offloadRig) workload(name, node string, priority int) {
	r.version++
	one := 1
	v := policy.Version{Wall: r.version, Node: "op"}
	r.intents.put(intents.LiveIntent{Intent: &policy.Intent{APIVersion: policy.APIVersion, Kind: policy.KindWorkload,
		Metadata: policy.Metadata{Name: name}, Workload: &policy.WorkloadSpec{Mode: policy.ModeReplicated, Replicas: &one, Driver: "exec",
			Command: []string{"/bin/true"}, Priority: &priority, Resources: policy.Resources{CPU: "200m", Memory: "64Mi"}}},
		Version: v})
	r.raft.mu.Lock()
	r.raft.st.Placements[name+"-1-0"] = region.Placement{ID: name + "-1-0", Workload: name, Node: node, Version: v, Generation: 1}
	r.raft.st.Generation, r.raft.st.Index = 1, 1
	r.raft.mu.Unlock()
}

// report makes node report its assigned instances in state, each using milliCPU.
func (r *offloadRig) report(node, state string, milliCPU int64) {
	st := r.raft.State()
	set := Assignments(st)[node]
	r.seq++
	rep := Report{Seq: r.seq, Node: node, Region: "r1", Term: r.raft.Term(), Generation: st.Generation, Digest: Digest(set)}
	for _, a := range set {
		rep.Instances = append(rep.Instances, InstanceReport{ID: a.ID, Intent: a.Intent, Generation: a.Generation, State: state,
			Since: r.clock.Now(), MilliCPU: milliCPU, MemoryBytes: 64 << 20})
	}
	r.c.HandleReport(rep)
}

// step is one turn of the leader loop as it runs after a signal; it returns when the
// loop would wake next and what was committed.
func (r *offloadRig) step(dirty, fleetOnly bool) (time.Time, []region.Command) {
	before := len(r.raft.commits)
	var next time.Time
	for range 5 {
		again, n := r.c.step(context.Background(), r.ls, dirty, fleetOnly)
		next = n
		if !again {
			break
		}
		dirty, fleetOnly = true, false
	}
	r.ls.wg.Wait()
	for len(r.ls.results) > 0 {
		r.c.sendDone(r.ls, <-r.ls.results)
	}
	r.raft.mu.Lock()
	defer r.raft.mu.Unlock()
	return next, slices.Clone(r.raft.commits[before:])
}

// wake is the loop's timer firing at the time step asked for: it plans when a recheck
// is due (the loop's rule), otherwise it only delivers.
func (r *offloadRig) wake() []region.Command {
	due := !r.ls.recheckAt.IsZero() && !r.clock.Now().Before(r.ls.recheckAt)
	_, cmds := r.step(due, false)
	return cmds
}

func migrations(cmds []region.Command) []region.Placement {
	var out []region.Placement
	for _, c := range cmds {
		if c.Plan == nil {
			continue
		}
		for _, p := range c.Plan.Places {
			if p.Replaces != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// moves counts what cmds start or stop (a plan may also only record why work is
// unplaced).
func moves(cmds []region.Command) int {
	n := 0
	for _, c := range cmds {
		if c.Plan != nil {
			n += len(c.Plan.Places) + len(c.Plan.Stops)
		}
	}
	return n
}

func stops(cmds []region.Command) []string {
	var out []string
	for _, c := range cmds {
		if c.Plan != nil {
			out = append(out, c.Plan.Stops...)
		}
	}
	return out
}

// TestOffloadWakesOnCrossingSustainedAndCooldown: the loop ignores load samples on the
// same side of the threshold, plans when one crosses it, wakes when sustainedFor has
// passed and migrates the lowest-priority instance, stops the old one only once the
// new one runs, and wakes again when the cooldown ends to move the next one.
func TestOffloadWakesOnCrossingSustainedAndCooldown(t *testing.T) {
	r := newOffloadRig(t)
	r.workload("low", "hot", 1)
	r.workload("high", "hot", 9)
	if _, cmds := r.step(true, false); moves(cmds) != 0 {
		t.Fatalf("first plan with everything placed committed %+v", cmds)
	}
	for _, n := range []string{"hot", "cool1", "cool2"} {
		r.report(n, runtime.StateRunning, 300)
	}
	if next, cmds := r.step(false, false); moves(cmds) != 0 || !next.IsZero() {
		t.Fatalf("all running and acknowledged: commits %+v, wake at %v; want none", cmds, next)
	}

	// A load sample below the threshold: nothing to plan.
	r.member("hot", 1000, 0.7)
	if next, cmds := r.step(true, true); moves(cmds) != 0 || !next.IsZero() || !r.ls.hot["hot"].HighSince.IsZero() {
		t.Fatalf("load 0.7 < 0.8: commits %+v, wake at %v, hot %+v; want nothing", cmds, next, r.ls.hot)
	}
	// It crosses: the plan notes since when, and asks to be woken when sustainedFor ends.
	r.member("hot", 1000, 0.95)
	t0 := r.clock.Now()
	next, cmds := r.step(true, true)
	if moves(cmds) != 0 {
		t.Fatalf("hot for 0 s: committed %+v, want nothing yet", cmds)
	}
	if !r.ls.hot["hot"].HighSince.Equal(t0) || !next.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after crossing: hot %+v, wake at %v; want HighSince %v and a wake at +2s", r.ls.hot, next, t0)
	}
	// Samples that stay above do not plan again or move HighSince.
	r.clock.Advance(time.Second)
	r.member("hot", 1000, 0.97)
	if next2, cmds := r.step(true, true); moves(cmds) != 0 || !next2.Equal(next) || !r.ls.hot["hot"].HighSince.Equal(t0) {
		t.Fatalf("still hot at +1s: commits %+v, wake %v, hot %+v", cmds, next2, r.ls.hot)
	}
	r.clock.Advance(999 * time.Millisecond)
	if cmds := r.wake(); moves(cmds) != 0 {
		t.Fatalf("at +1.999s: committed %+v, want nothing before sustainedFor", cmds)
	}
	r.clock.Advance(time.Millisecond)
	cmds = r.wake()
	moved := migrations(cmds)
	if len(moved) != 1 || moved[0].Replaces != "low-1-0" || moved[0].Node == "hot" {
		t.Fatalf("at +2s: committed %+v, want low-1-0 (the lowest priority) migrated off hot", cmds)
	}
	newID, tm := moved[0].ID, r.clock.Now()
	if got := r.raft.State().LastOffload["hot"]; !got.Equal(tm) {
		t.Errorf("committed LastOffload[hot] = %v, want %v", got, tm)
	}

	// Two-phase: the old one stays while the new one starts (a health-checked workload
	// is "starting" until its first probe passes), and stops once it runs.
	r.report(moved[0].Node, runtime.StateStarting, 0)
	if _, cmds := r.step(false, false); len(stops(cmds)) != 0 {
		t.Fatalf("new instance starting: committed %+v, want the old one kept", cmds)
	}
	r.report(moved[0].Node, runtime.StateRunning, 0)
	if _, cmds := r.step(false, false); !slices.Equal(stops(cmds), []string{"low-1-0"}) {
		t.Fatalf("new instance %s running: committed %+v, want low-1-0 stopped", newID, cmds)
	}
	r.report("hot", runtime.StateRunning, 300)

	// hot stays hot: the cooldown holds the next move, and the loop wakes at its end.
	next, cmds = r.step(true, false)
	if len(migrations(cmds)) != 0 || !next.Equal(tm.Add(10*time.Second)) {
		t.Fatalf("in cooldown: committed %+v, wake at %v; want nothing and a wake at %v", cmds, next, tm.Add(10*time.Second))
	}
	r.clock.Advance(10*time.Second - time.Millisecond)
	r.member("hot", 1000, 0.96)
	if _, cmds := r.step(true, true); moves(cmds) != 0 {
		t.Fatalf("a load sample 1 ms before the cooldown ends: committed %+v", cmds)
	}
	r.clock.Advance(time.Millisecond)
	moved = migrations(r.wake())
	if len(moved) != 1 || moved[0].Replaces != "high-1-0" || moved[0].Node == "hot" {
		t.Fatalf("cooldown over: migrations %+v, want high-1-0 moved off hot", moved)
	}
}

// TestOffloadNobodyHasHeadroom: a hot node whose neighbours would all go over the
// threshold keeps its work, and /v1/workloads says why, once.
func TestOffloadNobodyHasHeadroom(t *testing.T) {
	r := newOffloadRig(t)
	r.member("cool1", 4000, 0.76)
	r.member("cool2", 4000, 0.78)
	r.workload("low", "hot", 1)
	r.step(true, false)
	for _, n := range []string{"hot", "cool1", "cool2"} {
		r.report(n, runtime.StateRunning, 300)
	}
	r.member("hot", 1000, 0.95)
	r.step(true, true)
	r.clock.Advance(2 * time.Second)
	if cmds := r.wake(); moves(cmds) != 0 {
		t.Fatalf("nobody has headroom: committed %+v, want nothing", cmds)
	}
	v, ok := r.c.View("")
	if !ok || len(v.Intents) != 1 {
		t.Fatalf("view = %+v, %v", v, ok)
	}
	s := v.Intents[0]
	if !strings.HasPrefix(s.Reason, "cannot offload low-1-0: ") || strings.Contains(s.Reason, "cannot move") || s.Unplaced != 0 || s.Running != 1 {
		t.Errorf("summary = %+v; want running 1, nothing unplaced, reason \"cannot offload low-1-0: …\"", s)
	}
	if !strings.Contains(s.Reason, "offload threshold") {
		t.Errorf("reason %q does not name the offload threshold filter", s.Reason)
	}
}

// TestOffloadCountsMeasuredUsage: the move must fit with what the instance really uses
// (its report), not only its request: 200m requested but 600m used does not fit on a
// 1000m neighbour at 0.3 (0.3 + 0.6 > 0.8), though the request alone would (0.5).
func TestOffloadCountsMeasuredUsage(t *testing.T) {
	r := newOffloadRig(t)
	r.member("cool1", 1000, 0.3)
	r.member("cool2", 1000, 0.3)
	r.workload("burn", "hot", 1)
	r.step(true, false)
	r.report("cool1", runtime.StateRunning, 0)
	r.report("cool2", runtime.StateRunning, 0)
	r.report("hot", runtime.StateRunning, 600)
	r.member("hot", 1000, 0.95)
	r.step(true, true)
	r.clock.Advance(2 * time.Second)
	if cmds := r.wake(); moves(cmds) != 0 {
		t.Fatalf("600m used does not fit anywhere: committed %+v", cmds)
	}
	// The same instance measured at 100m fits (0.3 + max(0.2 requested, 0.1) ≤ 0.8). A
	// new usage alone does not call for a plan (only states do); the safety tick plans.
	r.report("hot", runtime.StateRunning, 100)
	if _, cmds := r.step(true, false); len(migrations(cmds)) != 1 || migrations(cmds)[0].Replaces != "burn-1-0" {
		t.Fatalf("100m used fits: committed %+v, want burn-1-0 migrated", cmds)
	}
}

// TestHandoverWaitsForHealthy: with the real supervisor, an instance whose health
// check has not passed yet is reported "starting", so the instance it replaces keeps
// running; once the probe passes it is "running" and the old one is handed over.
func TestHandoverWaitsForHealthy(t *testing.T) {
	var healthy atomic.Bool
	var probes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probes.Add(1)
		if !healthy.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	changed := make(chan struct{}, 1)
	sup, err := runtime.New(runtime.Config{Node: "n1", DataDir: t.TempDir(), Drivers: map[string]runtime.Driver{runtime.DriverExec: &idleDriver{}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), UsageInterval: time.Hour,
		OnChange: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	l, err := NewLocal(LocalConfig{Node: "n1", Region: "r1", DataDir: t.TempDir(), Supervisor: sup, Intents: newFakeIntents(),
		Send: func(string, []byte) error { return nil }, CoordinatorName: func() string { return "" }, SetState: func(k, v string) {}})
	if err != nil {
		t.Fatal(err)
	}
	w := &policy.WorkloadSpec{Driver: "exec", Command: []string{"/bin/serve"}, Health: &policy.Health{HTTP: srv.URL, Interval: "10ms", Timeout: "1s"}}
	if err := sup.SetDesired([]runtime.InstanceSpec{Spec(Assigned{ID: "w-2-0", Intent: "w", Generation: 2}, w)}); err != nil {
		t.Fatal(err)
	}
	st := region.NewState()
	st.Placements["w-1-0"] = region.Placement{ID: "w-1-0", Workload: "w", Node: "a", Generation: 1}
	st.Placements["w-2-0"] = region.Placement{ID: "w-2-0", Workload: "w", Node: "n1", Generation: 2, Replaces: "w-1-0"}

	state := func() string {
		for _, ir := range l.Report().Instances {
			if ir.ID == "w-2-0" {
				return ir.State
			}
		}
		return ""
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !cond() {
			select {
			case <-changed:
			case <-time.After(20 * time.Millisecond): // probes do not notify; poll them
			case <-deadline:
				t.Fatalf("timed out waiting for %s (state %q, probes %d)", what, state(), probes.Load())
			}
		}
	}
	waitFor("two failed probes", func() bool { return probes.Load() >= 2 && state() == runtime.StateStarting })
	if got := Handovers(st, map[string]Report{"n1": l.Report()}); len(got) != 0 {
		t.Fatalf("replacement started but not healthy yet: Handovers = %v, want none", got)
	}
	healthy.Store(true)
	waitFor("the first healthy probe", func() bool { return state() == runtime.StateRunning })
	if got := Handovers(st, map[string]Report{"n1": l.Report()}); !slices.Equal(got, []string{"w-1-0"}) {
		t.Fatalf("replacement healthy: Handovers = %v, want [w-1-0]", got)
	}
}

// idleDriver starts instances that run until stopped and use nothing.
type idleDriver struct {
	mu   sync.Mutex
	n    int
	stop map[string]chan struct{}
}

func (d *idleDriver) Name() string { return runtime.DriverExec }
func (d *idleDriver) Start(_ context.Context, sp runtime.InstanceSpec) (runtime.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if d.stop == nil {
		d.stop = map[string]chan struct{}{}
	}
	ref := sp.ID + "#" + strconv.Itoa(d.n)
	d.stop[ref] = make(chan struct{})
	return runtime.Handle{Driver: runtime.DriverExec, InstanceID: sp.ID, Intent: sp.Intent, Generation: sp.Generation, Ref: ref, StartedAt: time.Now()}, nil
}
func (d *idleDriver) Wait(ctx context.Context, h runtime.Handle) (runtime.ExitStatus, error) {
	d.mu.Lock()
	ch := d.stop[h.Ref]
	d.mu.Unlock()
	select {
	case <-ch:
		return runtime.ExitStatus{}, nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}
func (d *idleDriver) Stop(_ context.Context, h runtime.Handle, _ time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.stop[h.Ref]; ok {
		close(ch)
		delete(d.stop, h.Ref)
	}
	return nil
}
func (d *idleDriver) List(context.Context) ([]runtime.Handle, error) { return nil, nil }
func (d *idleDriver) Usage(context.Context, runtime.Handle) (runtime.Usage, error) {
	return runtime.Usage{}, nil
}

// TestOffloadCountsWorkNotMeasuredYet: two hot nodes, one cool node with room for one
// of their instances. The first move goes there; the cool node's load record does not
// show the moved instance for several seconds (two usage samples), and the second hot
// node, not in any cooldown, must not send its instance there meanwhile: the
// coordinator counts the unmeasured instance at what it used before the move.
func TestOffloadCountsWorkNotMeasuredYet(t *testing.T) {
	r := newOffloadRig(t)
	r.member("cool1", 1000, 0.1)
	r.member("cool2", 1000, 0.1)
	r.workload("a", "hot", 1)
	r.workload("b", "cool1", 1)
	r.step(true, false)
	for _, n := range []string{"hot", "cool1", "cool2"} {
		r.report(n, runtime.StateRunning, 600)
	}
	r.member("hot", 1000, 0.95)
	r.member("cool1", 1000, 0.95)
	r.step(true, true)
	r.clock.Advance(2 * time.Second)
	moved := migrations(r.wake())
	if len(moved) != 1 || moved[0].Node != "cool2" {
		t.Fatalf("both hot for 2s: migrations %+v, want exactly one, to cool2", moved)
	}
	target := moved[0]
	// Which hot node was relieved (the plan takes them in its own order) and which
	// one still is.
	relieved, stays, staying := "hot", "cool1", "b-1-0"
	if target.Replaces == "b-1-0" {
		relieved, stays, staying = "cool1", "hot", "a-1-0"
	}
	// The new instance starts, then runs; its node has not measured it yet.
	for _, state := range []string{runtime.StateStarting, runtime.StateRunning} {
		r.report("cool2", state, 0)
		_, cmds := r.step(true, false)
		if m := migrations(cmds); len(m) != 0 {
			t.Fatalf("%s reported %s, unmeasured: migrations %+v, want none (cool2 would go to 0.1+0.6+0.6)", target.ID, state, m)
		}
	}
	// Handed over: the old one is gone, the new one still unmeasured; its request
	// (0.2) still makes the second move too much (0.1+0.2+0.6 > 0.8). The relieved
	// node (0.3 without it) has no room either (0.3+0.6).
	r.member(relieved, 1000, 0.3)
	r.report(relieved, runtime.StateRunning, 0)
	if _, cmds := r.step(true, false); len(migrations(cmds)) != 0 {
		t.Fatalf("after the hand-over: committed %+v, want no migration", cmds)
	}
	// Measured at last: the load record says it all; still no room.
	r.clock.Advance(DefaultUsageSettle)
	r.report("cool2", runtime.StateRunning, 600)
	r.member("cool2", 1000, 0.7)
	if _, cmds := r.step(true, false); len(migrations(cmds)) != 0 {
		t.Fatalf("cool2 measured at 0.7: committed %+v, want no migration", cmds)
	}
	v, _ := r.c.View("")
	for _, s := range v.Intents {
		if s.Intent == r.raft.State().Placements[staying].Workload && !strings.HasPrefix(s.Reason, "cannot offload "+staying+": ") {
			t.Errorf("summary = %+v, want why %s stays on %s", s, staying, stays)
		}
	}
}

// The cooldown of a node an offload moved work from is in the committed state, so a
// coordinator elected next (with no bookkeeping of its own) still honours it.
func TestOffloadCooldownSurvivesFailover(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	st := region.NewState()
	st.LastOffload = map[string]time.Time{"hot": at}
	in, _ := BuildInput(Snapshot{Region: "r1", Now: at.Add(time.Second), State: st,
		Members: []gossip.Member{{Name: "hot", Region: "r1", Status: gossip.StatusAlive, Health: "ok"}, {Name: "cool", Region: "r1", Status: gossip.StatusAlive, Health: "ok"}},
		Hot:     map[string]HotState{"hot": {HighSince: at.Add(-time.Minute)}}})
	for _, n := range in.Nodes {
		want := time.Time{}
		if n.Name == "hot" {
			want = at
		}
		if !n.LastMigrationAt.Equal(want) {
			t.Errorf("node %s: LastMigrationAt %v, want %v", n.Name, n.LastMigrationAt, want)
		}
	}
}
