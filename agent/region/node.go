package region

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock is the time source of the node's own timers (grace periods, settle, headless).
// Raft keeps its own real-time timers.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Timing holds the Raft timers. The defaults (DefaultTiming) aim at the failover goal:
// SIGKILL of the leader → a new leader in about 0.5–1.2 s on a LAN.
type Timing struct {
	HeartbeatTimeout   time.Duration // follower without leader contact → election
	ElectionTimeout    time.Duration // candidate without a result → new election
	LeaderLeaseTimeout time.Duration // leader without quorum contact → step down
	CommitTimeout      time.Duration
	// HeartbeatInterval is how often the leader sends heartbeats: raft waits a random
	// 1-2× this between two. Zero keeps raft's own, HeartbeatTimeout/10. It must be
	// under HeartbeatTimeout/2 so a follower hears at least one heartbeat per timeout.
	HeartbeatInterval time.Duration
	// ControlTimeout bounds one call on the region's control channel: a probe of a
	// node's Raft port, a bootstrap promise or its release (a witness handover's
	// probe gets 3/10 of it). Zero means 1 s. The fleet simulator dilates it with the
	// rest: undilated, a dilation of 30 made it a 33 ms timeout, and overloaded peers
	// dropped out of the bootstrap promise round.
	ControlTimeout time.Duration
}

// DefaultTiming is the LAN profile: see docs/regions.md for the trade-off.
//
// Raft ties the heartbeat rate to the follower timeout (HeartbeatTimeout/10, 10 to 20
// heartbeats per timeout). HeartbeatInterval 75 ms still gives a follower two or more
// heartbeats per 300 ms timeout, at 40 % of raft's rate, so failover is unchanged and
// the idle cost of every Raft member falls (BENCHMARKS.md). The lease, 250 ms, keeps
// 100 ms of slack over the longest heartbeat gap and still ends a cut-off leader's
// term before a follower (300 ms at the earliest) can start an election.
//
// CommitTimeout is how often an idle leader sends AppendEntries to each follower
// besides the heartbeats (every HeartbeatTimeout/10). It does not delay commits (new
// entries are sent at once) or elections; only followers learn the commit index up to
// 100 ms later. At 20 ms it cost an idle coordinator 7.3 % of a core with 4 followers,
// at 100 ms 4.3 % (BENCHMARKS.md).
func DefaultTiming() Timing {
	return Timing{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      100 * time.Millisecond,
		HeartbeatInterval:  75 * time.Millisecond,
		ControlTimeout:     DefaultControlTimeout,
	}
}

// DefaultControlTimeout is Timing.ControlTimeout's default.
const DefaultControlTimeout = time.Second

// Dilated is t with every timer k times longer (the fleet simulator's dilation, see
// runtime.DilatedClock); k <= 1 leaves it unchanged.
func (t Timing) Dilated(k float64) Timing {
	if k <= 1 {
		return t
	}
	t.ControlTimeout = cmp.Or(t.ControlTimeout, DefaultControlTimeout)
	for _, d := range []*time.Duration{&t.HeartbeatTimeout, &t.ElectionTimeout, &t.LeaderLeaseTimeout, &t.CommitTimeout, &t.HeartbeatInterval, &t.ControlTimeout} {
		*d = time.Duration(float64(*d) * k)
	}
	return t
}

// WANTiming is hashicorp/raft's stock timing, for high-latency links (--profile wan):
// failover takes about 1-3 s, and the leader sends heartbeats every ~100 ms instead of
// every ~30 ms (raft sends them every HeartbeatTimeout/10), so idle CPU is lower.
func WANTiming() Timing {
	return Timing{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		ControlTimeout:     DefaultControlTimeout,
	}
}

// DefaultTick is the period of a node's control loop (Config.Tick).
const DefaultTick = 250 * time.Millisecond

// Config configures a Node. Zero values take the documented defaults.
type Config struct {
	NodeID string // required: the stable node id (Raft ServerID)
	Name   string // required: the node name
	Region string // required

	RaftBind      string // host:port the TCP transport listens on (unless Transport is set)
	RaftAdvertise string // host:port other nodes dial; default RaftBind (must not be 0.0.0.0)
	DataDir       string // required: the agent's data dir; this package owns DataDir/raft

	Voters          int           // maximum voters: 1, 3 or 5; 0 = automatic (3, or 5 with >= 7 eligible nodes)
	Standbys        int           // caught-up nonvoters kept ready for promotion; 0 = 2; <0 = none
	Eligible        bool          // --coordinator-eligible
	DeadGrace       time.Duration // a voter unhealthy this long is replaced; default 30 s
	BootstrapExpect int           // 0: settle rule; N: wait for N eligible nodes before the first bootstrap
	SettlePeriod    time.Duration // fleet view unchanged this long before a bootstrap; default 3 s
	PromoteAfter    time.Duration // a healthy nonvoter is promoted after this long; default 2 s
	HeadlessAfter   time.Duration // no leader this long (and no quorum in sight) → headless; default 5 s
	Tick            time.Duration // control loop period; default 250 ms
	Timing          Timing        // Raft timers; zero = DefaultTiming()

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	Clock      Clock                 // nil: the real clock

	// Transport and Control replace the TCP transport (tests: InmemNetwork.Add).
	// Both or neither.
	Transport raft.Transport
	Control   Control
	// ConnAuth authenticates every connection of the TCP transport, Raft and control,
	// in both directions (nil: none; loopback fleets).
	ConnAuth ConnAuth
	// OnApply, if set, is told of every committed plan this node applies (the event
	// stream). It runs on Raft's FSM goroutine: it must not block.
	OnApply func(Applied)

	// Mux, if set, is the node's shared Raft port (the agent's: its own region's group
	// and those it is a witness for, on one port). Nil: Run listens on RaftBind.
	Mux *Mux
	// Witness makes this Node a witness of Region, a region other than the node's own
	// (witness.go): it votes and stores the region's log, never bootstraps, never runs
	// autopilot, and hands leadership to a voter of the region when it wins an
	// election. Its gossiped keys are WitnessKey(Region, ...).
	Witness bool
	// WitnessOff and WitnessFor are what this node offers other regions as a witness
	// (KeyWitnessOffer): nothing, or any region with WitnessFor first.
	WitnessOff bool
	WitnessFor []string

	inmemStores bool // tests: raft.InmemStore instead of the WAL
}

