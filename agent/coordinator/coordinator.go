package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/murmur-edge/murmur/scheduler"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft is what the coordinator needs of the region's Raft group (*region.Node).
type Raft interface {
	IsLeader() bool
	// Subscribe signals leadership changes (coalesced).
	Subscribe() (<-chan struct{}, func())
	Barrier(ctx context.Context) error
	Apply(ctx context.Context, cmd region.Command) (uint64, error)
	State() region.State
	// Index is State().Index without the copy (the coordinator reuses a State it read
	// while the index is unchanged).
	Index() uint64
	Term() uint64
	// VerifyLeader confirms with a quorum that this node still leads (lease grants).
	VerifyLeader(ctx context.Context) error
}

// Fleet is what the coordinator needs of gossip (*gossip.Gossip).
type Fleet interface {
	Members() []gossip.Member
	Subscribe() (<-chan struct{}, func())
}

// Intents is what the coordinator needs of the intent store (*intents.Service).
type Intents interface {
	LiveVersions() (workloads, policies []intents.LiveIntent)
	Tombstones() map[string]policy.Version
	Changed() <-chan struct{}
}

// Config configures a Coordinator. Every field but the tunables is required.
type Config struct {
	Region  string // the region it coordinates when its node leads the Raft group
	Node    string // this node's name
	Raft    Raft
	Fleet   Fleet
	Intents Intents
	// Send delivers a payload to a node of the fleet (the agent: gossip's reliable
	// channel, or a direct call for this node). It may block; the coordinator calls
	// it from its own goroutines, one at a time per node.
	Send func(node string, payload []byte) error
	// ViewReady reports whether this node's fleet view can be planned on. A node that
	// has just started (and may win an election within a second, its Raft state being
	// intact) sees every other node as gone until gossip has caught up: planning then
	// would stop everything elsewhere. Nil means always ready.
	ViewReady func() bool

	Clock      runtime.Clock // default runtime.RealClock
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics

	// SafetyTick plans even when nothing signalled a change. Default 5 s.
	SafetyTick time.Duration
	// ViewGrace: for this long after winning leadership, a node that holds placements
	// but is missing from the fleet view counts as suspect (its instances are kept, it
	// gets no new work), not as gone. A restarted node learns alive members from its
	// first push/pull but never the ones already dead (memberlist sends no news of
	// unknown dead nodes), nor, until gossip reaches it, every alive one. After the
	// grace a node still missing counts as gone. Default 30 s.
	ViewGrace time.Duration
	// Lease is the lease this coordinator assumes for a node it has not heard a
	// renewal from in its term (a predecessor may have granted one): every node of
	// the fleet must ask for at most this much (LocalConfig.Lease). Default
	// DefaultLease.
	Lease time.Duration
	// ResendAfter is the first wait before an unacknowledged assignment is sent again;
	// it doubles per try up to 8×. Default 500 ms.
	ResendAfter time.Duration
}

// Coordinator is the region's coordinator loop. It runs on every node of the region;
// only while its node leads the region's Raft group does it plan, commit and deliver.
type Coordinator struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	reportMu sync.Mutex        // guards inbox
	inbox    map[string]Report // node → newest report not yet taken by the leader loop
	reportCh chan struct{}     // cap 1: inbox has something

	leases *leaseBook // exclusive workloads' leases granted in this term (lease.go)

	view   atomic.Pointer[viewInputs] // nil while not leading
	leader atomic.Bool                // the leader loop runs and has planned once

	loopExited func() // tests: called after each leader loop has exited
}

type viewInputs struct {
	st      region.State
	nodes   map[string]nodeInfo
	reports map[string]Report
	sums    []Summary
	// heardFrom: generation of the table when this coordinator started leading;
	// placements at or below it whose node has not reported in this term show as
	// unknown, not assigned (they may well run: nobody has told this coordinator yet).
	heardFrom uint64
}

