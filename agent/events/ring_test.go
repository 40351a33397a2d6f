package events

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fill adds n events of type placed, instance i0, i1, ..., one second apart from t0.
func fill(r *Ring, n int) []Event {
	var out []Event
	for i := range n {
		out = append(out, r.Add(Event{Type: TypePlaced, Time: t0.Add(time.Duration(i) * time.Second), Instance: fmt.Sprintf("i%d", i)}))
	}
	return out
}

func ids(evs []Event) []uint64 {
	out := []uint64{}
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestRingIDs(t *testing.T) {
	boot := time.UnixMilli(1_735_830_245_123)
	r := NewRing(4, boot, nil)
	if got, want := r.LastID(), uint64(1_735_830_245_123_000); got != want {
		t.Fatalf("LastID before any Add = %d, want the base %d", got, want)
	}
	evs := fill(r, 6)
	for i, e := range evs {
		if want := uint64(1_735_830_245_123_000 + i + 1); e.ID != want {
			t.Errorf("event %d: id %d, want %d", i, e.ID, want)
		}
	}
	// A restart a millisecond later starts above every ID of this run (fewer than
	// 1000 events per ms).
	r2 := NewRing(4, boot.Add(time.Millisecond), nil)
	if e := r2.Add(Event{Type: TypePlaced}); e.ID <= evs[len(evs)-1].ID {
		t.Errorf("first id after restart %d, want above %d", e.ID, evs[len(evs)-1].ID)
	}
	// A zero boot time (tests) gives base 0, not an overflow.
	if e := NewRing(1, time.Time{}, nil).Add(Event{Type: TypeNodeDead}); e.ID != 1 {
		t.Errorf("zero boot: first id %d, want 1", e.ID)
	}
}

func TestRingAddFillsTime(t *testing.T) {
	r := NewRing(2, time.Time{}, nil)
	before := time.Now()
	e := r.Add(Event{Type: TypeHeadless, Region: "a"})
	if e.Time.Before(before) {
		t.Errorf("Add filled time %v, want at or after %v", e.Time, before)
	}
	if e := r.Add(Event{Type: TypeHeadless, Time: t0}); !e.Time.Equal(t0) {
		t.Errorf("Add replaced the given time %v with %v", t0, e.Time)
	}
}

func TestRingAddPanicsOnInvalidType(t *testing.T) {
	for _, typ := range []string{"", "Placed", "node-dead", "_x", TypeTruncated, strings.Repeat("a", 33), "a\n"} {
		t.Run(fmt.Sprintf("%q", typ), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(type %q) did not panic", typ)
				}
			}()
			NewRing(1, time.Time{}, nil).Add(Event{Type: typ})
		})
	}
	// Unknown but well-formed types are accepted (forward compatibility).
	if e := NewRing(1, time.Time{}, nil).Add(Event{Type: "lease_expired"}); e.ID != 1 {
		t.Errorf("unknown type: id %d", e.ID)
	}
}

func TestRingSince(t *testing.T) {
	// A ring of 4 that received 6 events keeps 3..6; 1 and 2 are gone.
	r := NewRing(4, time.Time{}, nil)
	fill(r, 6)
	for _, tc := range []struct {
		name      string
		after     uint64
		limit     int
		want      []uint64
		truncated bool
	}{
		{"everything kept, older ones lost", 0, 0, []uint64{3, 4, 5, 6}, true},
		{"after a lost one", 1, 0, []uint64{3, 4, 5, 6}, true},
		{"after the newest lost one: nothing missed", 2, 0, []uint64{3, 4, 5, 6}, false},
		{"from the middle", 4, 0, []uint64{5, 6}, false},
		{"up to date", 6, 0, []uint64{}, false},
		{"limit keeps the newest", 2, 2, []uint64{5, 6}, true},
		{"limit not reached", 4, 2, []uint64{5, 6}, false},
		{"an id from a run whose clock was ahead", 1000, 0, []uint64{3, 4, 5, 6}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, truncated := r.Since(tc.after, Filter{}, tc.limit)
			if diff := cmp.Diff(tc.want, ids(evs)); diff != "" || truncated != tc.truncated {
				t.Errorf("Since(%d, limit %d): truncated %v (want %v), ids (-want +got):\n%s", tc.after, tc.limit, truncated, tc.truncated, diff)
			}
		})
	}
}