func (c *Config) setDefaults() error {
	var errs []string
	if c.NodeID == "" {
		errs = append(errs, "region: node id is required (the stable node id from the data dir)")
	}
	if c.Name == "" {
		errs = append(errs, "region: name is required (--name)")
	}
	if c.Region == "" {
		errs = append(errs, "region: region is required (--region)")
	} else if len(c.Region) > maxRegionLen {
		errs = append(errs, fmt.Sprintf("region: --region is %d bytes long, the limit is %d", len(c.Region), maxRegionLen))
	}
	if c.DataDir == "" && !c.inmemStores {
		errs = append(errs, "region: data dir is required (--data-dir)")
	}
	if (c.Transport == nil) != (c.Control == nil) {
		errs = append(errs, "region: set both Transport and Control, or neither")
	}
	if c.Transport == nil && c.Mux != nil {
		c.RaftAdvertise = c.Mux.Addr().String()
	} else if c.Transport == nil {
		if c.RaftBind == "" {
			errs = append(errs, "region: --raft-bind is required (host:port)")
		}
		if c.RaftAdvertise == "" {
			c.RaftAdvertise = c.RaftBind
		}
		if host, port, err := net.SplitHostPort(c.RaftAdvertise); err != nil || port == "0" {
			errs = append(errs, fmt.Sprintf("region: raft advertise address %q must be host:port with a fixed port (set --raft-bind or --advertise)", c.RaftAdvertise))
		} else if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			errs = append(errs, fmt.Sprintf("region: raft advertise address %q is unspecified: set --advertise to an address other nodes can reach", c.RaftAdvertise))
		}
	} else {
		c.RaftAdvertise = string(c.Transport.LocalAddr())
	}
	if err := CheckVoters(c.Voters); err != nil {
		errs = append(errs, "region: --voters "+err.Error())
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, "region: --bootstrap-expect must be >= 0")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if c.Standbys == 0 {
		c.Standbys = 2
	} else if c.Standbys < 0 {
		c.Standbys = 0
	}
	c.DeadGrace = cmp.Or(c.DeadGrace, 30*time.Second)
	c.SettlePeriod = cmp.Or(c.SettlePeriod, 3*time.Second)
	c.PromoteAfter = cmp.Or(c.PromoteAfter, 2*time.Second)
	c.HeadlessAfter = cmp.Or(c.HeadlessAfter, 5*time.Second)
	c.Tick = cmp.Or(c.Tick, DefaultTick)
	d := DefaultTiming()
	if c.Timing == (Timing{}) {
		c.Timing = d
	}
	c.Timing.HeartbeatTimeout = cmp.Or(c.Timing.HeartbeatTimeout, d.HeartbeatTimeout)
	c.Timing.ElectionTimeout = cmp.Or(c.Timing.ElectionTimeout, d.ElectionTimeout)
	c.Timing.LeaderLeaseTimeout = cmp.Or(c.Timing.LeaderLeaseTimeout, min(d.LeaderLeaseTimeout, c.Timing.HeartbeatTimeout))
	c.Timing.CommitTimeout = cmp.Or(c.Timing.CommitTimeout, d.CommitTimeout)
	c.Timing.ControlTimeout = cmp.Or(c.Timing.ControlTimeout, d.ControlTimeout)
	if hi := c.Timing.HeartbeatInterval; hi < 0 || (hi > 0 && 2*hi >= c.Timing.HeartbeatTimeout) {
		return fmt.Errorf("region: heartbeat interval %s must be under half the heartbeat timeout (%s)", hi, c.Timing.HeartbeatTimeout)
	} else if hi > 0 && 10*hi < c.Timing.HeartbeatTimeout {
		// The leader's HeartbeatTimeout (10× the interval) must not fall below the
		// lease or the follower timeout, or raft refuses the leader's timing.
		return fmt.Errorf("region: heartbeat interval %s must be at least a tenth of the heartbeat timeout (%s); use 0 for raft's own", hi, c.Timing.HeartbeatTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return nil
}

// CheckVoters is the one rule for --voters: 0 (automatic), 1, 3 or 5. More than five
// voters make every commit wait for more acknowledgements and buy no availability a
// site needs; an even count tolerates no more failures than the odd one below it.
func CheckVoters(n int) error {
	switch n {
	case 0, 1, 3, 5:
		return nil
	}
	return fmt.Errorf("%d: use 1, 3 or 5 (or 0 for automatic)", n)
}

// raftConfig is the raft.Config every node of murmur uses.
func raftConfig(id string, t Timing, log *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.MaxAppendEntries = 256
	// A removed server stays up (and harmless: it is not in its own configuration, so
	// it never starts an election) so autopilot can add it back later.
	rc.ShutdownOnRemove = false
	rc.NoLegacyTelemetry = true
	rc.Logger = newHclog(log, "raft")
	return rc
}

// ErrNotLeader is returned by Apply on a node that is not the region's leader.
var ErrNotLeader = errors.New("not the region coordinator")

// Node is this node's member of its region's Raft group.
type Node struct {
	cfg   Config
	log   *slog.Logger
	fsm   *FSM
	m     *metrics
	h     *codec.MsgpackHandle
	clock Clock

	kick chan struct{} // cap 1: wake the control loop (peers or leadership changed)

	leader atomic.Bool
	abrupt atomic.Bool                 // tests: stop like SIGKILL (no leadership transfer, no last evidence)
	had    atomic.Pointer[logEvidence] // what this node's log held (integrity.go); nil: nothing recorded
	// admitted: names of the nodes of other regions this group talks to (its witnesses,
	// or, on a witness, the region's other witnesses): see admits.
	admitted atomic.Pointer[map[string]bool]

	mu        sync.Mutex // guards the fields below; never held while calling Raft or the network
	peers     []Peer
	names     map[string]string // id → last known name, kept after the peer disappears
	published map[string]string
	myList    []string // this node's current bootstrap list
	promise   *promise
	r         *raft.Raft // set while Run runs
	subs      map[chan struct{}]struct{}
	running   bool
}

type promise struct {
	proposer string
	list     []string
	expires  time.Time
}

// promiseTTL bounds a bootstrap promise whose proposer vanished.
const promiseTTL = 10 * time.Second

// New validates cfg and builds a Node. It starts nothing and touches no file.
func New(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "region", "region", cfg.Region),
		fsm:   NewFSM(),
		h:     newCodec(),
		clock: cfg.Clock,
		kick:  make(chan struct{}, 1),
		names: map[string]string{},
		subs:  map[chan struct{}]struct{}{},
	}
	n.fsm.observe = cfg.OnApply
	n.fsm.onErr = func(idx uint64, err error) {
		if errors.Is(err, ErrStalePlan) {
			// Expected under concurrency: the coordinator plans again.
			n.log.Info("region plan refused as stale", "index", idx, "err", err)
			return
		}
		n.log.Error("region log entry rejected", "index", idx, "err", err)
	}
	m, err := newMetrics(cfg.Registerer, cfg.Region)
	if err != nil {
		return nil, err
	}
	n.m = m
	n.published = n.computePublished(false, 0, "", nil, 0, false)
	return n, nil
}