// New validates cfg and builds a Coordinator. It starts nothing.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Region == "" || cfg.Node == "" || cfg.Raft == nil || cfg.Fleet == nil || cfg.Intents == nil || cfg.Send == nil {
		return nil, errors.New("coordinator: Region, Node, Raft, Fleet, Intents and Send are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = runtime.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.SafetyTick = cmp.Or(cfg.SafetyTick, 5*time.Second)
	cfg.ResendAfter = cmp.Or(cfg.ResendAfter, 500*time.Millisecond)
	cfg.ViewGrace = cmp.Or(cfg.ViewGrace, 30*time.Second)
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	c := &Coordinator{
		cfg: cfg, log: cfg.Logger.With("component", "coordinator", "region", cfg.Region),
		inbox: map[string]Report{}, reportCh: make(chan struct{}, 1), leases: newLeaseBook(cfg.Lease),
	}
	var err error
	if c.m, err = newMetrics(cfg.Registerer, c); err != nil {
		return nil, err
	}
	return c, nil
}

// HandleReport takes a node's report. It never blocks: the newest report per node is
// kept for the leader loop.
func (c *Coordinator) HandleReport(r Report) {
	if r.Region != "" && r.Region != c.cfg.Region {
		return
	}
	c.reportMu.Lock()
	if old, ok := c.inbox[r.Node]; ok && old.Seq > r.Seq {
		c.reportMu.Unlock()
		return // reports may overtake each other on the wire
	}
	c.inbox[r.Node] = r
	c.reportMu.Unlock()
	select {
	case c.reportCh <- struct{}{}:
	default:
	}
}

func (c *Coordinator) takeReports() map[string]Report {
	c.reportMu.Lock()
	defer c.reportMu.Unlock()
	if len(c.inbox) == 0 {
		return nil
	}
	out := c.inbox
	c.inbox = map[string]Report{}
	return out
}

// Leading reports whether this node coordinates its region now (and has planned).
func (c *Coordinator) Leading() bool { return c.leader.Load() }

// View returns the region's workloads (filtered to one intent unless intent is "");
// ok is false when this node does not coordinate the region.
func (c *Coordinator) View(intent string) (View, bool) {
	vi := c.view.Load()
	if vi == nil || !c.leader.Load() {
		return View{}, false
	}
	return buildView(c.cfg.Region, c.cfg.Node, vi.st, vi.nodes, vi.reports, vi.sums, intent, vi.heardFrom), true
}

// Run follows leadership until ctx ends: a leader loop is started when this node wins
// the region's Raft leadership and stopped (and waited for) when it loses it, as
// Nomad's monitorLeadership does. It returns after every goroutine it started exited.
func (c *Coordinator) Run(ctx context.Context) error {
	ch, cancel := c.cfg.Raft.Subscribe()
	defer cancel()
	var stop context.CancelFunc
	var done chan struct{}
	halt := func() {
		if stop != nil {
			stop()
			<-done
			stop, done = nil, nil
		}
	}
	defer halt()
	var term uint64 // of the running loop
	for {
		lead := c.cfg.Raft.IsLeader()
		if lead && stop != nil && c.cfg.Raft.Term() != term {
			halt() // leadership was lost and won again: a new term needs a new loop
		}
		switch {
		case lead && stop == nil:
			term = c.cfg.Raft.Term()
			lctx, cancelLoop := context.WithCancel(ctx)
			stop, done = cancelLoop, make(chan struct{})
			go func() {
				defer close(done)
				c.leaderLoop(lctx)
			}()
		case !lead && stop != nil:
			halt()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-done: // nil while no loop runs
			// The loop ended on its own: the term changed under it (leadership lost and
			// won again, the signals coalesced). Look again; a new term gets a new loop.
			halt()
		}
	}
}

// nodeTrack is the delivery state of one node, owned by the leader loop.
type nodeTrack struct {
	sent     string    // digest last sent
	sentGen  uint64    // the table generation it was read at
	sentAt   time.Time // when
	tries    int       // sends of sent without an ack
	inflight bool
	acked    string // digest the node reported or gossiped as applied
}

type sendResult struct {
	node string
	err  error
}

