package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/agent/events"
	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/logs"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/agent/secure"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
)

// Deps are what main builds and passes down: logger, metrics, and test hooks.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // the agent's own metrics
	Gatherer   prometheus.Gatherer   // everything /metrics serves
	// GossipTransport replaces UDP/TCP gossip (in-process test fleets).
	GossipTransport memberlist.NodeAwareTransport
	// RaftTransport and RaftControl replace the region's TCP transport (in-process
	// test fleets: region.InmemNetwork). Both or neither.
	RaftTransport raft.Transport
	RaftControl   region.Control
	// RaftNetwork, if set, gives every Raft group of the agent (its region's, and the
	// witness groups it runs for other regions) an endpoint on this in-memory network
	// at the Raft advertise address. It replaces RaftTransport and RaftControl.
	RaftNetwork *region.InmemNetwork
	// Clock is the one clock of every component that waits (coordinator, assignments,
	// supervisor, region timers); nil means the real clock.
	Clock runtime.Clock
	// Now overrides Clock.Now for the components that only read the time (intents,
	// status); nil means Clock.Now.
	Now func() time.Time
	// Drivers, if set, are the runtime drivers by name, instead of exec plus docker
	// when its engine answers (the fleet simulator: runtime.SimDriver).
	Drivers map[string]runtime.Driver
	// Dilation, above 1, runs the agent's real-time timers (memberlist, Raft, the
	// region's control loop) that many times slower; Clock must then be a
	// runtime.DilatedClock of the same factor, which slows the rest. The fleet
	// simulator uses it to run more agents than the machine keeps in real time.
	Dilation float64
	// OnIntentStored, if set, is called after each intent version this node stores,
	// from the API or from a peer (the fleet simulator times dissemination with it).
	// It must not block.
	OnIntentStored func(name string, v policy.Version)
}

// Agent is one murmur node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	reg     prometheus.Registerer
	gather  prometheus.Gatherer
	now     func() time.Time
	clock   runtime.Clock
	started time.Time

	id   identity
	auth *secure.Authenticator // channels of gossip streams and the Raft port
	// insecure: reachable beyond loopback without encryption or TLS, by --insecure.
	insecure  bool
	contact   contactTracker   // where the node's assignment comes from, since when
	headless  *headlessTracker // regions without a coordinator in this node's view (headless.go)
	summaries summaryCache     // region summaries of the current gossip snapshot (regions.go)
	tls       *secure.Source   // nil without --tls-*
	tlsErr    atomic.Value     // string: the last failed reload's error, "" after a good one

	tlsReloads *prometheus.CounterVec
	gossip     *gossip.Gossip
	intents    *intents.Service
	region     *region.Node
	// The Raft port: mux is nil with an in-memory transport (Deps). raftChan
	// authenticates its connections; raftAdvertise is its address in the fleet.
	mux           *region.Mux
	raftChan      *secure.Channel
	raftAdvertise string
	witnesses     *witnesses // groups this node runs for other regions (witness.go)
	witnessGroups prometheus.Gauge
	deps          Deps
	events        *events.Ring   // the event stream's ring (eventsrc.go)
	eventsAPI     *events.Server // GET /v1/events
	coord         *coordinator.Coordinator
	local         atomic.Pointer[coordinator.Local] // set in Run once the supervisor exists
	logs          *logs.Service                     // instances' output for other nodes' APIs (instancelogs.go)
	// logsDone ends every GET /v1/instances/{id}/logs when the HTTP server shuts
	// down: a follower would otherwise hold Shutdown for its whole timeout.
	logsDone   context.Context
	cancelLogs context.CancelFunc
	logSlots   chan struct{} // one per logs request being answered (maxLogRequests)

	// Set in Run before ready is closed, read-only afterwards.
	sup        supervisor
	usage      UsageSource
	drivers    []string
	limitsNote string

	lock     *os.File // the data dir's exclusive lock, held from New until Run returns
	ready    chan struct{}
	httpAddr string // set before ready is closed
	access   *access
	audit    *auditLog // open from New until Run returns

	// keyring is the gossip keyring (<data-dir>/keyring.json), nil when gossip
	// encryption is off. Made in New before anything builds a gossip transport, and
	// the same object memberlist encrypts with; only gossip's KeyManager changes it.
	keyring *memberlist.Keyring
}

