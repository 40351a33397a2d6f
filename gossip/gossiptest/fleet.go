package gossiptest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/prometheus/client_golang/prometheus"
)

// Node is one gossip node of an in-process fleet.
type Node struct {
	*gossip.Gossip
	Name      string
	Transport *Transport
	Registry  *prometheus.Registry
	net       *Network
	cancel    context.CancelFunc
	done      chan error
	stopOnce  sync.Once
}

// Start builds and runs a gossip node on the network, joined through seeds (network
// addresses, see Node.Addr). mutate, if not nil, adjusts the config first. The node is
// stopped when the test ends.
func Start(t testing.TB, n *Network, name string, mutate func(*gossip.Config), seeds ...string) *Node {
	t.Helper()
	return StartWithSetup(t, n, name, mutate, nil, seeds...)
}

// StartWithSetup is Start with a setup hook that runs after New and before Run, where
// extensions Register.
func StartWithSetup(t testing.TB, n *Network, name string, mutate func(*gossip.Config), setup func(*gossip.Gossip), seeds ...string) *Node {
	t.Helper()
	tr := n.NewTransport(name)
	reg := prometheus.NewRegistry()
	cfg := gossip.Config{
		Name:              name,
		Meta:              gossip.Meta{ID: "id-" + name, Region: "default", Eligible: true},
		Seeds:             seeds,
		Transport:         tr,
		Registerer:        reg,
		Heartbeat:         time.Second,
		ReconnectInterval: time.Second,
		JoinBackoffMax:    500 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	// Many nodes in one process under -race on a shared 2-core machine miss 100 ms
	// probe deadlines; tests here check membership semantics, not detection speed
	// (cmd/murmur-bench measures that), so probes get more slack. A test's own Tune
	// runs after this one.
	own := cfg.Tune
	cfg.Tune = func(mc *memberlist.Config) {
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 400 * time.Millisecond
		mc.TCPTimeout = 20 * time.Second // 1 MiB through net.Pipe under -race
		if own != nil {
			own(mc)
		}
	}
	g, err := gossip.New(cfg)
	if err != nil {
		t.Fatalf("gossip.New(%s): %v", name, err)
	}
	if setup != nil {
		setup(g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	node := &Node{Gossip: g, Name: name, Transport: tr, Registry: reg, net: n, cancel: cancel, done: make(chan error, 1)}
	go func() { node.done <- g.Run(ctx) }()
	t.Cleanup(func() { node.Stop(t) })
	select {
	case <-g.Ready():
	case err := <-node.done:
		t.Fatalf("gossip node %s did not start: %v", name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("gossip node %s did not start within 10s", name)
	}
	return node
}

// Addr is the node's network address, to pass as a seed.
func (n *Node) Addr() string { return n.Transport.Addr() }

// Stop leaves the fleet gracefully and waits for Run to return. Safe to call twice.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	n.stopOnce.Do(func() {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("gossip node %s: Run: %v", n.Name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("gossip node %s did not stop within 15s", n.Name)
		}
	})
}

// Kill cuts the node off the network and stops it, so no leave message gets out: its
// peers see what they would see after kill -9.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	n.net.SetDown(n.Name, true)
	n.Stop(t)
}

// Eventually polls cond every 20 ms until it holds, and fails the test with what when
// timeout passes first. It is explicit synchronisation on an observable condition,
// not a sleep.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// StatusOf returns the status of name in g's fleet view ("" if unknown).
func StatusOf(g *gossip.Gossip, name string) string {
	for _, m := range g.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

// CountStatus counts the members of g's view with the given status.
func CountStatus(g *gossip.Gossip, status string) int {
	n := 0
	for _, m := range g.Members() {
		if m.Status == status {
			n++
		}
	}
	return n
}
