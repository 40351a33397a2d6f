package region

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/scheduler"
)

func TestApplyCommand(t *testing.T) {
	base := func() State {
		s := NewState()
		s.Placements["web-0"] = Placement{ID: "web-0", Workload: "web", Node: "a", Generation: 3}
		s.Intents["web"] = "v1"
		s.Drained["b"] = true
		s.Index = 3
		return s
	}
	tests := []struct {
		name    string
		cmd     Command
		idx     uint64
		want    func(s *State)
		wantErr string
	}{
		{"place new", Place("web-1", "web", "b"), 5, func(s *State) {
			s.Placements["web-1"] = Placement{ID: "web-1", Workload: "web", Node: "b", Generation: 5}
		}, ""},
		{"move keeps nothing of the old generation", Place("web-0", "web", "c"), 6, func(s *State) {
			s.Placements["web-0"] = Placement{ID: "web-0", Workload: "web", Node: "c", Generation: 6}
		}, ""},
		{"same place keeps its generation", Place("web-0", "web", "a"), 7, func(s *State) {}, ""},
		{"unplace", Unplace("web-0"), 8, func(s *State) { delete(s.Placements, "web-0") }, ""},
		{"unplace unknown is a no-op", Unplace("nope"), 8, func(s *State) {}, ""},
		{"set intent", SetIntent("web", "v2"), 9, func(s *State) { s.Intents["web"] = "v2" }, ""},
		{"delete intent", DeleteIntent("web"), 9, func(s *State) { delete(s.Intents, "web") }, ""},
		{"drain", SetDrain("c", true), 9, func(s *State) { s.Drained["c"] = true }, ""},
		{"undrain", SetDrain("b", false), 9, func(s *State) { delete(s.Drained, "b") }, ""},
		{"init once", Command{Op: OpInit, ClusterID: "c1"}, 9, func(s *State) { s.ClusterID = "c1" }, ""},
		{"batch is one generation", Batch(Place("x", "i", "a"), Place("y", "i", "b"), Unplace("web-0")), 10, func(s *State) {
			s.Placements["x"] = Placement{ID: "x", Workload: "i", Node: "a", Generation: 10}
			s.Placements["y"] = Placement{ID: "y", Workload: "i", Node: "b", Generation: 10}
			delete(s.Placements, "web-0")
		}, ""},
		{"batch all or nothing", Batch(Place("x", "i", "a"), Place("", "i", "b")), 10, func(s *State) {}, "batch[1]"},
		{"nested batch", Batch(Batch(Place("x", "i", "a"))), 10, func(s *State) {}, "batch inside a batch"},
		{"place without node", Place("x", "i", ""), 10, func(s *State) {}, "node is required"},
		{"unknown op", Command{Op: 99}, 10, func(s *State) {}, "unknown op"},
		{"long name", Place(string(make([]byte, MaxNameLen+1)), "i", "a"), 10, func(s *State) {}, "limit is 253"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := base()
			err := ApplyCommand(&got, tc.idx, tc.cmd)
			want := base()
			tc.want(&want)
			want.Index = tc.idx
			if tc.wantErr == "" && err != nil {
				t.Fatalf("ApplyCommand: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !errors.Is(err, ErrInvalidCommand) || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr))) {
				t.Fatalf("ApplyCommand err = %v, want ErrInvalidCommand containing %q", err, tc.wantErr)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("state (-want +got):\n%s", d)
			}
		})
	}
}

