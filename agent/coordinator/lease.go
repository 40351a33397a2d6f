package coordinator

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/murmur-edge/murmur/gossip"
)

// Leases of exclusive (at-most-once) workloads, docs/workloads.md.
//
// A node that is assigned an instance of an exclusive workload runs it only while it
// holds a lease from its region's coordinator. It asks for a renewal every Lease/4
// (LeaseRequest, with the lease it wants) and remembers when it sent each request;
// the coordinator answers (LeaseGrant) only after it has verified that it still
// leads (a Raft round to a quorum). On a grant the node's lease runs until
// sent + Lease by its own clock; it stops its exclusive instances at
// sent + Lease - LeaseMargin, with a SIGTERM-to-SIGKILL grace of LeaseMargin/2, so
// they are gone before the lease ends.
//
// The coordinator holds a node's exclusive instances as possibly running until
// received + Lease (received >= sent: the node's view always ends first), and until
// start + Lease for every node, where start is when its own term's loop began: a
// predecessor may have granted a renewal just before it lost the lead, and that grant
// was verified before this coordinator was elected. Only then may the scheduler
// place a replacement (scheduler.Input.Leases). A host that dies is replaced Lease
// after the coordinator received its last renewal (so 3/4 Lease to Lease after its
// death), plus the time to plan, commit and start; docs/workloads.md has the timing.
//
// A node whose lease ran out (or that has just started) is fenced: it starts its
// exclusive instances again only once a grant came and its assignment is at least as
// new as the table the grant was made on, since the coordinator may have replaced
// them meanwhile. Clocks are only compared with themselves (each side's own
// monotonic clock); LeaseMargin covers the stop time and clock-rate drift.

// StateKeyLease is the gossip state key under which a node publishes the lease it asks
// for (milliseconds), so a new coordinator knows how long a predecessor's grant to it
// may run.
const StateKeyLease = "lease"

// LeaseOf reads a member's gossiped lease (0 when absent or out of bounds).
func LeaseOf(m gossip.Member) time.Duration {
	ms, err := strconv.ParseInt(m.State[StateKeyLease], 10, 64)
	if d := time.Duration(ms) * time.Millisecond; err == nil && d >= MinLease && d <= MaxLease {
		return d
	}
	return 0
}

// Default lease timing.
const (
	DefaultLease       = 4 * time.Second
	DefaultLeaseMargin = time.Second
)

// maxPendingLeases bounds the renewals waiting for the leader loop.
const maxPendingLeases = 4096

// leaseBook is the coordinator's record of the leases it granted in its term.
type leaseBook struct {
	assume  time.Duration // the lease of a node not heard from in this term
	mu      sync.Mutex    // guards the fields below
	start   time.Time     // this term's loop start; zero while not leading
	recv    map[string]time.Time
	dur     map[string]time.Duration
	pending []pendingLease
	kick    chan struct{} // cap 1
}

type pendingLease struct {
	from string
	req  LeaseRequest
	at   time.Time
}

func newLeaseBook(assume time.Duration) *leaseBook {
	return &leaseBook{assume: assume, recv: map[string]time.Time{}, dur: map[string]time.Duration{}, kick: make(chan struct{}, 1)}
}

// begin starts a term: no grant of a predecessor is known, so every lease is taken to
// run until now + its duration.
func (b *leaseBook) begin(now time.Time) {
	b.mu.Lock()
	b.start = now
	b.recv = map[string]time.Time{}
	b.pending = nil
	b.mu.Unlock()
}

func (b *leaseBook) end() {
	b.mu.Lock()
	b.start = time.Time{}
	b.pending = nil
	b.mu.Unlock()
}

// add queues a renewal received at at. It never blocks; false when the queue is full.
func (b *leaseBook) add(p pendingLease) bool {
	b.mu.Lock()
	if b.start.IsZero() || len(b.pending) >= maxPendingLeases {
		b.mu.Unlock()
		return false
	}
	b.pending = append(b.pending, p)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return true
}

