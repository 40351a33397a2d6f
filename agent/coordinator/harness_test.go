package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a manual clock: timers fire when Advance passes their deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    chan time.Time
	at   time.Time
	done bool
	clk  *fakeClock
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) runtime.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: f.now.Add(d), clk: f}
	if d <= 0 {
		t.c <- f.now
		t.done = true
		return t
	}
	f.timers = append(f.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock and fires every timer that is due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	keep := f.timers[:0]
	for _, t := range f.timers {
		if t.done {
			continue
		}
		if !f.now.Before(t.at) {
			t.done = true
			t.c <- f.now
			continue
		}
		keep = append(keep, t)
	}
	f.timers = keep
}

// Waiters is how many live timers there are (tests wait for a loop to block).
func (f *fakeClock) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// fakeRaft is the recording committer: Apply runs the real FSM transition on an
// in-memory state, like Nomad's scheduler harness records submitted plans.
type fakeRaft struct {
	mu       sync.Mutex
	st       region.State
	idx      uint64
	term     uint64
	leader   bool
	barriers int
	failNext error
	commits  []region.Command
	subs     []chan struct{}
	// applied, if set, receives every committed command (Run-level tests).
	applied chan region.Command
}

func newFakeRaft() *fakeRaft {
	st := region.NewState()
	st.ClusterID = "c1"
	return &fakeRaft{st: st, term: 1, leader: true}
}

func (f *fakeRaft) IsLeader() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.leader }
func (f *fakeRaft) Term() uint64   { f.mu.Lock(); defer f.mu.Unlock(); return f.term }
func (f *fakeRaft) Index() uint64  { f.mu.Lock(); defer f.mu.Unlock(); return f.st.Index }
func (f *fakeRaft) State() region.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone()
}
func (f *fakeRaft) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return ch, func() {}
}
func (f *fakeRaft) setLeader(v bool) {
	f.mu.Lock()
	f.leader = v
	if v {
		f.term++
	}
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
func (f *fakeRaft) VerifyLeader(ctx context.Context) error {
	if !f.IsLeader() {
		return region.ErrNotLeader
	}
	return nil
}

func (f *fakeRaft) Barrier(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader {
		return region.ErrNotLeader
	}
	f.barriers++
	return nil
}
func (f *fakeRaft) Apply(ctx context.Context, cmd region.Command) (uint64, error) {
	f.mu.Lock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		f.mu.Unlock()
		return 0, err
	}
	if !f.leader {
		f.mu.Unlock()
		return 0, region.ErrNotLeader
	}
	f.idx++
	idx := f.idx
	err := region.ApplyCommand(&f.st, idx, cmd)
	if err == nil {
		f.commits = append(f.commits, cmd)
	}
	ch := f.applied
	f.mu.Unlock()
	if err == nil && ch != nil {
		ch <- cmd
	}
	return idx, err
}

// fakeFleet is the gossip view.
type fakeFleet struct {
	mu      sync.Mutex
	members map[string]gossip.Member
	subs    []chan struct{}
}

func (f *fakeFleet) Members() []gossip.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]gossip.Member, 0, len(f.members))
	for _, m := range f.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
func (f *fakeFleet) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return ch, func() {}
}
func (f *fakeFleet) set(m gossip.Member) {
	f.mu.Lock()
	if f.members == nil {
		f.members = map[string]gossip.Member{}
	}
	f.members[m.Name] = m
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// fakeIntents is the intent store.
type fakeIntents struct {
	mu       sync.Mutex
	byName   map[string]intents.LiveIntent
	tombs    map[string]policy.Version
	changeCh chan struct{}
}

func (f *fakeIntents) Tombstones() map[string]policy.Version {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]policy.Version{}
	for k, v := range f.tombs {
		out[k] = v
	}
	return out
}

func newFakeIntents() *fakeIntents {
	return &fakeIntents{byName: map[string]intents.LiveIntent{}, tombs: map[string]policy.Version{}, changeCh: make(chan struct{})}
}

