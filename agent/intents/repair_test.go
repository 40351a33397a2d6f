package intents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// viewNet is an in-memory network whose members each keep their own view of who is
// dead, as memberlist members do for a moment after a restart, a wipe or a healed
// partition: until the refutations have spread, one side still holds the other dead
// while push/pull already runs between them. As in gossip.Gossip, SendReliable refuses
// a member the sender holds dead and ReplyReliable reaches it. Every attempted send is
// reported on sent, so a test can wait for one instead of sleeping.
type viewNet struct {
	mu   sync.Mutex // guards svcs and dead
	svcs map[string]*Service
	dead map[[2]string]bool // {holder, member}: holder holds member dead
	sent chan sendAttempt
}

type sendAttempt struct {
	from, to string
	typ      byte // msgFetch, msgRecords, ...
	reply    bool // sent with ReplyReliable
	err      error
}

func newViewNet() *viewNet {
	return &viewNet{svcs: map[string]*Service{}, dead: map[[2]string]bool{}, sent: make(chan sendAttempt, 1024)}
}

func (n *viewNet) send(from, to string, payload []byte, reply bool) error {
	n.mu.Lock()
	heldDead := n.dead[[2]string{from, to}]
	dst := n.svcs[to]
	n.mu.Unlock()
	var err error
	switch {
	case dst == nil:
		err = fmt.Errorf("send to %s: unknown node", to)
	case heldDead && !reply:
		err = fmt.Errorf("send to %s: no such live member", to) // gossip's words
	default:
		dst.HandleMessage(from, append([]byte(nil), payload...))
	}
	a := sendAttempt{from: from, to: to, reply: reply, err: err}
	if len(payload) > 0 {
		a.typ = payload[0]
	}
	select {
	case n.sent <- a:
	default: // never block a sender goroutine: the tests read only the first few
	}
	return err
}

// viewGossip is one member's Gossip on a viewNet.
type viewGossip struct {
	net  *viewNet
	name string
}

func (g *viewGossip) Broadcast(gossip.MessageKind, string, []byte) error { return nil }
func (g *viewGossip) SendReliable(node string, _ gossip.MessageKind, payload []byte) error {
	return g.net.send(g.name, node, payload, false)
}
func (g *viewGossip) ReplyReliable(node string, _ gossip.MessageKind, payload []byte) error {
	return g.net.send(g.name, node, payload, true)
}
func (g *viewGossip) LocalName() string { return g.name }
func (g *viewGossip) Members() []gossip.Member {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	var out []gossip.Member
	for name := range g.net.svcs {
		st := gossip.StatusAlive
		if g.net.dead[[2]string{g.name, name}] {
			st = gossip.StatusDead
		}
		out = append(out, gossip.Member{Name: name, Status: st, Local: name == g.name})
	}
	return out
}

