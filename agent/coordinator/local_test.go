package coordinator

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSupervisor records the desired sets it is given.
type fakeSupervisor struct {
	mu      sync.Mutex
	desired []runtime.InstanceSpec
	sets    chan []runtime.InstanceSpec
}

func (f *fakeSupervisor) SetDesired(specs []runtime.InstanceSpec) error {
	f.mu.Lock()
	f.desired = slices.Clone(specs)
	f.mu.Unlock()
	if f.sets != nil {
		f.sets <- slices.Clone(specs)
	}
	return nil
}
func (f *fakeSupervisor) Desired() []runtime.InstanceSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.desired)
}
func (f *fakeSupervisor) Instances() []runtime.InstanceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runtime.InstanceStatus
	for _, s := range f.desired {
		out = append(out, runtime.InstanceStatus{ID: s.ID, Intent: s.Intent, Generation: s.Generation, State: runtime.StateRunning})
	}
	return out
}

type localRig struct {
	l       *Local
	sup     *fakeSupervisor
	store   *fakeIntents
	dir     string
	reports chan Report
	state   chan string
}

func newLocalRig(t *testing.T, dir string) *localRig {
	t.Helper()
	r := &localRig{sup: &fakeSupervisor{sets: make(chan []runtime.InstanceSpec, 16)}, store: newFakeIntents(), dir: dir,
		reports: make(chan Report, 16), state: make(chan string, 16)}
	l, err := NewLocal(LocalConfig{
		Node: "n1", Region: "r1", DataDir: dir, Supervisor: r.sup, Intents: r.store,
		Send: func(to string, b []byte) error {
			m, err := Decode(b)
			if err != nil {
				t.Errorf("decode %s: %v", to, err)
				return err
			}
			if rep, ok := m.(Report); ok {
				r.reports <- rep
			}
			return nil
		},
		CoordinatorName: func() string { return "boss" },
		SetState:        func(k, v string) { r.state <- k + "=" + v },
		Clock:           newFakeClock(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.l = l
	return r
}

func (r *localRig) run(t *testing.T) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.l.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func (r *localRig) putWorkload(name string, wall int64) {
	one := 1
	r.store.put(intents.LiveIntent{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name},
		Workload: &policy.WorkloadSpec{Mode: "replicated", Replicas: &one, Driver: "exec", Command: []string{"/bin/sleep", "60"},
			Resources: policy.Resources{CPU: "100m", Memory: "32Mi"}, Restart: policy.Restart{Policy: "always", MaxBackoff: "10s"}}},
		Version: policy.Version{Wall: wall, Node: "x"}})
}

func assignment(term, gen uint64, ins ...Assigned) []byte {
	b, err := Encode(Assignment{Region: "r1", Cluster: "c1", Term: term, Generation: gen, Node: "n1", Digest: Digest(ins), Instances: ins})
	if err != nil {
		panic(err)
	}
	return b
}

func ids(specs []runtime.InstanceSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.ID)
	}
	return out
}