func (f *fakeIntents) LiveVersions() (ws, ps []intents.LiveIntent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.byName))
	for n := range f.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		li := f.byName[n]
		if li.Kind == policy.KindWorkload {
			ws = append(ws, li)
		} else {
			ps = append(ps, li)
		}
	}
	return ws, ps
}
func (f *fakeIntents) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changeCh
}
func (f *fakeIntents) Lookup(name string) (*policy.Intent, policy.Version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	li, ok := f.byName[name]
	return li.Intent, li.Version, ok
}
func (f *fakeIntents) forget(name string) {
	f.mu.Lock()
	delete(f.byName, name)
	close(f.changeCh)
	f.changeCh = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeIntents) put(li intents.LiveIntent) {
	f.mu.Lock()
	f.byName[li.Name()] = li
	delete(f.tombs, li.Name())
	close(f.changeCh)
	f.changeCh = make(chan struct{})
	f.mu.Unlock()
}

// remove deletes name: a tombstone above its last version. forget drops it without
// a tombstone (a store that never heard of it).
func (f *fakeIntents) remove(name string, v policy.Version) {
	f.mu.Lock()
	f.tombs[name] = v
	delete(f.byName, name)
	close(f.changeCh)
	f.changeCh = make(chan struct{})
	f.mu.Unlock()
}

