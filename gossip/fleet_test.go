package gossip_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
)

const wait = 20 * time.Second

func startFleet(t *testing.T, net *gossiptest.Network, n int, mutate func(*gossip.Config)) []*gossiptest.Node {
	t.Helper()
	nodes := make([]*gossiptest.Node, 0, n)
	seed := gossiptest.Start(t, net, "n00", mutate)
	nodes = append(nodes, seed)
	for i := 1; i < n; i++ {
		nodes = append(nodes, gossiptest.Start(t, net, fmt.Sprintf("n%02d", i), mutate, seed.Addr()))
	}
	for _, nd := range nodes {
		gossiptest.Eventually(t, wait, nd.Name+" sees every node alive", func() bool {
			return gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive) == n
		})
	}
	return nodes
}

func TestFleetConvergesAndSpreadsLoad(t *testing.T) {
	net := gossiptest.NewNetwork()
	nodes := startFleet(t, net, 10, nil)
	for i, nd := range nodes {
		nd.SetLoad(gossip.Load{CPU: float64(i) / 100, Memory: 0.5}, i, gossip.HealthOK)
		nd.SetState("probe", fmt.Sprintf("v%d", i))
	}
	for _, nd := range nodes {
		gossiptest.Eventually(t, wait, nd.Name+" has every node's load record", func() bool {
			for i, m := range nd.Members() {
				if m.Load.CPU != float64(i)/100 || m.Instances != i || m.State["probe"] != fmt.Sprintf("v%d", i) {
					return false
				}
			}
			return true
		})
	}
	got := nodes[3].Members()[7]
	if got.Name != "n07" || got.Region != "default" || got.ID != "id-n07" || !got.Eligible {
		t.Errorf("member n07 as seen by n03 = %+v, want name n07, region default, id id-n07, eligible", got)
	}
}

// TestChangesArriveOnSubscribe: a subscriber is told of a join and of a peer's record
// change, and reads the new view from Members; capacity travels in node meta.
func TestChangesArriveOnSubscribe(t *testing.T) {
	net := gossiptest.NewNetwork()
	capacity := func(c *gossip.Config) { c.Meta.MilliCPU, c.Meta.MemoryBytes = 1500, 512<<20 }
	a := gossiptest.Start(t, net, "a", capacity)
	ch, cancel := a.Subscribe()
	defer cancel()
	b := gossiptest.Start(t, net, "b", capacity, a.Addr())
	waitFor := func(what string, ok func(gossip.Member) bool) {
		t.Helper()
		deadline := time.After(wait)
		for {
			for _, m := range a.Members() {
				if m.Name == "b" && ok(m) {
					return
				}
			}
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("no change signal brought %s", what)
			}
		}
	}
	waitFor("b alive with its capacity", func(m gossip.Member) bool {
		return m.Status == gossip.StatusAlive && m.MilliCPU == 1500 && m.MemoryBytes == 512<<20
	})
	b.SetState("k", "v1")
	waitFor("b's new state", func(m gossip.Member) bool { return m.State["k"] == "v1" })
}

func TestKilledNodeBecomesDeadAndLeavingNodeLeft(t *testing.T) {
	net := gossiptest.NewNetwork()
	// No periodic push/pull: the node back at a new address must be re-admitted by the
	// conflict path (Gossip.dueConflicts), not by a lucky anti-entropy round.
	tune := func(c *gossip.Config) {
		c.Tune = func(mc *memberlist.Config) {
			mc.DeadNodeReclaimTime = 2 * time.Second
			mc.PushPullInterval = 0
		}
	}
	nodes := startFleet(t, net, 10, tune)
	nodes[4].Kill(t)
	nodes[7].Stop(t)
	for i, nd := range nodes {
		if i == 4 || i == 7 {
			continue
		}
		gossiptest.Eventually(t, wait, nd.Name+" sees n04 dead and n07 left", func() bool {
			return gossiptest.StatusOf(nd.Gossip, "n04") == gossip.StatusDead &&
				gossiptest.StatusOf(nd.Gossip, "n07") == gossip.StatusLeft
		})
	}
	// A death is declared after a failed probe made some node suspect n04: that node
	// counts the suspicion (murmur_gossip_suspicions_total).
	suspicions := 0.0
	for i, nd := range nodes {
		if i != 4 && i != 7 {
			suspicions += metricValue(t, nd, "murmur_gossip_suspicions_total")
		}
	}
	if suspicions < 1 {
		t.Errorf("murmur_gossip_suspicions_total summed over the survivors = %v, want at least 1", suspicions)
	}
	// A killed node that comes back with the same name at a new address is alive
	// again everywhere once memberlist lets the name move.
	net.SetDown("n04", false)
	back := gossiptest.Start(t, net, "n04", tune, nodes[0].Addr())
	for i, nd := range append(slices.Clone(nodes), back) {
		if i == 4 || i == 7 {
			continue // the killed node's old instance and the node that left
		}
		gossiptest.Eventually(t, wait, nd.Name+" sees n04 alive again", func() bool {
			return gossiptest.StatusOf(nd.Gossip, "n04") == gossip.StatusAlive
		})
	}
}

