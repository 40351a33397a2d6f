package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
)

// Every node calls a region headless once it has seen no coordinator of it for the
// window, whether or not a voter said so, and forgets it when one is elected.
func TestHeadlessTracker(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	h := newHeadlessTracker(5 * time.Second)
	look := func(at time.Duration, sums ...region.RegionSummary) map[string]region.RegionSummary {
		out := map[string]region.RegionSummary{}
		for _, s := range h.observe(sums, t0.Add(at)) {
			out[s.Name] = s
		}
		return out
	}
	led := region.RegionSummary{Name: "a", Coordinator: "n1", Nodes: 3}
	lost := region.RegionSummary{Name: "b", Nodes: 2}
	if got := look(0, led, lost); got["a"].Headless || got["b"].Headless {
		t.Fatalf("at first sight: %+v; nothing is headless yet", got)
	}
	if got := look(4999*time.Millisecond, led, lost); got["b"].Headless {
		t.Errorf("b headless after 4.999 s without a coordinator, want after 5 s")
	}
	got := look(5*time.Second, led, lost)
	if b := got["b"]; !b.Headless || !b.HeadlessSince.Equal(t0) || !strings.Contains(b.HeadlessReason, "no coordinator for 5s") {
		t.Errorf("b after 5 s: %+v, want headless since %v with the reason", b, t0)
	}
	if got["a"].Headless {
		t.Error("a has a coordinator and is headless")
	}
	// A voter's own flag counts at once, and a region with no alive node says so.
	flagged := region.RegionSummary{Name: "c", Nodes: 1, Headless: true}
	empty := region.RegionSummary{Name: "d"}
	got = look(6*time.Second, led, lost, flagged, empty)
	if !got["c"].Headless || !got["c"].HeadlessSince.Equal(t0.Add(6*time.Second)) {
		t.Errorf("c flagged by its voter: %+v, want headless since now", got["c"])
	}
	got = look(11*time.Second, led, lost, flagged, empty)
	if d := got["d"]; !d.Headless || !strings.Contains(d.HeadlessReason, "no node of the region is alive") {
		t.Errorf("d with no alive node: %+v", d)
	}
	// b elects a coordinator: not headless, and the clock starts again if it loses it.
	b := lost
	b.Coordinator = "n7"
	if got := look(12*time.Second, led, b); got["b"].Headless {
		t.Error("b has a coordinator again and is still headless")
	}
	if got := look(13*time.Second, led, lost); got["b"].Headless {
		t.Error("b headless 1 s after losing its coordinator again, want the window to start over")
	}
}