// harness drives one region's coordinator step by step.
type harness struct {
	t       testing.TB
	clock   *fakeClock
	raft    *fakeRaft
	fleet   *fakeFleet
	intents *fakeIntents
	c       *Coordinator
	reg     *prometheus.Registry
	ls      *loopState
	version int64
	ready   atomic.Bool // ViewReady

	sendMu    sync.Mutex
	sent      []Assignment
	grants    []string
	seq       uint64 // lease renewals
	reportSeq uint64
	discard   bool // send records nothing
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, clock: newFakeClock(), raft: newFakeRaft(), fleet: &fakeFleet{}, intents: newFakeIntents(), reg: prometheus.NewRegistry()}
	h.ready.Store(true)
	c, err := New(Config{Region: "r1", Node: "n1", Raft: h.raft, Fleet: h.fleet, Intents: h.intents, Send: h.send,
		ViewReady: h.ready.Load, Clock: h.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.lead()
	return h
}

func (h *harness) send(node string, payload []byte) error {
	if h.discard {
		return nil // benchmarks: the coordinator's encoding is measured, not the harness's decoding
	}
	msg, err := Decode(payload)
	if err != nil {
		h.t.Errorf("coordinator sent an undecodable payload to %s: %v", node, err)
		return err
	}
	if g, ok := msg.(LeaseGrant); ok {
		h.sendMu.Lock()
		h.grants = append(h.grants, fmt.Sprintf("lease granted to %s (seq %d, term %d, generation %d)", node, g.Seq, g.Term, g.Generation))
		h.sendMu.Unlock()
		return nil
	}
	a, ok := msg.(Assignment)
	if !ok || a.Node != node {
		h.t.Errorf("coordinator sent %T for %q to %s", msg, a.Node, node)
	}
	h.sendMu.Lock()
	h.sent = append(h.sent, a)
	h.sendMu.Unlock()
	return nil
}

// lead starts a leadership term: a fresh loop state after a barrier.
func (h *harness) lead() {
	if err := h.c.barrier(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.ls = newLoopState()
	h.ls.term = h.raft.Term()
	h.c.beginTerm(h.ls)
}

// drainSends waits for the loop's sends and takes their results, as the leader loop
// does (more sends than the results channel holds would block otherwise).
func (h *harness) drainSends() {
	done := make(chan struct{})
	go func() { h.ls.wg.Wait(); close(done) }()
	for {
		select {
		case r := <-h.ls.results:
			h.c.sendDone(h.ls, r)
		case <-done:
			for {
				select {
				case r := <-h.ls.results:
					h.c.sendDone(h.ls, r)
				default:
					return
				}
			}
		}
	}
}

// run makes one step and renders what it committed and delivered.
func (h *harness) run(dirty bool) string {
	before := len(h.raft.commits)
	// Like the leader loop: a step that asks to plan again is followed by another.
	for range 5 {
		again, _ := h.c.step(context.Background(), h.ls, dirty, false)
		if !again {
			break
		}
		dirty = true
	}
	h.drainSends()
	var b strings.Builder
	for _, cmd := range h.raft.commits[before:] {
		p := cmd.Plan
		fmt.Fprintf(&b, "commit generation %d (base %d)\n", p.Generation, p.Base)
		why := map[string]string{}
		for _, n := range p.Why {
			why[n.Instance] = n.Cause
		}
		for _, s := range p.Stops {
			fmt.Fprintf(&b, "  stop  %s (%s)\n", s, why[s])
		}
		for _, s := range p.Hold {
			fmt.Fprintf(&b, "  hold  %s until its stop is confirmed\n", s)
		}
		for _, s := range p.Release {
			fmt.Fprintf(&b, "  release %s\n", s)
		}
		for _, pl := range p.Places {
			fmt.Fprintf(&b, "  place %s on %s (version %d, %s)\n", pl.ID, pl.Node, pl.Version.Wall, pl.Cause)
		}
		if p.SetUnplaced {
			fmt.Fprintf(&b, "  unplaced: %d entries\n", len(p.Unplaced))
			for _, u := range p.Unplaced {
				fmt.Fprintf(&b, "    %s %s x%d: %s\n", u.Workload, u.Instance, u.Count, u.Reason)
			}
		}
	}
	h.sendMu.Lock()
	sent := h.sent
	h.sent = nil
	h.sendMu.Unlock()
	sort.Slice(sent, func(i, j int) bool { return sent[i].Node < sent[j].Node })
	for _, a := range sent {
		ids := make([]string, 0, len(a.Instances))
		for _, in := range a.Instances {
			ids = append(ids, in.ID)
		}
		fmt.Fprintf(&b, "deliver %s term %d: [%s]\n", a.Node, a.Term, strings.Join(ids, " "))
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

func (h *harness) view() string {
	v, ok := h.c.View("")
	if !ok {
		return "not leading\n"
	}
	var b strings.Builder
	for _, s := range v.Intents {
		fmt.Fprintf(&b, "%s: desired %d, placed %d, running %d", s.Intent, s.Desired, s.Placed, s.Running)
		if s.Unplaced > 0 {
			fmt.Fprintf(&b, ", unplaced %d", s.Unplaced)
		}
		if s.Reason != "" {
			fmt.Fprintf(&b, " (%s)", s.Reason)
		}
		b.WriteString("\n")
	}
	for _, w := range v.Workloads {
		fmt.Fprintf(&b, "  %s on %s: %s\n", w.Instance, w.Node, w.State)
	}
	return b.String()
}

func arg(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return a.Vals[0]
		}
	}
	return def
}

func argInt(t *testing.T, d *datadriven.TestData, key string, def int) int {
	v, err := strconv.Atoi(arg(d, key, strconv.Itoa(def)))
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", d.Pos, key, arg(d, key, ""), err)
	}
	return v
}

func labels(d *datadriven.TestData) map[string]string {
	out := map[string]string{}
	for _, a := range d.CmdArgs {
		if a.Key != "label" {
			continue
		}
		for _, v := range a.Vals {
			k, val, _ := strings.Cut(v, ":")
			out[k] = val
		}
	}
	return out
}

func (h *harness) metrics(d *datadriven.TestData) string {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	want := map[string]bool{}
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			want[a.Key] = true
		}
	}
	all := arg(d, "all", "false") == "true"
	var b strings.Builder
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			name := mf.GetName()
			if len(ls) > 0 {
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Histogram != nil:
				if all || m.Histogram.GetSampleCount() > 0 {
					fmt.Fprintf(&b, "%s count %d sum %g\n", name, m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum())
				}
			case m.Counter != nil:
				if all || m.Counter.GetValue() != 0 {
					fmt.Fprintf(&b, "%s %g\n", name, m.Counter.GetValue())
				}
			case m.Gauge != nil:
				if all || m.Gauge.GetValue() != 0 {
					fmt.Fprintf(&b, "%s %g\n", name, m.Gauge.GetValue())
				}
			}
		}
	}
	if b.Len() == 0 {
		return "(none)\n"
	}
	return b.String()
}

