package gossiptest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Network is an in-memory network of Transports. All methods are safe for concurrent use.
type Network struct {
	mu      sync.Mutex // guards the fields below
	byAddr  map[string]*Transport
	byName  map[string]*Transport
	port    int
	down    map[string]bool
	cut     map[[2]string]bool
	latency time.Duration
	loss    float64
	rng     *rand.Rand

	// Lost counts packets dropped by partitions, loss, down nodes or full queues.
	Lost atomic.Int64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		byAddr: make(map[string]*Transport),
		byName: make(map[string]*Transport),
		down:   make(map[string]bool),
		cut:    make(map[[2]string]bool),
		rng:    rand.New(rand.NewPCG(1, 2)),
	}
}

// NewTransport adds a node to the network. Its address is 127.0.0.1:<n>; it is never
// bound to a real socket.
func (n *Network) NewTransport(name string) *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.port++
	t := &Transport{
		net:      n,
		name:     name,
		addr:     "127.0.0.1:" + strconv.Itoa(20000+n.port),
		packetCh: make(chan *memberlist.Packet, 4096),
		streamCh: make(chan net.Conn, 256),
	}
	n.byAddr[t.addr] = t
	n.byName[name] = t
	delete(n.down, name)
	return t
}

// SetDown makes a node unreachable (true) or reachable again, like pulling its cable:
// what it sends is lost too. Use it with stopping the node to simulate kill -9.
func (n *Network) SetDown(name string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[name] = down
}

// Partition cuts every link between a node of a and a node of b.
func (n *Network) Partition(a, b []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.cut[[2]string{x, y}] = true
			n.cut[[2]string{y, x}] = true
		}
	}
}

// Cut drops everything from one node to another, in that direction only: to is
// deaf to from, while from still hears to (an asymmetric link, or a node that sends
// but does not receive).
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]string{from, to}] = true
}

// Heal removes every partition and cut.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = make(map[[2]string]bool)
}

// SetLatency delays every packet and every new stream by d.
func (n *Network) SetLatency(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latency = d
}

// SetLoss drops each packet with probability p (streams are reliable).
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
}

// route finds the destination and reports whether traffic from src may reach it.
func (n *Network) route(src *Transport, a memberlist.Address, packet bool) (*Transport, time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var dst *Transport
	if a.Name != "" {
		dst = n.byName[a.Name]
	}
	if dst == nil {
		dst = n.byAddr[a.Addr]
	}
	if dst == nil {
		return nil, 0, fmt.Errorf("dial %s: connection refused", a.Addr)
	}
	if n.down[src.name] || n.down[dst.name] || n.cut[[2]string{src.name, dst.name}] || dst.closed.Load() {
		return nil, 0, fmt.Errorf("dial %s: i/o timeout", a.Addr)
	}
	if packet && n.loss > 0 && n.rng.Float64() < n.loss {
		return nil, 0, errLost
	}
	return dst, n.latency, nil
}

var errLost = errors.New("lost")

// Transport is one node's memberlist.NodeAwareTransport on a Network.
type Transport struct {
	net      *Network
	name     string
	addr     string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	closed   atomic.Bool

	// Sent and Received count the bytes of packets and streams this node sent and
	// received (a lost packet counts as sent only).
	Sent, Received atomic.Int64
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr is the node's address on the network, for joining.
func (t *Transport) Addr() string { return t.addr }

func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(t.addr)
	if err != nil {
		return nil, 0, err
	}
	p, err := strconv.Atoi(port)
	return net.ParseIP(host), p, err
}

func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dst, delay, err := t.net.route(t, a, true)
	if err != nil {
		t.net.Lost.Add(1) // UDP: the sender never learns
		return now, nil
	}
	t.Sent.Add(int64(len(b)))
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: &addr{t.addr}, Timestamp: now}
	deliver := func() {
		if dst.closed.Load() {
			return
		}
		select {
		case dst.packetCh <- p:
			dst.Received.Add(int64(len(b)))
		default:
			t.net.Lost.Add(1)
		}
	}
	if delay > 0 {
		time.AfterFunc(delay, deliver)
	} else {
		deliver()
	}
	return now, nil
}

func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *Transport) DialTimeout(a string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: a}, timeout)
}

func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst, delay, err := t.net.route(t, a, false)
	if err != nil {
		return nil, err
	}
	if delay > 0 {
		time.Sleep(delay) // simulated connection latency, on the dialer's goroutine
	}
	p1, p2 := net.Pipe()
	select {
	case dst.streamCh <- &pipeConn{Conn: p1, local: dst.addr, remote: t.addr, out: &dst.Sent, in: &dst.Received}:
		return &pipeConn{Conn: p2, local: t.addr, remote: dst.addr, out: &t.Sent, in: &t.Received}, nil
	default:
		p1.Close()
		p2.Close()
		return nil, fmt.Errorf("dial %s: connection refused (backlog full)", a.Addr)
	}
}

func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *Transport) Shutdown() error {
	t.closed.Store(true)
	return nil
}

type addr struct{ s string }

func (a *addr) Network() string { return "mem" }
func (a *addr) String() string  { return a.s }

// pipeConn gives net.Pipe ends the addresses memberlist logs and checks, and counts
// the bytes its owner writes and reads.
type pipeConn struct {
	net.Conn
	local, remote string
	out, in       *atomic.Int64
}

func (c *pipeConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

func (c *pipeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *pipeConn) LocalAddr() net.Addr  { return &addr{c.local} }
func (c *pipeConn) RemoteAddr() net.Addr { return &addr{c.remote} }
