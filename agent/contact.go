package agent

import (
	"sync"
	"time"

	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/gossip"
)

// Where a node's running assignment comes from.
const (
	// SourceCoordinator: a coordinator of the node's region is alive in its fleet view,
	// so any change to the region's table reaches the node.
	SourceCoordinator = "coordinator"
	// SourceLastKnown: no coordinator of the region is reachable (none elected, cut
	// off, or rebooted without network); the node runs and restarts the assignment it
	// persisted last, indefinitely.
	SourceLastKnown = "last_known"
	// SourceNone: no coordinator is reachable and the node holds no assignment.
	SourceNone = "none"
)

// AssignmentsJSON is the "assignments" object of GET /v1/status.
type AssignmentsJSON struct {
	Source string `json:"source"`
	// Since is when Source last changed (observed once a second; agent start for the
	// first state).
	Since       time.Time `json:"since"`
	Reason      string    `json:"reason,omitempty"`
	Coordinator string    `json:"coordinator,omitempty"` // the region's coordinator in this node's view
	From        string    `json:"from,omitempty"`        // the coordinator that sent the held assignment
	Term        uint64    `json:"term,omitempty"`
	Generation  uint64    `json:"generation,omitempty"`
	Instances   int       `json:"instances"`
}

// contactSource decides where the node's assignment comes from: a coordinator of the
// region alive (or suspect) in the fleet view, or the node's last-known one. Pure.
func contactSource(self, coordinator string, members []gossip.Member, held coordinator.Held) (source, reason string) {
	if coordinator != "" {
		if coordinator == self {
			return SourceCoordinator, ""
		}
		for _, m := range members {
			if m.Name == coordinator && m.Up() {
				return SourceCoordinator, ""
			}
		}
		reason = "coordinator " + coordinator + " is not alive in this node's view"
	} else {
		reason = "this node sees no coordinator of its region (none elected, or cut off from it)"
	}
	if held.From == "" && held.Instances == 0 {
		return SourceNone, reason
	}
	return SourceLastKnown, reason
}

// contactTracker remembers when the source last changed.
type contactTracker struct {
	mu     sync.Mutex // guards source and since
	source string
	since  time.Time
}

// current is the source last observed ("" before the first observation).
func (t *contactTracker) current() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.source
}

// observe records the source seen at now and returns since when it holds.
func (t *contactTracker) observe(now time.Time, source string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if source != t.source || t.since.IsZero() {
		t.source, t.since = source, now
	}
	return t.since
}

// assignments observes the node's contact with its coordinator and describes it.
func (a *Agent) assignments() AssignmentsJSON {
	var held coordinator.Held
	if l := a.local.Load(); l != nil {
		held = l.Held()
	}
	coord := a.coordinatorOf(a.cfg.Region)
	source, reason := contactSource(a.cfg.Name, coord, a.gossip.Members(), held)
	since := a.contact.observe(a.now(), source)
	if source == SourceCoordinator {
		reason = ""
	}
	return AssignmentsJSON{Source: source, Since: since, Reason: reason, Coordinator: coord,
		From: held.From, Term: held.Term, Generation: held.Generation, Instances: held.Instances}
}

// observeContact updates the tracker once a second (sampleLoop) and logs each change,
// so an operator reading the log sees when a node went on its own and came back.
func (a *Agent) observeContact() {
	prev := a.contact.current()
	st := a.assignments()
	if st.Source == prev {
		return
	}
	switch st.Source {
	case SourceLastKnown:
		a.log.Warn("running the last-known assignment: no coordinator is reachable", "reason", st.Reason,
			"from", st.From, "term", st.Term, "generation", st.Generation, "instances", st.Instances)
	case SourceCoordinator:
		if prev != "" {
			a.log.Info("coordinator reachable again", "coordinator", st.Coordinator)
		}
	}
}