// UpdatePeers gives the node the fleet view (every peer seen through gossip, self
// included). It copies the slice and returns at once.
func (n *Node) UpdatePeers(peers []Peer) {
	cp := make([]Peer, len(peers))
	copy(cp, peers)
	n.mu.Lock()
	n.peers = cp
	for _, p := range cp {
		if p.ID != "" && p.Name != "" {
			n.names[p.ID] = p.Name
		}
	}
	n.mu.Unlock()
	n.poke()
}

func (n *Node) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// PublishedState is what this node wants gossiped: the agent calls gossip.SetState(k, v)
// for each entry. Every key of this package is always present; "" means "delete".
func (n *Node) PublishedState() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]string, len(n.published))
	for k, v := range n.published {
		out[k] = v
	}
	return out
}

// Subscribe returns a channel that receives a value (coalesced, never blocking the
// sender) whenever leadership or PublishedState changes, and a cancel function.
func (n *Node) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
	}
}

func (n *Node) notifyLocked() {
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// CountRejected counts a connection the node's Raft port refused (the agent's shared
// Mux calls it).
func (n *Node) CountRejected() { n.m.rejected.Inc() }

// IsLeader reports whether this node is the region's coordinator.
func (n *Node) IsLeader() bool { return n.leader.Load() }

// Leader returns the id and Raft address of the leader this node knows ("" if none).
func (n *Node) Leader() (id, addr string) {
	r := n.raftPtr()
	if r == nil {
		return "", ""
	}
	a, i := r.LeaderWithID()
	return string(i), string(a)
}

// LocalView is what this node's own Raft instance knows of its group. Members of the
// group learn a new leader from its first heartbeat, tens of milliseconds after the
// election, without waiting for gossip.
type LocalView struct {
	LeaderID  string   // "" when no leader is known
	Term      uint64   // the current term
	Voters    []string // voter ids of the latest configuration
	LastIndex uint64
}

// LocalView reports this node's Raft view; ok is false when the node is not running
// Raft or knows no leader.
func (n *Node) LocalView() (v LocalView, ok bool) {
	r := n.raftPtr()
	if r == nil {
		return v, false
	}
	_, id := r.LeaderWithID()
	if id == "" {
		return v, false
	}
	v.LeaderID, v.Term, v.LastIndex = string(id), r.CurrentTerm(), r.LastIndex()
	f := r.GetConfiguration()
	if err := f.Error(); err == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				v.Voters = append(v.Voters, string(s.ID))
			}
		}
	}
	return v, true
}

// State returns a deep copy of the region state as applied on this node.
func (n *Node) State() State { return n.fsm.State() }

// Index is the Raft index of the last applied command (State().Index, without the copy).
func (n *Node) Index() uint64 { return n.fsm.Index() }

// Recent lists the last committed commands this node applied (FSM.Recent).
func (n *Node) Recent() []Entry { return n.fsm.Recent() }

// ClusterID is the id of the region's Raft cluster as applied here ("" before the
// first leader set it): a region bootstrapped anew has another, and its log indices
// start again.
func (n *Node) ClusterID() string { return n.fsm.ClusterID() }

func (n *Node) raftPtr() *raft.Raft {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.r
}

// Apply commits cmd to the region's log and applies it. Leader only: elsewhere it
// returns an error wrapping ErrNotLeader naming the leader. It returns the log index of
// the command (the generation of OpPlace placements; an OpPlan carries its own). The
// wait is bounded by ctx's
// deadline (default 5 s) and ends when ctx is cancelled; the entry may still commit
// after that.
func (n *Node) Apply(ctx context.Context, cmd Command) (uint64, error) {
	r := n.raftPtr()
	if r == nil || r.State() != raft.Leader {
		id, _ := n.Leader()
		return 0, fmt.Errorf("apply %s: %w (leader: %q)", cmd.Op, ErrNotLeader, id)
	}
	b, err := encodeCommand(n.h, cmd)
	if err != nil {
		return 0, fmt.Errorf("apply: %w", err)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout <= 0 {
			return 0, fmt.Errorf("apply %s: %w", cmd.Op, context.DeadlineExceeded)
		}
	}
	f := r.Apply(b, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // ends by raft's own timeout at the latest
	select {
	case err = <-done:
	case <-ctx.Done():
		// The entry may still commit: the caller must read the applied state, never
		// assume it did not.
		return 0, fmt.Errorf("apply %s: %w", cmd.Op, ctx.Err())
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, fmt.Errorf("apply %s: %w: %v", cmd.Op, ErrNotLeader, err)
		}
		return 0, fmt.Errorf("apply %s: %w", cmd.Op, err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), fmt.Errorf("apply %s: %w", cmd.Op, err)
	}
	return f.Index(), nil
}