func TestInitDoesNotOverwrite(t *testing.T) {
	s := NewState()
	for i, id := range []string{"first", "second"} {
		if err := ApplyCommand(&s, uint64(i+1), Command{Op: OpInit, ClusterID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if s.ClusterID != "first" {
		t.Errorf("cluster id = %q, want first", s.ClusterID)
	}
}

func TestCommandCodecRoundTrip(t *testing.T) {
	for _, c := range []Command{
		Place("web-0", "web", "a"), Unplace("x"), SetIntent("n", "v"), DeleteIntent("n"), SetDrain("a", true),
		{Op: OpInit, ClusterID: "c"}, Batch(Place("a", "", "n"), SetDrain("n", false)),
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("encode %v: %v", c, err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %v: %v", c, err)
		}
		if d := cmp.Diff(c, got); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
	if _, err := EncodeCommand(Place("", "", "")); err == nil {
		t.Error("EncodeCommand accepted an invalid command")
	}
	for _, bad := range [][]byte{nil, {}, {2, 0x80}, {1}, {1, 0xc1}, {1, 0x81, 0xa1, 'o', 0x63}} {
		if _, err := DecodeCommand(bad); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("DecodeCommand(%x) err = %v, want ErrInvalidCommand", bad, err)
		}
	}
}

func randomCommand(r *rand.Rand) Command {
	name := func(p string, n int) string { return fmt.Sprintf("%s%d", p, r.IntN(n)) }
	switch r.IntN(8) {
	case 0:
		return Unplace(name("i", 30))
	case 1:
		return SetIntent(name("w", 5), name("v", 9))
	case 2:
		return DeleteIntent(name("w", 5))
	case 3:
		return SetDrain(name("n", 5), r.IntN(2) == 0)
	case 4:
		var b []Command
		for range r.IntN(10) {
			b = append(b, Place(name("i", 30), name("w", 5), name("n", 5)))
		}
		if r.IntN(5) == 0 {
			b = append(b, Place("", "", "")) // an invalid member: the whole batch is rejected
		}
		return Batch(b...)
	case 5:
		return Command{Op: OpInit, ClusterID: name("c", 3)}
	default:
		return Place(name("i", 30), name("w", 5), name("n", 5))
	}
}

// fsmApply feeds one command through the FSM as Raft would (encoded, at index idx).
func fsmApply(t *testing.T, f *FSM, idx uint64, c Command) {
	t.Helper()
	var b []byte
	if err := c.Validate(); err == nil {
		var encErr error
		if b, encErr = EncodeCommand(c); encErr != nil {
			t.Fatal(encErr)
		}
	} else {
		b = []byte{commandFormat, 0x81} // what a corrupted entry looks like: rejected, index advances
	}
	f.Apply(&raft.Log{Index: idx, Data: b, Type: raft.LogCommand})
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

// Property: for random command sequences, (1) replaying is deterministic, (2) a
// snapshot restored into an FSM with unrelated previous state equals the original, and
// (3) both then evolve identically under the same further commands.
func TestPropertySnapshotRestoreEquivalence(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		cmds := make([]Command, 1+r.IntN(60))
		for i := range cmds {
			cmds[i] = randomCommand(r)
		}
		cut := r.IntN(len(cmds) + 1)
		a, b := NewFSM(), NewFSM()
		for i, c := range cmds {
			fsmApply(t, a, uint64(i+1), c)
			fsmApply(t, b, uint64(i+1), c)
		}
		if d := cmp.Diff(a.State(), b.State()); d != "" {
			t.Fatalf("seed %d: replay not deterministic:\n%s", seed, d)
		}
		// Snapshot at cut, restore into an FSM holding junk, continue both.
		x := NewFSM()
		for i, c := range cmds[:cut] {
			fsmApply(t, x, uint64(i+1), c)
		}
		y := NewFSM()
		fsmApply(t, y, 1, Place("junk", "junk", "junk"))
		fsmApply(t, y, 2, SetDrain("junk", true))
		if err := y.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, x)))); err != nil {
			t.Fatalf("seed %d: restore: %v", seed, err)
		}
		if d := cmp.Diff(x.State(), y.State()); d != "" {
			t.Fatalf("seed %d: restored state differs (-snap +restored):\n%s", seed, d)
		}
		for i, c := range cmds[cut:] {
			fsmApply(t, x, uint64(cut+i+1), c)
			fsmApply(t, y, uint64(cut+i+1), c)
		}
		if d := cmp.Diff(a.State(), y.State()); d != "" {
			t.Fatalf("seed %d: snapshot+tail differs from full replay:\n%s", seed, d)
		}
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	f := NewFSM()
	fsmApply(t, f, 1, Place("keep", "w", "n"))
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte("garbage")))); err == nil {
		t.Fatal("Restore accepted garbage")
	}
	if _, ok := f.State().Placements["keep"]; !ok {
		t.Error("a failed Restore lost the current state")
	}
}

