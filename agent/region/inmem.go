package region

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// InmemNetwork connects many Nodes in one process (tests): raft.InmemTransports plus
// an in-memory Control, with the same region rule as the TCP transport. One address
// may hold one endpoint per region (a node's own group and the groups it is a witness
// for, as one TCP port does); endpoints connect only to endpoints of the same region,
// and a control call to an address with no endpoint of the caller's region fails with
// ErrWrongRegion. Down takes an address off the network; Partition cuts the links
// between two sets of addresses and Heal restores them. Safe for concurrent use.
type InmemNetwork struct {
	mu      sync.Mutex              // guards the fields below
	nodes   map[inmemKey]*inmemNode // by address and region
	down    map[string]bool         // addresses taken off the network
	cut     map[[2]string]bool      // address pairs (both orders) a partition separates
	timeout time.Duration           // RPC timeout of new transports; 0: raft's 500 ms
}

type inmemKey struct{ addr, region string }

type inmemNode struct {
	addr    string
	region  string
	tr      *raft.InmemTransport
	handler func(ControlRequest) ControlResponse
}

// SetTimeout sets the RPC timeout of the transports added from now on (default
// 500 ms, raft's): the fleet simulator scales it with its dilation.
func (n *InmemNetwork) SetTimeout(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.timeout = d
}

// NewInmemNetwork returns an empty network.
func NewInmemNetwork() *InmemNetwork {
	return &InmemNetwork{nodes: map[inmemKey]*inmemNode{}, down: map[string]bool{}, cut: map[[2]string]bool{}}
}

// Add creates (or re-creates, for a restart) the endpoint of region at addr and
// connects it both ways with every up endpoint of the same region that no partition
// separates it from. Adding any endpoint at addr brings addr back up (after Down).
// Pass the results as Config.Transport and Config.Control.
func (n *InmemNetwork) Add(addr, region string) (raft.Transport, Control) {
	n.mu.Lock()
	timeout := cmp.Or(n.timeout, 500*time.Millisecond) // raft.NewInmemTransport's
	n.mu.Unlock()
	_, tr := raft.NewInmemTransportWithTimeout(raft.ServerAddress(addr), timeout)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down[addr] {
		delete(n.down, addr)
		// The address is back: its other endpoints reconnect too.
		for _, x := range n.nodes {
			if x.addr == addr {
				n.connectLocked(x)
			}
		}
	}
	e := &inmemNode{addr: addr, region: region, tr: tr}
	n.nodes[inmemKey{addr, region}] = e
	n.connectLocked(e)
	return tr, &inmemControl{net: n, self: e}
}

// connectLocked links e with every up endpoint of its region that no cut separates.
func (n *InmemNetwork) connectLocked(e *inmemNode) {
	for _, o := range n.nodes {
		if o == e || o.addr == e.addr || n.down[o.addr] || o.region != e.region || n.cut[[2]string{e.addr, o.addr}] {
			continue
		}
		e.tr.Connect(raft.ServerAddress(o.addr), o.tr)
		o.tr.Connect(raft.ServerAddress(e.addr), e.tr)
	}
}

// Remove deletes the endpoint of region at addr (a witness group that stopped).
func (n *InmemNetwork) Remove(addr, region string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.nodes[inmemKey{addr, region}]
	if e == nil {
		return
	}
	delete(n.nodes, inmemKey{addr, region})
	e.tr.DisconnectAll()
	for _, o := range n.nodes {
		if o.region == region {
			o.tr.Disconnect(raft.ServerAddress(addr))
		}
	}
}

// Down cuts addr off (a killed process or an unplugged cable): no Raft traffic and no
// control calls in either direction, for every endpoint at addr, until Add is called
// again for addr.
func (n *InmemNetwork) Down(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[addr] = true
	for _, e := range n.nodes {
		if e.addr != addr {
			continue
		}
		e.tr.DisconnectAll()
		for _, o := range n.nodes {
			if o.region == e.region && o.addr != addr {
				o.tr.Disconnect(raft.ServerAddress(addr))
			}
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
			for _, e := range n.nodes {
				switch e.addr {
				case x:
					e.tr.Disconnect(raft.ServerAddress(y))
				case y:
					e.tr.Disconnect(raft.ServerAddress(x))
				}
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
			if x.addr == y.addr || n.down[x.addr] || n.down[y.addr] || x.region != y.region {
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
	e := c.net.nodes[inmemKey{addr, c.self.region}]
	up := false
	for k := range c.net.nodes {
		if k.addr == addr {
			up = true
		}
	}
	var h func(ControlRequest) ControlResponse
	var err error
	switch {
	case c.net.down[c.self.addr] || c.net.nodes[inmemKey{c.self.addr, c.self.region}] != c.self:
		err = fmt.Errorf("control call %s: local endpoint is down", addr)
	case !up || c.net.down[addr]:
		err = fmt.Errorf("control call %s: connection refused", addr)
	case c.net.cut[[2]string{c.self.addr, addr}]:
		err = fmt.Errorf("control call %s: i/o timeout (partitioned)", addr)
	case e == nil:
		err = fmt.Errorf("control call %s: %w (ours %q)", addr, ErrWrongRegion, c.self.region)
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
