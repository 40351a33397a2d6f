package gossip_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
)

// tokenAuth is a stand-in for agent/secure: both sides exchange one byte and refuse
// a different one. It records the peer names Client was given.
type tokenAuth struct {
	token byte
	mu    sync.Mutex
	peers map[string]int
}

func (a *tokenAuth) Client(c net.Conn, peer string, _ time.Time) (net.Conn, error) {
	a.mu.Lock()
	if a.peers == nil {
		a.peers = map[string]int{}
	}
	a.peers[peer]++
	a.mu.Unlock()
	return a.exchange(c)
}

func (a *tokenAuth) Server(c net.Conn) (net.Conn, error) { return a.exchange(c) }

func (a *tokenAuth) exchange(c net.Conn) (net.Conn, error) {
	errc := make(chan error, 1)
	go func() { _, err := c.Write([]byte{a.token}); errc <- err }()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, err
	}
	if err := <-errc; err != nil {
		c.Close()
		return nil, err
	}
	if b[0] != a.token {
		c.Close()
		return nil, errors.New("wrong token")
	}
	return c, nil
}

func (a *tokenAuth) dialedPeer(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peers[name]
}

func TestStreamAuthGatesEveryStream(t *testing.T) {
	net := gossiptest.NewNetwork()
	auths := map[string]*tokenAuth{}
	withToken := func(name string, token byte) func(*gossip.Config) {
		auths[name] = &tokenAuth{token: token}
		return func(c *gossip.Config) { c.StreamAuth = auths[name] }
	}
	r := newRecorder("")
	a := gossiptest.Start(t, net, "a", withToken("a", 'F'))
	b := gossiptest.Start(t, net, "b", withToken("b", 'F'), a.Addr())
	c := gossiptest.StartWithSetup(t, net, "c", withToken("c", 'F'), func(g *gossip.Gossip) {
		g.Register(gossip.KindIntents, r.handle, r)
	}, a.Addr())
	for _, nd := range []*gossiptest.Node{a, b, c} {
		gossiptest.Eventually(t, wait, nd.Name+" sees 3 alive", func() bool {
			return gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive) == 3
		})
	}
	if err := a.SendReliable("c", gossip.KindIntents, []byte("body")); err != nil {
		t.Fatalf("SendReliable through the authenticated stream: %v", err)
	}
	gossiptest.Eventually(t, wait, "c got the body", func() bool { return r.get(r.msgs, "a") == "body" })
	if auths["a"].dialedPeer("c") == 0 {
		t.Error("the authenticator was not told the name of the node a dialed")
	}

	intruder := gossiptest.Start(t, net, "intruder", withToken("intruder", 'X'), b.Addr())
	gossiptest.Eventually(t, wait, "the intruder failed to join twice", func() bool {
		return metricValue(t, intruder, "murmur_gossip_join_failures_total") >= 2
	})
	for _, nd := range []*gossiptest.Node{a, b, c} {
		for _, m := range nd.Members() {
			if m.Name == "intruder" {
				t.Errorf("%s lists the intruder (%s): a stream with the wrong credentials got through", nd.Name, m.Status)
			}
		}
	}
}