// putWorkload stores a Workload intent at the next version.
func (h *harness) putWorkload(name string, spec *policy.WorkloadSpec) {
	h.version++
	h.intents.put(intents.LiveIntent{Intent: &policy.Intent{APIVersion: policy.APIVersion, Kind: policy.KindWorkload,
		Metadata: policy.Metadata{Name: name}, Workload: spec}, Version: policy.Version{Wall: h.version, Node: "op"}})
}

func (h *harness) handle(t *testing.T, d *datadriven.TestData) string {
	name := ""
	if len(d.CmdArgs) > 0 && len(d.CmdArgs[0].Vals) == 0 {
		name = d.CmdArgs[0].Key
	}
	switch d.Cmd {
	case "node":
		m := gossip.Member{Name: name, Region: arg(d, "region", "r1"), Status: arg(d, "status", gossip.StatusAlive),
			MilliCPU: int64(argInt(t, d, "cpu", 2000)), MemoryBytes: int64(argInt(t, d, "mem", 2048)) << 20,
			Labels: labels(d), Drivers: []string{"exec"}, StatusSince: h.clock.Now(), Health: arg(d, "health", gossip.HealthOK)}
		if m.Health == "none" {
			m.Health, m.Drivers = "", nil // no load record yet
		}
		h.fleet.set(m)
		return ""
	case "workload":
		replicas := argInt(t, d, "replicas", 1)
		spec := &policy.WorkloadSpec{Mode: arg(d, "mode", policy.ModeReplicated), Replicas: &replicas, Driver: arg(d, "driver", "exec"),
			Command: []string{"/bin/true"}, Resources: policy.Resources{CPU: policy.Quantity(arg(d, "cpu", "100m")), Memory: policy.Quantity(arg(d, "mem", "32Mi"))},
			Constraints: policy.Constraints{Labels: labels(d)}}
		if spec.Mode == policy.ModeGlobal {
			spec.Replicas = nil
		}
		if r := arg(d, "regions", ""); r != "" {
			spec.Regions = strings.Split(r, ",")
		}
		spec.Exclusive = arg(d, "exclusive", "false") == "true"
		h.putWorkload(name, spec)
		return ""
	case "policy":
		h.version++
		spec := &policy.PolicySpec{Admission: &policy.Admission{AllowedDrivers: strings.Split(arg(d, "allow-drivers", "exec"), ",")}}
		h.intents.put(intents.LiveIntent{Intent: &policy.Intent{APIVersion: policy.APIVersion, Kind: policy.KindPolicy,
			Metadata: policy.Metadata{Name: name}, Policy: spec}, Version: policy.Version{Wall: h.version, Node: "op"}})
		return ""
	case "delete":
		h.version++
		h.intents.remove(name, policy.Version{Wall: h.version, Node: "op"})
		return ""
	case "store-lacks":
		// This node's intent store does not hold name (it is behind the fleet).
		h.intents.forget(name)
		return ""
	case "advance":
		dur, err := time.ParseDuration(name)
		if err != nil {
			t.Fatalf("%s: advance %q: %v", d.Pos, name, err)
		}
		h.clock.Advance(dur)
		return ""
	case "run":
		return h.run(true)
	case "resend":
		return h.run(false)
	case "report":
		// The named nodes (default: every node) report their assigned instances running
		// and acknowledge the set.
		st := h.raft.State()
		by := Assignments(st)
		for _, m := range h.fleet.Members() {
			if name != "" && m.Name != name || !m.Up() {
				continue
			}
			set := by[m.Name]
			h.reportSeq++
			r := Report{Seq: h.reportSeq, Node: m.Name, Region: m.Region, Term: h.raft.Term(), Generation: st.Generation, Digest: Digest(set)}
			for _, a := range set {
				r.Instances = append(r.Instances, InstanceReport{ID: a.ID, Intent: a.Intent, Generation: a.Generation, State: arg(d, "state", runtime.StateRunning), Since: h.clock.Now()})
			}
			h.c.HandleReport(r)
		}
		return ""
	case "report-as":
		// The named node reports what it says, not what it was assigned: the generation
		// of the assignment it applied (generation=N) and the instances it runs
		// (running=id,id; none when empty), as after an agent restart (a fenced node)
		// or before an assignment reached it.
		r := Report{Node: name, Region: "r1", Term: h.raft.Term(), Generation: uint64(argInt(t, d, "generation", 0))}
		if ids := arg(d, "running", ""); ids != "" {
			for _, id := range strings.Split(ids, ",") {
				parts := strings.Split(id, "-")
				if len(parts) < 3 {
					t.Fatalf("%s: instance id %q: want intent-generation-index", d.Pos, id)
				}
				gen, err := strconv.ParseUint(parts[len(parts)-2], 10, 64)
				if err != nil {
					t.Fatalf("%s: instance id %q: want intent-generation-index: %v", d.Pos, id, err)
				}
				r.Instances = append(r.Instances, InstanceReport{ID: id, Intent: strings.Join(parts[:len(parts)-2], "-"),
					Generation: gen, State: runtime.StateRunning, Since: h.clock.Now()})
			}
		}
		h.reportSeq++
		r.Seq = h.reportSeq
		h.c.HandleReport(r)
		return ""
	case "renew":
		// The named node asks for its lease of exclusive workloads; the coordinator
		// verifies its leadership and grants.
		h.seq++
		h.c.HandleLease(name, LeaseRequest{Seq: h.seq, Node: name, Region: "r1", LeaseMS: int64(argInt(t, d, "lease-ms", 4000))})
		h.c.grantLeases(context.Background(), h.ls)
		h.ls.wg.Wait()
		h.sendMu.Lock()
		out := strings.Join(h.grants, "\n")
		h.grants = nil
		h.sendMu.Unlock()
		if out == "" {
			return "no grant\n"
		}
		return out + "\n"
	case "fail-next-commit":
		h.raft.mu.Lock()
		h.raft.failNext = fmt.Errorf("apply plan: %w: leadership lost while committing", region.ErrNotLeader)
		h.raft.mu.Unlock()
		return ""
	case "new-leader":
		// Another node wins the election: it commits what the old one planned from the
		// table it reads after its barrier.
		h.raft.setLeader(true)
		h.lead()
		return fmt.Sprintf("term %d, barriers %d\n", h.raft.Term(), h.raft.barriers)
	case "view-ready":
		h.ready.Store(name == "true")
		return ""
	case "forget":
		// The node is missing from this node's fleet view (not yet learned, or forgotten).
		h.fleet.mu.Lock()
		delete(h.fleet.members, name)
		h.fleet.mu.Unlock()
		return ""
	case "view":
		return h.view()
	case "metrics":
		// The metrics named in the arguments, as /metrics would show them (histograms:
		// count and sum), without the ones at 0 unless the argument says all=true.
		return h.metrics(d)
	case "table":
		st := h.raft.State()
		ids := make([]string, 0, len(st.Placements))
		for id := range st.Placements {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var b strings.Builder
		fmt.Fprintf(&b, "generation %d\n", st.Generation)
		for _, id := range ids {
			p := st.Placements[id]
			fmt.Fprintf(&b, "  %s on %s (version %d)\n", id, p.Node, p.Version.Wall)
		}
		return b.String()
	}
	t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	return ""
}

// TestScenarios runs the scripted scenarios in testdata/scenarios/*.txt (rewrite outputs with
// -rewrite after checking them).
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, filepath.Join("testdata", "scenarios"), func(t *testing.T, path string) {
		h := newHarness(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string { return h.handle(t, d) })
	})
}
