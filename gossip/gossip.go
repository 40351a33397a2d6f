package gossip

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// MessageKind identifies an extension's messages. Kinds below 32 are reserved.
type MessageKind uint8

// Extension kinds used by murmur's agent.
const (
	KindIntents MessageKind = 32
	KindRegion  MessageKind = 33
	KindAssign  MessageKind = 34 // assignments, reports and workload queries (agent/coordinator)
	KindKeyring MessageKind = 35 // keyring requests and answers (KeyManager, keyring.go)
	KindLogs    MessageKind = 36 // instances' output fetched by another node's API (agent/logs)
)

// Member statuses.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusDead    = "dead"
	StatusLeft    = "left"
)

// Health values of a Record.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
)

// Handler receives one message of a registered kind. It runs on the gossip dispatch
// goroutine, never inside a memberlist callback; payload belongs to the handler. It
// must return quickly: enqueue and return.
type Handler func(from string, payload []byte)

// StateExchange takes part in memberlist push/pull anti-entropy (periodically with a
// random peer, and on join).
type StateExchange interface {
	// LocalState returns a compact digest of this node's state. It must be fast.
	LocalState() []byte
	// MergeRemoteState receives a peer's digest. It must not block.
	MergeRemoteState(from string, state []byte)
}

// Load is a node's load: what its own workloads use plus a reserve, over its capacity.
type Load struct {
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
}

// Member is one node of the fleet view. Members are snapshots: do not modify maps.
type Member struct {
	Name        string
	ID          string
	Region      string
	Addr        string // gossip host:port
	Status      string // alive | suspect | dead | left
	StatusSince time.Time
	Load        Load
	Instances   int
	Health      string
	Labels      map[string]string
	HTTPAddr    string
	RaftAddr    string
	Version     string
	Drivers     []string
	Eligible    bool
	State       map[string]string
	Local       bool // this node
	// Capacity (millicores, bytes) the node offers to workloads; 0 when unknown.
	MilliCPU    int64
	MemoryBytes int64
}

// Up reports whether the member is taken to be running: alive, or suspect (a
// suspicion is not a death; memberlist may still clear it).
func (m Member) Up() bool { return m.Status == StatusAlive || m.Status == StatusSuspect }

// Config configures a Gossip node.
type Config struct {
	Name string // unique node name
	Meta Meta   // identity gossiped in node meta

	BindAddr      string // default 0.0.0.0
	BindPort      int    // default 7946
	AdvertiseAddr string // default: the bind address, or a private address when bound to 0.0.0.0
	AdvertisePort int    // default: the bind port
	Seeds         []string

	Profile   string // ProfileLAN (default) or ProfileWAN
	SecretKey []byte // 16, 24 or 32 bytes turn on AES-GCM encryption of all gossip

	// Keyring, instead of SecretKey, holds the gossip keys, primary first: memberlist
	// encrypts with the primary and decrypts with any of them. The KeyManager changes
	// it; the caller may read it (GetKeys, GetPrimaryKey) and must not change it.
	// Nil means SecretKey decides (New builds a ring of that one key, or none). Set
	// one of the two, not both. See keyring.go.
	Keyring *memberlist.Keyring
	// PersistKeys, if set, is called with the keys a keyring operation is about to
	// install, primary first, before memberlist's ring changes; an error aborts the
	// change. The agent writes them to its data dir.
	PersistKeys func(keys [][]byte) error
	// KeyringTimeout is how long a fleet-wide keyring operation waits for the
	// members' answers when the caller gives no timeout.
	KeyringTimeout time.Duration // default 5 s

	// Epoch orders this run's records after every earlier run's. The agent passes a
	// boot counter kept in its data dir; zero means the start time in nanoseconds.
	Epoch uint64
	// Heartbeat is the longest time between two broadcasts of the local record. A
	// change is broadcast at once, and push/pull carries every record, so the
	// heartbeat only bounds how long a lost broadcast can go unrepaired when
	// push/pull is slow. Every broadcast costs every node of the fleet (each relays
	// it RetransmitMult × log10(N) times): a 5 s heartbeat was 9 of the 10 KB/s a
	// node sent at 20 nodes, and ~21 KB/s, memberlist's packet ceiling, at 100.
	Heartbeat time.Duration // default 60 s
	// ReconnectInterval is how often a node tries to reach a failed member or, when it
	// is alone, its seeds again, so split fleets merge after a partition heals.
	ReconnectInterval time.Duration // default 10 s
	// RejoinInterval is how often a node tries to reach one member that died within
	// the last RejoinRecentFor, so both sides of a healed partition find each other
	// within about a second.
	RejoinInterval  time.Duration // default 1 s
	RejoinRecentFor time.Duration // default 2 min
	// JoinBackoffMax caps the backoff between join attempts.
	JoinBackoffMax time.Duration // default 15 s

	// Transport replaces memberlist's UDP/TCP transport (in-process test fleets).
	Transport memberlist.NodeAwareTransport
	// StreamAuth, if set, authenticates every TCP stream before memberlist reads it,
	// in both directions (see streamauth.go).
	StreamAuth StreamAuth
	// Tune, if set, adjusts the memberlist configuration after the profile is applied.
	Tune func(*memberlist.Config)
	// Now is the clock of Member.StatusSince (the agent's clock; default time.Now).
	// The node's own timers always run on the wall clock.
	Now func() time.Time
	// Dilation, above 1, runs every timer of this node — memberlist's and this
	// package's — that many times slower: the fleet simulator (cmd/murmur-bench sim)
	// runs more agents than the machine keeps in real time with timers K times longer
	// and divides what it measures by K. The durations above are given undilated.
	// 0 or 1: real time.
	Dilation float64

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

type registration struct {
	handler Handler
	state   StateExchange
}

// Gossip is one node's membership and dissemination layer.
type Gossip struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	meta     []byte
	handlers map[MessageKind]registration // written before Run only

	ml      atomic.Pointer[memberlist.Memberlist]
	queue   *memberlist.TransmitLimitedQueue
	inbound chan inbound   // delegate → dispatch loop
	events  chan nodeEvent // event delegate → dispatch loop
	resync  atomic.Bool    // an event was dropped: rebuild from memberlist
	kick    chan struct{}  // wakes the tick loop when the local record changed (cap 1)
	ready   chan struct{}  // closed once memberlist runs
	joined  chan struct{}  // closed once a seed answered
	dirty   atomic.Bool    // the snapshot is stale
	snap    atomic.Pointer[[]Member]

	mu         sync.Mutex // guards the fields below
	local      Record
	lastSent   Record
	lastSentAt time.Time
	nodes      map[string]*nodeEntry
	records    map[string]Record
	seen       map[uint64]time.Time // extension broadcasts already delivered
	running    bool

	suspicionUnit time.Duration       // set by Run before any goroutine starts; see suspicionMax
	probeEvery    time.Duration       // set by Run: memberlist's probe interval (dilated)
	unheard       map[string]*unheard // members this node's own probes failed (notice.go)
	noticeRefuted time.Time           // the last refutation a notice caused (notice.go)
	pushPullBase  time.Duration       // set by Run: the profile's push/pull interval (pushpull.go)
	reclaimAfter  time.Duration       // set by Run: when memberlist lets a dead name move address

	subMu sync.Mutex // guards subs; a leaf lock (taken under mu)
	subs  map[chan struct{}]struct{}

	keyring *memberlist.Keyring // nil: encryption is off
	keys    *KeyManager

	conflictMu sync.Mutex          // guards conflicts; taken under memberlist's node lock
	conflicts  map[string]conflict // name → the new address of a dead member
	rejoin     chan struct{}       // wakes reconnectLoop for due conflicts (cap 1)
}

