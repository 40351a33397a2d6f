package gossip

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// StreamAuth authenticates gossip's TCP streams (push/pull, intent bodies,
// assignments): mutual TLS or a gossip-key challenge-response (agent/secure.Channel
// satisfies it). Client gets the peer's node name when memberlist knows it ("" on a
// join by address) and the dial's deadline. Both close conn on error and may block
// for a handshake's length.
type StreamAuth interface {
	Client(conn net.Conn, peer string, deadline time.Time) (net.Conn, error)
	Server(conn net.Conn) (net.Conn, error)
}

// maxPendingHandshakes bounds the accepted streams being authenticated at once; more
// are closed (a flood of half-open connections must not pile up goroutines). The
// StreamAuth has its own, lower bound that closes the oldest pending handshake
// (agent/secure), so this one is a backstop.
const maxPendingHandshakes = 256

// authTransport wraps a transport so every stream it dials or accepts is
// authenticated first. UDP packets pass through: memberlist encrypts them with the
// gossip key.
type authTransport struct {
	memberlist.NodeAwareTransport
	auth    StreamAuth
	streams chan net.Conn
	sem     chan struct{}
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup // accept loop and handshakes
	dropped func()         // counts streams closed because too many were pending
}

var _ memberlist.NodeAwareTransport = (*authTransport)(nil)

func newAuthTransport(inner memberlist.NodeAwareTransport, auth StreamAuth, dropped func()) *authTransport {
	t := &authTransport{NodeAwareTransport: inner, auth: auth, dropped: dropped,
		streams: make(chan net.Conn), sem: make(chan struct{}, maxPendingHandshakes), done: make(chan struct{})}
	t.wg.Add(1)
	go t.acceptLoop()
	return t
}

func (t *authTransport) acceptLoop() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.sem <- struct{}{}:
			default:
				c.Close()
				t.dropped()
				continue
			}
			t.wg.Add(1)
			go t.serve(c)
		case <-t.done:
			return
		}
	}
}

func (t *authTransport) serve(c net.Conn) {
	defer t.wg.Done()
	ac, err := t.auth.Server(c)
	<-t.sem
	if err != nil {
		return
	}
	select {
	case t.streams <- ac:
	case <-t.done:
		ac.Close()
	}
}

func (t *authTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *authTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *authTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return t.auth.Client(c, a.Name, deadline)
}

// Shutdown stops the inner transport first, while acceptLoop still drains its stream
// channel (NetTransport's listener may be blocked handing over a last connection and
// waits for that before it returns), then stops acceptLoop and the handshakes.
func (t *authTransport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