// Limits of the HTTP API.
const (
	maxHeaderBytes = 64 << 10 // request headers; larger ones get 431
	maxHTTPConns   = 256      // concurrent connections
)

// New validates cfg, prepares the data dir and builds the components. It starts
// nothing: no listener, no goroutine.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Registerer == nil {
		r := prometheus.NewRegistry()
		deps.Registerer, deps.Gatherer = r, r
	}
	if deps.Gatherer == nil {
		return nil, errors.New("agent: Deps.Gatherer is nil while Registerer is set")
	}
	if deps.Clock == nil {
		deps.Clock = runtime.RealClock{}
	}
	if deps.Now == nil {
		deps.Now = deps.Clock.Now
	}
	if cfg.Capacity.MilliCPU == 0 || cfg.Capacity.MemoryBytes == 0 {
		det, err := DetectCapacity()
		if err != nil {
			return nil, &FieldError{"capacity", err}
		}
		if cfg.Capacity.MilliCPU == 0 {
			cfg.Capacity.MilliCPU = det.MilliCPU
		}
		if cfg.Capacity.MemoryBytes == 0 {
			cfg.Capacity.MemoryBytes = det.MemoryBytes
		}
	}
	if cfg.Reserve == (Resources{}) {
		cfg.Reserve = DefaultReserve()
	}
	a := &Agent{cfg: cfg, log: deps.Logger, reg: deps.Registerer, gather: deps.Gatherer, now: deps.Now, clock: deps.Clock, ready: make(chan struct{}),
		headless: newHeadlessTracker(headlessAfter)}
	tokens, err := loadTokens(cfg)
	if err != nil {
		return nil, err
	}
	// Before anything reads or writes the data dir (the boot counter, the stores).
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, dataDirError(cfg.DataDir, err)
	}
	a.lock = lock
	built := false
	defer func() {
		if !built {
			a.unlock()
		}
	}()
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, dataDirError(cfg.DataDir, err)
	}
	a.id = id
	// A damaged Raft log refuses the start before this node shows up in gossip: one
	// line naming the file and the way back, exit 1 (docs/regions.md).
	if err := region.CheckDataDir(cfg.DataDir, cfg.Region); err != nil {
		return nil, err
	}
	if a.keyring, err = loadKeyring(cfg.DataDir, cfg.EncryptKey, a.log); err != nil {
		return nil, dataDirError(cfg.DataDir, err)
	}
	if a.audit, err = openAuditLog(cfg.DataDir, cfg.AuditMaxBytes); err != nil {
		return nil, dataDirError(cfg.DataDir, err)
	}
	if a.access, err = newAccess(tokens, cfg.HTTPOpenMetrics, a.audit, a.reg, a.log, a.now); err != nil {
		return nil, err
	}

	bindHost, bindPort, _ := net.SplitHostPort(cfg.Bind)
	bp, _ := strconv.Atoi(bindPort)
	advHost := bindHost
	if deps.GossipTransport == nil {
		if advHost, err = advertiseHost(cfg); err != nil {
			return nil, &FieldError{"advertise", err}
		}
	}
	raftHost, raftPort, _ := net.SplitHostPort(cfg.RaftBind)
	raftAdvertise := net.JoinHostPort(advHost, raftPort)
	if deps.GossipTransport == nil || (deps.RaftTransport == nil && deps.RaftNetwork == nil) {
		hosts := []string{bindHost, advHost, raftHost}
		if cfg.Advertise != "" {
			h, _, _ := net.SplitHostPort(cfg.Advertise)
			hosts = append(hosts, h)
		}
		if a.insecure, err = checkSecureDefaults(cfg, a.keyring != nil, hosts...); err != nil {
			return nil, err
		}
	}
	if err := a.setupSecurity(); err != nil {
		return nil, err
	}
	gcfg := gossip.Config{
		Name: cfg.Name,
		Meta: gossip.Meta{
			ID: id.ID, Region: cfg.Region, HTTPAddr: cfg.HTTP, RaftAddr: raftAdvertise,
			Version: Version, Eligible: cfg.CoordinatorEligible, Labels: cfg.Labels,
			// The scheduler hands out what the reserve leaves of the capacity.
			MilliCPU: max(cfg.Capacity.MilliCPU-cfg.Reserve.MilliCPU, 0), MemoryBytes: max(cfg.Capacity.MemoryBytes-cfg.Reserve.MemoryBytes, 0),
		},
		BindAddr:   bindHost,
		BindPort:   bp,
		Seeds:      cfg.Join,
		Profile:    cfg.Profile,
		Dilation:   deps.Dilation,
		Now:        deps.Now,
		Epoch:      id.Boot,
		Transport:  deps.GossipTransport,
		StreamAuth: a.gossipAuth(),
		Logger:     a.log,
		Registerer: a.reg,

		Keyring:     a.keyring, // memberlist encrypts with it; the KeyManager rotates it
		PersistKeys: a.persistKeys,
	}
	if cfg.Advertise != "" {
		h, p, _ := net.SplitHostPort(cfg.Advertise)
		gcfg.AdvertiseAddr = h
		gcfg.AdvertisePort, _ = strconv.Atoi(p)
	} else if deps.GossipTransport == nil {
		gcfg.AdvertiseAddr = advHost
	}
	if a.gossip, err = gossip.New(gcfg); err != nil {
		return nil, err
	}
	a.intents, err = intents.New(intents.Config{
		DataDir: cfg.DataDir, NodeName: cfg.Name, Gossip: a.gossip, TrustKeyFiles: cfg.TrustKeys,
		Clock: deps.Now, Logger: a.log, Registerer: a.reg, OnStored: deps.OnIntentStored,
	})
	if err != nil {
		if strings.Contains(err.Error(), "--trust-key") {
			return nil, &FieldError{"trust-key", errors.Unwrap(err)}
		}
		return nil, fmt.Errorf("open the intent store in %s: %w", cfg.DataDir, err)
	}
	a.gossip.Register(gossip.KindIntents, a.intents.HandleMessage, a.intents)
	a.deps, a.raftAdvertise, a.raftChan = deps, raftAdvertise, a.raftAuth()
	rcfg := region.Config{
		Timing: a.regionTiming().Dilated(deps.Dilation),
		NodeID: id.ID, Name: cfg.Name, Region: cfg.Region, RaftBind: cfg.RaftBind, RaftAdvertise: raftAdvertise,
		DataDir: cfg.DataDir, Voters: cfg.Voters, Eligible: cfg.CoordinatorEligible, BootstrapExpect: cfg.BootstrapExpect,
		Logger: a.log, Registerer: a.reg, Clock: deps.Clock, ConnAuth: a.raftChan, OnApply: a.onApplied,
		WitnessOff: cfg.NoWitness, WitnessFor: cfg.WitnessFor,
	}
	rcfg.Tick = regionTick(deps.Dilation)
	switch {
	case deps.RaftNetwork != nil:
		rcfg.Transport, rcfg.Control = deps.RaftNetwork.Add(raftAdvertise, cfg.Region)
	case deps.RaftTransport != nil:
		rcfg.Transport, rcfg.Control = deps.RaftTransport, deps.RaftControl
	default:
		adv, err := net.ResolveTCPAddr("tcp", raftAdvertise)
		if err != nil {
			return nil, &FieldError{"raft-bind", fmt.Errorf("raft advertise address %s: %w", raftAdvertise, err)}
		}
		a.mux = region.NewMux(nil, adv, a.raftChan, a.log, func() { a.region.CountRejected() })
		rcfg.Mux = a.mux
	}
	a.events = events.NewRing(0, a.now(), a.reg)
	a.eventsAPI = events.Handler(a.events, a.log)
	a.eventsAPI.Now = a.now
	a.region, err = region.New(rcfg)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", cfg.Region, err)
	}
	a.coord, err = coordinator.New(coordinator.Config{
		Region: cfg.Region, Node: cfg.Name, Raft: a.region, Fleet: a.gossip, Intents: a.intents, Send: a.send,
		ViewReady: a.viewReady, Clock: deps.Clock, Logger: a.log, Registerer: a.reg, Lease: cfg.Lease,
	})
	if err != nil {
		return nil, err
	}
	a.gossip.Register(gossip.KindAssign, a.handleAssign, nil)
	a.logs = logs.New(logs.Config{
		Node: cfg.Name, Local: a.localLogs, Clock: deps.Clock, Logger: a.log,
		Send:  func(node string, b []byte) error { return a.gossip.SendReliable(node, gossip.KindLogs, b) },
		Reply: func(node string, b []byte) error { return a.gossip.ReplyReliable(node, gossip.KindLogs, b) },
	})
	a.gossip.Register(gossip.KindLogs, a.logs.HandleMessage, nil)
	a.logsDone, a.cancelLogs = context.WithCancel(context.Background())
	a.logSlots = make(chan struct{}, maxLogRequests)
	a.witnessGroups = prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_witness_groups",
		Help: "Raft groups this node runs as a witness for other regions (regions of two eligible nodes)."})
	if err := a.reg.Register(a.witnessGroups); err != nil {
		return nil, err
	}
	a.witnesses = newWitnesses(a)
	if err := a.registerMetrics(); err != nil {
		return nil, err
	}
	built = true
	return a, nil
}