func TestRingWrapAround(t *testing.T) {
	r := NewRing(3, time.Time{}, nil)
	for n := 1; n <= 10; n++ {
		r.Add(Event{Type: TypeStopped})
		evs, _ := r.Since(0, Filter{}, 0)
		var want []uint64
		for id := max(1, n-2); id <= n; id++ {
			want = append(want, uint64(id))
		}
		if diff := cmp.Diff(want, ids(evs)); diff != "" {
			t.Errorf("after %d adds (-want +got):\n%s", n, diff)
		}
	}
}

func TestFilter(t *testing.T) {
	r := NewRing(16, time.Time{}, nil)
	for _, e := range []Event{
		{Type: TypePlaced, Region: "a", Intent: "web", Instance: "web-0", Node: "n1"},
		{Type: TypeMigrated, Region: "a", Intent: "web", Instance: "web-0", Node: "n2", From: "n1", Cause: "offload"},
		{Type: TypeNodeDead, Region: "b", Node: "n3"},
		{Type: TypeUnplaced, Region: "b", Intent: "cam", Count: 2, Reason: "no node with label camera=yes"},
		{Type: TypeCoordinatorChanged, Region: "a", Node: "n2", Term: 4},
	} {
		r.Add(e)
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"none", Filter{}, []uint64{1, 2, 3, 4, 5}},
		{"region", Filter{Region: "b"}, []uint64{3, 4}},
		{"intent", Filter{Intent: "web"}, []uint64{1, 2}},
		{"node matches node and from", Filter{Node: "n1"}, []uint64{1, 2}},
		{"node", Filter{Node: "n2"}, []uint64{2, 5}},
		{"types", Filter{Types: []string{TypeNodeDead, TypeUnplaced}}, []uint64{3, 4}},
		{"all of them", Filter{Region: "a", Node: "n2", Types: []string{TypeCoordinatorChanged}}, []uint64{5}},
		{"nothing", Filter{Region: "c"}, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, _ := r.Since(0, tc.f, 0)
			if diff := cmp.Diff(tc.want, ids(evs)); diff != "" {
				t.Errorf("Since(0, %+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}
}

func TestRingWait(t *testing.T) {
	r := NewRing(2, time.Time{}, nil)
	w1, w2 := r.Wait(), r.Wait()
	select {
	case <-w1:
		t.Fatal("Wait channel closed before any Add")
	default:
	}
	r.Add(Event{Type: TypePlaced})
	for i, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		default:
			t.Errorf("waiter %d not woken by Add", i)
		}
	}
	w3 := r.Wait()
	select {
	case <-w3:
		t.Error("a Wait after the Add is already closed")
	default:
	}
}

// Adds and reads from many goroutines: for -race, and IDs stay unique and dense.
func TestRingConcurrent(t *testing.T) {
	r := NewRing(64, time.Time{}, nil)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	seen := make(chan uint64, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				seen <- r.Add(Event{Type: TypeStopped}).ID
			}
		})
	}
	wg.Go(func() {
		var after uint64
		for {
			wake := r.Wait() // before Since: no Add can slip between the two unseen
			evs, _ := r.Since(after, Filter{}, 0)
			for _, e := range evs {
				if e.ID <= after {
					t.Errorf("Since(%d) returned id %d", after, e.ID)
				}
				after = e.ID
			}
			if after == writers*each {
				return
			}
			<-wake
		}
	})
	wg.Wait()
	close(seen)
	got := map[uint64]bool{}
	for id := range seen {
		got[id] = true
	}
	for id := uint64(1); id <= writers*each; id++ {
		if !got[id] {
			t.Fatalf("id %d never assigned (%d ids)", id, len(got))
		}
	}
}

func TestEventsCounter(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := NewRing(2, time.Time{}, reg)
	r.Add(Event{Type: TypePlaced})
	r.Add(Event{Type: TypePlaced})
	r.Add(Event{Type: TypeNodeDead})
	r.Add(Event{Type: "lease_expired"})
	// A second ring on the same registry shares the counter.
	NewRing(2, time.Time{}, reg).Add(Event{Type: TypePlaced})
	want := `
# HELP murmur_events_total Events (scheduling decisions, node and coordinator changes) recorded by this node, by type.
# TYPE murmur_events_total counter
murmur_events_total{type="coordinator_changed"} 0
murmur_events_total{type="headless"} 0
murmur_events_total{type="lease_expired"} 1
murmur_events_total{type="migrated"} 0
murmur_events_total{type="node_alive"} 0
murmur_events_total{type="node_dead"} 1
murmur_events_total{type="node_left"} 0
murmur_events_total{type="placed"} 3
murmur_events_total{type="replaced"} 0
murmur_events_total{type="stopped"} 0
murmur_events_total{type="unplaced"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "murmur_events_total"); err != nil {
		t.Error(err)
	}
}
