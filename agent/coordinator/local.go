package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/prometheus/client_golang/prometheus"
)

// StateKeyApplied is the gossip state key under which a node publishes the assignment
// set it applied: "<digest>@<generation>". A coordinator re-sends to nodes whose
// digest differs from the table's.
const StateKeyApplied = "asg"

func splitApplied(v string) (digest string, gen uint64) {
	d, g, _ := strings.Cut(v, "@")
	gen, _ = strconv.ParseUint(g, 10, 64)
	return d, gen
}

// Supervisor is what the node side needs of the local supervisor.
type Supervisor interface {
	SetDesired(specs []runtime.InstanceSpec) error
	Desired() []runtime.InstanceSpec
	Instances() []runtime.InstanceStatus
}

// Lookup is what the node side needs of the intent store.
type Lookup interface {
	Lookup(name string) (in *policy.Intent, v policy.Version, ok bool)
	Changed() <-chan struct{}
}

// LocalConfig configures the node side. Every field but the tunables is required.
type LocalConfig struct {
	Node, Region string
	// DataDir holds assignment.json, the last applied assignment (the supervisor
	// persists the specs themselves).
	DataDir    string
	Supervisor Supervisor
	Intents    Lookup
	// Send delivers a payload to a node (as Config.Send).
	Send func(node string, payload []byte) error
	// Reply, if set, sends the answer to a query: like Send, but also to a node this
	// node's gossip still holds dead (it just reached us, so it is evidently up again,
	// e.g. right after a partition heals). Nil means Send.
	Reply func(node string, payload []byte) error
	// CoordinatorName returns the name of the region's coordinator as this node knows
	// it ("" when none is known): reports go there.
	CoordinatorName func() string
	// SetState gossips a key of this node's record (gossip.SetState).
	SetState func(key, value string)
	// Coordinator is this node's own coordinator: reports and queries addressed to
	// this node go to it.
	Coordinator *Coordinator

	Clock      runtime.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// ReportEvery is the period of unsolicited reports. Default 10 s.
	ReportEvery time.Duration
	// ReportDelay coalesces instance changes into one report. Default 20 ms.
	ReportDelay time.Duration
	// Lease and LeaseMargin time exclusive workloads (lease.go): the lease this node
	// asks for (default DefaultLease), and how long before its end it stops their
	// instances (default DefaultLeaseMargin; less than half the lease).
	Lease       time.Duration
	LeaseMargin time.Duration
}

// applied is the persisted assignment.
type applied struct {
	Cluster    string     `json:"cluster"`
	Term       uint64     `json:"term"`
	Generation uint64     `json:"generation"`
	Digest     string     `json:"digest"`
	From       string     `json:"from"`
	Instances  []Assigned `json:"instances"`
}

type outReport struct {
	to string
	b  []byte
}

type inMsg struct {
	from string
	msg  any
}

// Local is a node's side of placement: it applies the assignments its coordinator
// delivers (fenced by term and generation, persisted before use), turns them into
// instance specs from the local intent store, hands them to the supervisor, and
// reports back. It also answers and asks workload queries.
type Local struct {
	cfg     LocalConfig
	log     *slog.Logger
	inbox   chan inMsg    // assignments and queries; bounded, drops counted
	changed chan struct{} // cap 1: the supervisor's instances changed
	delay   prometheus.Histogram
	refused prometheus.Counter
	dropped prometheus.Counter

	seq    atomic.Uint64  // last report sequence number
	outbox chan outReport // cap 1: the newest report waiting for the sender

	qid     atomic.Uint64
	qmu     sync.Mutex // guards waiters
	waiters map[uint64]chan Answer

	leaseOut     chan outReport // cap 1: the newest lease renewal waiting for the sender
	leaseGranted prometheus.Counter
	leaseExpired prometheus.Counter

	mu    sync.Mutex // guards cur and lease
	cur   applied
	lease nodeLease
}

const appliedFile = "assignment.json"

// maxAnswering bounds the workload queries answered at once; more are dropped.
const maxAnswering = 16

