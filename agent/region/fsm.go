package region

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/murmur-edge/murmur/scheduler"
)

// Placement says where one instance runs: the scheduler's own type, so the table the
// FSM commits is the table the planner reads, with no translation between them. The
// FSM keeps only the committed fields (ID, Workload, Node, Version, Generation,
// StartedAt, Replaces, Cause, Reason); State, Healthy and Failures are what nodes report, joined in by the
// coordinator, and are always zero here. Generation is the generation of the plan
// (or the log index of the OpPlace command) that put the instance on Node: an
// instance found running with an older generation (after a partition heals) is stale.
type Placement = scheduler.Placement

// State is the region's replicated state. Values returned by Node.State and FSM.State
// are deep copies: callers may read and keep them, never share them back.
type State struct {
	// ClusterID is chosen by the first leader of the group (OpInit) and never changes.
	ClusterID string `codec:"c,omitempty"`
	// Placements: instance name → placement.
	Placements map[string]Placement `codec:"p"`
	// Intents: intent name → the version the coordinator last acted on.
	Intents map[string]string `codec:"v"`
	// Drained: node names whose drain flag is set (value always true).
	Drained map[string]bool `codec:"r"`
	// Generation is the generation of the last applied plan (OpPlan); a plan must be
	// computed from it (Plan.Base) and carry a higher one.
	Generation uint64 `codec:"gn,omitempty"`
	// Index is the Raft index of the last applied command (0 before any).
	Index uint64 `codec:"x"`
	// Unplaced is the work the last plan that said so could not place, with the
	// reasons (Plan.SetUnplaced), so that a new coordinator can explain it.
	Unplaced []Unplaced `codec:"u,omitempty"`
	// LastOffload: node name → when (the plan's At) an offload migration last moved
	// an instance away from it, so the per-node cooldown survives a failover.
	LastOffload map[string]time.Time `codec:"lo,omitempty"`
	// Stopping: instance name → an exclusive instance whose stop a plan committed
	// (Plan.Hold) and that its node may still run, until a later plan releases it
	// (Plan.Release): once the node has confirmed the stop, or its lease has ended.
	// Committed, so that a new coordinator keeps the instance's slot as well.
	Stopping map[string]Stopping `codec:"st,omitempty"`
}

// Stopping is an exclusive instance stopped in the table and not yet known stopped
// on its node (State.Stopping).
type Stopping struct {
	// Placement is the instance's record as the plan that stopped it found it.
	Placement Placement `codec:"p"`
	// Generation is the generation of that plan: a node that reports having applied
	// an assignment at least that new has been told to stop the instance.
	Generation uint64 `codec:"g"`
}

// NewState returns an empty state with its maps allocated.
func NewState() State {
	return State{Placements: map[string]Placement{}, Intents: map[string]string{}, Drained: map[string]bool{}}
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := s
	c.Placements = maps.Clone(s.Placements)
	c.Intents = maps.Clone(s.Intents)
	c.Drained = maps.Clone(s.Drained)
	c.Unplaced = slices.Clone(s.Unplaced)
	c.LastOffload = maps.Clone(s.LastOffload)
	c.Stopping = maps.Clone(s.Stopping)
	if c.Placements == nil {
		c.Placements = map[string]Placement{}
	}
	if c.Intents == nil {
		c.Intents = map[string]string{}
	}
	if c.Drained == nil {
		c.Drained = map[string]bool{}
	}
	return c
}

// ErrInvalidCommand wraps every rejection of a command by ApplyCommand or Validate.
var ErrInvalidCommand = errors.New("invalid region command")

// ApplyCommand is the FSM transition: it applies cmd committed at Raft index idx to s,
// in place. It is deterministic (no clock, no randomness, no map-order dependence). An
// invalid command leaves s untouched (except Index) and returns an error wrapping
// ErrInvalidCommand; a batch is all-or-nothing.
func ApplyCommand(s *State, idx uint64, cmd Command) error {
	if s.Placements == nil || s.Intents == nil || s.Drained == nil {
		*s = s.Clone()
	}
	if idx > s.Index {
		s.Index = idx
	}
	if err := cmd.Validate(); err != nil {
		return err
	}
	if err := checkPlans(s, cmd); err != nil {
		return err
	}
	applyValid(s, idx, cmd)
	return nil
}

// ErrStalePlan is returned for a plan computed from another table than the one in
// force (its Base is not State.Generation): the coordinator plans again.
var ErrStalePlan = errors.New("stale plan")