func (b *leaseBook) take() []pendingLease {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.pending
	b.pending = nil
	return out
}

// granted records the renewals of a verified batch.
func (b *leaseBook) granted(ps []pendingLease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range ps {
		if p.at.Before(b.start) {
			continue // received before this term: the term's start covers it
		}
		if p.at.After(b.recv[p.req.Node]) {
			b.recv[p.req.Node] = p.at
		}
		b.dur[p.req.Node] = time.Duration(p.req.LeaseMS) * time.Millisecond
	}
}

// until is, for each node, until when it may still run exclusive instances. assume
// gives the lease a node asks for, as it gossips it (StateKeyLease); 0 means unknown
// (the book's default).
func (b *leaseBook) until(nodes []string, assume func(node string) time.Duration) map[string]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]time.Time, len(nodes))
	for _, n := range nodes {
		a := b.assume
		if assume != nil {
			if d := assume(n); d > 0 {
				a = max(a, d)
			}
		}
		base := b.start
		if r := b.recv[n]; r.After(base) {
			base = r
		}
		// A predecessor's grant may have been for up to the assumed lease; this
		// term's grants for what the node asked.
		u := b.start.Add(a)
		if g := base.Add(b.dur[n]); g.After(u) {
			u = g
		}
		out[n] = u
	}
	return out
}

// HandleLease takes a node's renewal (from the assignment channel). It never blocks:
// the leader loop verifies its leadership and answers a batch at once. Renewals that
// reach a node that does not coordinate are dropped (the node retries).
func (c *Coordinator) HandleLease(from string, r LeaseRequest) {
	if r.Region != "" && r.Region != c.cfg.Region {
		return
	}
	if r.Node != from {
		// A node renews its own lease only: another's would hold that node's instances
		// (delay their replacement) on a third party's word.
		c.m.leaseDropped.Inc()
		return
	}
	if !c.leases.add(pendingLease{from: from, req: r, at: c.cfg.Clock.Now()}) {
		c.m.leaseDropped.Inc()
	}
}

// grantLeases answers the queued renewals once Raft confirms this node still leads.
func (c *Coordinator) grantLeases(ctx context.Context, ls *loopState) {
	ps := c.leases.take()
	if len(ps) == 0 {
		return
	}
	vctx, cancel := context.WithTimeout(ctx, time.Second)
	err := c.cfg.Raft.VerifyLeader(vctx)
	cancel()
	if err != nil {
		c.log.Info("lease renewals not granted: leadership not confirmed", "renewals", len(ps), "err", err)
		return
	}
	c.leases.granted(ps)
	st := c.cfg.Raft.State()
	asg := Assignments(st)
	for _, p := range ps {
		g := LeaseGrant{Seq: p.req.Seq, Term: ls.term, Generation: st.Generation, Digest: Digest(asg[p.req.Node])}
		b, err := Encode(g)
		if err != nil {
			continue
		}
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			if err := c.cfg.Send(p.from, b); err != nil {
				c.log.Debug("send lease grant", "to", p.from, "err", err)
			}
		}()
	}
}

// nodeLease is a node's side of its lease (Local), guarded by Local.mu.
type nodeLease struct {
	until   time.Time            // exclusive instances may run until (sent + Lease); zero: none held
	fenced  bool                 // no exclusive instance starts (see above); true at start
	needGen uint64               // while fenced after a grant: the assignment generation that lifts it
	term    uint64               // highest term of a grant taken
	sent    map[uint64]time.Time // request seq → when it was sent (unanswered ones)
	sentTo  map[uint64]string    // request seq → the coordinator it was sent to
	holding bool                 // exclusive instances were handed to the supervisor
}

// leaseValid: exclusive instances may run now.
func (l *Local) leaseValidLocked(now time.Time) bool {
	return !l.lease.fenced && now.Before(l.lease.until.Add(-l.cfg.LeaseMargin))
}

