package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/murmur-edge/murmur/agent/events"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/scheduler"
)

// The event stream (GET /v1/events) is fed from two sources on every node:
//
//   - the region's Raft log, on the nodes that hold it (voters and standbys): each
//     applied plan becomes placed, replaced, migrated, stopped and unplaced events,
//     with the reasons the coordinator committed with it (onApplied). Every holder of
//     the log reports the same decisions, once each; entries replayed at start are not
//     new decisions and are skipped.
//   - the fleet view (eventLoop): node deaths, returns and departures, coordinator
//     changes and headless regions, as this node's gossip sees them.

// onApplied turns one applied plan into events. It runs on Raft's FSM goroutine and
// does not block (Ring.Add takes a short lock and does no I/O).
func (a *Agent) onApplied(ap region.Applied) {
	if ap.Replay {
		return
	}
	at := ap.At
	if at.IsZero() {
		at = a.now()
	}
	r := a.cfg.Region
	for _, s := range ap.Stopped {
		a.events.Add(events.Event{Time: at, Type: events.TypeStopped, Region: r, Intent: s.Workload, Instance: s.ID,
			Node: s.Node, Cause: s.StopCause, Reason: s.StopReason, Term: ap.Term, Generation: ap.Generation})
	}
	for _, p := range ap.Placed {
		e := events.Event{Time: at, Type: events.TypePlaced, Region: r, Intent: p.Workload, Instance: p.ID, Node: p.Node,
			Cause: string(p.Cause), Reason: p.Reason, Term: ap.Term, Generation: ap.Generation}
		switch {
		case p.Replaces != "":
			e.Type, e.Replaces, e.From = events.TypeMigrated, p.Replaces, ap.From[p.ID]
		case p.Cause == scheduler.CauseReplace:
			e.Type = events.TypeReplaced
		}
		a.events.Add(e)
	}
	if ap.UnplacedSet {
		prev := make(map[region.Unplaced]bool, len(ap.PrevUnplaced))
		for _, u := range ap.PrevUnplaced {
			prev[u] = true
		}
		for _, u := range ap.Unplaced {
			if prev[u] {
				continue // still unplaced for the same reason: not a new decision
			}
			a.events.Add(events.Event{Time: at, Type: events.TypeUnplaced, Region: r, Intent: u.Workload, Instance: u.Instance,
				Count: u.Count, Reason: u.Reason, Term: ap.Term, Generation: ap.Generation})
		}
	}
}

// fleetWatch is what eventLoop remembers of the fleet view between looks.
type fleetWatch struct {
	status map[string]gossip.Member // node name → last seen member
	coord  map[string]regionWatch   // region → last seen coordinator
}

type regionWatch struct {
	coordinator string // last known, kept across elections
	term        uint64
	headless    bool
}

// eventLoop watches the fleet view and records node and region events as this node's
// gossip sees them, until ctx ends.
func (a *Agent) eventLoop(ctx context.Context) {
	changed, unsubscribe := a.gossip.Subscribe()
	defer unsubscribe()
	regionChanged, unsubscribeRegion := a.region.Subscribe()
	defer unsubscribeRegion()
	w := fleetWatch{status: map[string]gossip.Member{}, coord: map[string]regionWatch{}}
	for {
		ms := a.gossip.Members()
		a.watchFleet(&w, ms, a.regionSummaries(), a.now())
		// Load samples signal too: look at most 10 times a second, and at least once a
		// second (a region without a coordinator becomes headless as time passes).
		t := a.clock.NewTimer(eventLookEvery(len(ms)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		tick := a.clock.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-changed:
		case <-regionChanged:
		case <-tick.C():
		}
		tick.Stop()
	}
}

// eventLookEvery is the shortest time between two looks at a fleet of n members. Each
// look compares every member, and on a large fleet some record changes every moment:
// 10 looks a second on 100 members, stretched so that a node compares about 1,000
// members a second, but looks at least once a second (1,000 agents simulated on two
// cores spent 15 % of their CPU here, issue 14).
func eventLookEvery(n int) time.Duration {
	return min(time.Second, max(100*time.Millisecond, time.Duration(n)*time.Millisecond))
}

// watchFleet compares the view with what w remembers and records the differences.
func (a *Agent) watchFleet(w *fleetWatch, ms []gossip.Member, sums []region.RegionSummary, now time.Time) {
	present := make(map[string]bool, len(ms))
	for _, m := range ms {
		present[m.Name] = true
	}
	for name := range w.status {
		if !present[name] {
			delete(w.status, name) // forgotten by gossip (dead or left long ago)
		}
	}
	for _, m := range ms {
		old, seen := w.status[m.Name]
		w.status[m.Name] = m
		if seen && old.Status == m.Status {
			continue
		}
		e := events.Event{Time: now, Region: m.Region, Node: m.Name}
		switch m.Status {
		case gossip.StatusDead:
			e.Type, e.Reason = events.TypeNodeDead, "failure detection declared it dead (no answer to probes, suspicion not refuted)"
			if !m.StatusSince.IsZero() {
				e.Time = m.StatusSince
			}
		case gossip.StatusLeft:
			e.Type, e.Reason = events.TypeNodeLeft, "left the fleet (agent stopped)"
		case gossip.StatusAlive:
			switch {
			case !seen:
				if m.Local {
					e.Reason = "this node started"
				} else {
					e.Reason = "joined (first seen alive by this node)"
				}
			case old.Status == gossip.StatusSuspect:
				continue // a refuted suspicion is not an event
			default:
				e.Reason = fmt.Sprintf("back after %s %s", old.Status, now.Sub(old.StatusSince).Round(time.Millisecond))
			}
			e.Type = events.TypeNodeAlive
		default:
			continue // suspect: not yet a decision
		}
		a.events.Add(e)
	}
	for _, s := range sums {
		old := w.coord[s.Name]
		nw := old
		if s.Coordinator != "" && (s.Coordinator != old.coordinator || s.Term > old.term) {
			reason := fmt.Sprintf("elected in term %d", s.Term)
			if old.coordinator != "" {
				reason += "; previous coordinator " + old.coordinator
			}
			if s.Coordinator != old.coordinator {
				a.events.Add(events.Event{Time: now, Type: events.TypeCoordinatorChanged, Region: s.Name, Node: s.Coordinator, Term: s.Term, Reason: reason})
			}
			nw.coordinator, nw.term = s.Coordinator, s.Term
		}
		if s.Headless && !old.headless {
			a.events.Add(events.Event{Time: now, Type: events.TypeHeadless, Region: s.Name, Reason: s.HeadlessReason})
		}
		nw.headless = s.Headless
		w.coord[s.Name] = nw
	}
}