// conflict is a member that memberlist refused at a new address because its old entry
// is dead but not yet reclaimable (a device back from a reboot with a new DHCP lease,
// or, in tests, a new in-memory transport).
type conflict struct {
	addr   string
	seen   time.Time
	jitter time.Duration // added to the reclaim time, so the fleet's joins spread out
	next   time.Time     // no join before this (backoff after a failed one)
	tries  int
}

// conflictTarget is one due rejoin.
type conflictTarget struct{ name, addr string }

type nodeEntry struct {
	name   string
	addr   string
	meta   Meta
	status string
	since  time.Time // when status changed, by the wall clock (the timers' time)
	at     time.Time // the same moment by Config.Now (Member.StatusSince)
}

// setStatus records a status change at now (the wall clock).
func (g *Gossip) setStatus(e *nodeEntry, status string, now time.Time) {
	e.status, e.since, e.at = status, now, g.cfg.Now()
}

type inbound struct {
	data     []byte
	pushPull bool
}

type nodeEvent struct {
	name   string
	addr   string
	meta   []byte
	status string
}

// New validates cfg and builds a node. It starts nothing.
func New(cfg Config) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: node name is empty: set --name")
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.BindPort == 0 && cfg.Transport == nil {
		cfg.BindPort = 7946
	}
	if _, err := MemberlistConfig(cfg.Profile); err != nil {
		return nil, err
	}
	ring, err := newKeyring(cfg.SecretKey, cfg.Keyring)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = uint64(time.Now().UnixNano())
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Minute
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = time.Second
	}
	if cfg.RejoinRecentFor <= 0 {
		cfg.RejoinRecentFor = 2 * time.Minute
	}
	if cfg.ReconnectInterval <= 0 {
		cfg.ReconnectInterval = 10 * time.Second
	}
	if cfg.JoinBackoffMax <= 0 {
		cfg.JoinBackoffMax = 15 * time.Second
	}
	if cfg.KeyringTimeout <= 0 {
		cfg.KeyringTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Dilation = max(cfg.Dilation, 1)
	for _, d := range []*time.Duration{&cfg.Heartbeat, &cfg.RejoinInterval, &cfg.RejoinRecentFor, &cfg.ReconnectInterval, &cfg.JoinBackoffMax, &cfg.KeyringTimeout} {
		*d = dilate(*d, cfg.Dilation)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	meta, err := encodeMeta(cfg.Meta)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g := &Gossip{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "gossip"),
		meta:      meta,
		handlers:  make(map[MessageKind]registration),
		inbound:   make(chan inbound, 4096),
		events:    make(chan nodeEvent, 8192),
		ready:     make(chan struct{}),
		kick:      make(chan struct{}, 1),
		joined:    make(chan struct{}),
		local:     Record{Node: cfg.Name, ID: cfg.Meta.ID, Epoch: cfg.Epoch, Health: HealthOK},
		nodes:     make(map[string]*nodeEntry),
		records:   make(map[string]Record),
		seen:      make(map[uint64]time.Time),
		conflicts: make(map[string]conflict),
		unheard:   make(map[string]*unheard),
		rejoin:    make(chan struct{}, 1),
		subs:      make(map[chan struct{}]struct{}),
		keyring:   ring,
	}
	g.keys = newKeyManager(g)
	g.handlers[KindKeyring] = registration{handler: g.keys.handleMessage}
	g.queue = &memberlist.TransmitLimitedQueue{NumNodes: g.numNodes, RetransmitMult: 4}
	g.metrics, err = newMetrics(cfg.Registerer, g)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.dirty.Store(true)
	return g, nil
}

// Register adds an extension. Call it before Run; sx may be nil.
func (g *Gossip) Register(kind MessageKind, h Handler, sx StateExchange) {
	if kind < 32 {
		panic(fmt.Sprintf("gossip: message kind %d is reserved", kind))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running {
		panic("gossip: Register after Run")
	}
	g.handlers[kind] = registration{handler: h, state: sx}
}

// Subscribe returns a channel that receives a value whenever the fleet view changes
// (a member joins, fails, leaves or comes back; a record's load, health, drivers or
// state changes, the local one included), like Serf's EventCh but coalesced: one
// pending signal at most, never blocking gossip. Read Members for the new view. The
// returned function unsubscribes.
func (g *Gossip) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	g.subMu.Lock()
	g.subs[ch] = struct{}{}
	g.subMu.Unlock()
	return ch, func() {
		g.subMu.Lock()
		delete(g.subs, ch)
		g.subMu.Unlock()
	}
}

// changed marks the snapshot stale and signals the subscribers.
func (g *Gossip) changed() {
	g.dirty.Store(true)
	g.subMu.Lock()
	for ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	g.subMu.Unlock()
}

// LocalName is this node's name.
func (g *Gossip) LocalName() string { return g.cfg.Name }

// Ready is closed once the node listens for gossip.
func (g *Gossip) Ready() <-chan struct{} { return g.ready }

// Joined is closed once a seed answered (immediately when there are no seeds).
func (g *Gossip) Joined() <-chan struct{} { return g.joined }