// unlock closes the audit log and releases the data dir (Run does when it returns).
func (a *Agent) unlock() {
	if a.audit != nil {
		a.audit.Close()
	}
	if a.lock != nil {
		a.lock.Close()
		a.lock = nil
	}
}

// Ready is closed once the HTTP API and gossip listen.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// HTTPAddr is the address the API listens on (valid after Ready).
func (a *Agent) HTTPAddr() string { return a.httpAddr }

// Gossip is the node's gossip layer (for tests and composition).
func (a *Agent) Gossip() *gossip.Gossip { return a.gossip }

// Run serves until ctx is cancelled, then leaves the fleet and returns once every
// goroutine it started has exited.
func (a *Agent) Run(ctx context.Context) error {
	defer a.unlock()
	a.started = a.now()
	ln, err := net.Listen("tcp", a.cfg.HTTP)
	if err != nil {
		return fmt.Errorf("listen for the HTTP API on %s: %w", a.cfg.HTTP, err)
	}
	a.httpAddr = ln.Addr().String()
	// A device serves its operators and a few tools, not the Internet: bound what a
	// flood of connections can hold (further ones wait in the kernel's backlog).
	ln = netutil.LimitListener(ln, maxHTTPConns)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sup, drivers, note, err := a.startRuntime(ctx)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start the local supervisor: %w", err)
	}
	a.sup, a.usage, a.drivers, a.limitsNote = sup, supervisorUsage{sup}, drivers, note
	a.gossip.SetDrivers(drivers)
	local, err := coordinator.NewLocal(coordinator.LocalConfig{
		Node: a.cfg.Name, Region: a.cfg.Region, DataDir: a.cfg.DataDir, Supervisor: sup, Intents: a.intents,
		Send: a.send, Reply: a.reply, CoordinatorName: func() string { return a.coordinatorOf(a.cfg.Region) }, SetState: a.gossip.SetState,
		Coordinator: a.coord, Clock: a.clock, Logger: a.log, Registerer: a.reg,
		Lease: a.cfg.Lease, LeaseMargin: a.cfg.Lease / 4,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("load this node's assignment: %w", err)
	}
	a.local.Store(local)
	a.gossip.SetState(coordinator.StateKeyLease, strconv.FormatInt(a.cfg.Lease.Milliseconds(), 10))
	srv := &http.Server{
		Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: maxHeaderBytes, IdleTimeout: 2 * time.Minute,
	}
	srv.RegisterOnShutdown(a.eventsAPI.Close) // followers of /v1/events end with the server
	srv.RegisterOnShutdown(a.cancelLogs)      // and those of /v1/instances/{id}/logs

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for name, run := range map[string]func(context.Context) error{"supervisor": a.sup.Run, "intents": a.intents.Run, "assignments": local.Run, "logs": a.logs.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve HTTP API: %w", err)
		}
	}()
	gossipDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(gossipDone)
		if err := a.gossip.Run(runCtx); err != nil {
			errc <- err
		}
	}()
	select {
	case <-a.gossip.Ready():
	case <-gossipDone:
		cancel()
		_ = srv.Close()
		wg.Wait()
		return <-errc
	}
	wg.Add(2)
	go func() { defer wg.Done(); a.sampleLoop(runCtx) }()
	go func() { defer wg.Done(); a.securityLoop(runCtx) }()
	if a.mux != nil {
		if err := a.mux.Listen(a.cfg.RaftBind); err != nil {
			cancel()
			_ = srv.Close()
			wg.Wait()
			return &FieldError{"raft-bind", err}
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.mux.Serve() }()
	}
	// The region stops first on shutdown: a coordinator hands leadership over while
	// its peers still see it alive.
	regionCtx, stopRegion := context.WithCancel(runCtx)
	defer stopRegion()
	a.witnesses.resume(regionCtx)
	regionDone := make(chan struct{})
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := a.coord.Run(regionCtx); err != nil {
			errc <- fmt.Errorf("coordinator: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		defer close(regionDone)
		if err := a.region.Run(regionCtx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("region: %w", err)
		}
	}()
	go func() { defer wg.Done(); a.regionLoop(regionCtx) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.eventLoop(runCtx) }()
	close(a.ready)
	a.log.Info("agent running", "name", a.cfg.Name, "region", a.cfg.Region, "id", a.id.ID, "http", a.httpAddr,
		"gossip", a.gossip.LocalAddr(), "capacity", a.cfg.Capacity.String(), "version", Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Error("agent stopping", "err", runErr)
	}
	// Hand the region over, leave the fleet (peers see "left"), then stop serving.
	stopRegion()
	<-regionDone
	a.witnesses.stopAll()
	if a.mux != nil {
		a.mux.Close()
	}
	cancel()
	<-gossipDone
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutCtx)
	wg.Wait()
	return runErr
}