func TestWrongKeyNeverJoins(t *testing.T) {
	net := gossiptest.NewNetwork()
	key := []byte("0123456789abcdef")
	nodes := startFleet(t, net, 10, func(c *gossip.Config) { c.SecretKey = key })

	wrong := gossiptest.Start(t, net, "intruder-key", func(c *gossip.Config) { c.SecretKey = []byte("fedcba9876543210") }, nodes[0].Addr())
	plain := gossiptest.Start(t, net, "intruder-plain", nil, nodes[1].Addr())
	for _, in := range []*gossiptest.Node{wrong, plain} {
		gossiptest.Eventually(t, wait, in.Name+" has failed to join twice", func() bool {
			return metricValue(t, in, "murmur_gossip_join_failures_total") >= 2
		})
	}
	for _, nd := range nodes {
		for _, m := range nd.Members() {
			if m.Name == "intruder-key" || m.Name == "intruder-plain" {
				t.Errorf("%s lists %s (%s): a node without the fleet's key joined", nd.Name, m.Name, m.Status)
			}
		}
		if n := gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive); n != 10 {
			t.Errorf("%s sees %d alive members, want 10", nd.Name, n)
		}
	}
	for _, in := range []*gossiptest.Node{wrong, plain} {
		if n := len(in.Members()); n != 1 {
			t.Errorf("%s sees %d members, want only itself", in.Name, n)
		}
	}
}

type recorder struct {
	mu     sync.Mutex
	msgs   map[string]string // from -> payload
	merged map[string]string // from -> state
	local  string
}

func newRecorder(local string) *recorder {
	return &recorder{msgs: map[string]string{}, merged: map[string]string{}, local: local}
}

func (r *recorder) handle(from string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs[from] = string(p)
}
func (r *recorder) LocalState() []byte { return []byte(r.local) }
func (r *recorder) MergeRemoteState(from string, s []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.merged[from] = string(s)
}
func (r *recorder) get(m map[string]string, from string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[from]
}

func TestExtensionsBroadcastReliableAndPushPull(t *testing.T) {
	net := gossiptest.NewNetwork()
	recs := map[string]*recorder{}
	nodes := make([]*gossiptest.Node, 0, 10)
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("n%02d", i)
		r := newRecorder("state-of-" + name)
		recs[name] = r
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].Addr()}
		}
		nodes = append(nodes, gossiptest.StartWithSetup(t, net, name, nil, func(g *gossip.Gossip) {
			g.Register(gossip.KindIntents, r.handle, r)
		}, seeds...))
	}
	for _, nd := range nodes {
		gossiptest.Eventually(t, wait, nd.Name+" sees 10 alive", func() bool {
			return gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive) == 10
		})
	}
	if err := nodes[2].Broadcast(gossip.KindIntents, "vision", []byte("announce v1")); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	if err := nodes[5].SendReliable("n09", gossip.KindIntents, big); err != nil {
		t.Fatalf("SendReliable 1 MiB: %v", err)
	}
	for _, nd := range nodes {
		if nd.Name == "n02" {
			continue
		}
		r := recs[nd.Name]
		gossiptest.Eventually(t, wait, nd.Name+" got the broadcast", func() bool { return r.get(r.msgs, "n02") == "announce v1" })
	}
	r9 := recs["n09"]
	gossiptest.Eventually(t, wait, "n09 got 1 MiB from n05", func() bool { return r9.get(r9.msgs, "n05") == string(big) })
	// Push/pull happens on join: the seed got every joiner's state.
	for _, nd := range nodes[1:] {
		gossiptest.Eventually(t, wait, "n00 merged "+nd.Name+"'s state", func() bool {
			return recs["n00"].get(recs["n00"].merged, nd.Name) == "state-of-"+nd.Name
		})
	}
	if err := nodes[0].Broadcast(gossip.KindIntents, "x", make([]byte, gossip.MaxBroadcastPayload+1)); err == nil {
		t.Error("Broadcast over the limit: got nil error, want one")
	}
	if err := nodes[0].SendReliable("nobody", gossip.KindIntents, []byte("x")); err == nil {
		t.Error("SendReliable to an unknown node: got nil error, want one")
	}
}