// loopState is owned by one leader loop.
type loopState struct {
	track       map[string]*nodeTrack
	reports     map[string]Report
	hot         map[string]HotState
	sums        []Summary
	recheckAt   time.Time
	committedAt time.Time // when the last plan committed
	term        uint64    // the Raft term this loop leads; stamped on every assignment
	readyAt     time.Time // first step whose fleet view could be planned on
	fleetKey    string    // what of the fleet view the last plan read
	next        time.Time // when the last step wanted to be woken
	waitedView  string    // why planning waits for the fleet view (logged once per reason)
	results     chan sendResult
	wg          sync.WaitGroup
	heardFrom   uint64 // the table generation when this term's loop started (see viewInputs)

	// The applied table as last read, and what deliver derives from it, kept while
	// Raft's applied index is unchanged: reports and resends wake the loop many times
	// per commit, and copying, grouping and hashing a large region's table each time
	// was most of a step's cost (BenchmarkRegionCoordinator).
	table   region.State
	byNode  map[string][]Assigned
	digests map[string]string
}

// applied returns the applied table, read again only when Raft has applied something
// since the last read. Callers must not modify it.
func (c *Coordinator) applied(ls *loopState) region.State {
	if ls.byNode == nil || c.cfg.Raft.Index() != ls.table.Index {
		ls.table = c.cfg.Raft.State()
		ls.byNode = Assignments(ls.table)
		ls.digests = make(map[string]string, len(ls.byNode))
	}
	return ls.table
}

// digestOf is Digest of node's set in the table applied() returned.
func (ls *loopState) digestOf(node string) string {
	d, ok := ls.digests[node]
	if !ok {
		d = Digest(ls.byNode[node])
		ls.digests[node] = d
	}
	return d
}

func newLoopState() *loopState {
	return &loopState{track: map[string]*nodeTrack{}, reports: map[string]Report{}, hot: map[string]HotState{}, results: make(chan sendResult, 64)}
}

// beginTerm starts a term's bookkeeping after the barrier. Reports that arrived
// before this term may be minutes old: only fresh ones count (every node reports when
// the new term's assignment reaches it); until a node has, the view shows its
// instances as unknown.
func (c *Coordinator) beginTerm(ls *loopState) {
	c.takeReports()
	ls.heardFrom = c.cfg.Raft.State().Generation
	c.leases.begin(c.cfg.Clock.Now())
}

// viewGap says why the fleet view cannot be planned on yet ("" when it can).
func (c *Coordinator) viewGap() string {
	if c.cfg.ViewReady != nil && !c.cfg.ViewReady() {
		return "gossip has not caught up with a majority of the region's voters"
	}
	return ""
}

