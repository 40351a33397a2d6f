package coordinator

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/murmur-edge/murmur/scheduler"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLeaseBook(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	b := newLeaseBook(4 * time.Second)
	if b.add(pendingLease{req: LeaseRequest{Node: "n1", LeaseMS: 4000}, at: t0}) {
		t.Fatal("a renewal was queued while not leading")
	}
	b.begin(t0)
	// Nobody heard from: every lease runs to start + the assumed lease.
	if got := b.until([]string{"n1"}, nil)["n1"]; !got.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("unheard node: until %v, want start+4s", got)
	}
	// A grant in the term: received + the node's lease, never below start + assumed.
	b.granted([]pendingLease{{req: LeaseRequest{Node: "n1", LeaseMS: 2000}, at: t0.Add(time.Second)}})
	if got := b.until([]string{"n1"}, nil)["n1"]; !got.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("short lease early in the term: until %v, want start+4s", got)
	}
	b.granted([]pendingLease{{req: LeaseRequest{Node: "n1", LeaseMS: 4000}, at: t0.Add(3 * time.Second)}})
	if got := b.until([]string{"n1"}, nil)["n1"]; !got.Equal(t0.Add(7 * time.Second)) {
		t.Errorf("after a renewal at 3 s: until %v, want 7 s", got)
	}
	// A renewal received before the term began counts for nothing more than the start.
	b.begin(t0.Add(10 * time.Second))
	b.granted([]pendingLease{{req: LeaseRequest{Node: "n2", LeaseMS: 4000}, at: t0.Add(9 * time.Second)}})
	if got := b.until([]string{"n2"}, nil)["n2"]; !got.Equal(t0.Add(14 * time.Second)) {
		t.Errorf("renewal from before the term: until %v, want start+4s", got)
	}
	// A node that gossips a longer lease is held that long.
	if got := b.until([]string{"n3"}, func(string) time.Duration { return 9 * time.Second })["n3"]; !got.Equal(t0.Add(19 * time.Second)) {
		t.Errorf("node gossiping a 9 s lease: until %v, want start+9s", got)
	}
	b.end()
	if b.add(pendingLease{req: LeaseRequest{Node: "n1", LeaseMS: 4000}, at: t0}) {
		t.Error("a renewal was queued after the term ended")
	}
}