// LocalAddr is the advertised gossip address (empty before Ready).
func (g *Gossip) LocalAddr() string {
	ml := g.ml.Load()
	if ml == nil {
		return ""
	}
	n := ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// SetLoad updates the local load record; a noticeable change is broadcast at the next
// tick, anything else with the heartbeat.
func (g *Gossip) SetLoad(l Load, instances int, health string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.local.CPU, g.local.Memory, g.local.Instances, g.local.Health = l.CPU, l.Memory, instances, health
	g.changed()
	g.wake()
}

// wake asks the tick loop to consider broadcasting the local record now.
func (g *Gossip) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// SetDrivers updates the workload drivers that work on this node.
func (g *Gossip) SetDrivers(drivers []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.local.Drivers = slices.Clone(drivers)
	g.changed()
	g.wake()
}

// SetState sets a small key/value gossiped with this node's record; "" deletes it.
func (g *Gossip) SetState(key, value string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := make(map[string]string, len(g.local.State)+1)
	for k, v := range g.local.State {
		st[k] = v
	}
	if value == "" {
		delete(st, key)
	} else {
		st[key] = value
	}
	g.local.State = st
	g.changed()
	g.wake()
}

// Members returns the fleet view, sorted by name, including this node. The slice and
// its maps are shared with other callers: read them, never modify them.
func (g *Gossip) Members() []Member {
	if !g.dirty.Load() {
		if s := g.snap.Load(); s != nil {
			return *s
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.nodes)+1)
	selfSeen := false
	for _, n := range g.nodes {
		m := Member{
			Name: n.name, ID: n.meta.ID, Region: n.meta.Region, Addr: n.addr,
			Status: n.status, StatusSince: n.at, Labels: n.meta.Labels,
			HTTPAddr: n.meta.HTTPAddr, RaftAddr: n.meta.RaftAddr, Version: n.meta.Version,
			Eligible: n.meta.Eligible, Local: n.name == g.cfg.Name,
			MilliCPU: n.meta.MilliCPU, MemoryBytes: n.meta.MemoryBytes,
		}
		rec, ok := g.records[n.name]
		if m.Local {
			rec, ok, selfSeen = g.local, true, true
		}
		if ok {
			m.Load = Load{CPU: rec.CPU, Memory: rec.Memory}
			m.Instances, m.Health, m.Drivers, m.State = rec.Instances, rec.Health, rec.Drivers, rec.State
		}
		out = append(out, m)
	}
	if !selfSeen {
		// Before memberlist runs the local node is not in the view yet.
		out = append(out, Member{
			Name: g.cfg.Name, ID: g.cfg.Meta.ID, Region: g.cfg.Meta.Region, Status: StatusAlive,
			Labels: g.cfg.Meta.Labels, HTTPAddr: g.cfg.Meta.HTTPAddr, RaftAddr: g.cfg.Meta.RaftAddr,
			Version: g.cfg.Meta.Version, Eligible: g.cfg.Meta.Eligible, Local: true,
			Load: Load{CPU: g.local.CPU, Memory: g.local.Memory}, Instances: g.local.Instances,
			Health: g.local.Health, Drivers: g.local.Drivers, State: g.local.State,
			MilliCPU: g.cfg.Meta.MilliCPU, MemoryBytes: g.cfg.Meta.MemoryBytes,
		})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	g.snap.Store(&out)
	g.dirty.Store(false) // after the store: writers set dirty under mu, which we hold
	return out
}

// Broadcast spreads payload to every node by gossip. A queued broadcast of this node
// with the same kind and key is replaced.
func (g *Gossip) Broadcast(kind MessageKind, key string, payload []byte) error {
	if len(payload) > MaxBroadcastPayload {
		return fmt.Errorf("broadcast %d bytes: over the %d byte limit; send a small announcement and fetch the body with SendReliable", len(payload), MaxBroadcastPayload)
	}
	msg, err := encodeFrame(frameBroadcast, kind, envelope{Key: key, From: g.cfg.Name, Body: payload})
	if err != nil {
		return err
	}
	g.markSeen(kind, key, payload)
	g.queue.QueueBroadcast(&broadcast{name: fmt.Sprintf("x/%d/%s", kind, key), msg: msg})
	return nil
}

// liveNode returns a private copy of member name's address for memberlist's sends,
// or nil when memberlist does not list it alive (or suspect) or its address is not
// known yet. The *Node values memberlist.Members returns point into memberlist's own
// table, which it rewrites in place when a member comes back (hashicorp/memberlist
// #306): only their Name is read here; the address comes from this node's view, which
// copies it in memberlist's event callbacks. ml nil skips the memberlist check.
func (g *Gossip) liveNode(ml *memberlist.Memberlist, name string) *memberlist.Node {
	if ml != nil {
		listed := false
		for _, n := range ml.Members() {
			if n.Name == name {
				listed = true
				break
			}
		}
		if !listed {
			return nil
		}
	}
	g.mu.Lock()
	e, ok := g.nodes[name]
	addr := ""
	if ok {
		addr = e.addr
	}
	g.mu.Unlock()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return nil
	}
	return &memberlist.Node{Name: name, Addr: ip, Port: uint16(p)}
}

// SendReliable sends payload to the named member over a TCP stream.
func (g *Gossip) SendReliable(node string, kind MessageKind, payload []byte) error {
	return g.sendReliable(node, kind, payload, true)
}

// ReplyReliable is SendReliable for the answer to a message node just sent: it also
// reaches a member this node's memberlist still holds dead, at the address this
// node's view knows, because the message is proof that node is up again (right after
// a partition heals, its refutation may take a second to arrive). Use it only to
// answer.
func (g *Gossip) ReplyReliable(node string, kind MessageKind, payload []byte) error {
	return g.sendReliable(node, kind, payload, false)
}

func (g *Gossip) sendReliable(node string, kind MessageKind, payload []byte, liveOnly bool) error {
	if len(payload) > MaxReliablePayload {
		return fmt.Errorf("send %d bytes to %s: over the %d byte limit", len(payload), node, MaxReliablePayload)
	}
	ml := g.ml.Load()
	if ml == nil {
		return fmt.Errorf("send to %s: gossip is not running", node)
	}
	var to *memberlist.Node
	if liveOnly {
		to = g.liveNode(ml, node)
	} else {
		to = g.liveNode(nil, node)
	}
	if to == nil {
		return fmt.Errorf("send to %s: no such live member", node)
	}
	msg, err := encodeFrame(frameDirect, kind, envelope{From: g.cfg.Name, Body: payload})
	if err != nil {
		return err
	}
	if err := ml.SendReliable(to, msg); err != nil {
		return fmt.Errorf("send to %s: %w", node, err)
	}
	g.metrics.sent("direct", len(msg))
	return nil
}

// Run starts memberlist, joins the seeds in the background and serves until ctx is
// cancelled; then it leaves the fleet gracefully and returns after every goroutine it
// started has exited.
func (g *Gossip) Run(ctx context.Context) error {
	mlc, err := g.memberlistConfig()
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.running = true
	g.mu.Unlock()
	ml, err := memberlist.Create(mlc)
	if err != nil {
		if at, ok := mlc.Transport.(*authTransport); ok {
			_ = at.Shutdown() // ours: memberlist does not shut down a transport it was given
		}
		return fmt.Errorf("start gossip on %s:%d: %w", mlc.BindAddr, mlc.BindPort, err)
	}
	g.ml.Store(ml)
	close(g.ready)
	g.log.Info("gossip listening", "addr", g.LocalAddr(), "profile", orDefault(g.cfg.Profile, ProfileLAN), "encrypted", g.keyring != nil)

	loopCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(6)
	go func() { defer wg.Done(); g.keys.run(loopCtx) }()
	go func() { defer wg.Done(); g.dispatchLoop(loopCtx) }()
	go func() { defer wg.Done(); g.tickLoop(loopCtx) }()
	go func() { defer wg.Done(); g.joinLoop(loopCtx) }()
	go func() { defer wg.Done(); g.reconnectLoop(loopCtx) }()
	if g.pushPullBase > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); g.pushPullLoop(loopCtx, g.pushPullBase) }()
	}
	go func() {
		defer wg.Done()
		budget := stallBudget{refuteEvery: mlc.ProbeInterval, pushEvery: stallPushPullSpacing * mlc.ProbeInterval,
			maxPushEvery: stallPushPullMaxSpacing * mlc.ProbeInterval, quiet: stallQuiet * mlc.ProbeInterval}
		g.stallLoop(loopCtx, stallEvery(mlc), mlc.ProbeTimeout, budget, func(gap time.Duration, push bool) { g.refuteStall(ml, gap, push) })
	}()

	<-ctx.Done()
	g.announceLeave(ml)
	if err := ml.Leave(g.scaled(3 * time.Second)); err != nil {
		g.log.Warn("leave fleet", "err", err)
	}
	stop()
	wg.Wait()
	if err := ml.Shutdown(); err != nil {
		return fmt.Errorf("shut down gossip: %w", err)
	}
	g.log.Info("left the fleet")
	return nil
}

