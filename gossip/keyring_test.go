package gossip_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
)

var (
	keyOld   = []byte("old-key-16-bytes")
	keyNew   = bytes.Repeat([]byte{0x5a}, 32)
	keyOther = []byte("another-key-of-24-bytes!")
)

func TestKeyringNextKeys(t *testing.T) {
	a, b, c := []byte("aaaaaaaaaaaaaaaa"), []byte("bbbbbbbbbbbbbbbb"), []byte("cccccccccccccccc")
	cases := []struct {
		name    string
		keys    [][]byte
		op      gossip.KeyOp
		key     []byte
		want    [][]byte
		changed bool
		err     error
	}{
		{"list", [][]byte{a, b}, gossip.KeyList, nil, [][]byte{a, b}, false, nil},
		{"install new", [][]byte{a}, gossip.KeyInstall, b, [][]byte{a, b}, true, nil},
		{"install again", [][]byte{a, b}, gossip.KeyInstall, b, [][]byte{a, b}, false, nil},
		{"install short", [][]byte{a}, gossip.KeyInstall, []byte("short"), [][]byte{a}, false, gossip.ErrBadKey},
		{"use installed", [][]byte{a, b, c}, gossip.KeyUse, c, [][]byte{c, a, b}, true, nil},
		{"use primary", [][]byte{a, b}, gossip.KeyUse, a, [][]byte{a, b}, false, nil},
		{"use missing", [][]byte{a, b}, gossip.KeyUse, c, [][]byte{a, b}, false, gossip.ErrKeyNotInstalled},
		{"remove secondary", [][]byte{a, b, c}, gossip.KeyRemove, b, [][]byte{a, c}, true, nil},
		{"remove primary", [][]byte{a, b}, gossip.KeyRemove, a, [][]byte{a, b}, false, gossip.ErrRemovePrimary},
		{"remove missing", [][]byte{a, b}, gossip.KeyRemove, c, [][]byte{a, b}, false, nil},
		{"encryption off", nil, gossip.KeyInstall, a, nil, false, gossip.ErrEncryptionOff},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.keys)
			got, changed, err := gossip.NextKeys(tc.keys, tc.op, tc.key)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !slices.EqualFunc(got, tc.want, bytes.Equal) || changed != tc.changed {
				t.Errorf("NextKeys(%s) = %q changed %v, want %q changed %v", tc.op, got, changed, tc.want, tc.changed)
			}
			if !slices.EqualFunc(tc.keys, before, bytes.Equal) {
				t.Errorf("NextKeys changed its input to %q", tc.keys)
			}
		})
	}
}

func TestKeyringConfig(t *testing.T) {
	ring, _ := memberlist.NewKeyring(nil, keyOld)
	empty, _ := memberlist.NewKeyring(nil, nil)
	cases := map[string]struct {
		cfg  gossip.Config
		want string
	}{
		"both":      {gossip.Config{SecretKey: keyOld, Keyring: ring}, "both SecretKey and Keyring"},
		"empty":     {gossip.Config{Keyring: empty}, "the keyring has no key"},
		"short key": {gossip.Config{SecretKey: []byte("short")}, "5 bytes: want 16, 24 or 32"},
	}
	for name, tc := range cases {
		tc.cfg.Name = "n"
		if _, err := gossip.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error containing %q", name, err, tc.want)
		}
	}
	g, err := gossip.New(gossip.Config{Name: "n", SecretKey: keyOld})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Keys(); len(got) != 1 || !bytes.Equal(got[0], keyOld) {
		t.Errorf("Keys() with SecretKey = %q, want the one key", got)
	}
	if g, _ := gossip.New(gossip.Config{Name: "n"}); g.Keys() != nil {
		t.Errorf("Keys() without a key = %q, want nil", g.Keys())
	}
}

// persisted records what each node persisted, and fails on demand.
type persisted struct {
	mu   sync.Mutex
	keys map[string][][]byte
	fail map[string]bool
}

func (p *persisted) hook(node string) func([][]byte) error {
	return func(keys [][]byte) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fail[node] {
			return fmt.Errorf("disk of %s is full", node)
		}
		p.keys[node] = keys
		return nil
	}
}

func (p *persisted) get(node string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[node]
}

func (p *persisted) setFail(node string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[node] = fail
}

// startKeyedFleet starts n nodes whose rings hold keyOld and whose persisted keys go
// to the returned recorder.
func startKeyedFleet(t testing.TB, net *gossiptest.Network, n int) ([]*gossiptest.Node, *persisted) {
	t.Helper()
	p := &persisted{keys: map[string][][]byte{}, fail: map[string]bool{}}
	keyed := func(c *gossip.Config) {
		ring, err := memberlist.NewKeyring(nil, slices.Clone(keyOld))
		if err != nil {
			t.Fatal(err)
		}
		c.Keyring, c.PersistKeys = ring, p.hook(c.Name)
	}
	var nodes []*gossiptest.Node
	for i := 0; i < n; i++ {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].Addr()}
		}
		nodes = append(nodes, gossiptest.Start(t, net, fmt.Sprintf("k%02d", i), keyed, seeds...))
	}
	for _, nd := range nodes {
		gossiptest.Eventually(t, wait, nd.Name+" sees every node alive", func() bool {
			return gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive) == n
		})
	}
	return nodes, p
}