func TestStateIsACopy(t *testing.T) {
	f := NewFSM()
	fsmApply(t, f, 1, Place("a", "w", "n"))
	s := f.State()
	s.Placements["b"] = Placement{}
	delete(s.Placements, "a")
	if got := f.State().Placements; len(got) != 1 || got["a"].Node != "n" {
		t.Errorf("mutating a State() copy changed the FSM: %v", got)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{Place("web-0", "web", "a"), Batch(Place("a", "", "n"), SetDrain("n", true)), {Op: OpInit, ClusterID: "x"}} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte{1, 0xdc, 0xff, 0xff})
	f.Add([]byte{1, 0x81, 0xa1, 'b', 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		// Whatever decodes is valid, applies cleanly, and re-encodes to an equal command.
		s := NewState()
		if err := ApplyCommand(&s, 1, c); err != nil {
			t.Fatalf("decoded command does not apply: %v", err)
		}
		b2, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, err := DecodeCommand(b2)
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if d := cmp.Diff(c, c2, cmp.Comparer(func(a, b []Command) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })); d != "" {
			t.Fatalf("round trip differs:\n%s", d)
		}
	})
}

func TestPlanCommand(t *testing.T) {
	v := policy.Version{Wall: 1732291200123, Counter: 4, Node: "n1"}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := NewState()
	place := func(base, gen uint64, stops []string, ids ...string) Command {
		p := Plan{Base: base, Generation: gen, Stops: stops}
		for _, id := range ids {
			p.Places = append(p.Places, Placement{ID: id, Workload: "web", Node: "a", Version: v, StartedAt: at,
				State: scheduler.StateRunning, Healthy: true, Failures: 3, Generation: 99})
		}
		return PlanCommand(p)
	}
	// The command survives the wire with every committed field.
	b, err := EncodeCommand(place(0, 5, nil, "web-5-0"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyCommand(&s, 7, cmd); err != nil {
		t.Fatal(err)
	}
	got := s.Placements["web-5-0"]
	want := Placement{ID: "web-5-0", Workload: "web", Node: "a", Version: v, Generation: 5, StartedAt: at}
	if !got.StartedAt.Equal(at) || got.Version != v || got.Generation != 5 || got.State != "" || got.Healthy || got.Failures != 0 || got.ID != want.ID {
		t.Errorf("placement = %+v, want %+v (reported fields are never committed)", got, want)
	}
	if s.Generation != 5 {
		t.Errorf("generation = %d, want 5", s.Generation)
	}
	// A plan computed from an older table is refused and changes nothing.
	before := s.Clone()
	if err := ApplyCommand(&s, 8, place(0, 6, []string{"web-5-0"})); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("stale base: err = %v, want ErrStalePlan", err)
	}
	if err := ApplyCommand(&s, 9, place(5, 5, nil, "x")); !errors.Is(err, ErrStalePlan) {
		t.Fatalf("generation not above: err = %v, want ErrStalePlan", err)
	}
	if len(s.Placements) != len(before.Placements) || s.Generation != before.Generation {
		t.Fatalf("rejected plans changed the state: %+v", s)
	}
	// A migration: stop the old, place the new, in one entry.
	if err := ApplyCommand(&s, 10, place(5, 9, []string{"web-5-0"}, "web-9-0")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Placements["web-5-0"]; ok || s.Placements["web-9-0"].Generation != 9 {
		t.Errorf("after migration: %+v", s.Placements)
	}
	// Two plans in one batch must chain their generations.
	if err := ApplyCommand(&s, 11, Batch(place(9, 10, nil, "a1"), place(9, 11, nil, "a2"))); !errors.Is(err, ErrStalePlan) {
		t.Errorf("unchained batch: err = %v, want ErrStalePlan", err)
	}
	for _, bad := range []Command{{Op: OpPlan}, PlanCommand(Plan{}), place(9, 10, nil, "dup", "dup"), {Op: OpPlace, Instance: "i", Node: "n", Plan: &Plan{Generation: 1}}} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidCommand", bad, err)
		}
	}
}

