package gossip

import (
	"math"
	"testing"
	"time"
)

func TestRecordDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := Record{Node: "n1", Epoch: 1, Seq: 5, CPU: 0.30, Memory: 0.20, Instances: 2, Health: HealthOK,
		Drivers: []string{"exec"}, State: map[string]string{"raft.leader": "3"}}
	with := func(f func(r *Record)) Record {
		r := base
		r.State = map[string]string{"raft.leader": "3"}
		r.Seq++
		f(&r)
		return r
	}
	const step, every = 0.05, 10 * time.Second
	tests := []struct {
		name          string
		last, cur     Record
		loadAt, now   time.Time
		due, loadOnly bool
	}{
		{name: "never broadcast", last: Record{}, cur: base, now: t0, due: true},
		{name: "nothing changed, an hour on: no heartbeat", last: base, cur: base, now: t0.Add(time.Hour)},
		{name: "state changed", last: base, cur: with(func(r *Record) { r.State["raft.leader"] = "4" }), now: t0, loadAt: t0, due: true},
		{name: "state key removed", last: base, cur: with(func(r *Record) { delete(r.State, "raft.leader") }), now: t0, loadAt: t0, due: true},
		{name: "instances changed", last: base, cur: with(func(r *Record) { r.Instances = 3 }), now: t0, loadAt: t0, due: true},
		{name: "health changed", last: base, cur: with(func(r *Record) { r.Health = HealthDegraded }), now: t0, loadAt: t0, due: true},
		{name: "drivers changed", last: base, cur: with(func(r *Record) { r.Drivers = []string{"exec", "docker"} }), now: t0, loadAt: t0, due: true},
		{name: "load moved under the step", last: base, cur: with(func(r *Record) { r.CPU = 0.34 }), now: t0.Add(time.Hour), loadAt: t0},
		{name: "cpu moved by the step", last: base, cur: with(func(r *Record) { r.CPU = 0.35 }), now: t0.Add(every), loadAt: t0, due: true, loadOnly: true},
		{name: "memory moved down by the step", last: base, cur: with(func(r *Record) { r.Memory = 0.15 }), now: t0.Add(every), loadAt: t0, due: true, loadOnly: true},
		{name: "load moved by the step within the interval", last: base, cur: with(func(r *Record) { r.CPU = 0.9 }), now: t0.Add(every - time.Millisecond), loadAt: t0},
		{name: "state changed within the load interval", last: base, cur: with(func(r *Record) { r.CPU, r.State["x"] = 0.9, "y" }), now: t0, loadAt: t0, due: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			due, loadOnly := recordDue(tt.last, tt.cur, tt.loadAt, tt.now, step, every)
			if due != tt.due || loadOnly != tt.loadOnly {
				t.Errorf("recordDue = (due %v, loadOnly %v), want (%v, %v)", due, loadOnly, tt.due, tt.loadOnly)
			}
		})
	}
}

// An idle node broadcasts its record once, and then nothing however long it runs:
// setting the same values again is no change, and a small load move waits for push/pull.
func TestIdleNodeBroadcastsItsRecordOnce(t *testing.T) {
	g, err := New(Config{Name: "me"})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := g.Subscribe()
	defer cancel()
	drain := func() int {
		n := g.queue.NumQueued()
		g.queue.Reset()
		return n
	}
	notified := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.SetLoad(Load{CPU: 0.3, Memory: 0.2}, 1, HealthOK)
	g.SetState("lease", "4000")
	g.SetDrivers([]string{"exec"})
	notified()
	g.maybeBroadcastLocal(now)
	if n := drain(); n != 1 {
		t.Fatalf("first broadcast: %d queued, want 1", n)
	}
	seq := g.local.Seq

	// The agent samples load every second and republishes its state every 500 ms.
	for i := 1; i <= 3600; i++ {
		now = now.Add(time.Second)
		g.SetLoad(Load{CPU: 0.3, Memory: 0.2}, 1, HealthOK)
		g.SetState("lease", "4000")
		g.SetState("gone", "") // deleting a key that is not there
		g.SetDrivers([]string{"exec"})
		g.maybeBroadcastLocal(now)
	}
	if n := drain(); n != 0 {
		t.Errorf("an hour of the same values: %d broadcasts queued, want 0", n)
	}
	if g.local.Seq != seq {
		t.Errorf("Seq moved from %d to %d without a change", seq, g.local.Seq)
	}
	if notified() {
		t.Error("subscribers were told of a change when nothing changed")
	}

	g.SetLoad(Load{CPU: 0.32, Memory: 0.2}, 1, HealthOK)
	g.maybeBroadcastLocal(now.Add(time.Hour))
	if n := drain(); n != 0 {
		t.Errorf("a 2-point load move: %d broadcasts queued, want 0 (push/pull carries it)", n)
	}
	if g.local.Seq != seq+1 || !notified() {
		t.Errorf("a load move: Seq %d (want %d) and no signal to subscribers; push/pull and local readers would miss it", g.local.Seq, seq+1)
	}
	if pp := decodedLocalPushPull(t, g); pp.Records[0].CPU != 0.32 || pp.Records[0].Seq != seq+1 {
		t.Errorf("push/pull carries the local record %+v, want CPU 0.32 at Seq %d", pp.Records[0], seq+1)
	}
	g.SetState("raft.leader", "7")
	g.maybeBroadcastLocal(now.Add(time.Hour))
	if n := drain(); n != 1 {
		t.Errorf("a state change: %d broadcasts queued, want 1", n)
	}
}