// countOf returns the count of key in r.
func countOf(r gossip.KeyResponse, key []byte) gossip.KeyCount {
	for _, c := range r.Counts() {
		if bytes.Equal(c.Key, key) {
			return c
		}
	}
	return gossip.KeyCount{Key: key}
}

// TestKeyringRotationInProcess rotates the key of a 5-node fleet through different
// nodes: install, use, remove. The refused steps are refused, nobody leaves, every
// node persisted its keys, and only the new key gets in afterwards.
func TestKeyringRotationInProcess(t *testing.T) {
	net := gossiptest.NewNetwork()
	nodes, disk := startKeyedFleet(t, net, 5)
	ctx := context.Background()
	km := func(i int) *gossip.KeyManager { return nodes[i].KeyManager() }

	list, err := km(0).ListKeys(ctx, 0)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if c := countOf(list, keyOld); c.Nodes != 5 || c.Primary != 5 || len(list.Counts()) != 1 || len(list.Asked) != 5 {
		t.Fatalf("list = %+v, want the old key on 5 nodes, primary on 5", list.Counts())
	}

	var conflict *gossip.KeyConflictError
	if _, err := km(1).UseKey(ctx, keyNew, 0); !errors.As(err, &conflict) || len(conflict.Nodes) != 5 || !strings.Contains(err.Error(), "does not have the key") {
		t.Fatalf("use before install: err = %v, want a conflict naming the 5 nodes", err)
	}
	res, err := km(1).InstallKey(ctx, keyNew, 0)
	if err != nil {
		t.Fatalf("install: %v (%+v)", err, res)
	}
	if c := countOf(res, keyNew); c.Nodes != 5 || c.Primary != 0 {
		t.Fatalf("after install: new key %+v, want on 5 nodes, primary on none", c)
	}
	if _, err := km(2).RemoveKey(ctx, keyOld, 0); !errors.As(err, &conflict) || len(conflict.Nodes) != 5 || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("remove of the primary: err = %v, want a conflict naming the 5 nodes", err)
	}
	if res, err = km(2).UseKey(ctx, keyNew, 0); err != nil {
		t.Fatalf("use: %v (%+v)", err, res)
	}
	if c := countOf(res, keyNew); c.Primary != 5 {
		t.Fatalf("after use: new key %+v, want primary on 5 nodes", c)
	}
	if res, err = km(3).RemoveKey(ctx, keyOld, 0); err != nil {
		t.Fatalf("remove: %v (%+v)", err, res)
	}
	if cs := res.Counts(); len(cs) != 1 || !bytes.Equal(cs[0].Key, keyNew) || cs[0].Nodes != 5 || cs[0].Primary != 5 {
		t.Fatalf("after remove: %+v, want only the new key on 5 nodes", cs)
	}
	for _, nd := range nodes {
		if got := nd.Keys(); len(got) != 1 || !bytes.Equal(got[0], keyNew) {
			t.Errorf("%s holds %q, want only the new key", nd.Name, got)
		}
		if got := disk.get(nd.Name); len(got) != 1 || !bytes.Equal(got[0], keyNew) {
			t.Errorf("%s persisted %q, want only the new key", nd.Name, got)
		}
		if n := gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive); n != 5 {
			t.Errorf("%s sees %d alive, want 5: a node dropped out during the rotation", nd.Name, n)
		}
	}

	// Only the new key gets in now.
	late := gossiptest.Start(t, net, "late-new", func(c *gossip.Config) { c.SecretKey = keyNew }, nodes[4].Addr())
	stale := gossiptest.Start(t, net, "late-old", func(c *gossip.Config) { c.SecretKey = keyOld }, nodes[4].Addr())
	gossiptest.Eventually(t, wait, "late-new joins with the new key", func() bool {
		return gossiptest.StatusOf(nodes[0].Gossip, "late-new") == gossip.StatusAlive && gossiptest.CountStatus(late.Gossip, gossip.StatusAlive) == 6
	})
	gossiptest.Eventually(t, wait, "late-old fails to join twice", func() bool {
		return metricValue(t, stale, "murmur_gossip_join_failures_total") >= 2
	})
	if s := gossiptest.StatusOf(nodes[0].Gossip, "late-old"); s != "" {
		t.Errorf("a node with the removed key is in the fleet view as %s", s)
	}
}