// regionMarker names the file recording which region a data dir belongs to.
const regionMarker = "region"

func checkRegionMarker(dir, region string, create bool) error {
	b, err := os.ReadFile(filepath.Join(dir, regionMarker))
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != region {
			return fmt.Errorf("data dir %s belongs to region %q, not %q: use --region %s, or another --data-dir", dir, got, region, got)
		}
		return nil
	case errors.Is(err, os.ErrNotExist) && create:
		return os.WriteFile(filepath.Join(dir, regionMarker), []byte(region+"\n"), 0o600)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("data dir %s has no raft state (no %s file): is --data-dir right?", dir, regionMarker)
	}
	return fmt.Errorf("read region marker: %w", err)
}

// SegmentSize is the size of one Raft log segment file, preallocated when it is
// created. raft-wal's default, 64 MiB, keeps an agent from starting on a small flash
// volume and wears it; a region's log is a few plans a minute. An entry larger than a
// segment is still written whole (the segment just grows).
const SegmentSize = 8 << 20

type stores struct {
	logs     raft.LogStore
	stable   raft.StableStore
	snaps    raft.SnapshotStore
	close    func() error
	evidence *evidenceWriter // nil with in-memory stores
}

// openStores opens the Raft stores in dir (<data-dir>/raft of region), after checking
// them for damage (integrity.go): a damaged log is a *DamageError.
func openStores(dir, region string, inmem bool, log *slog.Logger) (*stores, error) {
	if inmem {
		s := raft.NewInmemStore()
		return &stores{logs: s, stable: s, snaps: raft.NewInmemSnapshotStore(), close: func() error { return nil }}, nil
	}
	// Before raft-wal opens the log: it would drop or delete what it does not like.
	v, err := verifyRaftDir(dir, region, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	// raft-wal's Close leaves its bolt meta store open (and flock-ed): own it and close
	// it ourselves, so a Node can be restarted in the same process (tests, Recover).
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithMetaStore(meta), wal.WithSegmentSize(SegmentSize))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "wal"), err)
	}
	if err := v.checkOpened(w, dir, region, log); err != nil {
		w.Close()
		meta.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHclog(log, "raft-snapshots"))
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	return &stores{logs: w, stable: w, snaps: snaps, evidence: v.writer(dir, log), close: func() error {
		return errors.Join(w.Close(), meta.Close())
	}}, nil
}

// Run starts the transport and Raft and runs the control loop (bootstrap, autopilot,
// headless detection, published state) until ctx is cancelled. On cancel a leader
// first hands leadership over (raft.LeadershipTransfer), then Raft shuts down. Run
// returns after every goroutine it started has exited.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		return errors.New("region: Run called twice")
	}
	n.running = true
	n.mu.Unlock()

	dir := filepath.Join(n.cfg.DataDir, "raft")
	if !n.cfg.inmemStores {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create raft dir: %w", err)
		}
		if err := checkRegionMarker(dir, n.cfg.Region, true); err != nil {
			return err
		}
	}
	st, err := openStores(dir, n.cfg.Region, n.cfg.inmemStores, n.log)
	if err != nil {
		return err
	}
	defer st.close()
	n.had.Store(st.evidence.known())

	var wg sync.WaitGroup
	defer wg.Wait()
	trans, ctl := n.cfg.Transport, n.cfg.Control
	if trans == nil {
		mux := n.cfg.Mux
		if mux == nil {
			ln, err := net.Listen("tcp", n.cfg.RaftBind)
			if err != nil {
				return fmt.Errorf("listen on --raft-bind %s: %w", n.cfg.RaftBind, err)
			}
			adv, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAdvertise)
			if err != nil {
				ln.Close()
				return fmt.Errorf("resolve raft advertise address %s: %w", n.cfg.RaftAdvertise, err)
			}
			mux = NewMux(ln, adv, n.cfg.ConnAuth, n.log, n.m.rejected.Inc)
			wg.Add(1)
			go func() { defer wg.Done(); mux.Serve() }()
			defer mux.Close()
		}
		sl, err := mux.register(n.cfg.Region, n.admits)
		if err != nil {
			return err
		}
		defer mux.unregister(sl)
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: sl, MaxPool: 3, Timeout: 2 * time.Second, Logger: newHclog(n.log, "raft-net"),
		})
		trans, ctl = nt, &tcpControl{sl: sl}
		defer nt.Close()
	}

	rc := raftConfig(n.cfg.NodeID, n.cfg.Timing, n.log)
	notify := make(chan bool, 4)
	rc.NotifyCh = notify
	if last, err := st.logs.LastIndex(); err == nil {
		n.fsm.replayUpTo = last // set before Raft starts applying
	}
	r, err := raft.NewRaft(rc, n.fsm, st.logs, st.stable, st.snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.mu.Lock()
	n.r = r
	n.mu.Unlock()
	stopEvidence := n.keepEvidence(r, st)
	ctl.Serve(n.handleControl)

	stopNotify, notifyDone := make(chan struct{}), make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(notifyDone)
		for {
			select {
			case isLeader := <-notify:
				n.setLeader(isLeader)
			case <-stopNotify:
				return
			}
		}
	}()

	n.log.Info("region raft started", "id", n.cfg.NodeID, "addr", n.cfg.RaftAdvertise, "eligible", n.cfg.Eligible)
	n.loop(ctx, r, ctl)

	// Shutdown: hand leadership over first (planned restart ≈ free), then stop.
	if r.State() == raft.Leader && !n.abrupt.Load() {
		start := time.Now()
		if err := r.LeadershipTransfer().Error(); err != nil {
			n.m.transfers.WithLabelValues("failed").Inc()
			n.log.Warn("leadership transfer failed", "err", err)
		} else {
			n.m.transfers.WithLabelValues("ok").Inc()
			n.log.Info("leadership transferred", "took", time.Since(start))
		}
	}
	ctl.Serve(nil)
	if err := r.Shutdown().Error(); err != nil {
		n.log.Warn("raft shutdown", "err", err)
	}
	stopEvidence()
	close(stopNotify)
	<-notifyDone // a late setLeader(true) must not land after the one below
	n.mu.Lock()
	n.r = nil
	n.mu.Unlock()
	n.setLeader(false)
	return nil
}