// leaseRig is a node side with an exclusive workload "lock" and a plain one "web",
// driven by direct calls (no Run loop), on a fake clock.
func leaseRig(t *testing.T) (*Local, *fakeSupervisor, *fakeClock) {
	t.Helper()
	sup := &fakeSupervisor{}
	store := newFakeIntents()
	one := 1
	for _, name := range []string{"lock", "web"} {
		store.put(intents.LiveIntent{Intent: &policy.Intent{Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name},
			Workload: &policy.WorkloadSpec{Mode: "replicated", Replicas: &one, Driver: "exec", Command: []string{"/bin/sleep", "60"},
				Exclusive: name == "lock", Env: map[string]string{"A": "b"}}},
			Version: policy.Version{Wall: 1, Node: "x"}})
	}
	clk := newFakeClock()
	l, err := NewLocal(LocalConfig{
		Node: "n1", Region: "r1", DataDir: t.TempDir(), Supervisor: sup, Intents: store,
		Send: func(string, []byte) error { return nil }, CoordinatorName: func() string { return "boss" },
		SetState: func(k, v string) {}, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, sup, clk
}

func desiredIDs(sup *fakeSupervisor) []string { return ids(sup.Desired()) }

func lastRenewal(t *testing.T, l *Local) LeaseRequest {
	t.Helper()
	select {
	case o := <-l.leaseOut:
		m, err := Decode(o.b)
		if err != nil {
			t.Fatal(err)
		}
		return m.(LeaseRequest)
	default:
		t.Fatal("no lease renewal was sent")
	}
	return LeaseRequest{}
}

func TestLocalRunsExclusiveOnlyUnderALease(t *testing.T) {
	l, sup, clk := leaseRig(t)
	v := policy.Version{Wall: 1, Node: "x"}
	lock := Assigned{ID: "lock-7-0", Intent: "lock", Version: v, Generation: 7}
	web := Assigned{ID: "web-7-0", Intent: "web", Version: v, Generation: 7}
	set := []Assigned{lock, web}
	asg := Assignment{Region: "r1", Cluster: "c", Term: 2, Generation: 7, Node: "n1", Digest: Digest(set), Instances: set}

	// No lease yet (a node starts fenced): the plain instance runs, the exclusive one
	// waits, and a renewal goes out.
	if _, ok := l.accept("boss", asg); !ok {
		t.Fatal("assignment refused")
	}
	if got := desiredIDs(sup); len(got) != 1 || got[0] != "web-7-0" {
		t.Fatalf("desired without a lease = %v, want only web-7-0", got)
	}
	req := lastRenewal(t, l)
	if req.Node != "n1" || req.LeaseMS != DefaultLease.Milliseconds() {
		t.Errorf("renewal = %+v", req)
	}
	sentAt := clk.Now()

	// A grant from an older term, or for an unknown request, changes nothing.
	l.mu.Lock()
	l.lease.term = 2
	l.mu.Unlock()
	if l.grant("boss", LeaseGrant{Seq: req.Seq, Term: 1, Generation: 7, Digest: asg.Digest}) || l.grant("boss", LeaseGrant{Seq: 12345, Term: 2}) {
		t.Fatal("a stale or unknown grant was taken")
	}
	if l.grant("mallory", LeaseGrant{Seq: req.Seq, Term: 2, Generation: 7, Digest: asg.Digest}) {
		t.Fatal("a grant from a node the request did not go to was taken")
	}
	// The grant, on the table this assignment came from: the exclusive instance starts,
	// with its epoch and a stop grace that ends before the lease does.
	clk.Advance(100 * time.Millisecond)
	if !l.grant("boss", LeaseGrant{Seq: req.Seq, Term: 2, Generation: 7, Digest: asg.Digest}) {
		t.Fatal("grant not taken")
	}
	if _, err := l.apply(l.cur); err != nil {
		t.Fatal(err)
	}
	var got runtime.InstanceSpec
	for _, sp := range sup.Desired() {
		if sp.ID == "lock-7-0" {
			got = sp
		}
	}
	if got.ID == "" || got.Env["MURMUR_EPOCH"] != "7" || got.Env["MURMUR_INSTANCE"] != "lock-7-0" || got.Env["A"] != "b" || got.StopGrace != DefaultLeaseMargin/2 {
		t.Fatalf("exclusive spec = %+v", got)
	}
	// The lease runs from the send time: the node stops at sent + lease - margin.
	if d := l.leaseDeadline(); !d.Equal(sentAt.Add(DefaultLease - DefaultLeaseMargin)) {
		t.Errorf("deadline = %v, want sent + %v", d, DefaultLease-DefaultLeaseMargin)
	}
	clk.Advance(DefaultLease - DefaultLeaseMargin - 101*time.Millisecond)
	if l.expireLease(clk.Now()) {
		t.Fatal("expired early")
	}
	clk.Advance(time.Millisecond)
	if !l.expireLease(clk.Now()) {
		t.Fatal("not expired at sent + lease - margin")
	}
	if _, err := l.apply(l.cur); err != nil {
		t.Fatal(err)
	}
	if got := desiredIDs(sup); len(got) != 1 || got[0] != "web-7-0" {
		t.Fatalf("desired after the lease ran out = %v, want only web-7-0", got)
	}
	if n := testutil.ToFloat64(l.leaseExpired); n != 1 {
		t.Errorf("expired count = %v", n)
	}

	// Connectivity returns. The coordinator has moved on (generation 9): a grant does
	// not restart the old instance; only an assignment at least that new lifts the
	// fence, and that one no longer holds it.
	req = lastRenewal(t, l) // the apply without a lease asked for one
	if l.grant("boss", LeaseGrant{Seq: req.Seq, Term: 3, Generation: 9, Digest: "elsewhere"}) {
		t.Fatal("a grant on a newer table restarted the fenced instance")
	}
	if _, err := l.apply(l.cur); err != nil {
		t.Fatal(err)
	}
	if got := desiredIDs(sup); len(got) != 1 {
		t.Fatalf("fenced node runs %v", got)
	}
	moved := []Assigned{web}
	if _, ok := l.accept("boss", Assignment{Region: "r1", Cluster: "c", Term: 3, Generation: 9, Node: "n1", Digest: Digest(moved), Instances: moved}); !ok {
		t.Fatal("new assignment refused")
	}
	l.mu.Lock()
	fenced := l.lease.fenced
	l.mu.Unlock()
	if fenced {
		t.Error("an assignment at the grant's generation did not lift the fence")
	}
}

func TestStoppingRecordsFromReports(t *testing.T) {
	s := Snapshot{Region: "r1", Reports: map[string]Report{
		"n1": {Node: "n1", Instances: []InstanceReport{
			{ID: "lock-3-0", Intent: "lock", Generation: 3, State: runtime.StateRunning}, // stopped in the table, still runs
			{ID: "lock-5-0", Intent: "lock", Generation: 5, State: runtime.StateRunning}, // in the table: not a record
			{ID: "lock-2-0", Intent: "lock", Generation: 2, State: runtime.StateStopped}, // gone
			{ID: "web-3-0", Intent: "web", Generation: 3, State: runtime.StateRunning},   // not exclusive
		}},
		"n2": {Node: "n2", Instances: []InstanceReport{{ID: "lock-1-0", Intent: "lock", Generation: 1, State: runtime.StateRunning}}},
	}}
	s.State.Placements = map[string]scheduler.Placement{"lock-5-0": {ID: "lock-5-0", Workload: "lock", Node: "n1", Generation: 5}}
	ws := []scheduler.Workload{{Name: "lock", Exclusive: true}, {Name: "web"}}
	got := stoppingRecords(s, ws, map[string]bool{"n1": true, "n2": false})
	if len(got) != 1 || got[0].ID != "lock-3-0" || !got[0].Stopping || got[0].Node != "n1" || got[0].Workload != "lock" {
		t.Errorf("stopping records = %+v, want lock-3-0 on n1 only (n2 is down)", got)
	}
}

// A node renews only its own lease: a renewal for another node is dropped.
func TestLeaseRenewalForAnotherNodeDropped(t *testing.T) {
	h := newHarness(t)
	h.c.HandleLease("n2", LeaseRequest{Seq: 1, Node: "n3", Region: "r1", LeaseMS: 4000})
	h.c.grantLeases(t.Context(), h.ls)
	h.ls.wg.Wait()
	if len(h.grants) != 0 {
		t.Errorf("grants %v for a renewal n2 sent for n3", h.grants)
	}
	if got := testutil.ToFloat64(h.c.m.leaseDropped); got != 1 {
		t.Errorf("dropped renewals = %v, want 1", got)
	}
}