func metricValue(t *testing.T, n *gossiptest.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return sum
		}
	}
	return 0
}

// Agents started together may find only some of their seeds up. A node whose first
// join reached one seed keeps joining the others until they are members, so two pools
// that formed apart merge: a region is never seen as two (and bootstrapped twice).
func TestJoinReachesEverySeed(t *testing.T) {
	net := gossiptest.NewNetwork()
	a := gossiptest.Start(t, net, "a", nil)
	b := gossiptest.Start(t, net, "b", nil) // a pool of its own: a and b never met
	x := gossiptest.Start(t, net, "x", nil, a.Addr(), b.Addr())
	for _, n := range []*gossiptest.Node{a, b, x} {
		gossiptest.Eventually(t, 20*time.Second, n.Name+" sees one pool of 3", func() bool {
			return gossiptest.CountStatus(n.Gossip, gossip.StatusAlive) == 3
		})
	}
}

// After a partition longer than memberlist gossips to the dead, neither side probes,
// gossips or pushes/pulls with the other: the fast rejoin of recently dead members is
// what merges them again (the periodic reconnect is pushed out of the test's reach).
func TestHealedPartitionRejoinsFast(t *testing.T) {
	net := gossiptest.NewNetwork()
	mutate := func(c *gossip.Config) {
		c.ReconnectInterval = time.Hour
		c.RejoinInterval = 200 * time.Millisecond
		c.Tune = func(mc *memberlist.Config) { mc.GossipToTheDeadTime = 100 * time.Millisecond }
	}
	a := gossiptest.Start(t, net, "a", mutate)
	b := gossiptest.Start(t, net, "b", mutate, a.Addr())
	c := gossiptest.Start(t, net, "c", mutate, a.Addr())
	all := []*gossiptest.Node{a, b, c}
	for _, n := range all {
		gossiptest.Eventually(t, 20*time.Second, n.Name+" sees 3 alive", func() bool { return gossiptest.CountStatus(n.Gossip, gossip.StatusAlive) == 3 })
	}
	net.Partition([]string{"a"}, []string{"b", "c"})
	gossiptest.Eventually(t, 30*time.Second, "both sides hold the other dead", func() bool {
		return gossiptest.StatusOf(a.Gossip, "b") == gossip.StatusDead && gossiptest.StatusOf(a.Gossip, "c") == gossip.StatusDead &&
			gossiptest.StatusOf(b.Gossip, "a") == gossip.StatusDead && gossiptest.StatusOf(c.Gossip, "a") == gossip.StatusDead
	})
	net.Heal()
	for _, n := range all {
		gossiptest.Eventually(t, 20*time.Second, n.Name+" sees 3 alive after the heal", func() bool { return gossiptest.CountStatus(n.Gossip, gossip.StatusAlive) == 3 })
	}
}

// An answer reaches a node this node still holds dead: the question it just sent is
// proof it is up (right after a heal, before the refutations arrive). SendReliable
// keeps refusing it.
func TestReplyReachesAMemberHeldDead(t *testing.T) {
	net := gossiptest.NewNetwork()
	mutate := func(c *gossip.Config) {
		c.ReconnectInterval, c.RejoinInterval = time.Hour, time.Hour // nothing merges them again
		c.Tune = func(mc *memberlist.Config) { mc.GossipToTheDeadTime = 100 * time.Millisecond }
	}
	ra := newRecorder("a")
	a := gossiptest.StartWithSetup(t, net, "a", mutate, func(g *gossip.Gossip) { g.Register(gossip.KindIntents, ra.handle, ra) })
	b := gossiptest.Start(t, net, "b", mutate, a.Addr())
	gossiptest.Eventually(t, 20*time.Second, "b sees a alive", func() bool { return gossiptest.StatusOf(b.Gossip, "a") == gossip.StatusAlive })
	net.Partition([]string{"a"}, []string{"b"})
	gossiptest.Eventually(t, 30*time.Second, "b holds a dead", func() bool { return gossiptest.StatusOf(b.Gossip, "a") == gossip.StatusDead })
	net.Heal()
	if err := b.SendReliable("a", gossip.KindIntents, []byte("q")); err == nil {
		t.Error("SendReliable to a member held dead: got nil error")
	}
	if err := b.ReplyReliable("a", gossip.KindIntents, []byte("answer")); err != nil {
		t.Fatalf("ReplyReliable to a member held dead but reachable: %v", err)
	}
	gossiptest.Eventually(t, 10*time.Second, "a got the answer", func() bool { return ra.get(ra.msgs, "b") == "answer" })
}