// NewLocal loads the last applied assignment and builds the node side. It starts
// nothing.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Node == "" || cfg.Region == "" || cfg.DataDir == "" || cfg.Supervisor == nil || cfg.Intents == nil || cfg.Send == nil || cfg.CoordinatorName == nil || cfg.SetState == nil {
		return nil, errors.New("coordinator: LocalConfig needs Node, Region, DataDir, Supervisor, Intents, Send, CoordinatorName and SetState")
	}
	if cfg.Clock == nil {
		cfg.Clock = runtime.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.ReportEvery = cmp.Or(cfg.ReportEvery, 10*time.Second)
	cfg.ReportDelay = cmp.Or(cfg.ReportDelay, 20*time.Millisecond)
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.LeaseMargin = cmp.Or(cfg.LeaseMargin, DefaultLeaseMargin)
	if cfg.Lease < MinLease || cfg.Lease > MaxLease || cfg.LeaseMargin <= 0 || 2*cfg.LeaseMargin >= cfg.Lease {
		return nil, fmt.Errorf("coordinator: lease %v with margin %v: want a lease of %v to %v and a margin under half of it", cfg.Lease, cfg.LeaseMargin, MinLease, MaxLease)
	}
	l := &Local{
		cfg: cfg, log: cfg.Logger.With("component", "assignments"),
		inbox: make(chan inMsg, 256), changed: make(chan struct{}, 1), waiters: map[uint64]chan Answer{},
		outbox: make(chan outReport, 1), leaseOut: make(chan outReport, 1),
		lease: nodeLease{fenced: true, sent: map[uint64]time.Time{}, sentTo: map[uint64]string{}},
		leaseGranted: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_lease_grants_total",
			Help: "Lease renewals for exclusive workloads granted to this node by its coordinator."}),
		leaseExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_lease_expired_total",
			Help: "Times this node's lease ran out while it ran exclusive instances (they were stopped)."}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "murmur_assignment_delivery_seconds",
			Help:    "From the coordinator's commit of a plan to this node's supervisor holding the new assignment (first delivery; clocks of both nodes).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_assignment_refused_total",
			Help: "Assignments refused as older (term, generation) than the one applied, or for another node or region."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_assignment_inbox_dropped_total",
			Help: "Assignment-channel messages dropped because the inbox was full (the sender retries)."}),
	}
	l.seq.Store(uint64(cfg.Clock.Now().UnixNano()))
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{l.delay, l.refused, l.dropped, l.leaseGranted, l.leaseExpired} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, appliedFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", appliedFile, err)
	default:
		if err := json.Unmarshal(b, &l.cur); err != nil {
			return nil, fmt.Errorf("decode %s: %w (remove the file: the coordinator sends the assignment again)", filepath.Join(cfg.DataDir, appliedFile), err)
		}
	}
	return l, nil
}

// NotifyInstances tells the node side that an instance changed (the supervisor's
// OnChange). It never blocks.
func (l *Local) NotifyInstances() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Held describes the assignment this node runs: who sent it, in which term, from which
// generation of the table, and how many instances it holds. From is "" when the node
// holds none (never assigned, or assignment.json removed).
type Held struct {
	From       string
	Term       uint64
	Generation uint64
	Instances  int
}

// Held returns the assignment this node runs, persisted or received in this run.
func (l *Local) Held() Held {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Held{From: l.cur.From, Term: l.cur.Term, Generation: l.cur.Generation, Instances: len(l.cur.Instances)}
}

// Applied returns the digest and generation of the applied assignment.
func (l *Local) Applied() (digest string, generation uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.Digest, l.cur.Generation
}

// HandleMessage takes one message of the assignment channel (gossip handler). It
// decodes, routes reports and answers at once, queues the rest, and never blocks.
func (l *Local) HandleMessage(from string, payload []byte) {
	msg, err := Decode(payload)
	if err != nil {
		l.log.Debug("bad message on the assignment channel", "from", from, "err", err)
		return
	}
	switch m := msg.(type) {
	case Report:
		if l.cfg.Coordinator != nil {
			l.cfg.Coordinator.HandleReport(m)
		}
		return
	case LeaseRequest:
		if l.cfg.Coordinator != nil {
			l.cfg.Coordinator.HandleLease(from, m)
		}
		return
	case Answer:
		l.qmu.Lock()
		ch := l.waiters[m.ID]
		l.qmu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
		return
	}
	select {
	case l.inbox <- inMsg{from, msg}:
	default:
		l.dropped.Inc()
	}
}

// Query asks node to (its coordinator) for its region's workloads.
func (l *Local) Query(ctx context.Context, node, intent string) (View, error) {
	id := l.qid.Add(1)
	ch := make(chan Answer, 1)
	l.qmu.Lock()
	l.waiters[id] = ch
	l.qmu.Unlock()
	defer func() {
		l.qmu.Lock()
		delete(l.waiters, id)
		l.qmu.Unlock()
	}()
	b, err := Encode(Query{ID: id, Intent: intent})
	if err != nil {
		return View{}, err
	}
	if err := l.cfg.Send(node, b); err != nil {
		return View{}, fmt.Errorf("ask %s: %w", node, err)
	}
	select {
	case a := <-ch:
		if a.Error != "" {
			return View{}, fmt.Errorf("%s: %s", node, a.Error)
		}
		return a.View, nil
	case <-ctx.Done():
		return View{}, fmt.Errorf("ask %s: no answer: %w", node, ctx.Err())
	}
}

