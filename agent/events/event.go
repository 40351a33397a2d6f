package events

import (
	"slices"
	"time"
)

// Event types. A Ring accepts other types too, for forward compatibility, as long
// as they are short lowercase words (ValidType); clients must accept types they do
// not know.
const (
	TypePlaced             = "placed"              // an instance was assigned to a node
	TypeReplaced           = "replaced"            // an instance was placed to replace a lost one (Replaces)
	TypeMigrated           = "migrated"            // an instance moved from one node (From) to another (Node)
	TypeStopped            = "stopped"             // an instance was removed from the placement table
	TypeUnplaced           = "unplaced"            // Count instances of an intent could not be placed (Reason)
	TypeNodeDead           = "node_dead"           // a node was declared dead
	TypeNodeAlive          = "node_alive"          // a node joined or came back
	TypeNodeLeft           = "node_left"           // a node left the fleet gracefully
	TypeCoordinatorChanged = "coordinator_changed" // a region has a new coordinator (Node, Term)
	TypeHeadless           = "headless"            // a region has no coordinator

	// TypeTruncated is never stored: the HTTP handler sends it, in place of events,
	// to a client that missed some (see Server).
	TypeTruncated = "truncated"
)

// Types are the event types this version of murmur produces, in a stable order.
var types = []string{TypePlaced, TypeReplaced, TypeMigrated, TypeStopped, TypeUnplaced,
	TypeNodeDead, TypeNodeAlive, TypeNodeLeft, TypeCoordinatorChanged, TypeHeadless}

// Types returns the event types this version of murmur produces.
func Types() []string { return slices.Clone(types) }

// maxTypeLen bounds an event type (and so the label values of murmur_events_total).
const maxTypeLen = 32

// ValidType reports whether t can be an event type: 1 to 32 characters of [a-z_],
// starting with a letter.
func ValidType(t string) bool {
	if t == "" || len(t) > maxTypeLen || t[0] == '_' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// Event is one decision and its reason. ID, Time and Type are always present; the
// other fields only where they apply.
type Event struct {
	ID   uint64    `json:"id"`   // assigned by Ring.Add; grows across agent restarts
	Time time.Time `json:"time"` // RFC 3339 with nanoseconds
	Type string    `json:"type"` // a Type constant

	Region   string `json:"region,omitempty"`
	Intent   string `json:"intent,omitempty"`
	Instance string `json:"instance,omitempty"`
	Node     string `json:"node,omitempty"`     // the node the event is about, or the new node of a placement
	From     string `json:"from,omitempty"`     // the previous node of a migration
	Replaces string `json:"replaces,omitempty"` // the instance this one replaces
	Cause    string `json:"cause,omitempty"`    // machine-readable: "replace", "offload", "surplus", ...
	Reason   string `json:"reason,omitempty"`   // for humans

	Term       uint64 `json:"term,omitempty"`       // Raft term (coordinator changes)
	Generation uint64 `json:"generation,omitempty"` // Raft log generation of a placement
	Count      int    `json:"count,omitempty"`      // how many instances (unplaced)
}

// Filter selects events. Empty fields match everything; Types matches any of its
// entries.
type Filter struct {
	Region string
	Intent string // matches Event.Intent
	Node   string // matches Event.Node or Event.From
	Types  []string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e Event) bool {
	switch {
	case f.Region != "" && e.Region != f.Region:
		return false
	case f.Intent != "" && e.Intent != f.Intent:
		return false
	case f.Node != "" && e.Node != f.Node && e.From != f.Node:
		return false
	case len(f.Types) > 0 && !slices.Contains(f.Types, e.Type):
		return false
	}
	return true
}