func decodedLocalPushPull(t *testing.T, g *Gossip) pushPull {
	t.Helper()
	p, err := decodePushPull(g.localPushPull())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A push/pull that brings a version of a record changed beyond load relays it: the
// broadcast of that change was missed here, and likely elsewhere too. Records seen
// for the first time (a join) and load-only changes are not relayed.
func TestPushPullRelaysMissedChangesOnly(t *testing.T) {
	g, err := New(Config{Name: "me"})
	if err != nil {
		t.Fatal(err)
	}
	pushPullOf := func(recs ...Record) []byte {
		return mustEncode(t, pushPull{From: "peer", Records: recs})
	}
	st := func(v string) map[string]string { return map[string]string{"raft.leader": v} }
	steps := []struct {
		name  string
		rec   Record
		relay bool
	}{
		{"first sight of n1 (a join brings every record)", Record{Node: "n1", Epoch: 1, Seq: 1, State: st("1")}, false},
		{"n1 load moved", Record{Node: "n1", Epoch: 1, Seq: 2, CPU: 0.5, State: st("1")}, false},
		{"n1 state changed", Record{Node: "n1", Epoch: 1, Seq: 3, CPU: 0.5, State: st("2")}, true},
		{"the same version again", Record{Node: "n1", Epoch: 1, Seq: 3, CPU: 0.5, State: st("2")}, false},
		{"an older version", Record{Node: "n1", Epoch: 1, Seq: 1, State: st("1")}, false},
		{"this node's own record", Record{Node: "me", Epoch: 9, Seq: 9, State: st("9")}, false},
	}
	for _, s := range steps {
		g.handlePushPull(pushPullOf(s.rec))
		n := g.queue.NumQueued()
		g.queue.Reset()
		if (n == 1) != s.relay || n > 1 {
			t.Errorf("%s: %d broadcasts queued, want relay=%v", s.name, n, s.relay)
		}
	}
	for _, m := range g.Members() {
		if m.Name == "n1" && (m.State["raft.leader"] != "2" || m.Load.CPU != 0.5) {
			t.Errorf("n1 after the push/pulls: state %v load %v, want raft.leader 2, cpu 0.5", m.State, m.Load.CPU)
		}
	}
}

func TestPushPullInterval(t *testing.T) {
	const base = 10 * time.Second
	tests := []struct {
		n    int
		want time.Duration
	}{
		{1, base},
		{32, base},
		{33, 2 * base},                  // memberlist's log2 stretch: ceil(log2(33/32)) + 1
		{50, 2 * base},                  // log2 stretch (2) over linear (1.56)
		{100, 3125 * time.Second / 100}, // linear: 100/32
		{1000, 3125 * time.Second / 10}, // linear: 1000/32, 312.5 s
		{5000, 5000 * base / 32},        // bytes per node stay at 32 nodes' cost
	}
	for _, tt := range tests {
		if got := pushPullInterval(base, tt.n); got != tt.want {
			t.Errorf("pushPullInterval(%v, %d) = %v, want %v", base, tt.n, got, tt.want)
		}
	}
	// Never more often than memberlist would push/pull.
	for n := 33; n <= 5000; n++ {
		mult := 1 + int(math.Ceil(math.Log2(float64(n))-5))
		if got := pushPullInterval(base, n); got < time.Duration(mult)*base {
			t.Fatalf("pushPullInterval(%v, %d) = %v, under memberlist's %v", base, n, got, time.Duration(mult)*base)
		}
	}
}