// Run applies assignments and reports until ctx ends. On start it re-applies the
// persisted assignment, so a node rebooted without network runs (or adopts) its last
// known instances. It returns after every goroutine it started has exited.
func (l *Local) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	answering := make(chan struct{}, maxAnswering) // queries being answered (each a blocking send)
	wg.Add(1)
	go func() { defer wg.Done(); l.sendLoop(ctx) }()
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	// Taken before every lookup in the store, so an intent stored while an assignment
	// is resolved wakes the loop (no lost wake-up).
	intentsCh := l.cfg.Intents.Changed()
	var waiting []string
	if cur.Digest != "" {
		// Never assigned (a new node, or assignment.json removed): keep what the
		// supervisor restored from its own desired set until the coordinator speaks.
		var err error
		if waiting, err = l.apply(cur); err != nil {
			l.log.Error("re-apply the persisted assignment", "err", err)
		}
		l.publish(cur)
	}
	every := l.cfg.Clock.NewTimer(l.cfg.ReportEvery)
	defer func() { every.Stop() }()
	renew := l.cfg.Clock.NewTimer(0)
	defer func() { renew.Stop() }()
	var expire runtime.Timer
	var expireAt time.Time
	defer func() {
		if expire != nil {
			expire.Stop()
		}
	}()
	var soon runtime.Timer
	var soonC <-chan time.Time
	for {
		// The lease's end: stop the exclusive instances then (never later).
		var expireC <-chan time.Time
		if d := l.leaseDeadline(); !d.Equal(expireAt) || expire == nil {
			if expire != nil {
				expire.Stop()
				expire = nil
			}
			expireAt = d
			if !d.IsZero() {
				expire = l.cfg.Clock.NewTimer(max(d.Sub(l.cfg.Clock.Now()), 0))
			}
		}
		if expire != nil {
			expireC = expire.C()
		}
		select {
		case <-ctx.Done():
			if soon != nil {
				soon.Stop()
			}
			return nil
		case <-renew.C():
			renew = l.cfg.Clock.NewTimer(l.cfg.Lease / 4)
			l.mu.Lock()
			cur = l.cur
			l.mu.Unlock()
			if l.exclusiveAssigned(cur) {
				l.renewLease()
			}
		case <-expireC:
			expire, expireAt = nil, time.Time{}
			if l.expireLease(l.cfg.Clock.Now()) {
				l.mu.Lock()
				cur = l.cur
				l.mu.Unlock()
				if w, err := l.apply(cur); err != nil {
					l.log.Error("stop exclusive instances at the lease's end", "err", err)
				} else {
					waiting = w
				}
				l.report("")
			}
		case im := <-l.inbox:
			switch m := im.msg.(type) {
			case Assignment:
				ch := l.cfg.Intents.Changed()
				if w, ok := l.accept(im.from, m); ok {
					intentsCh = ch
					waiting = w
					l.report(im.from)
				}
			case LeaseGrant:
				if l.grant(im.from, m) {
					l.mu.Lock()
					cur = l.cur
					l.mu.Unlock()
					if w, err := l.apply(cur); err != nil {
						l.log.Error("start exclusive instances under the lease", "err", err)
					} else {
						waiting = w
					}
					l.report("")
				}
			case Query:
				select {
				case answering <- struct{}{}:
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-answering }()
						l.answer(im.from, m)
					}()
				default:
					l.dropped.Inc() // the asker times out and may ask again
				}
			}
		case <-intentsCh:
			intentsCh = l.cfg.Intents.Changed()
			if len(waiting) > 0 {
				l.mu.Lock()
				cur = l.cur
				l.mu.Unlock()
				if w, err := l.apply(cur); err != nil {
					l.log.Error("hand the assignment to the supervisor", "err", err)
				} else {
					waiting = w
				}
				l.report("")
			}
		case <-l.changed:
			if soon == nil {
				soon = l.cfg.Clock.NewTimer(l.cfg.ReportDelay)
				soonC = soon.C()
			}
		case <-soonC:
			soon, soonC = nil, nil
			l.report("")
		case <-every.C():
			every = l.cfg.Clock.NewTimer(l.cfg.ReportEvery)
			l.report("")
		}
	}
}