// TestKeyringPartialFailure: a node that cannot persist fails the install (and the
// operation says which); use then refuses to cut it off; a node that never answers
// is named after the timeout.
func TestKeyringPartialFailure(t *testing.T) {
	net := gossiptest.NewNetwork()
	nodes, disk := startKeyedFleet(t, net, 3)
	ctx := context.Background()
	disk.setFail("k02", true)
	res, err := nodes[0].KeyManager().InstallKey(ctx, keyNew, 0)
	if !errors.Is(err, gossip.ErrKeyringPartial) || res.Failed() != 1 || !strings.Contains(res.Errors["k02"], "disk of k02 is full") {
		t.Fatalf("install with k02's disk full: err %v, errors %v, want a partial failure naming k02", err, res.Errors)
	}
	if c := countOf(res, keyNew); c.Nodes != 2 {
		t.Errorf("after the partial install the new key is on %d nodes, want 2", c.Nodes)
	}
	if got := nodes[2].Keys(); len(got) != 1 {
		t.Errorf("k02 changed its ring to %q although it could not persist it", got)
	}
	var conflict *gossip.KeyConflictError
	if _, err := nodes[1].KeyManager().UseKey(ctx, keyNew, 0); !errors.As(err, &conflict) || len(conflict.Nodes) != 1 || conflict.Nodes["k02"] == "" {
		t.Fatalf("use while k02 lacks the key: err = %v, want a conflict naming k02 only", err)
	}
	if got := nodes[1].Keys(); !bytes.Equal(got[0], keyOld) {
		t.Errorf("the refused use changed k01's primary key")
	}
	// The failure on this node itself stops the operation before any peer.
	disk.setFail("k02", false)
	disk.setFail("k00", true)
	if res, err := nodes[0].KeyManager().InstallKey(ctx, keyOther, 0); err == nil || len(res.Asked) != 1 {
		t.Fatalf("install with the asking node's disk full: err %v, asked %v, want a failure before any peer", err, res.Asked)
	}
	if got := nodes[1].Keys(); len(got) != 2 {
		t.Errorf("k01 holds %d keys after an install that failed on the asking node, want 2", len(got))
	}

	// A member that never answers is named once the timeout passes.
	mute := gossiptest.StartWithSetup(t, net, "mute", func(c *gossip.Config) { c.SecretKey = keyOld }, func(g *gossip.Gossip) {
		g.Register(gossip.KindKeyring, func(string, []byte) {}, nil)
	}, nodes[1].Addr())
	gossiptest.Eventually(t, wait, "k01 sees mute", func() bool { return gossiptest.StatusOf(nodes[1].Gossip, mute.Name) == gossip.StatusAlive })
	res, err = nodes[1].KeyManager().ListKeys(ctx, 500*time.Millisecond)
	if !errors.Is(err, gossip.ErrKeyringPartial) || !slices.Equal(res.NoAnswer, []string{"mute"}) {
		t.Fatalf("list with a mute member: err %v, no answer %v, want a partial failure naming mute", err, res.NoAnswer)
	}
}

func TestKeyringEncryptionOff(t *testing.T) {
	net := gossiptest.NewNetwork()
	a := gossiptest.Start(t, net, "plain", nil)
	_, err := a.KeyManager().InstallKey(context.Background(), keyNew, 0)
	if !errors.Is(err, gossip.ErrEncryptionOff) || !strings.Contains(err.Error(), "gossip encryption is off on plain: start agents with --encrypt") {
		t.Fatalf("install without encryption: err = %v", err)
	}
	if _, err := a.KeyManager().ListKeys(context.Background(), 0); !errors.Is(err, gossip.ErrEncryptionOff) {
		t.Fatalf("list without encryption: err = %v", err)
	}
}

// BenchmarkKeyringRotation measures a fleet-wide rotation on an in-process fleet
// (gossiptest's in-memory network): install, use and remove, each through a
// different node. "use-ms" is the time until every node encrypts with the new key
// (UseKey returns once every member has answered that it switched); "rotation-ms" is
// the whole install → use → remove.
//
//	go test -run '^$' -bench KeyringRotation -benchtime 5x ./gossip/
func BenchmarkKeyringRotation(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			net := gossiptest.NewNetwork()
			nodes, _ := startKeyedFleet(b, net, n)
			ctx := context.Background()
			old := keyOld
			var useTotal, allTotal time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next := bytes.Repeat([]byte{byte(i + 1)}, 32)
				start := time.Now()
				if _, err := nodes[i%n].KeyManager().InstallKey(ctx, next, 10*time.Second); err != nil {
					b.Fatal(err)
				}
				useStart := time.Now()
				if _, err := nodes[(i+1)%n].KeyManager().UseKey(ctx, next, 10*time.Second); err != nil {
					b.Fatal(err)
				}
				useTotal += time.Since(useStart)
				if _, err := nodes[(i+2)%n].KeyManager().RemoveKey(ctx, old, 10*time.Second); err != nil {
					b.Fatal(err)
				}
				allTotal += time.Since(start)
				old = next
			}
			b.StopTimer()
			b.ReportMetric(useTotal.Seconds()*1000/float64(b.N), "use-ms")
			b.ReportMetric(allTotal.Seconds()*1000/float64(b.N), "rotation-ms")
			for _, nd := range nodes {
				if got := nd.Keys(); len(got) != 1 || !bytes.Equal(got[0], old) {
					b.Fatalf("%s holds %d keys after the rotations, want only the last key", nd.Name, len(got))
				}
				if a := gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive); a != n {
					b.Fatalf("%s sees %d alive after the rotations, want %d", nd.Name, a, n)
				}
			}
		})
	}
}
