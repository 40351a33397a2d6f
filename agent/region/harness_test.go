package region

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fleet is an in-process region fleet: Nodes on an InmemNetwork, and a fake gossip
// feed that delivers every node's PublishedState to the others (what the agent does
// with gossip.SetState / Members).
type fleet struct {
	t   testing.TB
	net *InmemNetwork

	mu    sync.Mutex // guards nodes, known
	nodes []*tnode
	// known[observer][subject] = time from which observer sees subject (nil map: sees all).
	known map[string]map[string]time.Time

	stop chan struct{}
	wg   sync.WaitGroup
	opts func(*Config)
}

type tnode struct {
	id, name, region, addr string
	eligible               bool
	dir                    string
	n                      *Node
	cancel                 context.CancelFunc
	done                   chan error
	alive                  bool
	// witness groups this node runs, by region (started by the feed, as the agent's
	// witness manager does); guarded by fleet.mu.
	witness map[string]*wgroup
	duty    *WitnessDuty
}

type wgroup struct {
	n      *Node
	cancel context.CancelFunc
	done   chan error
}

func newFleet(t testing.TB, opts func(*Config)) *fleet {
	f := &fleet{t: t, net: NewInmemNetwork(), known: map[string]map[string]time.Time{}, stop: make(chan struct{}), opts: opts}
	f.wg.Add(1)
	go f.feed()
	t.Cleanup(f.close)
	return f
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("REGION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func (f *fleet) config(tn *tnode) Config {
	tr, ctl := f.net.Add(tn.addr, tn.region)
	cfg := Config{
		NodeID: tn.id, Name: tn.name, Region: tn.region, DataDir: tn.dir, Eligible: tn.eligible,
		DeadGrace: time.Second, SettlePeriod: 300 * time.Millisecond, PromoteAfter: 200 * time.Millisecond,
		HeadlessAfter: 600 * time.Millisecond, Tick: 50 * time.Millisecond,
		Logger: testLogger(f.t).With("node", tn.name), Transport: tr, Control: ctl,
	}
	if tn.dir == "" {
		cfg.inmemStores = true
	}
	if f.opts != nil {
		f.opts(&cfg)
	}
	return cfg
}

// add creates a node (not started). dir "" = in-memory stores.
func (f *fleet) add(name, region string, eligible bool, dir string) *tnode {
	tn := &tnode{id: "id-" + name, name: name, region: region, addr: "addr-" + name, eligible: eligible, dir: dir}
	f.mu.Lock()
	f.nodes = append(f.nodes, tn)
	f.mu.Unlock()
	return tn
}

func (f *fleet) start(tn *tnode) {
	f.t.Helper()
	n, err := New(f.config(tn))
	if err != nil {
		f.t.Fatalf("New(%s): %v", tn.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f.mu.Lock()
	tn.n, tn.cancel, tn.done, tn.alive = n, cancel, done, true
	tn.duty = NewWitnessDuty(tn.id, tn.region, tn.eligible)
	f.mu.Unlock()
	go func() { done <- n.Run(ctx) }()
}

// kill stops tn like SIGKILL: cut from the network first, no leadership transfer.
func (f *fleet) kill(tn *tnode) {
	f.t.Helper()
	f.mu.Lock()
	tn.alive = false
	f.mu.Unlock()
	tn.n.abrupt.Store(true)
	f.net.Down(tn.addr)
	tn.cancel()
	if err := <-tn.done; err != nil {
		f.t.Errorf("Run(%s) = %v", tn.name, err)
	}
	f.stopWitnesses(tn)
}

// stopWitnesses stops every witness group of tn (abruptly).
func (f *fleet) stopWitnesses(tn *tnode) {
	f.mu.Lock()
	groups := tn.witness
	tn.witness = nil
	f.mu.Unlock()
	for _, g := range groups {
		g.n.abrupt.Store(true)
		g.cancel()
		<-g.done
	}
}

// startWitness starts tn's witness group of region (called by the feed).
func (f *fleet) startWitness(tn *tnode, region string) {
	tr, ctl := f.net.Add(tn.addr, region)
	cfg := Config{
		NodeID: tn.id, Name: tn.name, Region: region, Witness: true,
		DeadGrace: time.Second, HeadlessAfter: 600 * time.Millisecond, Tick: 50 * time.Millisecond,
		Logger: testLogger(f.t).With("node", tn.name, "witness_of", region), Transport: tr, Control: ctl, inmemStores: true,
	}
	n, err := New(cfg)
	if err != nil {
		f.t.Errorf("New(witness %s of %s): %v", tn.name, region, err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &wgroup{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- n.Run(ctx) }()
	f.mu.Lock()
	if tn.witness == nil {
		tn.witness = map[string]*wgroup{}
	}
	tn.witness[region] = g
	f.mu.Unlock()
}

// witnessOf returns tn's witness group of region (nil if none).
func (f *fleet) witnessOf(tn *tnode, region string) *Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := tn.witness[region]; g != nil {
		return g.n
	}
	return nil
}

// stopGraceful stops tn like SIGTERM (leadership transfer when leader).
func (f *fleet) stopGraceful(tn *tnode) {
	f.t.Helper()
	tn.cancel()
	if err := <-tn.done; err != nil {
		f.t.Errorf("Run(%s) = %v", tn.name, err)
	}
	f.mu.Lock()
	tn.alive = false
	f.mu.Unlock()
	f.net.Down(tn.addr)
}

func (f *fleet) close() {
	f.mu.Lock()
	nodes := slices.Clone(f.nodes)
	f.mu.Unlock()
	for _, tn := range nodes {
		f.mu.Lock()
		running := tn.alive && tn.cancel != nil
		f.mu.Unlock()
		if running {
			tn.n.abrupt.Store(true)
			tn.cancel()
			<-tn.done
		}
	}
	close(f.stop)
	f.wg.Wait()
	for _, tn := range nodes {
		f.stopWitnesses(tn)
	}
}

// feed is the fake gossip: every 20 ms each running node gets the peers it knows.
func (f *fleet) feed() {
	defer f.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		var all []Peer
		var running []*tnode
		for _, tn := range f.nodes {
			if tn.n == nil {
				continue
			}
			st := tn.n.PublishedState()
			var ws []string
			for r, g := range tn.witness {
				maps.Copy(st, g.n.PublishedState())
				ws = append(ws, r)
			}
			slices.Sort(ws)
			st[KeyWitnessing] = strings.Join(ws, ",")
			all = append(all, Peer{ID: tn.id, Name: tn.name, Region: tn.region, RaftAddr: tn.addr, Eligible: tn.eligible, Alive: tn.alive, State: st})
			if tn.alive {
				running = append(running, tn)
			}
		}
		known := f.known
		f.mu.Unlock()
		now := time.Now()
		for _, tn := range running {
			var view []Peer
			for _, p := range all {
				if k, ok := known[tn.id]; ok && p.ID != tn.id {
					if at, ok := k[p.ID]; !ok || now.Before(at) {
						continue
					}
				}
				view = append(view, p)
			}
			tn.n.UpdatePeers(view)
			f.mu.Lock()
			var groups []string
			for r, g := range tn.witness {
				g.n.UpdatePeers(view)
				groups = append(groups, r)
			}
			duty := tn.duty
			f.mu.Unlock()
			if duty == nil {
				continue
			}
			start, stop := duty.Update(view, groups, now)
			for _, r := range start {
				f.startWitness(tn, r)
			}
			for _, r := range stop {
				f.mu.Lock()
				g := tn.witness[r]
				delete(tn.witness, r)
				f.mu.Unlock()
				g.cancel()
				<-g.done
				f.net.Remove(tn.addr, r)
			}
		}
	}
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
	t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
}

func (f *fleet) running(region string) []*tnode {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*tnode
	for _, tn := range f.nodes {
		if tn.alive && tn.cancel != nil && (region == "" || tn.region == region) {
			out = append(out, tn)
		}
	}
	return out
}

// leaders returns the running nodes of region that are Raft leaders.
func (f *fleet) leaders(region string) []*tnode {
	var out []*tnode
	for _, tn := range f.running(region) {
		if tn.n.IsLeader() {
			out = append(out, tn)
		}
	}
	return out
}

func configOf(tn *tnode) (voters, nonvoters []string) {
	r := tn.n.raftPtr()
	if r == nil {
		return nil, nil
	}
	fut := r.GetConfiguration()
	if fut.Error() != nil {
		return nil, nil
	}
	for _, s := range fut.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	slices.Sort(voters)
	slices.Sort(nonvoters)
	return voters, nonvoters
}

// waitStable waits for one leader in region with `voters` voters, all of them running,
// and every running node of the region sharing the leader's cluster id.
func (f *fleet) waitStable(region string, voters int, timeout time.Duration) *tnode {
	f.t.Helper()
	var leader *tnode
	waitFor(f.t, timeout, fmt.Sprintf("a stable leader with %d voters in %s", voters, region), func() (bool, string) {
		ls := f.leaders(region)
		if len(ls) != 1 {
			return false, fmt.Sprintf("%d leaders", len(ls))
		}
		leader = ls[0]
		v, nv := configOf(leader)
		if len(v) != voters {
			return false, fmt.Sprintf("voters %v nonvoters %v", v, nv)
		}
		for _, id := range v {
			if !slices.ContainsFunc(f.running(region), func(tn *tnode) bool { return tn.id == id }) {
				return false, fmt.Sprintf("voter %s not running (voters %v)", id, v)
			}
		}
		cid := leader.n.fsm.ClusterID()
		if cid == "" {
			return false, "no cluster id yet"
		}
		for _, tn := range f.running(region) {
			if !tn.eligible {
				continue
			}
			if got := tn.n.PublishedState()[KeyCluster]; got != cid {
				return false, fmt.Sprintf("%s publishes cluster %q, leader %q (voters %v nonvoters %v)", tn.name, got, cid, v, nv)
			}
		}
		return true, ""
	})
	return leader
}

func bootstraps(tns []*tnode) int {
	total := 0
	for _, tn := range tns {
		total += int(metricValue(tn.n.m.bootstraps))
	}
	return total
}

// shuffleKnown makes each node of names discover the others in a random order, each
// within spread of now (models gossip convergence at a simultaneous start).
func (f *fleet) shuffleKnown(rng *rand.Rand, tns []*tnode, spread time.Duration) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range tns {
		m := map[string]time.Time{}
		for _, s := range tns {
			if s != o {
				m[s.id] = now.Add(time.Duration(rng.Int64N(int64(spread))))
			}
		}
		f.known[o.id] = m
	}
}

func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