// accept fences, persists and applies an assignment. It returns the ids still waiting
// for their intent's body.
func (l *Local) accept(from string, a Assignment) ([]string, bool) {
	if a.Node != l.cfg.Node || a.Region != l.cfg.Region {
		l.refused.Inc()
		l.log.Warn("assignment for another node or region refused", "from", from, "node", a.Node, "region", a.Region)
		return nil, false
	}
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	if a.Cluster == cur.Cluster && (a.Term < cur.Term || (a.Term == cur.Term && a.Generation < cur.Generation)) {
		l.refused.Inc()
		l.log.Info("stale assignment refused", "from", from, "term", a.Term, "generation", a.Generation, "applied_term", cur.Term, "applied_generation", cur.Generation)
		return nil, false
	}
	next := applied{Cluster: a.Cluster, Term: a.Term, Generation: a.Generation, Digest: a.Digest, From: from, Instances: a.Instances}
	if next.Digest != cur.Digest || next.Term != cur.Term || next.Cluster != cur.Cluster || next.Generation != cur.Generation {
		b, err := json.MarshalIndent(next, "", "  ")
		if err == nil {
			err = runtime.WriteFileAtomic(filepath.Join(l.cfg.DataDir, appliedFile), b, 0o600)
		}
		if err != nil {
			l.log.Error("persist assignment; not applying it (the coordinator resends)", "err", err)
			return nil, false
		}
	}
	l.mu.Lock()
	l.liftFenceLocked(next)
	l.mu.Unlock()
	waiting, err := l.apply(next)
	if err != nil {
		// Neither acknowledged nor gossiped: the coordinator sends it again.
		l.log.Error("hand the assignment to the supervisor; not acknowledging it", "err", err)
		return nil, false
	}
	l.mu.Lock()
	l.cur = next
	l.mu.Unlock()
	if a.CommittedAt > 0 && a.Digest != cur.Digest {
		d := l.cfg.Clock.Now().Sub(time.Unix(0, a.CommittedAt))
		l.delay.Observe(max(d, 0).Seconds())
	}
	if a.Digest != cur.Digest {
		l.log.Info("assignment applied", "from", from, "instances", len(a.Instances), "generation", a.Generation, "term", a.Term, "waiting", len(waiting))
	}
	l.publish(next)
	return waiting, true
}

func (l *Local) publish(a applied) {
	if a.Digest == "" {
		return
	}
	l.cfg.SetState(StateKeyApplied, a.Digest+"@"+strconv.FormatUint(a.Generation, 10))
}

// apply resolves the assignment into specs and hands them to the supervisor. An
// instance the supervisor already has (same id and generation) keeps its spec; a new
// one is built from the local intent store once the store holds the assigned version
// (or a newer one); until then it waits: a half-known spec is never started.
func (l *Local) apply(a applied) (waiting []string, err error) {
	have := map[string]runtime.InstanceSpec{}
	for _, sp := range l.cfg.Supervisor.Desired() {
		have[sp.ID] = sp
	}
	l.mu.Lock()
	leased := l.leaseValidLocked(l.cfg.Clock.Now())
	l.mu.Unlock()
	specs := make([]runtime.InstanceSpec, 0, len(a.Instances))
	var unleased []string // exclusive instances without a lease: not run
	holding := false
	for _, as := range a.Instances {
		in, v, ok := l.cfg.Intents.Lookup(as.Intent)
		if ok && in.Workload != nil && in.Workload.Exclusive {
			if !leased {
				unleased = append(unleased, as.ID)
				continue
			}
			holding = true
		}
		if sp, ok := have[as.ID]; ok && sp.Generation == as.Generation && sp.Intent == as.Intent {
			specs = append(specs, sp)
			continue
		}
		if !ok || in.Workload == nil || v.Less(as.Version) {
			waiting = append(waiting, as.ID)
			continue
		}
		sp := Spec(as, in.Workload)
		if in.Workload.Exclusive {
			sp.StopGrace = l.cfg.LeaseMargin / 2 // gone before the lease ends
			sp.Leased = true                     // not restarted by a restarted agent before a grant
		}
		specs = append(specs, sp)
	}
	if err := l.cfg.Supervisor.SetDesired(specs); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.lease.holding = holding
	l.mu.Unlock()
	if len(unleased) > 0 {
		l.log.Info("exclusive instances wait for a lease from the coordinator", "instances", unleased)
		l.renewLease()
	}
	if len(waiting) > 0 {
		l.log.Info("assigned instances wait for their intent to arrive", "instances", waiting)
	}
	return waiting, nil
}

