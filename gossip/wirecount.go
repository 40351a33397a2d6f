package gossip

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// countingTransport counts the bytes this node sends on the network: every UDP packet
// and every TCP stream write, after memberlist's compression and encryption, and
// below StreamAuth, so TLS is counted too. It is what the fleet's bandwidth goal (per
// node per second) is measured in, and it includes memberlist's own traffic (probes,
// alive/suspect/dead, its half of push/pull), which murmur_gossip_sent_bytes_total
// does not see. The difference between the two is memberlist's share, give or take
// compression.
type countingTransport struct {
	memberlist.NodeAwareTransport
	packets, streams prometheus.Counter
	accepted         chan net.Conn
	done             chan struct{}
	once             sync.Once
	wg               sync.WaitGroup // acceptLoop
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(inner memberlist.NodeAwareTransport, packets, streams prometheus.Counter) *countingTransport {
	t := &countingTransport{NodeAwareTransport: inner, packets: packets, streams: streams,
		accepted: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(1)
	go t.acceptLoop()
	return t
}

// acceptLoop hands memberlist (or StreamAuth) every accepted stream, wrapped to count
// what this node writes on it: the answering half of a push/pull is half its bytes.
func (t *countingTransport) acceptLoop() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.accepted <- &countingConn{Conn: c, sent: t.streams}:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.accepted }

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	at, err := t.NodeAwareTransport.WriteToAddress(b, a)
	if err == nil {
		t.packets.Add(float64(len(b)))
	}
	return at, err
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, sent: t.streams}, nil
}

// Shutdown stops the inner transport first, while acceptLoop still drains its stream
// channel (see authTransport.Shutdown), then stops acceptLoop.
func (t *countingTransport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}

// countingConn counts the bytes written on a stream.
type countingConn struct {
	net.Conn
	sent prometheus.Counter
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.sent.Add(float64(n))
	}
	return n, err
}