func TestLocalAppliesFencesAndPersists(t *testing.T) {
	dir := t.TempDir()
	r := newLocalRig(t, dir)
	r.putWorkload("web", 5)
	stop := r.run(t)
	web := Assigned{ID: "web-7-0", Intent: "web", Version: policy.Version{Wall: 5, Node: "x"}, Generation: 7}

	r.l.HandleMessage("boss", assignment(2, 7, web))
	set := <-r.sup.sets
	if len(set) != 1 || set[0].ID != "web-7-0" || set[0].Generation != 7 || set[0].Resources.MilliCPU != 100 ||
		set[0].Restart.MaxBackoff.String() != "10s" || !slices.Equal(set[0].Command, []string{"/bin/sleep", "60"}) {
		t.Fatalf("desired set = %+v", set)
	}
	if rep := <-r.reports; rep.Digest != Digest([]Assigned{web}) || rep.Generation != 7 || len(rep.Instances) != 1 {
		t.Errorf("report after the assignment = %+v", rep)
	}
	if st := <-r.state; st != StateKeyApplied+"="+Digest([]Assigned{web})+"@7" {
		t.Errorf("gossiped %q", st)
	}
	// Older than what was applied (a deposed coordinator): refused, nothing changes.
	r.l.HandleMessage("old", assignment(1, 9))
	r.l.HandleMessage("old", assignment(2, 6))
	// For another node: refused.
	b, _ := Encode(Assignment{Region: "r1", Node: "n2", Digest: Digest(nil)})
	r.l.HandleMessage("boss", b)
	// A newer term with a lower generation is accepted (a new leader's table).
	r.l.HandleMessage("boss2", assignment(3, 7))
	if set := <-r.sup.sets; len(set) != 0 {
		t.Errorf("after the new term's empty set: %v, want nothing", ids(set))
	}
	stop()
	if got := testutil.ToFloat64(r.l.refused); got != 3 {
		t.Errorf("refused assignments = %v, want 3", got)
	}
	if _, err := os.Stat(filepath.Join(dir, appliedFile)); err != nil {
		t.Fatal(err)
	}

	// A restart without network: the persisted assignment is applied again.
	r2 := newLocalRig(t, dir)
	r2.l.HandleMessage("boss2", assignment(3, 8, web))
	r2.putWorkload("web", 5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r2.l.Run(ctx) }()
	<-r2.sup.sets // persisted: the empty set of term 3
	if set := <-r2.sup.sets; !slices.Equal(ids(set), []string{"web-7-0"}) {
		t.Errorf("after restart and a new assignment: %v", ids(set))
	}
	cancel()
	<-done
	if d, g := r2.l.Applied(); d != Digest([]Assigned{web}) || g != 8 {
		t.Errorf("applied = %s@%d", d, g)
	}
}

// TestLocalWaitsForTheIntentBody: an assignment whose intent is not (or only at an
// older version) in the store waits; it starts when the body arrives; an instance
// already running keeps its spec.
func TestLocalWaitsForTheIntentBody(t *testing.T) {
	r := newLocalRig(t, t.TempDir())
	r.putWorkload("web", 1)
	stop := r.run(t)
	defer stop()
	a := Assigned{ID: "web-3-0", Intent: "web", Version: policy.Version{Wall: 1, Node: "x"}, Generation: 3}
	b := Assigned{ID: "db-3-0", Intent: "db", Version: policy.Version{Wall: 4, Node: "x"}, Generation: 3}
	r.l.HandleMessage("boss", assignment(1, 3, a, b))
	if set := <-r.sup.sets; !slices.Equal(ids(set), []string{"web-3-0"}) {
		t.Fatalf("with db's body missing: %v, want web only", ids(set))
	}
	if rep := <-r.reports; !slices.Equal(rep.Waiting, []string{"db-3-0"}) {
		t.Errorf("report waiting = %v, want db-3-0", rep.Waiting)
	}
	r.putWorkload("db", 3) // an older version than assigned: still waits
	if set := <-r.sup.sets; !slices.Equal(ids(set), []string{"web-3-0"}) {
		t.Fatalf("with db at an older version: %v", ids(set))
	}
	<-r.reports
	r.putWorkload("web", 9) // a newer web body must not restart the running web instance
	r.putWorkload("db", 4)
	for set := range r.sup.sets {
		if len(set) == 2 {
			if set[0].ID != "web-3-0" || set[1].ID != "db-3-0" {
				t.Errorf("set = %v", ids(set))
			}
			break
		}
	}
}

// A node that coordinates reports its instances to itself even while gossip still
// names the old coordinator ("boss" in the rig): after a failover, the new
// coordinator's own replacements must show running at once.
func TestLocalCoordinatorReportsToItself(t *testing.T) {
	r := newLocalRig(t, t.TempDir())
	c, err := New(Config{Region: "r1", Node: "n1", Raft: newFakeRaft(), Fleet: &fakeFleet{}, Intents: newFakeIntents(),
		Send: func(string, []byte) error { return nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.l.cfg.Coordinator = c
	c.leader.Store(true)
	r.l.report("")
	if got := c.takeReports(); got["n1"].Node != "n1" {
		t.Fatalf("the leading node's report went elsewhere; its coordinator holds %v", got)
	}
	select {
	case rep := <-r.reports:
		t.Fatalf("report sent over the wire to the gossiped coordinator: %+v", rep)
	default:
	}
	c.leader.Store(false)
	r.l.report("")
	if got := c.takeReports(); len(got) != 0 {
		t.Fatalf("a node that does not lead kept its report: %v", got)
	}
}