func (n *Node) setLeader(v bool) {
	if n.leader.Swap(v) == v {
		return
	}
	n.retime(v)
	n.m.leaderChanges.Inc()
	if v {
		n.m.isLeader.Set(1)
		n.log.Info("became region coordinator")
	} else {
		n.m.isLeader.Set(0)
		n.log.Info("lost region coordinator role")
	}
	n.mu.Lock()
	n.notifyLocked()
	n.mu.Unlock()
	n.poke()
}

// retime gives a new leader the heartbeat timeout that makes raft send heartbeats
// every Timing.HeartbeatInterval, and a former leader its follower timeouts back.
// On a leader raft reads HeartbeatTimeout for the heartbeat period and the heartbeat
// retry backoff (capped at half of it: 375 ms instead of 150 ms; AppendEntries to a
// returning follower keep their own CommitTimeout cap). On a follower it is the
// election timer, so the two roles may differ. ElectionTimeout must not be below
// HeartbeatTimeout (raft validates it), and on a leader it is also the deadline of
// a leadership transfer: a failed transfer gives up after 750 ms instead of 300 ms.
func (n *Node) retime(leader bool) {
	t := n.cfg.Timing
	if t.HeartbeatInterval == 0 {
		return
	}
	n.mu.Lock()
	r := n.r
	n.mu.Unlock()
	if r == nil {
		return
	}
	rc := r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	if leader {
		rc.HeartbeatTimeout = 10 * t.HeartbeatInterval
		rc.ElectionTimeout = max(t.ElectionTimeout, rc.HeartbeatTimeout)
	}
	if err := r.ReloadConfig(rc); err != nil {
		n.log.Warn("set raft heartbeat timing", "leader", leader, "err", err)
	}
}

// loopState is owned by the control loop goroutine.
type loopState struct {
	candKey       string
	candSince     time.Time
	badSince      map[string]time.Time
	nvSince       map[string]time.Time
	probes        map[string]probeResult
	noLeader      time.Time
	waitReason    string
	retryAt       time.Time
	warnedForeign map[string]bool
	wantedSince   map[string]time.Time // witness id → when first wanted (or last seen answering)
	witnessFailed map[string]time.Time // witness id → when it was passed over
	unreachSince  map[string]time.Time // bootstrap candidate id → since when its raft port has not answered
}

type probeResult struct {
	addr     string
	ok       bool
	hasState bool // the node answered that it is in a cluster
	at       time.Time
}

func newLoopState() *loopState {
	return &loopState{badSince: map[string]time.Time{}, nvSince: map[string]time.Time{}, probes: map[string]probeResult{}, warnedForeign: map[string]bool{},
		wantedSince: map[string]time.Time{}, witnessFailed: map[string]time.Time{}, unreachSince: map[string]time.Time{}}
}

func (n *Node) loop(ctx context.Context, r *raft.Raft, ctl Control) {
	ls := newLoopState()
	t := time.NewTicker(n.cfg.Tick)
	defer t.Stop()
	for {
		n.step(ctx, r, ctl, ls)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
	}
}

// regionView splits the fleet view: the region's nodes (self included, unless this
// Node is a witness), the nodes of other regions (self, for a witness), and every
// id's last known name.
func (n *Node) regionView() (region, others map[string]Peer, names map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	region, others = map[string]Peer{}, map[string]Peer{}
	for _, p := range n.peers {
		switch {
		case p.ID == "" || p.ID == n.cfg.NodeID:
		case p.Region == n.cfg.Region:
			region[p.ID] = p
		default:
			others[p.ID] = p
		}
	}
	// Self is always known, whatever gossip says.
	var self Peer
	for _, p := range n.peers {
		if p.ID == n.cfg.NodeID {
			self = p
		}
	}
	self.ID, self.Name, self.RaftAddr, self.Alive = n.cfg.NodeID, n.cfg.Name, n.cfg.RaftAdvertise, true
	if n.cfg.Witness {
		self.Eligible = true
		others[n.cfg.NodeID] = self
	} else {
		self.Region, self.Eligible = n.cfg.Region, n.cfg.Eligible
		region[n.cfg.NodeID] = self
	}
	names = make(map[string]string, len(n.names))
	for k, v := range n.names {
		names[k] = v
	}
	return region, others, names
}

// admits decides whether a peer whose certificate names node of region may use this
// group's Raft port: every node of the region, and the nodes of other regions that are
// in the group's configuration or that its coordinator wants as witnesses.
func (n *Node) admits(node, region string) bool {
	if region == n.cfg.Region {
		return true
	}
	m := n.admitted.Load()
	return m != nil && (*m)[node]
}

func hasState(r *raft.Raft) bool { return r.LastIndex() > 0 || r.CurrentTerm() > 0 }