// barrier waits until the applied state holds everything the predecessor committed,
// retrying until it succeeds or ctx ends.
func (c *Coordinator) barrier(ctx context.Context) error {
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.cfg.Raft.Barrier(bctx)
		cancel()
		if err == nil {
			return nil
		}
		c.log.Warn("raft barrier before planning failed; retrying", "err", err)
		t := c.cfg.Clock.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// step is one turn of the leader loop: take reports, plan and commit when something
// changed, deliver from the applied state. It returns whether to plan again at once
// (a stale plan) and when it wants to be woken (a resend or Result.RecheckAt).
func (c *Coordinator) step(ctx context.Context, ls *loopState, dirty, fleetOnly bool) (again bool, next time.Time) {
	if r := c.takeReports(); r != nil && c.absorb(ls, r) {
		dirty, fleetOnly = true, false
	}
	if fleetOnly && ls.fleetKey != "" && ls.waitedView == "" && (ls.recheckAt.IsZero() || c.cfg.Clock.Now().Before(ls.recheckAt)) {
		// Most fleet signals are load samples: nothing to plan or deliver unless what
		// the planner reads of the region changed (status, drivers, labels, capacity,
		// a threshold crossing). This keeps an idle coordinator idle.
		_, ps := c.cfg.Intents.LiveVersions()
		op := offloadPolicy(regionPolicies(ps, c.cfg.Region), c.cfg.Region)
		if fleetKey(c.cfg.Fleet.Members(), c.cfg.Region, op) == ls.fleetKey {
			return false, ls.next
		}
	}
	if ctx.Err() != nil || !c.cfg.Raft.IsLeader() || (ls.term != 0 && c.cfg.Raft.Term() != ls.term) {
		return false, time.Time{} // no longer this term's leader: deliver nothing
	}
	if dirty {
		if why := c.viewGap(); why != "" {
			if why != ls.waitedView {
				c.log.Info("not planning yet: the fleet view is not complete", "reason", why)
				ls.waitedView = why
			}
			// Deliver from the committed table only; plan at the next fleet change.
			return false, c.deliver(ctx, ls)
		}
		ls.waitedView = ""
		if ls.readyAt.IsZero() {
			ls.readyAt = c.cfg.Clock.Now()
		}
		again = c.planOnce(ctx, ls, fleetOnly)
		c.leader.Store(true)
	}
	if ctx.Err() != nil || !c.cfg.Raft.IsLeader() || (ls.term != 0 && c.cfg.Raft.Term() != ls.term) {
		return again, time.Time{}
	}
	next = c.deliver(ctx, ls)
	if !ls.recheckAt.IsZero() && (next.IsZero() || ls.recheckAt.Before(next)) {
		next = ls.recheckAt
	}
	ls.next = next
	return again, next
}

// leaderLoop is the coordinator's work while leading: barrier, then plan on every
// change, commit, and deliver from the applied state.
func (c *Coordinator) leaderLoop(ctx context.Context) {
	ls := newLoopState()
	defer func() {
		c.leader.Store(false)
		c.view.Store(nil)
		ls.wg.Wait()
		if c.loopExited != nil {
			c.loopExited()
		}
	}()
	term := c.cfg.Raft.Term()
	ls.term = term
	c.log.Info("coordinator loop started", "term", term)
	if c.barrier(ctx) != nil {
		return
	}
	c.beginTerm(ls)
	defer c.leases.end()
	fleetCh, unsub := c.cfg.Fleet.Subscribe()
	defer unsub()
	safety := c.cfg.Clock.NewTimer(c.cfg.SafetyTick)
	defer func() { safety.Stop() }()
	var wake runtime.Timer // recheck or resend, whichever is first
	defer func() {
		if wake != nil {
			wake.Stop()
		}
	}()
	dirty, fleetOnly := true, false
	for {
		if t := c.cfg.Raft.Term(); t != term || !c.cfg.Raft.IsLeader() {
			c.log.Info("coordinator loop ends: leadership changed", "term", term, "now", t)
			return
		}
		intentsCh := c.cfg.Intents.Changed()
		again, next := c.step(ctx, ls, dirty, fleetOnly)
		dirty, fleetOnly = again, false
		if wake != nil {
			wake.Stop()
			wake = nil
		}
		var wakeC <-chan time.Time
		if !next.IsZero() {
			wake = c.cfg.Clock.NewTimer(max(next.Sub(c.cfg.Clock.Now()), time.Millisecond))
			wakeC = wake.C()
		}
		if dirty {
			continue // a stale plan: plan again at once
		}
		select {
		case <-ctx.Done():
			c.log.Info("coordinator loop stopped")
			return
		case <-fleetCh:
			// Every load sample of every node signals; plan only if what the planner
			// reads of the region changed (planOnce compares).
			dirty, fleetOnly = true, true
		case <-intentsCh:
			dirty = true
		case <-c.reportCh:
		case <-c.leases.kick:
			c.grantLeases(ctx, ls)
			continue
		case r := <-ls.results:
			c.sendDone(ls, r)
		case <-wakeC:
			now := c.cfg.Clock.Now()
			if !ls.recheckAt.IsZero() && !now.Before(ls.recheckAt) {
				dirty = true
			}
		case <-safety.C():
			safety = c.cfg.Clock.NewTimer(c.cfg.SafetyTick)
			dirty = true
		}
	}
}

// absorb merges new reports; it reports whether an instance state the planner reads
// changed.
func (c *Coordinator) absorb(ls *loopState, in map[string]Report) bool {
	changed := false
	st := c.applied(ls)
	held := map[string]bool{} // nodes with a held stop: a newer generation may confirm it
	for _, sp := range st.Stopping {
		held[sp.Placement.Node] = true
	}
	for node, r := range in {
		old, had := ls.reports[node]
		if had && old.Seq > r.Seq {
			continue
		}
		ls.reports[node] = r
		// The node's own word on what it applied, empty included (a node that lost its
		// state gets its set again); only an ack of the set sent, but at an older
		// generation, is stale.
		if t := ls.track[node]; t != nil && (r.Digest != t.sent || r.Generation >= t.sentGen) {
			t.acked = r.Digest
			if r.Digest == t.sent {
				t.tries = 0
			}
		}
		if !had || instanceKey(old) != instanceKey(r) || (held[node] && old.Generation != r.Generation) {
			changed = true
		}
	}
	c.publishView(ls, st)
	return changed
}

// instanceKey is what of a report matters to the planner.
func instanceKey(r Report) string {
	k := ""
	for _, ir := range r.Instances {
		k += fmt.Sprintf("%s/%d/%s|", ir.ID, ir.Generation, schedState(ir.State))
	}
	return k
}

// planOnce builds the input, plans, and commits a non-empty plan. It returns true
// when the plan was refused as stale and must be made again.
func (c *Coordinator) planOnce(ctx context.Context, ls *loopState, fleetOnly bool) (again bool) {
	start := time.Now()
	now := c.cfg.Clock.Now()
	ws, ps := c.cfg.Intents.LiveVersions()
	members := c.cfg.Fleet.Members()
	op := offloadPolicy(regionPolicies(ps, c.cfg.Region), c.cfg.Region)
	key := fleetKey(members, c.cfg.Region, op)
	if fleetOnly && key == ls.fleetKey && (ls.recheckAt.IsZero() || now.Before(ls.recheckAt)) {
		return false
	}
	ls.fleetKey = key
	st := c.cfg.Raft.State()
	for _, m := range members {
		// What a dead node said before it died is no evidence of its instances now
		// (the reconcile rule after a heal must not trust it).
		if m.Region == c.cfg.Region && !m.Up() {
			delete(ls.reports, m.Name)
		}
	}
	ls.hot = UpdateHot(ls.hot, members, c.cfg.Region, op, now)
	graceEnd := ls.readyAt.Add(c.cfg.ViewGrace)
	snap := Snapshot{Region: c.cfg.Region, Now: now, Members: members, State: st, Workloads: ws, Policies: ps,
		Tombstones: c.cfg.Intents.Tombstones(), Reports: ls.reports, Hot: ls.hot,
		MissingSuspect: now.Before(graceEnd), Leases: c.leases.until(leaseNodes(members, c.cfg.Region, st), gossipedLeases(members, c.cfg.Region))}
	in, rejected := BuildInput(snap)
	res := scheduler.Plan(in)
	c.m.planSeconds.Observe(time.Since(start).Seconds())
	ls.sums = summaries(snap, in, res, rejected)
	ls.recheckAt = res.RecheckAt
	if snap.MissingSuspect && len(in.Nodes) > countRegion(members, c.cfg.Region) && (ls.recheckAt.IsZero() || graceEnd.Before(ls.recheckAt)) {
		ls.recheckAt = graceEnd // plan again when the missing nodes start to count as gone
	}
	defer func() { c.publishView(ls, c.cfg.Raft.State()) }()
	exclusive := ExclusiveWorkloads(in.Workloads)
	release, leaseEnd := Released(snap, exclusive)
	if !leaseEnd.IsZero() && (ls.recheckAt.IsZero() || leaseEnd.Before(ls.recheckAt)) {
		ls.recheckAt = leaseEnd // a held stop is released when its node's lease ends
	}
	handovers := Handovers(st, ls.reports)
	unplaced := UnplacedList(res, rejected)
	unplacedChanged := !slices.EqualFunc(unplaced, st.Unplaced, sameUnplaced)
	if res.Empty() && len(handovers) == 0 && !unplacedChanged && len(release) == 0 {
		return false
	}
	cmd := PlanCommand(st.Generation, res, handovers, exclusive, release)
	cmd.Plan.Why = append(cmd.Plan.Why, handoverNotes(st, handovers)...)
	if unplacedChanged {
		cmd.Plan.SetUnplaced, cmd.Plan.Unplaced = true, unplaced
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.cfg.Raft.Apply(actx, cmd)
	cancel()
	switch {
	case errors.Is(err, region.ErrStalePlan):
		c.m.plans.WithLabelValues("stale").Inc()
		c.log.Info("plan refused as stale; planning again", "err", err)
		return true
	case err != nil:
		c.m.plans.WithLabelValues("failed").Inc()
		c.log.Warn("commit plan", "err", err, "actions", len(res.Actions))
		return false
	}
	ls.committedAt = c.cfg.Clock.Now()
	c.m.plans.WithLabelValues("committed").Inc()
	for _, a := range res.Actions {
		c.m.actions.WithLabelValues(string(a.Kind), string(a.Cause)).Inc()
		if a.Cause == scheduler.CauseReplace && a.Supersedes != "" {
			if d, ok := replacedAfter(st, members, a.Supersedes, ls.committedAt); ok {
				c.m.replaceSeconds.Observe(d.Seconds())
			}
		}
		c.log.Info("placement", "action", a.Kind, "cause", a.Cause, "intent", a.Workload, "instance", a.Instance,
			"node", a.Node, "replaces", a.Replaces, "from", a.From, "reason", a.Reason, "generation", res.Generation)
	}
	for _, id := range handovers {
		c.log.Info("placement", "action", "stop", "cause", "handed-over", "instance", id, "reason", "its replacement runs", "generation", res.Generation)
	}
	for _, u := range res.Unplaced {
		c.log.Info("unplaced", "intent", u.Workload, "instance", u.Instance, "count", u.Count, "reason", u.Reason)
	}
	// A stopped replacement gives the instance it was replacing back to the planner
	// (its node died, or its workload went): plan again with it in view.
	for _, a := range res.Actions {
		if a.Kind == scheduler.ActionStop && st.Placements[a.Instance].Replaces != "" {
			return true
		}
	}
	return false
}

// gossipedLeases returns the lease each member of region r gossips (0: unknown).
func gossipedLeases(ms []gossip.Member, r string) func(node string) time.Duration {
	by := map[string]time.Duration{}
	for _, m := range ms {
		if m.Region == r {
			by[m.Name] = LeaseOf(m)
		}
	}
	return func(n string) time.Duration { return by[n] }
}

// leaseNodes names the nodes whose leases the planner may need: the region's members,
// every node holding a placement, and every node of a held stop (State.Stopping).
func leaseNodes(ms []gossip.Member, r string, st region.State) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if m.Region == r && !seen[m.Name] {
			seen[m.Name] = true
			out = append(out, m.Name)
		}
	}
	for _, p := range st.Placements {
		if !seen[p.Node] {
			seen[p.Node] = true
			out = append(out, p.Node)
		}
	}
	for _, sp := range st.Stopping {
		if n := sp.Placement.Node; !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// fleetKey is what the planner reads of the region's members: status, whether a
// record arrived, drivers, labels, capacity, and whether the load is above the
// offload threshold. A change of anything else (a load sample within the same side of
// the threshold, another region) does not call for a plan.
func fleetKey(ms []gossip.Member, r string, op scheduler.OffloadPolicy) string {
	var b strings.Builder
	for _, m := range ms {
		if m.Region != r {
			continue
		}
		hot := (op.CPUAbove > 0 && m.Load.CPU > op.CPUAbove) || (op.MemoryAbove > 0 && m.Load.Memory > op.MemoryAbove)
		fmt.Fprintf(&b, "%s|%s|%t|%v|%v|%d|%d|%t\n", m.Name, m.Status, m.Health != "", m.Drivers, m.Labels, m.MilliCPU, m.MemoryBytes, hot)
	}
	return b.String()
}

func countRegion(ms []gossip.Member, r string) int {
	n := 0
	for _, m := range ms {
		if m.Region == r {
			n++
		}
	}
	return n
}

// PlanCommand turns a scheduler result into the region command that commits it: the
// stopped instances go, the new placements come, and so do handedOver (instances whose
// replacement runs, from Handovers). A migration is two-phase: its new placement
// records the instance it Replaces, which keeps running until the new one is reported
// running; a later plan stops it.
//
// The stop of an exclusive instance (a workload in exclusive) is held (Plan.Hold): its
// record moves to State.Stopping, where it keeps the instance's slot until the node
// confirms the stop or its lease ends (Released). Except one lost with its node
// (cause node-gone): that stop is made only once the node's lease has ended. release
// lists the State.Stopping entries the plan forgets.
func PlanCommand(base uint64, res scheduler.Result, handedOver []string, exclusive map[string]bool, release []string) region.Command {
	p := region.Plan{Base: base, Generation: res.Generation, At: res.Now, Release: release}
	for _, a := range res.Actions {
		switch a.Kind {
		case scheduler.ActionStop:
			p.Stops = append(p.Stops, a.Instance)
			p.Why = append(p.Why, region.Note{Instance: a.Instance, Cause: string(a.Cause), Reason: clip(a.Reason)})
			if exclusive[a.Workload] && a.Cause != scheduler.CauseNodeGone {
				p.Hold = append(p.Hold, a.Instance)
			}
		case scheduler.ActionMigrate, scheduler.ActionPlace:
			p.Places = append(p.Places, region.Placement{ID: a.Instance, Workload: a.Workload, Node: a.Node, Version: a.Version, SpecHash: a.SpecHash,
				StartedAt: res.Now, Replaces: a.Replaces, Cause: a.Cause, Reason: clip(a.Reason), Supersedes: a.Supersedes})
		}
	}
	for _, id := range handedOver {
		if !slices.Contains(p.Stops, id) {
			p.Stops = append(p.Stops, id)
		}
	}
	return region.PlanCommand(p)
}

// CauseHandedOver is the cause of the stop of an instance whose migration finished.
const CauseHandedOver = "handed-over"

// handoverNotes explains the stops of handed-over instances: their replacement runs.
func handoverNotes(st region.State, handedOver []string) []region.Note {
	by := map[string]region.Placement{}
	for _, p := range st.Placements {
		if p.Replaces != "" {
			by[p.Replaces] = p
		}
	}
	out := make([]region.Note, 0, len(handedOver))
	for _, id := range handedOver {
		reason := "its replacement runs"
		if r, ok := by[id]; ok {
			reason = "its replacement " + r.ID + " runs on " + r.Node
			if r.Cause != "" {
				reason += " (" + string(r.Cause) + ")"
			}
		}
		out = append(out, region.Note{Instance: id, Cause: CauseHandedOver, Reason: reason})
	}
	return out
}

// UnplacedList is what a plan could not place, with the reasons, as the region state
// keeps it: the scheduler's unplaced work and the workloads the region's policies
// forbid. Sorted, so an unchanged situation gives an equal list. Pure.
func UnplacedList(res scheduler.Result, rejected []Rejected) []region.Unplaced {
	var out []region.Unplaced
	for _, u := range res.Unplaced {
		out = append(out, region.Unplaced{Workload: u.Workload, Instance: u.Instance, Count: u.Count, Reason: clip(u.Reason)})
	}
	for _, r := range rejected {
		if !r.Held {
			out = append(out, region.Unplaced{Workload: r.Intent, Count: r.Desired, Reason: clip(r.Reason)})
		}
	}
	slices.SortFunc(out, func(a, b region.Unplaced) int {
		return cmp.Or(cmp.Compare(a.Workload, b.Workload), cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.Reason, b.Reason))
	})
	if len(out) > region.MaxUnplaced {
		out = out[:region.MaxUnplaced]
	}
	return out
}

// sameUnplaced compares two entries of the unplaced list as a decision: the same work
// unplaced for the same reasons. Node counts in a reason ("3 nodes filtered by ...")
// move with membership and load; a change of counts alone is not committed again
// (the live view, GET /v1/workloads, always has the current figures).
func sameUnplaced(a, b region.Unplaced) bool {
	return a.Workload == b.Workload && a.Instance == b.Instance && a.Count == b.Count &&
		withoutDigits(a.Reason) == withoutDigits(b.Reason)
}

func withoutDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, s)
}

