package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/murmur-edge/murmur/policy"
)

// Message types: the first byte of every payload of gossip kind KindAssign.
const (
	msgAssignment byte = 1 // coordinator → node: the node's whole assignment set
	msgReport     byte = 2 // node → coordinator: what it applied and how its instances are
	msgQuery      byte = 3 // any node → a coordinator: the region's workloads, please
	msgAnswer     byte = 4 // coordinator → asking node
	msgLease      byte = 5 // node → coordinator: renew my lease (exclusive workloads)
	msgGrant      byte = 6 // coordinator → node: lease renewed
)

// Limits of what a node accepts from a peer.
const (
	// MaxMessageBytes bounds one message (gossip's reliable channel allows 4 MiB).
	MaxMessageBytes = 4 << 20
	// MaxInstances bounds the instances of one assignment set or report.
	MaxInstances = 10000
	maxName      = 253
	// MaxUsageMilliCPU and MaxUsageBytes bound an instance's reported usage (a million
	// cores, an exbibyte): a report claiming more is not from a real node.
	MaxUsageMilliCPU = 1 << 30
	MaxUsageBytes    = 1 << 60
)

// Assigned is one instance a node must run: which intent, at which version, under
// which generation. The node looks the spec up in its own intent store.
type Assigned struct {
	ID         string         `codec:"i"`
	Intent     string         `codec:"n"`
	Version    policy.Version `codec:"v"`
	Generation uint64         `codec:"g"`
}

// Assignment is the whole set of instances one node must run, read from the region's
// applied Raft state. It replaces the previous set. (Term, Generation) orders the
// assignments of one cluster: a node refuses one older than what it applied.
type Assignment struct {
	Region     string     `codec:"r"`
	Cluster    string     `codec:"c"`
	Term       uint64     `codec:"t"`
	Generation uint64     `codec:"g"` // the table's generation it was read from
	Node       string     `codec:"d"` // the node it is for
	Digest     string     `codec:"h"` // Digest(Instances)
	Instances  []Assigned `codec:"a"`
	// CommittedAt is when the coordinator saw the entry behind this set committed
	// (Unix nanoseconds of its clock), for the delivery-latency metric; 0 on resends.
	CommittedAt int64 `codec:"at,omitempty"`
}

// InstanceReport is what a node says about one of its instances.
type InstanceReport struct {
	ID         string    `codec:"i" json:"instance"`
	Intent     string    `codec:"n" json:"intent"`
	Generation uint64    `codec:"g" json:"generation"`
	State      string    `codec:"s" json:"state"`
	Restarts   int       `codec:"r" json:"restarts"`
	Since      time.Time `codec:"t" json:"since,omitzero"`
	Error      string    `codec:"e,omitempty" json:"error,omitempty"`
	// MilliCPU and MemoryBytes are the instance's measured use (the supervisor's last
	// sample; 0 until it has one, and CPU needs two). The coordinator hands them to the
	// offload rule, which moves an instance only where what it really uses fits.
	MilliCPU    int64 `codec:"c,omitempty" json:"milliCPU,omitempty"`
	MemoryBytes int64 `codec:"m,omitempty" json:"memoryBytes,omitempty"`
}

// Report is a node's answer to an assignment and its periodic status: the digest of
// the set it applied and every instance it runs or was asked to run.
type Report struct {
	// Seq orders one node's reports (they may overtake each other): it grows within
	// an agent's run and starts from the clock at the next, so the newest wins.
	Seq        uint64           `codec:"q"`
	Node       string           `codec:"d"`
	Region     string           `codec:"r"`
	Term       uint64           `codec:"t"`
	Generation uint64           `codec:"g"`
	Digest     string           `codec:"h"`
	Waiting    []string         `codec:"w,omitempty"` // assigned instances whose intent body is not here yet
	Instances  []InstanceReport `codec:"a"`
}

// Query asks a coordinator for its region's workloads.
type Query struct {
	ID     uint64 `codec:"q"`
	Intent string `codec:"n,omitempty"`
}

// Answer is a coordinator's reply to a Query.
type Answer struct {
	ID    uint64 `codec:"q"`
	View  View   `codec:"v"`
	Error string `codec:"e,omitempty"`
}

// LeaseRequest asks the region's coordinator to renew this node's lease: the node may
// run its exclusive instances until it sent the request + Lease (its own clock); the
// coordinator holds them as possibly running until it received it + Lease (lease.go).
type LeaseRequest struct {
	Seq     uint64 `codec:"q"` // grows within an agent's run: matches the grant to its send time
	Node    string `codec:"d"`
	Region  string `codec:"r"`
	LeaseMS int64  `codec:"l"`
}

// LeaseGrant answers a LeaseRequest once the coordinator has verified it still leads.
// Generation and Digest are the node's assignment in the table at that moment: a node
// whose lease ran out starts its exclusive instances again only from an assignment at
// least that new, never from the one it held before (it may have been replaced).
type LeaseGrant struct {
	Seq        uint64 `codec:"q"`
	Term       uint64 `codec:"t"`
	Generation uint64 `codec:"g"`
	Digest     string `codec:"h"`
}

// Bounds of a lease a coordinator grants.
const (
	MinLease = time.Second
	MaxLease = 5 * time.Minute
)