// A plan's explanations are committed with it: the reasons of its placements and
// stops reach observers, the unplaced list replaces the region's, and a snapshot
// keeps it. Entries already in the log at start are marked as replays.
func TestPlanExplanationsObservedAndKept(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	f := NewFSM()
	var got []Applied
	f.observe = func(a Applied) { got = append(got, a) }
	f.replayUpTo = 1
	apply := func(idx uint64, p Plan) {
		t.Helper()
		b, err := EncodeCommand(PlanCommand(p))
		if err != nil {
			t.Fatal(err)
		}
		if err, _ := f.Apply(&raft.Log{Index: idx, Term: 3, Data: b}).(error); err != nil {
			t.Fatalf("apply %d: %v", idx, err)
		}
	}
	apply(1, Plan{Generation: 1, At: at, Places: []Placement{{ID: "web-1-0", Workload: "web", Node: "a", Cause: scheduler.CauseMissing, Reason: "replica 1 of 1"}},
		SetUnplaced: true, Unplaced: []Unplaced{{Workload: "db", Count: 2, Reason: "2 nodes filtered by label disk=ssd"}}})
	apply(2, Plan{Base: 1, Generation: 2, At: at.Add(time.Second), Stops: []string{"web-1-0"},
		Why:    []Note{{Instance: "web-1-0", Cause: "removed", Reason: "workload deleted"}},
		Places: []Placement{{ID: "db-2-0", Workload: "db", Node: "b", Cause: scheduler.CauseMissing, Reason: "replica 1 of 2"}}})
	if len(got) != 2 {
		t.Fatalf("observed %d plans, want 2", len(got))
	}
	if !got[0].Replay || got[1].Replay {
		t.Errorf("replay flags %v %v, want true (index 1 was in the log at start) then false", got[0].Replay, got[1].Replay)
	}
	if p := got[0].Placed; len(p) != 1 || p[0].Reason != "replica 1 of 1" || p[0].Generation != 1 || !got[0].UnplacedSet || len(got[0].Unplaced) != 1 {
		t.Errorf("first plan observed as %+v", got[0])
	}
	s := got[1].Stopped
	if len(s) != 1 || s[0].Node != "a" || s[0].Workload != "web" || s[0].StopCause != "removed" || s[0].StopReason != "workload deleted" || !got[1].At.Equal(at.Add(time.Second)) {
		t.Errorf("stop observed as %+v", got[1])
	}
	st := f.State()
	if st.Placements["db-2-0"].Reason != "replica 1 of 2" || st.Placements["db-2-0"].Cause != scheduler.CauseMissing {
		t.Errorf("placement kept without its reason: %+v", st.Placements["db-2-0"])
	}
	if len(st.Unplaced) != 1 || st.Unplaced[0].Workload != "db" {
		t.Errorf("unplaced list %+v: a plan without SetUnplaced must leave it", st.Unplaced)
	}
	b, err := EncodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(st, back); d != "" {
		t.Errorf("snapshot round trip differs:\n%s", d)
	}
	// Too long a reason, or notes without stops, is refused by name.
	long := strings.Repeat("x", MaxReasonLen+1)
	for _, bad := range []Plan{
		{Generation: 9, Places: []Placement{{ID: "i", Workload: "w", Node: "n", Reason: long}}},
		{Generation: 9, Why: []Note{{Instance: "i"}}},
		{Generation: 9, Unplaced: []Unplaced{{Workload: "w", Count: 1}}},
		{Generation: 9, SetUnplaced: true, Unplaced: []Unplaced{{Workload: "w", Count: -1}}},
	} {
		if err := PlanCommand(bad).Validate(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("plan %+v: got %v, want ErrInvalidCommand", bad, err)
		}
	}
}

// A held stop (an exclusive instance) leaves the table but stays in State.Stopping,
// with the generation of the plan that stopped it, until a plan releases it; it
// survives a snapshot. Hold must name stops of the same plan.
func TestHeldStopsUntilReleased(t *testing.T) {
	s := NewState()
	steps := []Plan{
		{Generation: 1, Places: []Placement{{ID: "lock-1-0", Workload: "lock", Node: "a"}, {ID: "web-1-0", Workload: "web", Node: "b"}}},
		{Base: 1, Generation: 2, Stops: []string{"lock-1-0", "web-1-0"}, Hold: []string{"lock-1-0"}},
	}
	for i, p := range steps {
		if err := ApplyCommand(&s, uint64(i+1), PlanCommand(p)); err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
	want := map[string]Stopping{"lock-1-0": {Placement: Placement{ID: "lock-1-0", Workload: "lock", Node: "a", Generation: 1}, Generation: 2}}
	if d := cmp.Diff(want, s.Stopping); d != "" || len(s.Placements) != 0 {
		t.Fatalf("after the held stop: placements %v, stopping differs:\n%s", s.Placements, d)
	}
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, back.Stopping); d != "" {
		t.Errorf("stopping after a snapshot round trip differs:\n%s", d)
	}
	c := s.Clone()
	delete(c.Stopping, "lock-1-0")
	if len(s.Stopping) != 1 {
		t.Error("Clone shares the stopping map")
	}
	if err := ApplyCommand(&s, 3, PlanCommand(Plan{Base: 2, Generation: 3, Release: []string{"lock-1-0", "unknown-1-0"}})); err != nil {
		t.Fatal(err)
	}
	if len(s.Stopping) != 0 {
		t.Errorf("stopping after the release = %v", s.Stopping)
	}
	for _, bad := range []Plan{
		{Generation: 9, Hold: []string{"x-1-0"}},
		{Generation: 9, Stops: []string{"y-1-0"}, Hold: []string{"x-1-0"}},
		{Generation: 9, Release: []string{""}},
	} {
		if err := PlanCommand(bad).Validate(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("plan %+v: got %v, want ErrInvalidCommand", bad, err)
		}
	}
}