// announceLeave sends this node's last record, marked Left, by broadcast and straight
// to a few peers over TCP, so the fleet records "left" rather than "dead".
func (g *Gossip) announceLeave(ml *memberlist.Memberlist) {
	g.mu.Lock()
	g.local.Left = true
	g.local.Seq++
	r := g.local
	g.mu.Unlock()
	b, err := encode(r)
	if err != nil {
		return
	}
	msg := append([]byte{frameRecord}, b...)
	g.queue.QueueBroadcast(&broadcast{name: "r/" + r.Node, msg: msg})
	var peers []*memberlist.Node
	for _, n := range ml.Members() {
		if p := g.liveNode(nil, n.Name); p != nil && n.Name != g.cfg.Name {
			peers = append(peers, p)
		}
	}
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	var wg sync.WaitGroup
	sent := 0
	for _, p := range peers {
		if sent == 3 {
			continue
		}
		sent++
		wg.Add(1)
		go func(p *memberlist.Node) {
			defer wg.Done()
			if err := ml.SendReliable(p, msg); err != nil {
				g.log.Debug("send leave record", "to", p.Name, "err", err)
			}
		}(p)
	}
	wg.Wait()
}

func (g *Gossip) memberlistConfig() (*memberlist.Config, error) {
	mlc, err := MemberlistConfig(g.cfg.Profile)
	if err != nil {
		return nil, err
	}
	mlc.Name = g.cfg.Name
	mlc.BindAddr = g.cfg.BindAddr
	mlc.BindPort = g.cfg.BindPort
	mlc.AdvertiseAddr = g.cfg.AdvertiseAddr
	mlc.AdvertisePort = g.cfg.AdvertisePort
	if mlc.AdvertisePort == 0 {
		mlc.AdvertisePort = g.cfg.BindPort
	}
	if g.cfg.Transport != nil {
		mlc.Transport = g.cfg.Transport
	}
	if g.cfg.StreamAuth != nil {
		inner := g.cfg.Transport
		if inner == nil {
			nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
				BindAddrs: []string{mlc.BindAddr}, BindPort: mlc.BindPort, Logger: mlc.Logger})
			if err != nil {
				return nil, fmt.Errorf("start gossip on %s:%d: %w", mlc.BindAddr, mlc.BindPort, err)
			}
			inner = nt
		}
		mlc.Transport = newAuthTransport(inner, g.cfg.StreamAuth, g.metrics.dropped.WithLabelValues("handshakes_pending").Inc)
	}
	// The ring, never SecretKey: memberlist would add SecretKey to the ring and make
	// it the primary, undoing a rotation the ring was loaded with.
	mlc.Keyring = g.keyring
	mlc.Delegate = &delegate{g: g}
	mlc.Events = &eventDelegate{g: g}
	mlc.Conflict = &conflictDelegate{g: g}
	mlc.Logger = log.New(&logWriter{log: g.log, suspect: g.onSuspectLog}, "", 0)
	if g.cfg.Tune != nil {
		g.cfg.Tune(mlc)
	}
	for _, d := range []*time.Duration{&mlc.ProbeInterval, &mlc.ProbeTimeout, &mlc.GossipInterval, &mlc.PushPullInterval,
		&mlc.TCPTimeout, &mlc.GossipToTheDeadTime, &mlc.DeadNodeReclaimTime, &mlc.QueueCheckInterval} {
		*d = dilate(*d, g.cfg.Dilation)
	}
	// Our broadcasts (records, extension announcements) are small, and for
	// GossipToTheDeadTime after a death part of every node's transmissions go to the
	// dead node: twice memberlist's budget keeps a leadership change from missing a
	// live node (seen: 3 in 40 coordinator kills waited for push/pull, 4-6 s).
	g.queue.RetransmitMult = 2 * mlc.RetransmitMult
	// pushPullLoop runs the periodic push/pull, stretched further than memberlist
	// stretches it as the fleet grows (pushpull.go); 0 turns it off, as in memberlist.
	g.pushPullBase = mlc.PushPullInterval
	mlc.PushPullInterval = 0
	g.suspicionUnit = time.Duration(mlc.SuspicionMaxTimeoutMult*mlc.SuspicionMult) * mlc.ProbeInterval
	g.probeEvery = mlc.ProbeInterval
	// A dead member's entry accepts a new address after DeadNodeReclaimTime or, when
	// that is off, once memberlist drops the entry after GossipToTheDeadTime.
	g.reclaimAfter = mlc.DeadNodeReclaimTime
	if g.reclaimAfter <= 0 {
		g.reclaimAfter = mlc.GossipToTheDeadTime
	}
	return mlc, nil
}