// Digest identifies an assignment set: nodes gossip the digest of the set they
// applied, so a coordinator sees who lags without asking.
func Digest(in []Assigned) string {
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b Assigned) int { return strings.Compare(a.ID, b.ID) })
	h := sha256.New()
	for _, a := range s {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\n", a.ID, a.Intent, a.Version, a.Generation)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func newCodec() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.MaxInitLen = 1024 // never pre-allocate what a hostile length prefix claims
	h.MaxDepth = 16
	h.RawToString = true
	h.WriteExt = true
	return h
}

// ErrMessage marks bytes that are not a valid message.
var ErrMessage = errors.New("bad coordinator message")

// Encode encodes one message (an Assignment, Report, Query, Answer, LeaseRequest or
// LeaseGrant).
func Encode(v any) ([]byte, error) {
	var typ byte
	switch v.(type) {
	case Assignment, *Assignment:
		typ = msgAssignment
	case Report, *Report:
		typ = msgReport
	case Query, *Query:
		typ = msgQuery
	case Answer, *Answer:
		typ = msgAnswer
	case LeaseRequest, *LeaseRequest:
		typ = msgLease
	case LeaseGrant, *LeaseGrant:
		typ = msgGrant
	default:
		return nil, fmt.Errorf("encode %T: not a coordinator message", v)
	}
	var body []byte
	if err := codec.NewEncoderBytes(&body, newCodec()).Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append([]byte{typ}, body...), nil
}

// Decode decodes and checks a message from a peer. It never panics on hostile input.
func Decode(b []byte) (msg any, err error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessage, len(b), MaxMessageBytes)
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: %v", ErrMessage, r)
		}
	}()
	dec := codec.NewDecoderBytes(b[1:], newCodec())
	switch b[0] {
	case msgAssignment:
		var a Assignment
		if err := dec.Decode(&a); err != nil {
			return nil, fmt.Errorf("%w: assignment: %v", ErrMessage, err)
		}
		return a, a.check()
	case msgReport:
		var r Report
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("%w: report: %v", ErrMessage, err)
		}
		return r, r.check()
	case msgQuery:
		var q Query
		if err := dec.Decode(&q); err != nil {
			return nil, fmt.Errorf("%w: query: %v", ErrMessage, err)
		}
		return q, nil
	case msgAnswer:
		var a Answer
		if err := dec.Decode(&a); err != nil {
			return nil, fmt.Errorf("%w: answer: %v", ErrMessage, err)
		}
		if len(a.View.Workloads) > MaxInstances*10 {
			return nil, fmt.Errorf("%w: answer with %d workloads", ErrMessage, len(a.View.Workloads))
		}
		return a, nil
	case msgLease:
		var l LeaseRequest
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("%w: lease request: %v", ErrMessage, err)
		}
		if l.Node == "" || len(l.Node) > maxName || len(l.Region) > maxName {
			return nil, fmt.Errorf("%w: lease request without a valid node", ErrMessage)
		}
		if d := time.Duration(l.LeaseMS) * time.Millisecond; l.LeaseMS <= 0 || d < MinLease || d > MaxLease {
			return nil, fmt.Errorf("%w: lease of %d ms, want %v to %v", ErrMessage, l.LeaseMS, MinLease, MaxLease)
		}
		return l, nil
	case msgGrant:
		var g LeaseGrant
		if err := dec.Decode(&g); err != nil {
			return nil, fmt.Errorf("%w: lease grant: %v", ErrMessage, err)
		}
		if len(g.Digest) > 64 {
			return nil, fmt.Errorf("%w: lease grant with a %d-byte digest", ErrMessage, len(g.Digest))
		}
		return g, nil
	}
	return nil, fmt.Errorf("%w: unknown type %d", ErrMessage, b[0])
}

func (a Assignment) check() error {
	if a.Node == "" || a.Region == "" || len(a.Node) > maxName || len(a.Region) > maxName {
		return fmt.Errorf("%w: assignment without a valid node or region", ErrMessage)
	}
	if len(a.Instances) > MaxInstances {
		return fmt.Errorf("%w: assignment of %d instances, the limit is %d", ErrMessage, len(a.Instances), MaxInstances)
	}
	seen := make(map[string]bool, len(a.Instances))
	for _, in := range a.Instances {
		if in.ID == "" || in.Intent == "" || len(in.ID) > maxName || len(in.Intent) > maxName || seen[in.ID] {
			return fmt.Errorf("%w: assignment: instance %q of %q is empty, too long or listed twice", ErrMessage, in.ID, in.Intent)
		}
		seen[in.ID] = true
	}
	if Digest(a.Instances) != a.Digest {
		return fmt.Errorf("%w: assignment digest does not match its instances", ErrMessage)
	}
	return nil
}

func (r Report) check() error {
	if r.Node == "" || len(r.Node) > maxName {
		return fmt.Errorf("%w: report without a valid node", ErrMessage)
	}
	if len(r.Instances) > MaxInstances || len(r.Waiting) > MaxInstances {
		return fmt.Errorf("%w: report of %d instances, the limit is %d", ErrMessage, len(r.Instances), MaxInstances)
	}
	for _, in := range r.Instances {
		if in.MilliCPU < 0 || in.MilliCPU > MaxUsageMilliCPU || in.MemoryBytes < 0 || in.MemoryBytes > MaxUsageBytes {
			return fmt.Errorf("%w: report: instance %.64q uses %dm cpu and %d bytes: out of range", ErrMessage, in.ID, in.MilliCPU, in.MemoryBytes)
		}
	}
	return nil
}