// checkPlans enforces optimistic concurrency for OpPlan: a plan applies only to the
// table it was computed from, and generations only grow.
func checkPlans(s *State, cmd Command) error {
	gen := s.Generation
	check := func(c Command) error {
		if c.Op != OpPlan {
			return nil
		}
		if c.Plan.Base != gen {
			return fmt.Errorf("%w: computed from generation %d, the table is at %d", ErrStalePlan, c.Plan.Base, gen)
		}
		if c.Plan.Generation <= gen {
			return fmt.Errorf("%w: generation %d is not above %d", ErrStalePlan, c.Plan.Generation, gen)
		}
		gen = c.Plan.Generation
		return nil
	}
	if cmd.Op == OpBatch {
		for _, c := range cmd.Batch {
			if err := check(c); err != nil {
				return err
			}
		}
		return nil
	}
	return check(cmd)
}

func applyValid(s *State, idx uint64, cmd Command) {
	switch cmd.Op {
	case OpInit:
		if s.ClusterID == "" {
			s.ClusterID = cmd.ClusterID
		}
	case OpPlace:
		old, ok := s.Placements[cmd.Instance]
		if ok && old.Node == cmd.Node && old.Workload == cmd.Intent {
			return // unchanged: keep the generation that first placed it there
		}
		s.Placements[cmd.Instance] = Placement{ID: cmd.Instance, Workload: cmd.Intent, Node: cmd.Node, Generation: idx}
	case OpPlan:
		p := cmd.Plan
		for _, id := range p.Release {
			delete(s.Stopping, id)
		}
		hold := make(map[string]bool, len(p.Hold))
		for _, id := range p.Hold {
			hold[id] = true
		}
		for _, id := range p.Stops {
			if old, ok := s.Placements[id]; ok && hold[id] {
				if s.Stopping == nil {
					s.Stopping = map[string]Stopping{}
				}
				s.Stopping[id] = Stopping{Placement: old, Generation: p.Generation}
			}
			delete(s.Placements, id)
		}
		for _, pl := range p.Places {
			if old, ok := s.Placements[pl.Replaces]; ok && pl.Replaces != "" && pl.Cause == scheduler.CauseOffload && !p.At.IsZero() {
				if s.LastOffload == nil {
					s.LastOffload = map[string]time.Time{}
				}
				if p.At.After(s.LastOffload[old.Node]) {
					s.LastOffload[old.Node] = p.At
				}
			}
		}
		for node, t := range s.LastOffload {
			// Cooldowns are minutes: forget a day-old one, so renamed nodes do not
			// grow the state (deterministic: the plan's own time decides).
			if !p.At.IsZero() && p.At.Sub(t) > 24*time.Hour {
				delete(s.LastOffload, node)
			}
		}
		for _, pl := range p.Places {
			s.Placements[pl.ID] = Placement{
				ID: pl.ID, Workload: pl.Workload, Node: pl.Node, Version: pl.Version,
				Generation: p.Generation, StartedAt: pl.StartedAt, Replaces: pl.Replaces,
				Cause: pl.Cause, Reason: pl.Reason, Supersedes: pl.Supersedes,
			}
		}
		if p.SetUnplaced {
			s.Unplaced = slices.Clone(p.Unplaced)
		}
		s.Generation = p.Generation
	case OpUnplace:
		delete(s.Placements, cmd.Instance)
	case OpSetIntent:
		s.Intents[cmd.Name] = cmd.Version
	case OpDeleteIntent:
		delete(s.Intents, cmd.Name)
	case OpDrain:
		if cmd.Drain {
			s.Drained[cmd.Node] = true
		} else {
			delete(s.Drained, cmd.Node)
		}
	case OpBatch:
		for _, c := range cmd.Batch {
			applyValid(s, idx, c)
		}
	}
}

// FSM is the raft.FSM over State. It is safe for concurrent use: Raft calls Apply,
// Snapshot and Restore from its FSM goroutine; State may be called from anywhere.
type FSM struct {
	mu    sync.RWMutex // guards st
	st    State
	onErr func(idx uint64, err error) // set before Raft starts; never called under mu
	h     *codec.MsgpackHandle        // immutable after NewFSM; safe for concurrent use
	// observe, when set (before Raft starts), is called after each applied plan,
	// never under mu. It must not block: it runs on Raft's FSM goroutine.
	observe func(Applied)
	// replayUpTo: entries at or below this index were in the log when the node
	// started; applying them again is a replay, not a new decision.
	replayUpTo uint64

	// recent holds the last RecentEntries committed commands this FSM applied, oldest
	// first (guarded by mu): what a checker compares across voters (Recent).
	recent []Entry
}

// RecentEntries is how many applied commands an FSM remembers for Recent.
const RecentEntries = 512

// Entry is one committed command as this node applied it: its index, term and a
// digest of its bytes. Two nodes of a region that list the same index must list the
// same term and digest; otherwise their logs diverged.
type Entry struct {
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Digest string `json:"digest"` // hex of the first 8 bytes of sha256(data)
}