// queuedBroadcasts is the number of murmur broadcasts waiting in this node's queue
// for their relays.
func (g *Gossip) queuedBroadcasts() int { return g.queue.NumQueued() }

func (g *Gossip) numNodes() int {
	if ml := g.ml.Load(); ml != nil {
		return ml.NumMembers()
	}
	return 1
}

// joinLoop joins the seeds with exponential backoff until one answers. The first
// failure is logged as a warning with a hint; repeats of the same error go to debug.
func (g *Gossip) joinLoop(ctx context.Context) {
	if len(g.cfg.Seeds) == 0 {
		close(g.joined)
		return
	}
	self := g.LocalAddr()
	var seeds []string
	for _, s := range g.cfg.Seeds {
		if s != self {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 { // this node is the fleet's only seed
		close(g.joined)
		return
	}
	backoff := g.scaled(250 * time.Millisecond)
	lastErr := ""
	for attempt := 1; ; attempt++ {
		ml := g.ml.Load()
		// One seed at a time, so a cancellation waits for one dial at most.
		n, err := 0, error(nil)
		for _, seed := range seeds {
			if ctx.Err() != nil {
				return
			}
			var k int
			k, err = ml.Join([]string{seed})
			if n += k; n > 0 {
				break
			}
		}
		if n > 0 {
			g.log.Info("joined the fleet", "seeds", g.cfg.Seeds, "attempts", attempt, "members", ml.NumMembers())
			close(g.joined)
			g.reachSeeds(ctx, seeds)
			return
		}
		msg := joinHint(err, g.keyring != nil)
		if msg != lastErr {
			g.log.Warn("join failed, retrying in the background", "seeds", strings.Join(g.cfg.Seeds, ","), "err", msg)
			lastErr = msg
		} else {
			g.log.Debug("join failed", "attempt", attempt, "err", msg)
		}
		g.metrics.joinFailures.Inc()
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, g.cfg.JoinBackoffMax)
	}
}

// reachSeeds keeps joining the seeds that are not members yet, with backoff, until
// every one of them is. Agents started together may each find only some seeds up: the
// first join succeeds on those, and without this the fleet could stay split in two
// gossip pools that each see a region of their own (and each bootstrap it, under the
// settle rule). A seed that never comes up is retried every JoinBackoffMax.
func (g *Gossip) reachSeeds(ctx context.Context, seeds []string) {
	seeds = slices.Clone(seeds)
	backoff := g.scaled(250 * time.Millisecond)
	// For the first minute at most a second apart: the pools must merge well within
	// the region's settle period (3 s) of the seeds coming up.
	fastUntil := time.Now().Add(g.scaled(time.Minute))
	for {
		missing := g.seedsNotMembers(ctx, seeds)
		if len(missing) == 0 {
			return
		}
		ml := g.ml.Load()
		for _, seed := range missing {
			if ctx.Err() != nil {
				return
			}
			if n, err := ml.Join([]string{seed}); n > 0 {
				// Reached: its pool is ours now, even if its address never shows as
				// a member's (NAT, a virtual IP): stop trying it.
				seeds = slices.DeleteFunc(seeds, func(s string) bool { return s == seed })
				g.log.Info("reached another seed", "seed", seed, "members", ml.NumMembers())
			} else {
				g.log.Debug("seed not reached yet", "seed", seed, "err", err)
			}
		}
		if len(g.seedsNotMembers(ctx, seeds)) == 0 {
			return
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		limit := g.cfg.JoinBackoffMax
		if time.Now().Before(fastUntil) {
			limit = min(limit, g.scaled(time.Second))
		}
		backoff = min(backoff*2, limit)
	}
}

// seedsNotMembers returns the seeds whose address is not that of a member this node
// knows alive or suspect. A seed given by name resolves to its addresses.
func (g *Gossip) seedsNotMembers(ctx context.Context, seeds []string) []string {
	known := map[string]bool{}
	for _, m := range g.Members() {
		if m.Up() {
			known[m.Addr] = true
		}
	}
	var out []string
	for _, s := range seeds {
		if known[s] {
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err == nil {
			if ips, err := net.DefaultResolver.LookupHost(ctx, host); err == nil {
				found := false
				for _, ip := range ips {
					if known[net.JoinHostPort(ip, port)] {
						found = true
						break
					}
				}
				if found {
					continue
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// joinHint turns memberlist's join errors into one line an operator can act on.
func joinHint(err error, encrypted bool) string {
	if err == nil {
		return "no seed answered"
	}
	// memberlist returns a multierror: "1 error occurred:\n\t* failed to join ...".
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line != "" && !strings.HasSuffix(line, "occurred:") {
			parts = append(parts, line)
		}
	}
	s := strings.Join(parts, "; ")
	switch {
	case strings.Contains(s, "encryption is not configured"):
		return s + ": the fleet encrypts gossip and this node has no key; start it with the fleet's --encrypt key"
	case strings.Contains(s, "decrypt") || strings.Contains(s, "not encrypted") || strings.Contains(s, "gossip key"):
		return s + ": the gossip key does not match the fleet's; check --encrypt"
	case strings.Contains(s, "TLS") || strings.Contains(s, "tls:"):
		return s + ": the stream authentication failed; check that --tls-ca, --tls-cert and --tls-key are the fleet's (or absent everywhere)"
	case encrypted && (strings.Contains(s, "EOF") || strings.Contains(s, "reset by peer")):
		return s + ": the seed closed the connection; check that --encrypt matches the fleet's key"
	case strings.Contains(s, "EOF") || strings.Contains(s, "reset by peer"):
		return s + ": the seed closed the connection; if the fleet encrypts gossip, give this node its --encrypt key"
	}
	return s
}

// tickLoop broadcasts the local record when it changed noticeably (woken at once by
// the setters) or the heartbeat is due, expires suspicions and reconnects to failed
// members. It wakes once a second otherwise: every wake-up costs CPU on small devices.
func (g *Gossip) tickLoop(ctx context.Context) {
	tick := time.NewTicker(g.scaled(time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
			g.maybeBroadcastLocal(time.Now())
		case now := <-tick.C:
			g.maybeBroadcastLocal(now)
			g.refreshFromMemberlist(now)
			g.expireSeen(now)
			if len(g.dueConflicts(now)) > 0 {
				select {
				case g.rejoin <- struct{}{}:
				default:
				}
			}
		}
	}
}

// reconnectLoop runs reconnect on its own goroutine: a join to a powered-off host
// blocks for memberlist's TCP timeout and must not hold up the tick loop.
//
// Members that died within the last RejoinRecentFor are also tried every
// RejoinInterval, one at a time, each attempt on its own goroutine (at most two in
// flight). Neither side of a healed partition probes or pushes/pulls with nodes it
// holds dead, and the dead messages' retransmits are spent while the link is down,
// so without this the two sides would find each other only at the next
// ReconnectInterval: seconds after the link is back, where the goal is one.
func (g *Gossip) reconnectLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.ReconnectInterval)
	defer t.Stop()
	fast := time.NewTicker(g.cfg.RejoinInterval)
	defer fast.Stop()
	notice := time.NewTicker(g.probeEvery)
	defer notice.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	inflight := make(chan struct{}, 2)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-notice.C:
			for _, u := range g.dueNotices(now) {
				wg.Add(1)
				go func() { defer wg.Done(); g.sendNotice(u) }()
			}
		case <-t.C:
			g.reconnect(ctx)
		case <-fast.C:
			name, addr := g.recentlyDead()
			if addr == "" {
				continue
			}
			select {
			case inflight <- struct{}{}:
			default:
				continue // two attempts still dialling (a host that is really gone)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-inflight }()
				ml := g.ml.Load()
				// A UDP ping first (ProbeTimeout, 100 ms on a LAN): a TCP dial into a
				// link that is still down would hang on SYN retransmits (1 s, 3 s, ...)
				// and hold its slot past the moment the link comes back.
				if ua, err := net.ResolveUDPAddr("udp", addr); err != nil {
					return
				} else if _, err := ml.Ping(name, ua); err != nil {
					return
				}
				if n, err := ml.Join([]string{addr}); n > 0 {
					// The first exchange only makes each side refute the other's
					// "dead" (a new incarnation); an alive at the incarnation that
					// was declared dead is ignored. The second carries the refuted
					// incarnations, and each side takes the other back at once.
					_, _ = ml.Join([]string{addr})
					g.log.Info("reached a member held dead", "addr", addr)
				} else {
					g.log.Debug("member held dead still unreachable", "addr", addr, "err", err)
				}
			}()
		case <-g.rejoin:
			g.rejoinConflicts(ctx)
		}
	}
}

// recentlyDead returns the name and address of a random member that died within
// RejoinRecentFor, or "" and "".
func (g *Gossip) recentlyDead() (name, addr string) {
	var candidates [][2]string
	g.mu.Lock()
	for _, e := range g.nodes {
		if e.status == StatusDead && e.name != g.cfg.Name && time.Since(e.since) < g.cfg.RejoinRecentFor {
			candidates = append(candidates, [2]string{e.name, e.addr})
		}
	}
	g.mu.Unlock()
	if len(candidates) == 0 {
		return "", ""
	}
	c := candidates[rand.IntN(len(candidates))]
	return c[0], c[1]
}

// noteConflict records that memberlist refused name at addr because another entry
// holds the name. It must not block: memberlist holds its node lock.
func (g *Gossip) noteConflict(name, addr string) {
	g.metrics.nameConflicts.Inc()
	g.conflictMu.Lock()
	defer g.conflictMu.Unlock()
	if c, ok := g.conflicts[name]; !ok || c.addr != addr {
		var jitter time.Duration
		if w := g.reclaimAfter / 2; w > 0 {
			jitter = rand.N(w)
		}
		g.conflicts[name] = conflict{addr: addr, seen: time.Now(), jitter: jitter}
	}
}

// dueConflicts returns the members that memberlist refused at a new address while
// their old entry was dead or left, and that it now accepts there: once the old entry
// has been dead or left for reclaimAfter (our view's time is never earlier than
// memberlist's own). A conflict with a live entry (two nodes share a name, an
// operator's mistake that memberlist logs) is never acted on and expires.
//
// Every peer that saw the refusal would join the returning node at once; a random
// delay of up to half the reclaim time spreads them out, and most never join at all
// because the first join's alive message reaches them by gossip first. A failed join
// backs off from 2 s to 30 s.
//
// Without this, a node back at a new address stays dead in the fleet view until its
// next push/pull happens to land after the reclaim time: 10-25 s on the LAN profile.
func (g *Gossip) dueConflicts(now time.Time) []conflictTarget {
	// conflictMu and mu are never held together: noteConflict runs under memberlist's
	// node lock, and this keeps any lock order out of the question.
	g.conflictMu.Lock()
	if len(g.conflicts) == 0 {
		g.conflictMu.Unlock()
		return nil
	}
	pending := maps.Clone(g.conflicts)
	g.conflictMu.Unlock()
	var due []conflictTarget
	var done []string
	g.mu.Lock()
	for name, c := range pending {
		e, ok := g.nodes[name]
		switch {
		case !ok || now.Sub(c.seen) > conflictTTL || (e.status != StatusDead && e.status != StatusLeft && e.addr == c.addr):
			done = append(done, name) // forgotten, stale, or resolved
		case (e.status == StatusDead || e.status == StatusLeft) && now.Sub(e.since) > g.reclaimAfter+c.jitter && !now.Before(c.next):
			due = append(due, conflictTarget{name, c.addr})
		}
	}
	g.mu.Unlock()
	g.conflictMu.Lock()
	for _, name := range done {
		if g.conflicts[name] == pending[name] {
			delete(g.conflicts, name)
		}
	}
	g.conflictMu.Unlock()
	return due
}

// conflictTTL bounds how long a refused address is remembered.
const conflictTTL = 5 * time.Minute

// markRejoined sets the backoff of conflicts just joined.
func (g *Gossip) markRejoined(now time.Time, due []conflictTarget) {
	g.conflictMu.Lock()
	defer g.conflictMu.Unlock()
	for _, t := range due {
		c, ok := g.conflicts[t.name]
		if !ok || c.addr != t.addr {
			continue
		}
		c.tries++
		c.next = now.Add(g.scaled(min(time.Second<<c.tries, 30*time.Second)))
		g.conflicts[t.name] = c
	}
}

// rejoinConflicts joins the due conflicting addresses: the push/pull carries the
// returning node's alive state, which memberlist now accepts.
func (g *Gossip) rejoinConflicts(ctx context.Context) {
	now := time.Now()
	due := g.dueConflicts(now)
	if len(due) == 0 || ctx.Err() != nil {
		return
	}
	g.markRejoined(now, due)
	addrs := make([]string, len(due))
	for i, t := range due {
		addrs[i] = t.addr
	}
	if n, err := g.ml.Load().Join(addrs); n > 0 {
		g.log.Info("re-admitted members at a new address", "addrs", addrs)
	} else {
		g.log.Debug("re-admit members at a new address", "addrs", addrs, "err", err)
	}
}

func (g *Gossip) maybeBroadcastLocal(now time.Time) {
	g.mu.Lock()
	r := g.local
	due := now.Sub(g.lastSentAt) >= g.cfg.Heartbeat || significant(g.lastSent, r)
	if due {
		g.local.Seq++
		r = g.local
		g.lastSent, g.lastSentAt = r, now
	}
	g.mu.Unlock()
	if !due {
		return
	}
	b, err := encode(r)
	if err != nil {
		g.log.Error("encode local record", "err", err)
		return
	}
	g.queue.QueueBroadcast(&broadcast{name: "r/" + r.Node, msg: append([]byte{frameRecord}, b...)})
}

// significant reports whether the change from a to b is worth a broadcast before the
// heartbeat: load moved by a percent point or more, or anything else changed.
func significant(a, b Record) bool {
	return math.Abs(a.CPU-b.CPU) >= 0.01 || math.Abs(a.Memory-b.Memory) >= 0.01 ||
		a.Instances != b.Instances || a.Health != b.Health ||
		!slices.Equal(a.Drivers, b.Drivers) || !mapsEqual(a.State, b.State)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// refreshFromMemberlist adds members memberlist knows and the view does not (after a
// dropped event), clears suspicions that outlived memberlist's longest suspicion
// timeout without a death (the node refuted), and on resync marks members memberlist
// no longer lists as dead.
//
// memberlist has no suspect event and never updates Node.State for suspicion, so the
// view's "suspect" is this node's own: set when its probe of a member fails (see
// markSuspect), cleared by a death, a leave, or the timeout here.
func (g *Gossip) refreshFromMemberlist(now time.Time) {
	ml := g.ml.Load()
	live := ml.Members()
	resync := g.resync.Swap(false)
	g.mu.Lock()
	defer g.mu.Unlock()
	suspicionMax := g.suspicionMax(len(live))
	present := make(map[string]bool, len(live))
	for _, n := range live {
		present[n.Name] = true
		e, ok := g.nodes[n.Name]
		if !ok || resync {
			meta, err := DecodeMeta(n.Meta)
			if err != nil {
				g.metrics.decodeErrors.WithLabelValues("meta").Inc()
			}
			if !ok {
				e = &nodeEntry{name: n.Name}
				g.setStatus(e, StatusAlive, now)
				g.nodes[n.Name] = e
			}
			e.meta, e.addr = meta, n.Address()
			if e.status == StatusDead || e.status == StatusLeft {
				g.setStatus(e, StatusAlive, now) // its rejoin event was dropped
			}
			g.changed()
		}
		if e.status == StatusSuspect && now.Sub(e.since) > suspicionMax {
			g.setStatus(e, StatusAlive, now)
			g.changed()
		}
	}
	if resync {
		for name, e := range g.nodes {
			if !present[name] && (e.status == StatusAlive || e.status == StatusSuspect) {
				g.setStatus(e, StatusDead, now)
			}
		}
		g.changed()
	}
	// Forget members dead or left for longer than forgetAfter, so fleets that churn
	// names do not grow the view and every push/pull without bound.
	for name, e := range g.nodes {
		if (e.status == StatusDead || e.status == StatusLeft) && now.Sub(e.since) > forgetAfter && name != g.cfg.Name {
			delete(g.nodes, name)
			delete(g.records, name)
			g.changed()
		}
	}
}

// suspicionMax is the longest memberlist keeps one of n members suspect before
// declaring it dead (its suspicion timeout scales with log10 of the fleet size), plus
// a second of slack.
func (g *Gossip) suspicionMax(n int) time.Duration {
	return time.Duration(float64(g.suspicionUnit)*math.Max(1, math.Log10(float64(n)))) + g.scaled(time.Second)
}

// forgetAfter is how long a dead or left member stays in the fleet view.
const forgetAfter = 72 * time.Hour

// markSuspect records that this node's probe of name failed.
func (g *Gossip) markSuspect(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.nodes[name]
	if !ok || name == g.cfg.Name {
		return
	}
	now := time.Now()
	if e.status == StatusAlive {
		g.setStatus(e, StatusSuspect, now)
		g.metrics.suspicions.Inc()
		g.changed()
	}
	if e.status == StatusSuspect && g.unheard[name] == nil {
		g.unheard[name] = &unheard{since: now}
	}
}

// reconnect tries one failed member, or the seeds when this node is alone, so two
// halves of a fleet that declared each other dead merge again after a partition heals.
func (g *Gossip) reconnect(ctx context.Context) {
	ml := g.ml.Load()
	var candidates []string
	g.mu.Lock()
	for _, e := range g.nodes {
		if e.status == StatusDead && e.name != g.cfg.Name && time.Since(e.since) < 24*time.Hour {
			candidates = append(candidates, e.addr)
		}
	}
	g.mu.Unlock()
	if ml.NumMembers() <= 1 {
		candidates = append(candidates, g.cfg.Seeds...)
	}
	if len(candidates) == 0 || ctx.Err() != nil {
		return
	}
	addr := candidates[rand.IntN(len(candidates))]
	if n, err := ml.Join([]string{addr}); n > 0 {
		g.log.Info("reconnected", "addr", addr)
	} else {
		g.log.Debug("reconnect failed", "addr", addr, "err", err)
	}
}

// onSuspectLog is called by the log adapter when memberlist reports that this node's
// probe of a member failed. It must not block: it queues an event.
func (g *Gossip) onSuspectLog(name string) {
	select {
	case g.events <- nodeEvent{name: name, status: StatusSuspect}:
	default:
		g.metrics.dropped.WithLabelValues("event_queue_full").Inc()
	}
}

func (g *Gossip) dispatchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-g.events:
			g.applyEvent(ev)
		case in := <-g.inbound:
			if in.pushPull {
				g.handlePushPull(in.data)
			} else {
				g.handleMessage(in.data)
			}
		}
	}
}

func (g *Gossip) applyEvent(ev nodeEvent) {
	if ev.status == StatusSuspect {
		g.markSuspect(ev.name)
		return
	}
	meta, err := DecodeMeta(ev.meta)
	if err != nil {
		g.metrics.decodeErrors.WithLabelValues("meta").Inc()
		g.log.Debug("undecodable node meta", "node", ev.name, "err", err)
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.nodes[ev.name]
	if !ok {
		e = &nodeEntry{name: ev.name}
		g.nodes[ev.name] = e
	}
	e.addr = ev.addr
	if err == nil {
		if r, ok := g.records[ev.name]; ok && meta.ID != "" && r.ID != meta.ID {
			delete(g.records, ev.name) // a new identity under the same name
		}
		e.meta = meta
	}
	if ev.status == StatusDead && g.records[ev.name].Left {
		ev.status = StatusLeft
	}
	if ev.status == StatusDead || ev.status == StatusLeft {
		delete(g.unheard, ev.name) // reconnectLoop's rejoin takes over
	}
	if e.status != ev.status {
		g.setStatus(e, ev.status, now)
		if ev.status != StatusAlive && ev.name != g.cfg.Name {
			g.log.Info("member "+ev.status, "node", ev.name, "addr", ev.addr)
		}
	}
	g.changed()
}

func (g *Gossip) handleMessage(b []byte) {
	frame, kind, env, err := decodeFrame(b)
	typ := frameName(frame)
	g.metrics.received(typ, len(b))
	if err != nil {
		g.metrics.decodeErrors.WithLabelValues(typ).Inc()
		g.log.Debug("undecodable gossip message", "type", typ, "err", err)
		return
	}
	switch frame {
	case frameRecord:
		rec, err := DecodeRecord(env.Body)
		if err != nil {
			g.metrics.decodeErrors.WithLabelValues(typ).Inc()
			return
		}
		if g.mergeRecord(rec) {
			// Newer than what we had: pass it on, as Serf does with user events.
			g.queue.QueueBroadcast(&broadcast{name: "r/" + rec.Node, msg: slices.Clone(b)})
		}
	case frameBroadcast:
		if !g.markSeen(kind, env.Key, env.Body) {
			return
		}
		g.queue.QueueBroadcast(&broadcast{name: fmt.Sprintf("x/%d/%s/%x", kind, env.Key, seenKey(kind, env.Key, env.Body)), msg: slices.Clone(b)})
		g.deliver(kind, env)
	case frameDirect:
		g.deliver(kind, env)
	case frameNotice:
		g.onNotice(env.From)
	}
}

func (g *Gossip) deliver(kind MessageKind, env envelope) {
	g.mu.Lock()
	reg, ok := g.handlers[kind]
	g.mu.Unlock()
	if !ok || reg.handler == nil {
		g.metrics.dropped.WithLabelValues("unknown_kind").Inc()
		return
	}
	reg.handler(env.From, env.Body)
}

// mergeRecord stores rec if it is newer than the stored one and reports whether it was.
// Records are ordered by (Epoch, Seq) within one node identity. A node that came back
// with a wiped data dir has a new id and starts its boot counter again: its records
// replace those of the old identity, and records of an identity other than the one in
// the node's current meta are ignored.
func (g *Gossip) mergeRecord(rec Record) bool {
	if rec.Node == g.cfg.Name {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.nodes[rec.Node]; ok && e.meta.ID != "" && rec.ID != "" && rec.ID != e.meta.ID {
		return false
	}
	if old, ok := g.records[rec.Node]; ok && old.ID == rec.ID && !rec.newer(old) {
		return false
	}
	g.records[rec.Node] = rec
	if e, ok := g.nodes[rec.Node]; ok && rec.Left && e.status == StatusDead {
		e.status = StatusLeft // the leave record came after memberlist's leave event
	}
	g.changed()
	return true
}

func (g *Gossip) localPushPull() []byte {
	g.mu.Lock()
	p := pushPull{From: g.cfg.Name, Records: make([]Record, 0, len(g.records)+1)}
	p.Records = append(p.Records, g.local)
	for _, r := range g.records {
		p.Records = append(p.Records, r)
	}
	regs := make(map[MessageKind]StateExchange, len(g.handlers))
	for k, r := range g.handlers {
		if r.state != nil {
			regs[k] = r.state
		}
	}
	g.mu.Unlock()
	if len(regs) > 0 {
		p.Ext = make(map[MessageKind][]byte, len(regs))
		for k, sx := range regs {
			p.Ext[k] = sx.LocalState()
		}
	}
	b, err := encode(p)
	if err != nil {
		g.log.Error("encode push/pull state", "err", err)
		return nil
	}
	g.metrics.sent("pushpull", len(b))
	return b
}

func (g *Gossip) handlePushPull(b []byte) {
	g.metrics.received("pushpull", len(b))
	p, err := decodePushPull(b)
	if err != nil {
		g.metrics.decodeErrors.WithLabelValues("pushpull").Inc()
		g.log.Debug("undecodable push/pull state", "err", err)
		return
	}
	for _, r := range p.Records {
		if r.Node == "" || len(r.State) > maxStateEntries {
			g.metrics.decodeErrors.WithLabelValues("record").Inc()
			continue
		}
		g.mergeRecord(r)
	}
	for kind, data := range p.Ext {
		g.mu.Lock()
		reg, ok := g.handlers[kind]
		g.mu.Unlock()
		if ok && reg.state != nil {
			reg.state.MergeRemoteState(p.From, data)
		}
	}
}

func seenKey(kind MessageKind, key string, body []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte{byte(kind)})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum64()
}

// markSeen records an extension broadcast and reports whether it was new.
func (g *Gossip) markSeen(kind MessageKind, key string, body []byte) bool {
	k := seenKey(kind, key, body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[k]; ok {
		return false
	}
	g.seen[k] = time.Now()
	return true
}

// expireSeen forgets delivered broadcasts after five minutes: by then memberlist's
// retransmit limit has retired them everywhere.
func (g *Gossip) expireSeen(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, t := range g.seen {
		if now.Sub(t) > g.scaled(5*time.Minute) {
			delete(g.seen, k)
		}
	}
}

// scaled is d under the node's dilation (Config.Dilation).
func (g *Gossip) scaled(d time.Duration) time.Duration { return dilate(d, g.cfg.Dilation) }

func dilate(d time.Duration, k float64) time.Duration {
	if k <= 1 {
		return d
	}
	return time.Duration(float64(d) * k)
}

func frameName(f byte) string {
	switch f {
	case frameRecord:
		return "record"
	case frameBroadcast:
		return "broadcast"
	case frameDirect:
		return "direct"
	case frameNotice:
		return "notice"
	}
	return "unknown"
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
