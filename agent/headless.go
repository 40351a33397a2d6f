package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
)

// A region is never silently headless: every node, voter or not, says a region is
// headless once it has seen no coordinator of it for headlessAfter, with since when
// and why. A voter of the region also raises the flag itself (region.KeyHeadless) when
// it knows a majority of the voters is gone; this covers the nodes that hold no vote,
// and regions none of whose voters this node can reach.

// headlessAfter is how long a region may have no coordinator in this node's view
// before the node calls it headless: well above an election (about a second on a
// LAN, 3 s of settling at a region's first start), as region.Config.HeadlessAfter.
const headlessAfter = 5 * time.Second

// headlessTracker remembers, per region, since when this node sees no coordinator.
type headlessTracker struct {
	mu     sync.Mutex           // guards since
	since  map[string]time.Time // region → no coordinator in view since; absent while one is
	window time.Duration
}

func newHeadlessTracker(window time.Duration) *headlessTracker {
	return &headlessTracker{since: map[string]time.Time{}, window: window}
}

// observe records the regions' coordinators as seen at now and marks the summaries of
// regions without one for longer than the window as headless (since when, and why).
// It returns the summaries, modified in place.
func (h *headlessTracker) observe(sums []region.RegionSummary, now time.Time) []region.RegionSummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(sums))
	for i := range sums {
		s := &sums[i]
		seen[s.Name] = true
		if s.Coordinator != "" {
			delete(h.since, s.Name)
			s.Headless = false
			continue
		}
		since, ok := h.since[s.Name]
		if !ok {
			since = now
			h.since[s.Name] = now
		}
		if s.Headless || now.Sub(since) >= h.window {
			s.Headless, s.HeadlessSince = true, since
			switch {
			case s.Headless && s.Nodes == 0:
				s.HeadlessReason = "no node of the region is alive in this node's view"
			case s.Headless && s.HeadlessReason == "":
				s.HeadlessReason = fmt.Sprintf("no coordinator for %s: a majority of the region's voters is out of reach (or cannot elect); nothing is committed, and its nodes keep running their last-known assignments", now.Sub(since).Round(time.Second))
			}
		}
	}
	for name := range h.since {
		if !seen[name] {
			delete(h.since, name)
		}
	}
	return sums
}