// clip bounds a reason to what a region command carries.
func clip(s string) string {
	if len(s) <= region.MaxReasonLen {
		return s
	}
	return s[:region.MaxReasonLen-3] + "..."
}

// Assignments groups the applied table by node. Pure.
func Assignments(st region.State) map[string][]Assigned {
	out := map[string][]Assigned{}
	for _, p := range st.Placements {
		out[p.Node] = append(out[p.Node], Assigned{ID: p.ID, Intent: p.Workload, Version: p.Version, Generation: p.Generation})
	}
	for _, as := range out {
		slices.SortFunc(as, func(a, b Assigned) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}

// deliver sends every reachable node of the region whose applied set differs from the
// table its new set, read from the applied state. It returns when the next resend is
// due (zero if none).
func (c *Coordinator) deliver(ctx context.Context, ls *loopState) time.Time {
	st := c.applied(ls)
	term := ls.term
	if term == 0 {
		term = c.cfg.Raft.Term()
	}
	now := c.cfg.Clock.Now()
	var next time.Time
	seen := map[string]bool{}
	for _, m := range c.cfg.Fleet.Members() {
		if m.Region != c.cfg.Region {
			continue
		}
		seen[m.Name] = true
		t := ls.track[m.Name]
		if t == nil {
			t = &nodeTrack{}
			ls.track[m.Name] = t
		}
		if !m.Up() {
			// A node back from the dead is contacted again, whatever it gossips.
			t.tries, t.sent, t.acked = 0, "", ""
			continue
		}
		set := ls.byNode[m.Name]
		digest := ls.digestOf(m.Name)
		// The gossiped digest counts as an ack only for a node this loop has sent to:
		// a new coordinator contacts every node once, and each answers with a report.
		// It must also be of the generation sent or later: an empty set has the same
		// digest as the node's first, empty one, and gossip may still carry that.
		if g := m.State[StateKeyApplied]; g != "" && t.acked != digest && t.sent == digest {
			if d, gen := splitApplied(g); d == digest && gen >= t.sentGen {
				t.acked = digest
			}
		}
		if t.acked == digest || t.inflight {
			continue
		}
		if t.sent == digest {
			due := t.sentAt.Add(c.backoff(t.tries))
			if now.Before(due) {
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
		} else {
			t.tries = 0
		}
		a := Assignment{Region: c.cfg.Region, Cluster: st.ClusterID, Term: term, Generation: st.Generation, Node: m.Name, Digest: digest, Instances: set}
		if t.sent != digest && !ls.committedAt.IsZero() && now.Sub(ls.committedAt) < 5*time.Second {
			// First send of a set after a commit: the node measures the delivery time.
			// (Not for a node back from the dead, whose set changed long ago.)
			a.CommittedAt = ls.committedAt.UnixNano()
		}
		payload, err := Encode(a)
		if err != nil {
			c.log.Error("encode assignment", "node", m.Name, "err", err)
			continue
		}
		if t.sent == digest {
			c.m.resends.Inc()
		}
		t.sent, t.sentGen, t.sentAt, t.inflight = digest, st.Generation, now, true
		t.tries++
		due := now.Add(c.backoff(t.tries))
		if next.IsZero() || due.Before(next) {
			next = due
		}
		ls.wg.Add(1)
		go func(node string) {
			defer ls.wg.Done()
			if ctx.Err() != nil {
				return
			}
			err := c.cfg.Send(node, payload)
			select {
			case ls.results <- sendResult{node, err}:
			case <-ctx.Done():
			}
		}(m.Name)
	}
	for n := range ls.track {
		if !seen[n] && !ls.track[n].inflight {
			delete(ls.track, n)
		}
	}
	return next
}

// backoff is the wait after the tries-th unacknowledged send: ResendAfter, doubling
// up to 8×.
func (c *Coordinator) backoff(tries int) time.Duration {
	return c.cfg.ResendAfter << min(max(tries-1, 0), 3)
}

func (c *Coordinator) sendDone(ls *loopState, r sendResult) {
	t := ls.track[r.node]
	if t == nil {
		return
	}
	t.inflight = false
	if r.err != nil {
		c.m.sendErrors.Inc()
		c.log.Debug("deliver assignment", "node", r.node, "err", r.err)
	}
}

func (c *Coordinator) publishView(ls *loopState, st region.State) {
	nodes := map[string]nodeInfo{}
	for _, m := range c.cfg.Fleet.Members() {
		if m.Region == c.cfg.Region {
			nodes[m.Name] = nodeInfo{status: scheduler.NodeStatus(m.Status)}
		}
	}
	c.view.Store(&viewInputs{st: st, nodes: nodes, reports: maps.Clone(ls.reports), sums: slices.Clone(ls.sums), heardFrom: ls.heardFrom})
}