// Applied is what one committed plan changed, for observers (the event stream).
type Applied struct {
	Index, Term uint64
	// Replay is set for entries that were already in the log when the node started:
	// the decision was taken before, this is the state being rebuilt.
	Replay     bool
	At         time.Time // the coordinator's clock when it planned (zero for old entries)
	Generation uint64
	Stopped    []Stopped   // the placements the plan removed, as they were, with why
	Placed     []Placement // the placements it added (Cause and Reason say why)
	// From gives, for each placed instance that Replaces one still in the table (a
	// migration), the node of the instance it replaces.
	From map[string]string
	// UnplacedSet: the plan replaced the region's unplaced list, from PrevUnplaced to
	// Unplaced.
	UnplacedSet  bool
	Unplaced     []Unplaced
	PrevUnplaced []Unplaced
}

// Stopped is one placement a plan removed, and why.
type Stopped struct {
	Placement
	StopCause  string
	StopReason string
}

// plansOf lists the plans of a command (one, the plans of a batch, or none).
func plansOf(cmd Command) []*Plan {
	if cmd.Op == OpPlan {
		return []*Plan{cmd.Plan}
	}
	var out []*Plan
	for _, c := range cmd.Batch {
		if c.Op == OpPlan {
			out = append(out, c.Plan)
		}
	}
	return out
}

// observed prepares what observers learn of plans about to be applied to st (read
// before, so the stopped placements are still there).
func observed(st *State, l *raft.Log, plans []*Plan, replayUpTo uint64) []Applied {
	out := make([]Applied, 0, len(plans))
	for _, p := range plans {
		a := Applied{Index: l.Index, Term: l.Term, Replay: l.Index <= replayUpTo, At: p.At, Generation: p.Generation,
			Placed: slices.Clone(p.Places), UnplacedSet: p.SetUnplaced, Unplaced: slices.Clone(p.Unplaced), PrevUnplaced: slices.Clone(st.Unplaced)}
		why := make(map[string]Note, len(p.Why))
		for _, n := range p.Why {
			why[n.Instance] = n
		}
		for _, id := range p.Stops {
			if pl, ok := st.Placements[id]; ok {
				a.Stopped = append(a.Stopped, Stopped{Placement: pl, StopCause: why[id].Cause, StopReason: why[id].Reason})
			}
		}
		for i := range a.Placed {
			a.Placed[i].Generation = p.Generation
			if old, ok := st.Placements[a.Placed[i].Replaces]; ok && a.Placed[i].Replaces != "" {
				if a.From == nil {
					a.From = map[string]string{}
				}
				a.From[a.Placed[i].ID] = old.Node
			}
		}
		out = append(out, a)
	}
	return out
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM over an empty state.
func NewFSM() *FSM { return &FSM{st: NewState(), h: newCodec()} }

// Apply decodes and applies one committed log entry. It returns the error (or nil) as
// the ApplyFuture's response.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := decodeCommand(f.h, l.Data)
	sum := sha256.Sum256(l.Data)
	var obs []Applied
	f.mu.Lock()
	if len(f.recent) == RecentEntries {
		f.recent = append(f.recent[:0], f.recent[1:]...)
	}
	f.recent = append(f.recent, Entry{Index: l.Index, Term: l.Term, Digest: hex.EncodeToString(sum[:8])})
	if err == nil {
		if plans := plansOf(cmd); len(plans) > 0 && f.observe != nil {
			obs = observed(&f.st, l, plans, f.replayUpTo)
		}
		err = ApplyCommand(&f.st, l.Index, cmd)
	} else if l.Index > f.st.Index {
		f.st.Index = l.Index
	}
	f.mu.Unlock()
	if err != nil && f.onErr != nil {
		f.onErr(l.Index, err)
	}
	if err == nil {
		for _, a := range obs {
			f.observe(a)
		}
	}
	return err
}

// Recent returns the last committed commands this FSM applied (at most
// RecentEntries), oldest first. A snapshot restore starts the list afresh.
func (f *FSM) Recent() []Entry {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.recent)
}

// State returns a deep copy of the current state.
func (f *FSM) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Clone()
}

// Index is State().Index without the copy: it changes with every applied command, so
// a reader can tell whether a State it holds is still current.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Index
}

// Snapshot captures a deep copy; Persist encodes it outside the FSM lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{st: f.State()}, nil
}

// Restore replaces the whole state with the snapshot's; nothing of the previous state
// survives.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore region state: read: %w", err)
	}
	st, err := DecodeState(b)
	if err != nil {
		return fmt.Errorf("restore region state: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.recent = nil
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct{ st State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := EncodeState(s.st)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist region snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// ClusterID returns the cluster id ("" before the first leader set it).
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.ClusterID
}