func (n *Node) step(ctx context.Context, r *raft.Raft, ctl Control, ls *loopState) {
	now := n.clock.Now()
	region, others, names := n.regionView()
	var servers []raft.Server
	if f := r.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	healthy := func(id string) bool { return serverHealthy(region, others, n.cfg.Region, id) }
	// Unhealthy-since bookkeeping on every node, so a new leader inherits it.
	seen := map[string]bool{}
	admitted := map[string]bool{}
	for _, s := range servers {
		id := string(s.ID)
		seen[id] = true
		if _, local := region[id]; !local && names[id] != "" {
			admitted[names[id]] = true
		}
		if healthy(id) {
			delete(ls.badSince, id)
			if s.Suffrage == raft.Voter {
				delete(ls.nvSince, id)
			} else if _, ok := ls.nvSince[id]; !ok {
				ls.nvSince[id] = now
			}
		} else {
			delete(ls.nvSince, id)
			if _, ok := ls.badSince[id]; !ok {
				ls.badSince[id] = now
			}
		}
	}
	for id := range ls.badSince {
		if !seen[id] {
			delete(ls.badSince, id)
		}
	}
	for id := range ls.nvSince {
		if !seen[id] {
			delete(ls.nvSince, id)
		}
	}

	in := hasState(r)
	isLeader := r.State() == raft.Leader
	var want []string
	switch {
	case n.cfg.Witness:
		// A witness never bootstraps a region or manages its voters: it waits to be
		// added, and hands leadership over when it wins an election.
		if isLeader {
			n.handOver(ctx, r, ctl, ls, servers, region, now)
		}
	case !in && n.hadLog(ls):
		// Never bootstrap over a log this node had (integrity.go).
	case !in:
		n.tryBootstrap(ctx, r, ctl, ls, region, others, now)
	case isLeader:
		n.setMyList(nil)
		if n.fsm.ClusterID() == "" {
			n.initCluster(r)
		}
		want = n.autopilot(ctx, r, ctl, ls, servers, region, others, names, now)
	default:
		n.setMyList(nil)
	}
	for _, id := range want {
		if names[id] != "" {
			admitted[names[id]] = true
		}
	}
	n.admitted.Store(&admitted)

	// Headless: we are a voter, no leader for HeadlessAfter, and most voters are gone.
	headless := false
	voters := 0
	aliveVoters := 0
	selfVoter := false
	var voterIDs []string
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		voterIDs = append(voterIDs, string(s.ID))
		if string(s.ID) == n.cfg.NodeID {
			selfVoter = true
		}
		if p, ok := region[string(s.ID)]; ok && p.Alive {
			aliveVoters++
		} else if p, ok := others[string(s.ID)]; ok && p.Alive {
			aliveVoters++
		}
	}
	leaderAddr, _ := r.LeaderWithID()
	if in && selfVoter && leaderAddr == "" {
		if ls.noLeader.IsZero() {
			ls.noLeader = now
		}
		headless = now.Sub(ls.noLeader) >= n.cfg.HeadlessAfter && aliveVoters < voters/2+1
	} else {
		ls.noLeader = time.Time{}
	}
	if !n.cfg.Witness {
		n.m.voters.Set(float64(voters))
		n.m.lastIndex.Set(float64(r.LastIndex()))
		n.m.term.Set(float64(r.CurrentTerm()))
		if headless {
			n.m.headless.Set(1)
		} else {
			n.m.headless.Set(0)
		}
	}
	slices.Sort(voterIDs)
	pub := n.computePublished(in, r.LastIndex(), n.fsm.ClusterID(), voterIDs, r.CurrentTerm(), headless)
	if !isLeader {
		pub[KeyLeader], pub[KeyVoters] = "", ""
	} else if !n.cfg.Witness {
		pub[KeyWitnessWant] = strings.Join(want, ",")
	}
	if n.cfg.Witness {
		wp := make(map[string]string, len(pub))
		for k, v := range pub {
			wp[WitnessKey(n.cfg.Region, k)] = v
		}
		pub = wp
	}
	n.mu.Lock()
	changed := len(pub) != len(n.published)
	for k, v := range pub {
		if n.published[k] != v {
			changed = true
		}
	}
	if changed {
		n.published = pub
		n.notifyLocked()
	}
	n.mu.Unlock()
}

func (n *Node) computePublished(in bool, lastIndex uint64, cluster string, voters []string, term uint64, headless bool) map[string]string {
	p := map[string]string{
		KeyState: StateNone, KeyCluster: cluster, KeyLeader: "", KeyVoters: strings.Join(voters, ","),
		KeyLastIndex: "", KeyHeadless: "",
	}
	if !n.cfg.Witness {
		p[KeyWitnessOffer] = OfferString(n.cfg.WitnessOff || !n.cfg.Eligible, n.cfg.WitnessFor)
		p[KeyWitnessWant] = ""
	}
	if in {
		p[KeyState] = StateBootstrapped
		p[KeyLastIndex] = strconv.FormatUint(lastIndex, 10)
		p[KeyLeader] = strconv.FormatUint(term, 10)
	}
	if headless {
		p[KeyHeadless] = "1"
	}
	return p
}

func (n *Node) initCluster(r *raft.Raft) {
	if ev := n.had.Load(); ev != nil && ev.Cluster != "" {
		return // this node's log has the group's id: it applies it again, never a new one
	}
	id := fmt.Sprintf("%s-%d", n.cfg.Region, time.Now().UnixNano())
	b, err := encodeCommand(n.h, Command{Op: OpInit, ClusterID: id})
	if err != nil {
		return
	}
	if err := r.Apply(b, 2*time.Second).Error(); err != nil {
		n.log.Debug("init cluster id", "err", err)
	}
}

func (n *Node) setMyList(l []string) {
	n.mu.Lock()
	n.myList = l
	n.mu.Unlock()
}

// probe reports whether each id's Raft port answers the region handshake, probing in
// parallel (Timing.ControlTimeout) those without a fresh cached result.
func (n *Node) probe(ctx context.Context, ctl Control, ls *loopState, region map[string]Peer, ids []string, now time.Time) map[string]bool {
	out := map[string]bool{}
	type res struct {
		id           string
		ok, hasState bool
	}
	var todo []Peer
	for _, id := range ids {
		p := region[id]
		if id == n.cfg.NodeID {
			out[id] = true
			continue
		}
		c, ok := ls.probes[id]
		fresh := ok && c.addr == p.RaftAddr && ((c.ok && now.Sub(c.at) < 10*time.Second) || (!c.ok && now.Sub(c.at) < 2*time.Second))
		if fresh {
			out[id] = c.ok
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return out
	}
	pctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.ControlTimeout)
	defer cancel()
	ch := make(chan res, len(todo))
	for _, p := range todo {
		go func() {
			resp, err := ctl.Call(pctx, p.RaftAddr, ControlRequest{Kind: CtlProbe, From: n.cfg.NodeID})
			ch <- res{p.ID, err == nil && resp.OK, err == nil && resp.HasState}
		}()
	}
	for range todo {
		r := <-ch
		ls.probes[r.id] = probeResult{addr: region[r.id].RaftAddr, ok: r.ok, hasState: r.hasState, at: now}
		out[r.id] = r.ok
		if !r.ok {
			n.log.Debug("raft port unreachable: not a voter candidate", "id", r.id, "addr", region[r.id].RaftAddr)
		}
	}
	return out
}