// add creates a member's service on a fresh data dir (not running yet). Direct pushes
// are off: in these tests records move only by digest, fetch and answer.
func (n *viewNet) add(t *testing.T, name string, clock *fakeClock) *Service {
	t.Helper()
	s, err := New(Config{DataDir: t.TempDir(), Gossip: &viewGossip{net: n, name: name}, Logger: quietLogger(),
		Registerer: prometheus.NewRegistry(), Clock: clock.Now, EagerPushBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.svcs[name] = s
	n.mu.Unlock()
	return s
}

func runService(t *testing.T, s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestRepairWhileViewsDisagree: a node that comes back (restart, wiped data dir,
// healed partition) is repaired by the digests of the push/pull exchanges of its
// (re)join, even while it and a peer still hold each other dead.
//
// The fault campaign showed the stall: the joining node's first digest made it fetch
// everything from one peer; the peer's answer went out with SendReliable, which drops a
// member the peer still held dead ("send to c7: no such live member", 3 ms after the
// fetch); and the digests of the other peers, milliseconds later, were all ignored
// because a fetch of the same versions was pending. Nothing arrived until the next
// push/pull round after FetchRetry, 10 to 15 s later, and again if that round's peer
// could not answer either. A fetch answers a message the peer just sent (its digest,
// or its fetch), which proves it is up: both go out with ReplyReliable.
//
// The fake clock never moves, so FetchRetry never expires: what the node holds at the
// end came from the join exchange itself.
func TestRepairWhileViewsDisagree(t *testing.T) {
	tests := []struct {
		name   string
		holder string // holds member dead
		member string
	}{
		{"the peer still holds the joiner dead", "p1", "joiner"}, // p1's answer is refused
		{"the joiner still holds the peer dead", "joiner", "p1"}, // the joiner's fetch is refused
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
			net := newViewNet()
			p1 := net.add(t, "p1", clock)
			p2 := net.add(t, "p2", clock)
			joiner := net.add(t, "joiner", clock) // an emptied data dir

			// p1 and p2 hold the same versions of three intents and a tombstone.
			docs := workloadYAML("cam", "/bin/a") + "---\n" + workloadYAML("web", "/bin/b") + "---\n" + workloadYAML("gone", "/bin/c")
			if _, err := p1.Apply([]byte(docs)); err != nil {
				t.Fatal(err)
			}
			if _, err := p1.Delete("gone", nil); err != nil {
				t.Fatal(err)
			}
			want := p1.Records()
			for i := range want {
				r := want[i]
				p2.storeRemote(&r)
			}
			if got := p2.Records(); len(got) != len(want) {
				t.Fatalf("p2 holds %d records, want %d", len(got), len(want))
			}

			net.mu.Lock()
			net.dead[[2]string{tt.holder, tt.member}] = true
			net.mu.Unlock()
			for _, s := range []*Service{p1, p2, joiner} {
				runService(t, s)
			}

			// The join: push/pull with p1, then with p2, in the same instant.
			joiner.MergeRemoteState("p1", p1.LocalState())
			joiner.MergeRemoteState("p2", p2.LocalState())

			// Every step is an event (a queued message, a store change); the guard only
			// bounds a test that would otherwise hang on a node that is never repaired.
			guard := time.After(5 * time.Second)
			for {
				changed := joiner.Changed()
				if recordsGap(joiner.Records(), want) == "" {
					return
				}
				select {
				case <-changed:
				case <-guard:
					t.Fatalf("the joiner was not repaired by the digests of its join exchange (FetchRetry never expired): %s\nfailed sends: %s",
						recordsGap(joiner.Records(), want), failedSends(net.sent))
				}
			}
		})
	}
}

// failedSends lists the failed attempts reported so far.
func failedSends(sent <-chan sendAttempt) string {
	var out []string
	for {
		select {
		case a := <-sent:
			if a.err != nil {
				out = append(out, fmt.Sprintf("%s → %s type %d reply=%v: %v", a.from, a.to, a.typ, a.reply, a.err))
			}
		default:
			return strings.Join(out, "; ")
		}
	}
}

// recordsGap describes how got differs from want by name and version ("" if not).
func recordsGap(got, want []policy.Record) string {
	have := map[string]policy.Version{}
	for _, r := range got {
		have[r.Name] = r.Version
	}
	var gaps []string
	for _, r := range want {
		if v, ok := have[r.Name]; !ok || v != r.Version {
			gaps = append(gaps, fmt.Sprintf("%s at %s, want %s", r.Name, v, r.Version))
		}
	}
	return strings.Join(gaps, "; ")
}

// A record refused because the store was full, or because its version was ahead of
// this node's clock, is wanted again later; one that is invalid or badly signed is not.
func TestRefusalsThatPassAreFetchedAgain(t *testing.T) {
	n := newViewNet()
	s := n.add(t, "n1", &fakeClock{now: time.Unix(1_700_000_000, 0)})
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errStoreFull, true},
		{policy.ErrFuture, true},
		{policy.ErrBadSignature, false},
		{errors.New("spec.replicas: must be at least 0"), false},
	} {
		r := &policy.Record{Name: "cam", Version: policy.Version{Wall: 1_700_000_000_000, Node: "n2"}}
		r.Version.Counter = uint32(len(tt.err.Error())) // a version of its own per case
		s.rejectRemote(r, tt.err)
		if got := s.wants(r.Name, r.Version); got != tt.want {
			t.Errorf("after a refusal for %q: wants = %v, want %v", tt.err, got, tt.want)
		}
	}
}