// aliveCounter counts the alive messages about one node that a memberlist receives.
type aliveCounter struct {
	name string
	n    *atomic.Int64
}

func (a aliveCounter) NotifyAlive(peer *memberlist.Node) error {
	if peer.Name == a.name {
		a.n.Add(1)
	}
	return nil
}

// suspectOnly tunes a fleet for the refutation tests: no push/pull (it would carry
// n01's state and the suspicions about it), suspicions that outlast the test (suspect,
// never dead), and n00 counting into alive the alive messages about n01 it receives.
func suspectOnly(alive *atomic.Int64) func(*gossip.Config) {
	return func(c *gossip.Config) {
		name := c.Name
		c.Tune = func(mc *memberlist.Config) {
			mc.PushPullInterval = 0
			mc.SuspicionMult = 1000
			if name == "n00" {
				mc.Alive = aliveCounter{name: "n01", n: alive}
			}
		}
	}
}

// A node thawed after a freeze announces itself alive on its own: it does not wait to
// hear, by gossip, that its peers suspect it. Here n01 cannot hear n00 at all (a
// one-way cut), so the only alive message about n01 that n00 can get is the stall
// refutation.
func TestStalledNodeRefutesWithoutHearingTheSuspicion(t *testing.T) {
	net := gossiptest.NewNetwork()
	var alive atomic.Int64 // alive messages about n01 received by n00
	nodes := startFleet(t, net, 2, suspectOnly(&alive))
	net.SetDown("n01", true)
	gossiptest.Eventually(t, wait, "n00 suspects n01", func() bool {
		return gossiptest.StatusOf(nodes[0].Gossip, "n01") == gossip.StatusSuspect
	})
	net.SetDown("n01", false)
	net.Cut("n00", "n01")
	before := alive.Load()
	if st := gossiptest.StatusOf(nodes[0].Gossip, "n01"); st != gossip.StatusSuspect {
		t.Fatalf("n00 holds n01 %s before the refutation, want suspect", st)
	}
	nodes[1].Gossip.SimulateStall(400 * time.Millisecond)
	gossiptest.Eventually(t, wait, "n00 receives n01's alive refutation", func() bool {
		return alive.Load() > before
	})
	if got := metricValue(t, nodes[1], "murmur_gossip_stalls_total"); got < 1 {
		t.Fatalf("murmur_gossip_stalls_total = %v on n01, want at least 1", got)
	}
}

// A node cut off from the fleet suspects its peers, and its suspicion broadcasts are
// lost on the cut link. After the heal nobody repeats them, so the suspected peer
// would never refute, and once this node's suspicion timer ran out it would declare a
// healthy peer dead, which the whole fleet believes (issue 13's CI). The notice path
// (notice.go) pings the members this node suspects and, once one answers, tells it,
// and the member refutes.
func TestHealedNodeTellsTheMembersItSuspects(t *testing.T) {
	net := gossiptest.NewNetwork()
	var alive atomic.Int64 // alive messages about n01 received by n00
	nodes := startFleet(t, net, 3, suspectOnly(&alive))
	net.Partition([]string{"n00"}, []string{"n01", "n02"})
	gossiptest.Eventually(t, wait, "n00, cut off, suspects n01", func() bool {
		return gossiptest.StatusOf(nodes[0].Gossip, "n01") == gossip.StatusSuspect
	})
	if got := metricValue(t, nodes[0], "murmur_gossip_suspicion_notices_total"); got != 0 {
		t.Fatalf("n00 sent %v suspicion notices while cut off, want 0 (n01 cannot answer a ping)", got)
	}
	before := alive.Load()
	net.Heal()
	// The refutation may also come from a suspicion broadcast that had not been
	// spent yet when the link came back; the notice must arrive either way.
	gossiptest.Eventually(t, wait, "n00 notices n01, n01 refutes: n00 receives its alive", func() bool {
		return metricValue(t, nodes[1], "murmur_gossip_suspicion_notices_total") >= 1 && alive.Load() > before
	})
	for _, nd := range nodes[1:] {
		if st := gossiptest.StatusOf(nd.Gossip, "n01"); st == gossip.StatusDead {
			t.Fatalf("%s holds n01 dead", nd.Name)
		}
	}
}
