package region

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// InmemNetwork connects many Nodes in one process (tests): raft.InmemTransports plus
// an in-memory Control, with the same region rule as the TCP transport (nodes of
// different regions are never connected, control calls across regions fail with
// ErrWrongRegion). Down takes one endpoint off the network; Partition cuts the links
// between two sets of endpoints and Heal restores them. Safe for concurrent use.
type InmemNetwork struct {
	mu    sync.Mutex // guards the fields below
	nodes map[string]*inmemNode
	cut   map[[2]string]bool // address pairs (both orders) a partition separates
}

type inmemNode struct {
	addr    string
	region  string
	tr      *raft.InmemTransport
	down    bool
	handler func(ControlRequest) ControlResponse
}

// NewInmemNetwork returns an empty network.
func NewInmemNetwork() *InmemNetwork {
	return &InmemNetwork{nodes: map[string]*inmemNode{}, cut: map[[2]string]bool{}}
}

// Add creates (or re-creates, for a restart) the endpoint at addr in region and
// connects it both ways with every up endpoint of the same region that no partition
// separates it from. Pass the results as Config.Transport and Config.Control.
func (n *InmemNetwork) Add(addr, region string) (raft.Transport, Control) {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(addr))
	n.mu.Lock()
	defer n.mu.Unlock()
	e := &inmemNode{addr: addr, region: region, tr: tr}
	n.nodes[addr] = e
	for _, o := range n.nodes {
		if o == e || o.down || o.region != region || n.cut[[2]string{addr, o.addr}] {
			continue
		}
		tr.Connect(raft.ServerAddress(o.addr), o.tr)
		o.tr.Connect(raft.ServerAddress(addr), tr)
	}
	return tr, &inmemControl{net: n, self: e}
}

// Down cuts addr off (a killed process or an unplugged cable): no Raft traffic and no
// control calls in either direction until Add is called again for addr.
func (n *InmemNetwork) Down(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.nodes[addr]
	if e == nil {
		return
	}
	e.down = true
	e.tr.DisconnectAll()
	for _, o := range n.nodes {
		if o != e {
			o.tr.Disconnect(raft.ServerAddress(addr))
		}
	}
}

// Partition cuts every link between an endpoint of a and an endpoint of b (addresses
// as given to Add), in both directions: Raft RPCs between them fail to connect, open
// pipelines are closed, and control calls fail. Links inside a and inside b stay up.
// The cut holds across Add (a restarted endpoint stays cut) until Heal. Addresses
// not added yet are cut once they are.
func (n *InmemNetwork) Partition(a, b []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			n.cut[[2]string{x, y}] = true
			n.cut[[2]string{y, x}] = true
			if ex, ey := n.nodes[x], n.nodes[y]; ex != nil && ey != nil {
				ex.tr.Disconnect(raft.ServerAddress(y))
				ey.tr.Disconnect(raft.ServerAddress(x))
			}
		}
	}
}

// Heal removes every partition and reconnects each pair of up endpoints of the same
// region. Endpoints that are Down stay down.
func (n *InmemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]string]bool{}
	for _, x := range n.nodes {
		for _, y := range n.nodes {
			if x == y || x.down || y.down || x.region != y.region {
				continue
			}
			x.tr.Connect(raft.ServerAddress(y.addr), y.tr)
		}
	}
}

type inmemControl struct {
	net  *InmemNetwork
	self *inmemNode
}

func (c *inmemControl) Serve(h func(ControlRequest) ControlResponse) {
	c.net.mu.Lock()
	c.self.handler = h
	c.net.mu.Unlock()
}

func (c *inmemControl) Call(ctx context.Context, addr string, req ControlRequest) (ControlResponse, error) {
	if err := ctx.Err(); err != nil {
		return ControlResponse{}, err
	}
	c.net.mu.Lock()
	e := c.net.nodes[addr]
	var h func(ControlRequest) ControlResponse
	var err error
	switch {
	case c.self.down:
		err = fmt.Errorf("control call %s: local endpoint is down", addr)
	case e == nil || e.down:
		err = fmt.Errorf("control call %s: connection refused", addr)
	case c.net.cut[[2]string{c.self.addr, addr}]:
		err = fmt.Errorf("control call %s: i/o timeout (partitioned)", addr)
	case e.region != c.self.region:
		err = fmt.Errorf("control call %s: %w (theirs %q, ours %q)", addr, ErrWrongRegion, e.region, c.self.region)
	case e.handler == nil:
		err = fmt.Errorf("control call %s: node not ready", addr)
	default:
		h = e.handler
	}
	c.net.mu.Unlock()
	if err != nil {
		return ControlResponse{}, err
	}
	return h(req), nil
}