// handleControl answers probes and the bootstrap promise round. Called on transport
// goroutines; takes n.mu briefly, never calls out.
func (n *Node) handleControl(req ControlRequest) ControlResponse {
	switch req.Kind {
	case CtlProbe:
		// HasState lets a node about to bootstrap see a cluster whose gossip has not
		// reached it yet (tryBootstrap).
		return ControlResponse{OK: true, HasState: n.inCluster()}
	case CtlRelease:
		n.mu.Lock()
		if n.promise != nil && n.promise.proposer == req.From {
			n.promise = nil
		}
		n.mu.Unlock()
		return ControlResponse{OK: true}
	case CtlPropose:
		r := n.raftPtr()
		if r == nil {
			return ControlResponse{Reason: "raft not running"}
		}
		if hasState(r) {
			return ControlResponse{Reason: "already in a cluster", HasState: true}
		}
		if ev := n.had.Load(); ev != nil && ev.Index > 0 {
			return ControlResponse{Reason: "this node had a raft log", HasState: true}
		}
		return n.promiseTo(req.From, req.List)
	}
	return ControlResponse{Reason: "unknown request"}
}

// inCluster reports whether this node has Raft state, or had a log (integrity.go).
func (n *Node) inCluster() bool {
	if r := n.raftPtr(); r != nil && hasState(r) {
		return true
	}
	ev := n.had.Load()
	return ev != nil && ev.Index > 0
}

// promiseTo gives (or refreshes) this node's single bootstrap promise: to proposer for
// list, if the node is eligible, computes the very same list itself, and has not
// promised another proposal that is still current.
func (n *Node) promiseTo(proposer string, list []string) ControlResponse {
	if !n.cfg.Eligible {
		return ControlResponse{Reason: "not coordinator-eligible"}
	}
	now := n.clock.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Equal(n.myList, list) {
		return ControlResponse{Reason: fmt.Sprintf("disagree: my list is %v", n.myList)}
	}
	mine, others := map[string]Peer{}, map[string]Peer{}
	for _, p := range n.peers {
		if p.Region == n.cfg.Region {
			mine[p.ID] = p
		} else {
			others[p.ID] = p
		}
	}
	if why := clusterEvidence(n.cfg.NodeID, n.cfg.Region, mine, others); why != "" {
		return ControlResponse{Reason: why}
	}
	if p := n.promise; p != nil && now.Before(p.expires) && (p.proposer != proposer || !slices.Equal(p.list, list)) {
		return ControlResponse{Reason: "promised to " + p.proposer}
	}
	n.promise = &promise{proposer: proposer, list: slices.Clone(list), expires: now.Add(promiseTTL)}
	return ControlResponse{OK: true}
}

// unreachableGrace, in settle periods (30 s by default), is how long an alive
// candidate whose Raft port does not answer holds a bootstrap back.
const unreachableGrace = 10

