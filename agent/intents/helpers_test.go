package intents

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fleetNode is one node of an in-process fleet: gossip plus intent service.
type fleetNode struct {
	name string
	dir  string
	g    *gossiptest.Node
	svc  *Service
	reg  *prometheus.Registry
	mux  *http.ServeMux
	stop func()
}

type fleet struct {
	t     *testing.T
	net   *gossiptest.Network
	nodes map[string]*fleetNode
}

func newFleet(t *testing.T) *fleet {
	return &fleet{t: t, net: gossiptest.NewNetwork(), nodes: map[string]*fleetNode{}}
}

func tune(c *gossip.Config) {
	c.Tune = func(mc *memberlist.Config) {
		mc.PushPullInterval = 300 * time.Millisecond
		mc.DeadNodeReclaimTime = 100 * time.Millisecond
	}
}

// start runs a node; dir "" makes a fresh data dir. run=false registers the service
// with gossip but never runs it (a node that never answers).
func (f *fleet) start(name, dir string, keys []ed25519.PublicKey, run bool) *fleetNode {
	t := f.t
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	var seeds []string
	for _, n := range f.nodes {
		if n.g != nil && n.name != name {
			seeds = append(seeds, n.g.Addr())
			break
		}
	}
	fn := &fleetNode{name: name, dir: dir, reg: prometheus.NewRegistry(), mux: http.NewServeMux()}
	var err error
	fn.g = gossiptest.StartWithSetup(t, f.net, name, tune, func(g *gossip.Gossip) {
		fn.svc, err = New(Config{DataDir: dir, Gossip: g, TrustedKeys: keys, Logger: quietLogger(), Registerer: fn.reg, FetchRetry: time.Second})
		if err != nil {
			t.Fatalf("New(%s): %v", name, err)
		}
		g.Register(gossip.KindIntents, fn.svc.HandleMessage, fn.svc)
	}, seeds...)
	fn.svc.Register(fn.mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if run {
		go func() { done <- fn.svc.Run(ctx) }()
	} else {
		done <- nil
	}
	var once sync.Once
	fn.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run(%s): %v", name, err)
			}
		})
	}
	t.Cleanup(fn.stop)
	f.nodes[name] = fn
	return fn
}

// kill stops a node as kill -9 would, keeping its data dir.
func (f *fleet) kill(name string) *fleetNode {
	n := f.nodes[name]
	n.stop()
	n.g.Kill(f.t)
	n.g = nil
	return n
}

func (f *fleet) startN(n int, keys []ed25519.PublicKey) []*fleetNode {
	var out []*fleetNode
	for i := 1; i <= n; i++ {
		out = append(out, f.start(fmt.Sprintf("node-%d", i), "", keys, true))
	}
	gossiptest.Eventually(f.t, 20*time.Second, "every node to see the whole fleet", func() bool {
		for _, fn := range out {
			if gossiptest.CountStatus(fn.g.Gossip, gossip.StatusAlive) != n {
				return false
			}
		}
		return true
	})
	return out
}

// versionOn returns the stored record of name on node (zero Version if absent).
func versionOn(n *fleetNode, name string) policy.Record {
	r, _ := n.svc.Get(name)
	return r
}

// converged waits until every given node stores name with the same version, and returns it.
func converged(t *testing.T, nodes []*fleetNode, name string, timeout time.Duration) policy.Record {
	t.Helper()
	var rec policy.Record
	gossiptest.Eventually(t, timeout, "every node to store the same version of "+name, func() bool {
		rec = versionOn(nodes[0], name)
		if rec.Version.IsZero() {
			return false
		}
		for _, n := range nodes[1:] {
			if versionOn(n, name).Version != rec.Version {
				return false
			}
		}
		return true
	})
	return rec
}

type httpResult struct {
	status int
	body   string
}

func do(t *testing.T, mux *http.ServeMux, method, target, body string, hdr ...string) httpResult {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return httpResult{status: rec.Code, body: rec.Body.String()}
}

func workloadYAML(name, cmd string) string {
	return fmt.Sprintf("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec: {driver: exec, command: [%q]}\n", name, cmd)
}

// signedDoc signs the one intent of yaml at version v (see signedAt) with priv, and
// returns it as a JSON request document.
func signedDoc(t *testing.T, yaml string, priv ed25519.PrivateKey, v policy.Version) string {
	t.Helper()
	ins, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if priv != nil {
		if err := policy.SignIntent(&ins[0], v, priv); err != nil {
			t.Fatal(err)
		}
	}
	b, err := policy.Document(&ins[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func key(t *testing.T, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := policy.GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	return testutil.ToFloat64(c)
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// signedAt is the version a signer with priv chooses at wall (Unix milliseconds).
func signedAt(priv ed25519.PrivateKey, wall int64) policy.Version {
	return policy.Version{Wall: wall, Node: policy.SignerNode(policy.KeyID(priv.Public().(ed25519.PublicKey)))}
}

// deleteHeader is the SignatureHeader of a delete of name signed with priv at v.
func deleteHeader(t *testing.T, name string, v policy.Version, priv ed25519.PrivateKey) string {
	t.Helper()
	sig, err := policy.SignTombstone(name, v, priv)
	if err != nil {
		t.Fatal(err)
	}
	return sig.KeyID + ":" + sig.Value + ":" + sig.Version
}

// unversioned is yaml signed as earlier releases signed: over the canonical encoding
// alone, with no version.
func unversioned(t *testing.T, yaml string, priv ed25519.PrivateKey) string {
	t.Helper()
	ins, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := policy.Canonical(&ins[0])
	ins[0].Signature = policy.Sign(priv, c)
	b, err := policy.Document(&ins[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