// An offload migration records when it moved work off its source node, in the
// replicated state, so a coordinator elected next still respects that node's cooldown.
func TestOffloadMigrationRecordsTheSourcesCooldown(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	s := NewState()
	steps := []Plan{
		{Generation: 1, At: at, Places: []Placement{{ID: "w-1-0", Workload: "w", Node: "hot", Cause: scheduler.CauseMissing}}},
		{Base: 1, Generation: 2, At: at.Add(time.Minute), Places: []Placement{{ID: "w-2-0", Workload: "w", Node: "cool", Replaces: "w-1-0", Cause: scheduler.CauseOffload}}},
		{Base: 2, Generation: 3, At: at.Add(2 * time.Minute), Stops: []string{"w-1-0"}},
		// A migration for another cause does not count as an offload.
		{Base: 3, Generation: 4, At: at.Add(3 * time.Minute), Places: []Placement{{ID: "w-4-0", Workload: "w", Node: "hot", Replaces: "w-2-0", Cause: scheduler.CauseUpdate}}},
	}
	for i, p := range steps {
		if err := ApplyCommand(&s, uint64(i+1), PlanCommand(p)); err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
	if got := s.LastOffload; len(got) != 1 || !got["hot"].Equal(at.Add(time.Minute)) {
		t.Errorf("LastOffload = %v, want hot at %v only", got, at.Add(time.Minute))
	}
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeState(b)
	if err != nil || !back.LastOffload["hot"].Equal(at.Add(time.Minute)) {
		t.Errorf("LastOffload after a snapshot round trip = %v (%v)", back.LastOffload, err)
	}
}

// Recent lists the applied commands, oldest first, bounded; a restore starts afresh.
// Two FSMs that applied the same log list the same entries; a different command at an
// index shows as a different digest.
func TestFSMRecentEntries(t *testing.T) {
	a, b := NewFSM(), NewFSM()
	n := RecentEntries + 10
	for i := 1; i <= n; i++ {
		fsmApply(t, a, uint64(i), Place(fmt.Sprintf("p%d", i), "w", "n"))
		c := Place(fmt.Sprintf("p%d", i), "w", "n")
		if i == n {
			c = Place("other", "w", "n")
		}
		fsmApply(t, b, uint64(i), c)
	}
	ra, rb := a.Recent(), b.Recent()
	if len(ra) != RecentEntries || ra[0].Index != uint64(n-RecentEntries+1) || ra[len(ra)-1].Index != uint64(n) {
		t.Fatalf("Recent holds %d entries from %d to %d; want the last %d up to %d", len(ra), ra[0].Index, ra[len(ra)-1].Index, RecentEntries, n)
	}
	for i := range ra[:len(ra)-1] {
		if ra[i] != rb[i] {
			t.Fatalf("same command at %d, different entries %+v and %+v", ra[i].Index, ra[i], rb[i])
		}
	}
	if x, y := ra[len(ra)-1], rb[len(rb)-1]; x.Digest == y.Digest || len(x.Digest) != 16 {
		t.Errorf("different commands at %d have digests %q and %q", x.Index, x.Digest, y.Digest)
	}
	if err := b.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a)))); err != nil {
		t.Fatal(err)
	}
	if r := b.Recent(); len(r) != 0 {
		t.Errorf("after a restore Recent lists %d entries; want none (they came from the old log)", len(r))
	}
}