// exclusiveAssigned reports whether the current assignment holds an instance of an
// exclusive workload (as far as the local intent store knows).
func (l *Local) exclusiveAssigned(a applied) bool {
	for _, as := range a.Instances {
		if in, _, ok := l.cfg.Intents.Lookup(as.Intent); ok && in.Workload != nil && in.Workload.Exclusive {
			return true
		}
	}
	return false
}

// renewLease sends a renewal to the coordinator (this node's own directly).
func (l *Local) renewLease() {
	now := l.cfg.Clock.Now()
	req := LeaseRequest{Seq: l.seq.Add(1), Node: l.cfg.Node, Region: l.cfg.Region, LeaseMS: l.cfg.Lease.Milliseconds()}
	l.mu.Lock()
	for s, at := range l.lease.sent {
		if now.Sub(at) > l.cfg.Lease {
			delete(l.lease.sent, s) // a grant for it would be worthless now
			delete(l.lease.sentTo, s)
		}
	}
	to := l.cfg.CoordinatorName()
	if c := l.cfg.Coordinator; c != nil && c.Leading() {
		to = l.cfg.Node
	}
	if to == "" {
		l.mu.Unlock()
		return
	}
	l.lease.sent[req.Seq], l.lease.sentTo[req.Seq] = now, to
	l.mu.Unlock()
	if to == l.cfg.Node && l.cfg.Coordinator != nil {
		l.cfg.Coordinator.HandleLease(l.cfg.Node, req)
		return
	}
	b, err := Encode(req)
	if err != nil {
		return
	}
	select { // newest only, like reports
	case <-l.leaseOut:
	default:
	}
	l.leaseOut <- outReport{to, b}
}

// grant takes a lease grant from the coordinator the request went to; it reports whether exclusive instances may now start
// (the assignment must be applied again).
func (l *Local) grant(from string, g LeaseGrant) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.lease.sent[g.Seq]
	if !ok || g.Term < l.lease.term || l.lease.sentTo[g.Seq] != from {
		return false // unknown, too old, from a deposed coordinator or from another node
	}
	for s := range l.lease.sent {
		if s <= g.Seq {
			delete(l.lease.sent, s)
			delete(l.lease.sentTo, s)
		}
	}
	l.lease.term = g.Term
	before := l.leaseValidLocked(l.cfg.Clock.Now())
	if u := at.Add(l.cfg.Lease); u.After(l.lease.until) {
		l.lease.until = u
	}
	if l.lease.fenced {
		if l.cur.Digest == g.Digest || l.cur.Generation >= g.Generation {
			l.lease.fenced, l.lease.needGen = false, 0
		} else {
			l.lease.needGen = g.Generation
		}
	}
	l.leaseGranted.Inc()
	return !before && l.leaseValidLocked(l.cfg.Clock.Now())
}

// expireLease fences the node when its lease ends; it reports whether exclusive
// instances must be stopped (the assignment applied again without them).
func (l *Local) expireLease(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease.fenced || l.leaseValidLocked(now) {
		return false
	}
	l.lease.fenced, l.lease.needGen = true, 0
	if l.lease.holding {
		l.leaseExpired.Inc()
		l.log.Warn("lease of exclusive workloads ran out (no renewal from the coordinator): stopping their instances",
			"lease_until", l.lease.until, "margin", l.cfg.LeaseMargin)
	}
	return l.lease.holding
}

// leaseDeadline is when the node must stop its exclusive instances (zero: none run).
func (l *Local) leaseDeadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease.fenced || !l.lease.holding {
		return time.Time{}
	}
	return l.lease.until.Add(-l.cfg.LeaseMargin)
}

// liftFenceLocked lifts the fence when an assignment at least as new as the table of
// the last grant arrives.
func (l *Local) liftFenceLocked(a applied) {
	if l.lease.fenced && l.lease.needGen > 0 && a.Generation >= l.lease.needGen {
		l.lease.fenced, l.lease.needGen = false, 0
	}
}