// regionTick is the period of a region group's control loop: the default, or k times
// it under the fleet simulator's dilation (the loop's ticker runs in real time).
func regionTick(k float64) time.Duration {
	if k > 1 {
		return time.Duration(float64(region.DefaultTick) * k)
	}
	return 0 // region.DefaultTick
}

// regionTiming is the Raft timing of every group the node runs (--profile), before
// the simulator's dilation (Timing.Dilated).
func (a *Agent) regionTiming() region.Timing {
	if a.cfg.Profile == gossip.ProfileWAN {
		return region.WANTiming()
	}
	// Explicit, not the zero Timing: Dilated scales the fields it is given, and the
	// zero value would leave the fleet simulator's Raft timers undilated.
	return region.DefaultTiming()
}

// sampleLoop publishes the node's load record every second.
func (a *Agent) sampleLoop(ctx context.Context) {
	for {
		a.publishLoad()
		if a.local.Load() != nil {
			a.observeContact()
		}
		t := a.clock.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

func (a *Agent) publishLoad() {
	var u Usage
	if a.usage != nil {
		u = a.usage.Usage()
	}
	cpu, memory := nodeLoad(u, a.cfg.Reserve, a.cfg.Capacity)
	health := gossip.HealthOK
	if cpu > 1 || memory > 1 {
		health = gossip.HealthDegraded
	}
	a.gossip.SetLoad(gossip.Load{CPU: cpu, Memory: memory}, u.Instances, health)
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read API token: %w", err)
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if len(tok) < 16 {
		return nil, fmt.Errorf("the token in %s is %d characters: use at least 16 (e.g. openssl rand -hex 32)", path, len(tok))
	}
	return tok, nil
}
