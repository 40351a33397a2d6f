package region

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Op is the kind of a region command.
type Op uint8

// Ops. Values are part of the log format: never renumber.
const (
	OpInit         Op = 1 // set ClusterID (first leader; ignored once set)
	OpPlace        Op = 2 // Instance (of Intent) runs on Node
	OpUnplace      Op = 3 // Instance runs nowhere
	OpSetIntent    Op = 4 // the coordinator acted on intent Name at Version
	OpDeleteIntent Op = 5 // forget intent Name
	OpDrain        Op = 6 // set (Drain=true) or clear the drain flag of Node
	OpBatch        Op = 7 // Batch: many commands in one log entry, applied atomically
	OpPlan         Op = 8 // Plan: one coordinator plan (stops and placements), fenced by its base generation
)

func (o Op) String() string {
	switch o {
	case OpInit:
		return "init"
	case OpPlace:
		return "place"
	case OpUnplace:
		return "unplace"
	case OpSetIntent:
		return "set-intent"
	case OpDeleteIntent:
		return "delete-intent"
	case OpDrain:
		return "drain"
	case OpBatch:
		return "batch"
	case OpPlan:
		return "plan"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one change to the region state, the payload of one Raft log entry.
type Command struct {
	Op        Op        `codec:"o"`
	ClusterID string    `codec:"c,omitempty"`
	Instance  string    `codec:"i,omitempty"`
	Intent    string    `codec:"n,omitempty"`
	Node      string    `codec:"d,omitempty"`
	Name      string    `codec:"m,omitempty"`
	Version   string    `codec:"v,omitempty"`
	Drain     bool      `codec:"r,omitempty"`
	Batch     []Command `codec:"b,omitempty"`
	Plan      *Plan     `codec:"p,omitempty"`
}

// Plan is one scheduler plan as committed: the instances it stops and the placements
// it adds (a migration is both). Base is the State.Generation the plan was computed
// from; the FSM refuses the plan (ErrStalePlan) when the table has moved on since, so
// a plan made on an old table never lands. Generation, stamped on every placement, is
// the one the scheduler put into the new instances' IDs.
//
// The rest explains the plan, so that any node holding the log, and whoever leads
// next, can say why the table is as it is: At is the coordinator's clock when it
// planned; Why gives the cause and reason of each stop (each placement carries its
// own in Placement.Cause and Reason); when SetUnplaced is true, Unplaced replaces
// the region's list of work that could not be placed (State.Unplaced).
type Plan struct {
	Base        uint64      `codec:"b"`
	Generation  uint64      `codec:"g"`
	Stops       []string    `codec:"s,omitempty"`
	Places      []Placement `codec:"p,omitempty"`
	At          time.Time   `codec:"at,omitempty"`
	Why         []Note      `codec:"w,omitempty"`
	SetUnplaced bool        `codec:"su,omitempty"`
	Unplaced    []Unplaced  `codec:"u,omitempty"`
	// Hold lists the stops (a subset of Stops) of exclusive instances: their records
	// move to State.Stopping instead of going, since their node may run them until it
	// has applied this plan. Release lists State.Stopping entries to forget.
	Hold    []string `codec:"hd,omitempty"`
	Release []string `codec:"rl,omitempty"`
}

// Note is why one instance of a plan is stopped.
type Note struct {
	Instance string `codec:"i"`
	Cause    string `codec:"c,omitempty"`
	Reason   string `codec:"r,omitempty"`
}

// Unplaced is work of the region that the coordinator could not place, and why: a
// whole workload's missing instances (Instance empty), or one instance it could not
// move (drain, update, offload).
type Unplaced struct {
	Workload string `codec:"n" json:"intent"`
	Instance string `codec:"i,omitempty" json:"instance,omitempty"`
	Count    int    `codec:"c" json:"count"`
	Reason   string `codec:"r" json:"reason"`
}

// Limits of the explanations a plan carries.
const (
	MaxReasonLen = 2048 // bytes of one reason
	MaxCauseLen  = 64
	MaxUnplaced  = 4096 // entries of Plan.Unplaced
)

// MaxPlanEntries bounds Stops plus Places of one plan.
const MaxPlanEntries = 1 << 20

// Place, Unplace, SetIntent, DeleteIntent, SetDrain and Batch build commands.
func Place(instance, intent, node string) Command {
	return Command{Op: OpPlace, Instance: instance, Intent: intent, Node: node}
}
func Unplace(instance string) Command { return Command{Op: OpUnplace, Instance: instance} }
func SetIntent(name, version string) Command {
	return Command{Op: OpSetIntent, Name: name, Version: version}
}
func DeleteIntent(name string) Command         { return Command{Op: OpDeleteIntent, Name: name} }
func SetDrain(node string, drain bool) Command { return Command{Op: OpDrain, Node: node, Drain: drain} }
func Batch(cmds ...Command) Command            { return Command{Op: OpBatch, Batch: cmds} }
func PlanCommand(p Plan) Command               { return Command{Op: OpPlan, Plan: &p} }

// Limits of the command format, enforced by Validate (and so by the decoder).
const (
	MaxNameLen    = 253
	MaxBatch      = 65536
	MaxCommandLen = 16 << 20
	commandFormat = 1 // first byte of every encoded command
	stateFormat   = 1 // first byte of every encoded snapshot
)

// Validate checks the fields the op needs. Errors wrap ErrInvalidCommand and name the
// field.
func (c Command) Validate() error {
	return c.validate(true)
}

func (c Command) validate(top bool) error {
	name := func(field, v string, required bool) error {
		if required && v == "" {
			return fmt.Errorf("%w: %s: %s is required", ErrInvalidCommand, c.Op, field)
		}
		if len(v) > MaxNameLen {
			return fmt.Errorf("%w: %s: %s is %d bytes long, the limit is %d", ErrInvalidCommand, c.Op, field, len(v), MaxNameLen)
		}
		return nil
	}
	if c.Op != OpBatch && len(c.Batch) > 0 {
		return fmt.Errorf("%w: %s: batch is only allowed with op batch", ErrInvalidCommand, c.Op)
	}
	if c.Op != OpPlan && c.Plan != nil {
		return fmt.Errorf("%w: %s: plan is only allowed with op plan", ErrInvalidCommand, c.Op)
	}
	var errs []error
	switch c.Op {
	case OpInit:
		errs = append(errs, name("cluster_id", c.ClusterID, true))
	case OpPlace:
		errs = append(errs, name("instance", c.Instance, true), name("node", c.Node, true), name("intent", c.Intent, false))
	case OpUnplace:
		errs = append(errs, name("instance", c.Instance, true))
	case OpSetIntent:
		errs = append(errs, name("name", c.Name, true), name("version", c.Version, true))
	case OpDeleteIntent:
		errs = append(errs, name("name", c.Name, true))
	case OpDrain:
		errs = append(errs, name("node", c.Node, true))
	case OpPlan:
		if err := c.Plan.validate(); err != nil {
			return err
		}
	case OpBatch:
		if !top {
			return fmt.Errorf("%w: batch inside a batch: flatten it", ErrInvalidCommand)
		}
		if len(c.Batch) > MaxBatch {
			return fmt.Errorf("%w: batch of %d commands, the limit is %d: split it", ErrInvalidCommand, len(c.Batch), MaxBatch)
		}
		for i, sub := range c.Batch {
			if err := sub.validate(false); err != nil {
				return fmt.Errorf("batch[%d]: %w", i, err)
			}
		}
	default:
		return fmt.Errorf("%w: unknown op %d", ErrInvalidCommand, uint8(c.Op))
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (p *Plan) validate() error {
	if p == nil {
		return fmt.Errorf("%w: plan: plan is required", ErrInvalidCommand)
	}
	if p.Generation == 0 {
		return fmt.Errorf("%w: plan: generation is required", ErrInvalidCommand)
	}
	if n := len(p.Stops) + len(p.Places) + len(p.Hold) + len(p.Release); n > MaxPlanEntries {
		return fmt.Errorf("%w: plan of %d entries, the limit is %d: split it", ErrInvalidCommand, n, MaxPlanEntries)
	}
	for i, id := range p.Stops {
		if id == "" || len(id) > MaxNameLen {
			return fmt.Errorf("%w: plan: stops[%d]: instance id must be 1-%d bytes", ErrInvalidCommand, i, MaxNameLen)
		}
	}
	if len(p.Hold) > 0 {
		stops := make(map[string]bool, len(p.Stops))
		for _, id := range p.Stops {
			stops[id] = true
		}
		for i, id := range p.Hold {
			if !stops[id] {
				return fmt.Errorf("%w: plan: hold[%d]: instance %q is not one of the plan's stops", ErrInvalidCommand, i, id)
			}
		}
	}
	for i, id := range p.Release {
		if id == "" || len(id) > MaxNameLen {
			return fmt.Errorf("%w: plan: release[%d]: instance id must be 1-%d bytes", ErrInvalidCommand, i, MaxNameLen)
		}
	}
	seen := make(map[string]bool, len(p.Places))
	for i, pl := range p.Places {
		for _, f := range []struct{ field, v string }{{"id", pl.ID}, {"workload", pl.Workload}, {"node", pl.Node}} {
			if f.v == "" || len(f.v) > MaxNameLen {
				return fmt.Errorf("%w: plan: places[%d].%s must be 1-%d bytes", ErrInvalidCommand, i, f.field, MaxNameLen)
			}
		}
		if seen[pl.ID] {
			return fmt.Errorf("%w: plan: places[%d]: instance %s placed twice", ErrInvalidCommand, i, pl.ID)
		}
		seen[pl.ID] = true
		if len(pl.Cause) > MaxCauseLen || len(pl.Reason) > MaxReasonLen || len(pl.Supersedes) > MaxNameLen {
			return fmt.Errorf("%w: plan: places[%d]: cause, reason or supersedes too long (limits %d, %d and %d bytes)", ErrInvalidCommand, i, MaxCauseLen, MaxReasonLen, MaxNameLen)
		}
	}
	if len(p.Why) > len(p.Stops) {
		return fmt.Errorf("%w: plan: %d stop notes for %d stops", ErrInvalidCommand, len(p.Why), len(p.Stops))
	}
	for i, n := range p.Why {
		if n.Instance == "" || len(n.Instance) > MaxNameLen || len(n.Cause) > MaxCauseLen || len(n.Reason) > MaxReasonLen {
			return fmt.Errorf("%w: plan: why[%d]: instance must be 1-%d bytes, cause and reason at most %d and %d", ErrInvalidCommand, i, MaxNameLen, MaxCauseLen, MaxReasonLen)
		}
	}
	if len(p.Unplaced) > 0 && !p.SetUnplaced {
		return fmt.Errorf("%w: plan: unplaced given without set_unplaced", ErrInvalidCommand)
	}
	if len(p.Unplaced) > MaxUnplaced {
		return fmt.Errorf("%w: plan: %d unplaced entries, the limit is %d", ErrInvalidCommand, len(p.Unplaced), MaxUnplaced)
	}
	for i, u := range p.Unplaced {
		if u.Workload == "" || len(u.Workload) > MaxNameLen || len(u.Instance) > MaxNameLen || len(u.Reason) > MaxReasonLen || u.Count < 0 {
			return fmt.Errorf("%w: plan: unplaced[%d]: intent must be 1-%d bytes, instance at most %d, reason at most %d, count not negative", ErrInvalidCommand, i, MaxNameLen, MaxNameLen, MaxReasonLen)
		}
	}
	return nil
}

func newCodec() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.MaxInitLen = 1024 // never pre-allocate what a hostile length prefix claims
	h.MaxDepth = 16
	h.RawToString = true
	return h
}

// EncodeCommand validates and encodes cmd: one format byte, then msgpack.
func EncodeCommand(cmd Command) ([]byte, error) {
	return encodeCommand(newCodec(), cmd)
}

func encodeCommand(h *codec.MsgpackHandle, cmd Command) ([]byte, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	var body []byte
	if err := codec.NewEncoderBytes(&body, h).Encode(cmd); err != nil {
		return nil, fmt.Errorf("encode %s command: %w", cmd.Op, err)
	}
	return append([]byte{commandFormat}, body...), nil
}

// DecodeCommand decodes and validates bytes produced by EncodeCommand. It is the
// decoder of every log entry and never panics on hostile input.
func DecodeCommand(b []byte) (Command, error) {
	return decodeCommand(newCodec(), b)
}

func decodeCommand(h *codec.MsgpackHandle, b []byte) (Command, error) {
	var cmd Command
	if len(b) == 0 {
		return cmd, fmt.Errorf("%w: empty entry", ErrInvalidCommand)
	}
	if len(b) > MaxCommandLen {
		return cmd, fmt.Errorf("%w: entry of %d bytes, the limit is %d", ErrInvalidCommand, len(b), MaxCommandLen)
	}
	if b[0] != commandFormat {
		return cmd, fmt.Errorf("%w: format byte %d, want %d (a newer murmur wrote this entry?)", ErrInvalidCommand, b[0], commandFormat)
	}
	if err := codec.NewDecoderBytes(b[1:], h).Decode(&cmd); err != nil {
		return Command{}, fmt.Errorf("%w: decode: %v", ErrInvalidCommand, err)
	}
	if err := cmd.Validate(); err != nil {
		return Command{}, err
	}
	return cmd, nil
}

// EncodeState encodes a state for a snapshot: one format byte, then msgpack.
func EncodeState(s State) ([]byte, error) {
	var body []byte
	if err := codec.NewEncoderBytes(&body, newCodec()).Encode(s); err != nil {
		return nil, fmt.Errorf("encode region state: %w", err)
	}
	return append([]byte{stateFormat}, body...), nil
}

// DecodeState decodes bytes produced by EncodeState.
func DecodeState(b []byte) (State, error) {
	if len(b) == 0 || b[0] != stateFormat {
		return State{}, fmt.Errorf("decode region state: bad format byte (want %d)", stateFormat)
	}
	var s State
	if err := codec.NewDecoderBytes(b[1:], newCodec()).Decode(&s); err != nil {
		return State{}, fmt.Errorf("decode region state: %w", err)
	}
	return s.Clone(), nil
}