// tryBootstrap is the safe bootstrap rule (docs/regions.md):
//
//  1. only an eligible node with an empty log (no term, no entries, no snapshot);
//  2. if any node of the region publishes Raft state or a cluster id, wait to be added
//     by that cluster's leader. Alive or dead: a dead node may only be cut off or
//     restarting, and its cluster goes on (a region of two, where the other node and a
//     witness still form a majority, is the common case); only a node that left on
//     purpose does not count. Nor does the region bootstrap while a node of another
//     region is its witness (raft.witnessing): the witness holds its log;
//  3. wait until the view of alive eligible nodes of the region has been unchanged for
//     SettlePeriod (or, with BootstrapExpect N, until N of them are seen);
//  4. candidates = those whose Raft port answers the region handshake; the list = the
//     first TargetVoters of them by rank (BootstrapList);
//  5. only the lowest id of the list acts: it collects a promise from every other
//     member (each promises one proposal at a time, only if it computed the same list
//     and has no Raft state), then calls BootstrapCluster with the full list.
func (n *Node) tryBootstrap(ctx context.Context, r *raft.Raft, ctl Control, ls *loopState, region, others map[string]Peer, now time.Time) {
	wait := func(reason string) {
		if reason != ls.waitReason {
			n.log.Info("waiting to bootstrap", "reason", reason)
			ls.waitReason = reason
		}
	}
	// Evidence that the region has a cluster already. The settle period restarts from
	// the moment none is left: a view is settled only while it shows no cluster.
	if why := clusterEvidence(n.cfg.NodeID, n.cfg.Region, region, others); why != "" {
		n.setMyList(nil)
		ls.candKey = ""
		wait(why)
		return
	}
	if !n.cfg.Eligible {
		n.setMyList(nil)
		wait("not coordinator-eligible: waiting for the region's coordinator")
		return
	}
	// A peer's Raft address and eligibility come with its membership, its Raft state
	// only with its record, which lags far behind while a large fleet joins (issue 14:
	// 1,000 agents on two cores, records minutes late). A peer whose record has not
	// arrived may be in a cluster already: wait for it, and settle again once it came.
	var cands []string
	for _, p := range sortedPeers(region) {
		if !p.Alive {
			continue
		}
		if p.ID != n.cfg.NodeID && p.RaftAddr != "" && p.State[KeyState] == "" {
			n.setMyList(nil)
			ls.candKey = ""
			wait("node " + cmp.Or(p.Name, p.ID) + " has not published its raft state yet: waiting for its record")
			return
		}
		if p.Eligible && p.RaftAddr != "" {
			cands = append(cands, p.ID)
		}
	}
	slices.Sort(cands)
	key := strings.Join(cands, ",")
	if key != ls.candKey {
		ls.candKey, ls.candSince = key, now
	}
	if n.cfg.BootstrapExpect > 0 {
		if len(cands) < n.cfg.BootstrapExpect {
			n.setMyList(nil)
			wait(fmt.Sprintf("%d of %d expected eligible nodes seen (--bootstrap-expect)", len(cands), n.cfg.BootstrapExpect))
			return
		}
	} else if now.Sub(ls.candSince) < n.cfg.SettlePeriod {
		n.setMyList(nil)
		return
	}
	reach := n.probe(ctx, ctl, ls, region, cands, now)
	for id := range ls.unreachSince {
		if reach[id] || !slices.Contains(cands, id) {
			delete(ls.unreachSince, id)
		}
	}
	var ok []string
	for _, id := range cands {
		if !reach[id] {
			// An alive candidate that does not answer may be a member of a group
			// this node has not heard of (overloaded, or its records late): left out,
			// a second group could form beside it. So it holds the bootstrap back for
			// unreachableGrace; only a node whose Raft port stays dead that long (a
			// wrong --advertise, a firewall) is left out.
			since, seen := ls.unreachSince[id]
			if !seen {
				since = now
				ls.unreachSince[id] = now
			}
			if grace := unreachableGrace * n.cfg.SettlePeriod; now.Sub(since) < grace {
				n.setMyList(nil)
				wait(fmt.Sprintf("node %s is alive but its raft port %s does not answer: waiting up to %v before leaving it out", cmp.Or(region[id].Name, id), region[id].RaftAddr, grace))
				return
			}
			continue
		}
		// Its record may be older than its bootstrap: its own answer is not.
		if id != n.cfg.NodeID && ls.probes[id].hasState {
			n.setMyList(nil)
			wait("node " + cmp.Or(region[id].Name, id) + " answers that it is in a cluster: waiting to be added by its leader")
			return
		}
		ok = append(ok, id)
	}
	if n.cfg.BootstrapExpect > 0 && len(ok) < n.cfg.BootstrapExpect {
		n.setMyList(nil)
		wait(fmt.Sprintf("%d of %d expected eligible nodes reachable on their raft port", len(ok), n.cfg.BootstrapExpect))
		return
	}
	list := BootstrapList(n.cfg.Voters, ok)
	n.setMyList(list)
	if !slices.Contains(list, n.cfg.NodeID) {
		wait("not in the bootstrap list " + strings.Join(list, ","))
		return
	}
	if lowestID(list) != n.cfg.NodeID {
		wait("waiting for " + lowestID(list) + " to bootstrap " + strings.Join(list, ","))
		return
	}
	if now.Before(ls.retryAt) {
		return
	}
	if resp := n.promiseTo(n.cfg.NodeID, list); !resp.OK {
		wait("own promise: " + resp.Reason)
		return
	}
	// Every reachable candidate of the view must promise, not only the list's members:
	// a node with a partial view (which may yield a short list, even of one) is then
	// refused by any peer that sees more.
	var promised []string
	failed := ""
	for _, id := range ok {
		if id == n.cfg.NodeID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.ControlTimeout)
		resp, err := ctl.Call(cctx, region[id].RaftAddr, ControlRequest{Kind: CtlPropose, From: n.cfg.NodeID, List: list})
		cancel()
		if err != nil || !resp.OK {
			failed = fmt.Sprintf("%s: %v%s", id, err, resp.Reason)
			break
		}
		promised = append(promised, id)
	}
	if failed != "" {
		// Retry after 2–6 ticks, randomised so two proposers with different views do
		// not keep refusing each other in lockstep.
		ls.retryAt = now.Add(n.cfg.Tick * time.Duration(2+rand.IntN(5)))
		for _, id := range promised {
			cctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.ControlTimeout)
			_, _ = ctl.Call(cctx, region[id].RaftAddr, ControlRequest{Kind: CtlRelease, From: n.cfg.NodeID})
			cancel()
		}
		n.mu.Lock()
		n.promise = nil
		n.mu.Unlock()
		wait("bootstrap promise refused by " + failed)
		return
	}
	conf := raft.Configuration{}
	for _, id := range list {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(region[id].RaftAddr)})
	}
	if err := r.BootstrapCluster(conf).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Info("bootstrap skipped: raft state appeared meanwhile")
			return
		}
		n.log.Warn("bootstrap failed", "err", err)
		return
	}
	n.m.bootstraps.Inc()
	n.log.Info("bootstrapped region raft group", "voters", list)
}

// raftHeartbeatTimeout is raft's current HeartbeatTimeout (0 when raft is not running).
func (n *Node) raftHeartbeatTimeout() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.r == nil {
		return 0
	}
	return n.r.ReloadableConfig().HeartbeatTimeout
}

// Barrier waits until every entry committed before the call is applied to this node's
// FSM (leader only). A new coordinator calls it before its first plan, so it plans on
// the whole table its predecessor committed.
func (n *Node) Barrier(ctx context.Context) error {
	r := n.raftPtr()
	if r == nil || r.State() != raft.Leader {
		return fmt.Errorf("barrier: %w", ErrNotLeader)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		if timeout = time.Until(d); timeout <= 0 {
			return fmt.Errorf("barrier: %w", context.DeadlineExceeded)
		}
	}
	if err := r.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("barrier: %w: %v", ErrNotLeader, err)
		}
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

// VerifyLeader confirms with a quorum of voters that this node still leads (a Raft
// round trip). The coordinator grants exclusive workloads' leases only after it.
func (n *Node) VerifyLeader(ctx context.Context) error {
	r := n.raftPtr()
	if r == nil || r.State() != raft.Leader {
		return fmt.Errorf("verify leader: %w", ErrNotLeader)
	}
	f := r.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // ends when raft answers or steps down
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("verify leader: %w: %v", ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("verify leader: %w", ctx.Err())
	}
}

// Term is this node's current Raft term (0 when Raft is not running). Assignments a
// coordinator delivers carry it, so a node can refuse those of a deposed one.
func (n *Node) Term() uint64 {
	r := n.raftPtr()
	if r == nil {
		return 0
	}
	return r.CurrentTerm()
}