// Spec is the instance spec of an assigned instance of workload w.
func Spec(a Assigned, w *policy.WorkloadSpec) runtime.InstanceSpec {
	// The epoch is the placement's generation, a Raft index: it grows with every
	// placement, so a workload can refuse writes from an older instance (a fencing
	// token, for exclusive workloads above all).
	env := make(map[string]string, len(w.Env)+2)
	maps.Copy(env, w.Env)
	env["MURMUR_EPOCH"] = strconv.FormatUint(a.Generation, 10)
	env["MURMUR_INSTANCE"] = a.ID
	sp := runtime.InstanceSpec{
		ID: a.ID, Intent: a.Intent, Generation: a.Generation, Driver: w.Driver,
		Command: w.Command, Image: w.Image, Env: env,
		Resources: runtime.Resources{MilliCPU: w.CPUMilli(), MemoryBytes: w.MemoryBytes()},
		Restart:   runtime.RestartSpec{Policy: w.Restart.Policy},
	}
	sp.Restart.MaxBackoff, _ = policy.ParseDuration(string(w.Restart.MaxBackoff))
	if h := w.Health; h != nil && h.HTTP != "" {
		sp.Health.HTTP = h.HTTP
		sp.Health.Interval, _ = policy.ParseDuration(string(h.Interval))
		sp.Health.Timeout, _ = policy.ParseDuration(string(h.Timeout))
	}
	return sp
}

// report sends this node's report to to, or to the coordinator it knows. A node that
// coordinates reports to itself: right after a failover the name gossip publishes may
// still be the dead coordinator's, and the new one's own replacements would stay
// unreported until the next assignment.
func (l *Local) report(to string) {
	if to == "" && l.cfg.Coordinator != nil && l.cfg.Coordinator.Leading() {
		to = l.cfg.Node
	}
	if to == "" {
		to = l.cfg.CoordinatorName()
	}
	if to == "" {
		l.mu.Lock()
		to = l.cur.From
		l.mu.Unlock()
	}
	if to == "" {
		return
	}
	r := l.Report()
	if to == l.cfg.Node && l.cfg.Coordinator != nil {
		l.cfg.Coordinator.HandleReport(r)
		return
	}
	b, err := Encode(r)
	if err != nil {
		l.log.Error("encode report", "err", err)
		return
	}
	// One sender, newest report only: a report waiting to go is replaced by a newer one.
	for {
		select {
		case l.outbox <- outReport{to, b}:
			return
		default:
		}
		select {
		case <-l.outbox:
		default:
		}
	}
}

// sendLoop sends reports one at a time, so they reach the coordinator in order.
func (l *Local) sendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-l.outbox:
			if err := l.cfg.Send(o.to, o.b); err != nil && ctx.Err() == nil {
				l.log.Debug("send report", "to", o.to, "err", err)
			}
		case o := <-l.leaseOut:
			if err := l.cfg.Send(o.to, o.b); err != nil && ctx.Err() == nil {
				l.log.Debug("send lease renewal", "to", o.to, "err", err)
			}
		}
	}
}

// Report is this node's current report.
func (l *Local) Report() Report {
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	r := Report{Seq: l.seq.Add(1), Node: l.cfg.Node, Region: l.cfg.Region, Term: cur.Term, Generation: cur.Generation, Digest: cur.Digest}
	have := map[string]bool{}
	for _, st := range l.cfg.Supervisor.Instances() {
		have[st.ID] = true
		r.Instances = append(r.Instances, InstanceReport{ID: st.ID, Intent: st.Intent, Generation: st.Generation,
			State: st.State, Restarts: st.Restarts, Since: st.StartedAt, Error: st.Error,
			MilliCPU:    min(max(st.Usage.MilliCPU, 0), MaxUsageMilliCPU),
			MemoryBytes: min(max(st.Usage.MemoryBytes, 0), MaxUsageBytes)})
	}
	for _, as := range cur.Instances {
		if !have[as.ID] {
			r.Waiting = append(r.Waiting, as.ID)
		}
	}
	return r
}

func (l *Local) answer(to string, q Query) {
	a := Answer{ID: q.ID}
	if c := l.cfg.Coordinator; c == nil {
		a.Error = "no coordinator here"
	} else if v, ok := c.View(q.Intent); ok {
		a.View = v
	} else {
		a.Error = "not the coordinator of region " + l.cfg.Region + " (any more)"
	}
	b, err := Encode(a)
	if err != nil {
		l.log.Error("encode answer", "err", err)
		return
	}
	send := l.cfg.Reply
	if send == nil {
		send = l.cfg.Send
	}
	if err := send(to, b); err != nil {
		l.log.Debug("answer query", "to", to, "err", err)
	}
}
