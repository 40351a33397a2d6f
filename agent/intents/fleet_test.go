package intents

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/policy"
)

// TestFleetDissemination runs five nodes: a push to node 3 reaches all; a later push to
// node 1 wins everywhere; concurrent updates converge; ?wait=fleet answers only once
// every node has stored; deletes become tombstones everywhere; 100 B, 64 KiB and
// 1 MiB intents all arrive.
func TestFleetDissemination(t *testing.T) {
	f := newFleet(t)
	nodes := f.startN(5, nil)

	// Push to node 3.
	r := do(t, nodes[2].mux, "POST", "/v1/intents", workloadYAML("vision", "/bin/sleep"))
	if r.status != 200 || !strings.Contains(r.body, `"result": "created"`) {
		t.Fatalf("apply on node-3: %d %s", r.status, r.body)
	}
	first := converged(t, nodes, "vision", 10*time.Second)
	if first.Origin != "node-3" || first.Version.Node != "node-3" {
		t.Errorf("origin = %s, version %s; want node-3", first.Origin, first.Version)
	}

	// Push a change to node 1: it wins everywhere.
	r = do(t, nodes[0].mux, "POST", "/v1/intents", workloadYAML("vision", "/bin/true"))
	if r.status != 200 || !strings.Contains(r.body, `"result": "updated"`) {
		t.Fatalf("apply on node-1: %d %s", r.status, r.body)
	}
	second := converged(t, nodes, "vision", 10*time.Second)
	if !first.Version.Less(second.Version) || second.Origin != "node-1" {
		t.Errorf("second version %s (origin %s) does not beat %s", second.Version, second.Origin, first.Version)
	}
	// Same content again: unchanged, stamped with a newer version (node 5's copy
	// could have been stale), which spreads like any other.
	r = do(t, nodes[4].mux, "POST", "/v1/intents", workloadYAML("vision", "/bin/true"))
	if !strings.Contains(r.body, `"result": "unchanged"`) {
		t.Errorf("re-apply: %s", r.body)
	}
	third := converged(t, nodes, "vision", 10*time.Second)
	if !second.Version.Less(third.Version) || third.Hash != second.Hash || third.Origin != "node-5" {
		t.Errorf("re-apply stored %s (origin %s, hash %s); want a version above %s with the same hash %s",
			third.Version, third.Origin, third.Hash, second.Version, second.Hash)
	}

	// Concurrent updates on nodes 2 and 4 converge to one winner: the higher version.
	var wg sync.WaitGroup
	res := make([]httpResult, 2)
	for i, n := range []*fleetNode{nodes[1], nodes[3]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = do(t, n.mux, "POST", "/v1/intents", workloadYAML("vision", "/bin/from-"+n.name))
		}()
	}
	wg.Wait()
	var vs []policy.Version
	for _, x := range res {
		var out applyResponse
		if err := json.Unmarshal([]byte(x.body), &out); err != nil || x.status != 200 {
			t.Fatalf("concurrent apply: %d %s", x.status, x.body)
		}
		v, err := policy.ParseVersion(out.Intents[0].Version)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	winner := vs[0]
	if winner.Less(vs[1]) {
		winner = vs[1]
	}
	gossiptest.Eventually(t, 10*time.Second, "every node to hold the concurrent winner", func() bool {
		for _, n := range nodes {
			if versionOn(n, "vision").Version != winner {
				return false
			}
		}
		return true
	})
	want := versionOn(nodes[0], "vision").Hash
	for _, n := range nodes {
		if h := versionOn(n, "vision").Hash; h != want {
			t.Errorf("%s holds hash %s, want %s", n.name, h, want)
		}
	}

	// ?wait=fleet: when it answers 200, every node has the version already.
	r = do(t, nodes[4].mux, "POST", "/v1/intents?wait=fleet&timeout=10s", workloadYAML("waited", "/bin/sleep"))
	if r.status != 200 {
		t.Fatalf("wait=fleet: %d %s", r.status, r.body)
	}
	var out applyResponse
	json.Unmarshal([]byte(r.body), &out)
	for _, n := range nodes {
		if got := versionOn(n, "waited").Version.String(); got != out.Intents[0].Version {
			t.Errorf("after wait=fleet, %s holds %q, want %q", n.name, got, out.Intents[0].Version)
		}
	}

	// Delete on node 5: a tombstone everywhere, and GET answers 404.
	r = do(t, nodes[4].mux, "DELETE", "/v1/intents/vision?wait=fleet&timeout=10s", "")
	if r.status != 200 || !strings.Contains(r.body, `"result": "deleted"`) {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	for _, n := range nodes {
		if rec := versionOn(n, "vision"); !rec.Deleted {
			t.Errorf("%s: vision not a tombstone after delete with wait=fleet: %+v", n.name, rec.Version)
		}
		if r := do(t, n.mux, "GET", "/v1/intents/vision", ""); r.status != 404 {
			t.Errorf("%s: GET deleted: %d", n.name, r.status)
		}
	}

	// Sizes: 100 B, 64 KiB and 1 MiB (the request limit, less room for the envelope).
	for _, size := range []int{100, 64 << 10, 1<<20 - 600} {
		name := fmt.Sprintf("size-%d", size)
		doc := sizedWorkload(name, size)
		r := do(t, nodes[2].mux, "POST", "/v1/intents?wait=fleet&timeout=20s", doc)
		if r.status != 200 {
			t.Fatalf("%s: %d %.300s", name, r.status, r.body)
		}
		src := versionOn(nodes[2], name)
		for _, n := range nodes {
			got := versionOn(n, name)
			if got.Hash != src.Hash || len(got.Body) != len(src.Body) {
				t.Errorf("%s on %s: hash %s (%d bytes), want %s (%d bytes)", name, n.name, got.Hash, len(got.Body), src.Hash, len(src.Body))
			}
		}
		t.Logf("%s: request %d bytes, canonical %d bytes", name, len(doc), len(src.Body))
	}

	// Every node lists the same intents.
	lists := map[string]string{}
	for _, n := range nodes {
		lists[n.name] = do(t, n.mux, "GET", "/v1/intents?deleted=true", "").body
	}
	for _, n := range nodes {
		if lists[n.name] != lists["node-1"] {
			t.Errorf("%s lists differently from node-1:\n%s\n%s", n.name, lists[n.name], lists["node-1"])
		}
	}
}

// sizedWorkload returns a JSON request of about size bytes.
func sizedWorkload(name string, size int) string {
	head := fmt.Sprintf(`{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":%q},"spec":{"driver":"exec","command":["/bin/true"],"env":{"PAD":"`, name)
	tail := `"}}}`
	pad := size - len(head) - len(tail)
	if pad < 1 {
		pad = 1
	}
	return head + strings.Repeat("x", pad) + tail
}

// TestFleetRepairAfterRejoin: a node down during a push and a delete catches up from
// its data dir plus anti-entropy after it restarts, and does not resurrect the deleted
// intent; a node whose service never answers makes ?wait=fleet time out naming it.
func TestFleetRepairAfterRejoin(t *testing.T) {
	f := newFleet(t)
	nodes := f.startN(5, nil)
	if r := do(t, nodes[0].mux, "POST", "/v1/intents?wait=fleet&timeout=10s", workloadYAML("old", "/bin/a")); r.status != 200 {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	down := f.kill("node-5")
	live := nodes[:4]
	gossiptest.Eventually(t, 10*time.Second, "node-5 to be seen dead", func() bool {
		return gossiptest.StatusOf(nodes[0].g.Gossip, "node-5") != "alive"
	})
	if r := do(t, nodes[1].mux, "POST", "/v1/intents?wait=fleet&timeout=10s", workloadYAML("new", "/bin/b")); r.status != 200 {
		t.Fatalf("apply while node-5 is down: %d %s", r.status, r.body)
	}
	if r := do(t, nodes[2].mux, "DELETE", "/v1/intents/old?wait=fleet&timeout=10s", ""); r.status != 200 {
		t.Fatalf("delete while node-5 is down: %d %s", r.status, r.body)
	}
	// Restart node-5 from its data dir: it still has "old" live until it repairs.
	back := f.start("node-5", down.dir, nil, true)
	if rec := versionOn(back, "old"); rec.Deleted || rec.Version.IsZero() {
		t.Fatalf("node-5 did not reload its store: %+v", rec)
	}
	all := append(live[:4:4], back)
	newRec := converged(t, all, "new", 20*time.Second)
	oldRec := converged(t, all, "old", 20*time.Second)
	if !oldRec.Deleted || newRec.Deleted {
		t.Errorf("after repair: old deleted=%v new deleted=%v", oldRec.Deleted, newRec.Deleted)
	}
	for _, n := range all {
		if r := versionOn(n, "old"); !r.Deleted {
			t.Errorf("%s resurrected old: %+v", n.name, r)
		}
	}

	// A node whose intent service never runs: wait=fleet times out and names it.
	f.start("mute", "", nil, false)
	gossiptest.Eventually(t, 10*time.Second, "mute to be alive", func() bool {
		return gossiptest.StatusOf(nodes[0].g.Gossip, "mute") == "alive"
	})
	r := do(t, nodes[0].mux, "POST", "/v1/intents?wait=fleet&timeout=1s", workloadYAML("late", "/bin/c"))
	if r.status != 504 || !strings.Contains(r.body, "mute") || strings.Contains(r.body, "node-2") {
		t.Errorf("wait=fleet with a mute node: %d %s", r.status, r.body)
	}
	if versionOn(nodes[0], "late").Version.IsZero() {
		t.Error("a timed-out wait must still have stored the intent on the accepting node")
	}
}

// TestFleetSignatures: nodes 1, 2, 4 trust key A; node 3 trusts nothing (misconfigured
// or compromised). Unsigned, wrong-key and forged intents are refused by the API of a
// trusting node; what node 3 accepts never gets into the trusting nodes by gossip.
func TestFleetSignatures(t *testing.T) {
	pubA, privA := key(t, 1)
	_, privB := key(t, 2)
	f := newFleet(t)
	n1 := f.start("node-1", "", []ed25519.PublicKey{pubA}, true)
	n2 := f.start("node-2", "", []ed25519.PublicKey{pubA}, true)
	n3 := f.start("node-3", "", nil, true)
	n4 := f.start("node-4", "", []ed25519.PublicKey{pubA}, true)
	all := []*fleetNode{n1, n2, n3, n4}
	gossiptest.Eventually(t, 20*time.Second, "a fleet of 4", func() bool {
		for _, n := range all {
			if gossiptest.CountStatus(n.g.Gossip, "alive") != 4 {
				return false
			}
		}
		return true
	})

	now := func() int64 { return time.Now().UnixMilli() }
	forged := strings.Replace(signedDoc(t, workloadYAML("app", "/bin/evil"), privA, signedAt(privA, now())), `"value":"`, `"value":"AAAA`, 1)
	tamperedBody := strings.Replace(signedDoc(t, workloadYAML("app", "/bin/good"), privA, signedAt(privA, now())), "/bin/good", "/bin/evil", 1)
	api := []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"unsigned", workloadYAML("app", "/bin/x"), 403, "not signed"},
		{"wrong key", signedDoc(t, workloadYAML("app", "/bin/x"), privB, signedAt(privB, now())), 403, "untrusted key"},
		{"forged value", forged, 403, "does not verify"},
		{"tampered body", tamperedBody, 403, "does not verify"},
		{"unversioned (earlier release)", unversioned(t, workloadYAML("app", "/bin/good"), privA), 403, "covers no version"},
		{"signed", signedDoc(t, workloadYAML("app", "/bin/good"), privA, signedAt(privA, now())), 200, `"result": "created"`},
	}
	for _, tt := range api {
		r := do(t, n1.mux, "POST", "/v1/intents", tt.body)
		if r.status != tt.status || !strings.Contains(r.body, tt.msg) {
			t.Errorf("%s: %d %s; want %d containing %q", tt.name, r.status, r.body, tt.status, tt.msg)
		}
	}
	good := converged(t, all, "app", 10*time.Second)
	if good.Signature == nil || good.Signature.KeyID != policy.KeyID(pubA) {
		t.Fatalf("stored signature %+v", good.Signature)
	}

	// Injection through node 3, which verifies nothing.
	injections := []struct{ name, body string }{
		{"unsigned", workloadYAML("inject-unsigned", "/bin/evil")},
		{"wrong key", signedDoc(t, workloadYAML("inject-wrongkey", "/bin/evil"), privB, signedAt(privB, now()))},
		{"forged", strings.Replace(signedDoc(t, workloadYAML("inject-forged", "/bin/evil"), privA, signedAt(privA, now())), `"value":"`, `"value":"AAAA`, 1)},
		{"overwrite", workloadYAML("app", "/bin/evil")},
	}
	for _, in := range injections {
		if r := do(t, n3.mux, "POST", "/v1/intents", in.body); r.status != 200 {
			t.Fatalf("node-3 refused %s: %d %s", in.name, r.status, r.body)
		}
	}
	// Unsigned delete through node 3 as well.
	if r := do(t, n3.mux, "DELETE", "/v1/intents/app", ""); r.status != 200 {
		t.Fatalf("node-3 delete: %d %s", r.status, r.body)
	}
	for _, n := range []*fleetNode{n1, n2, n4} {
		// Three new names plus node-3's last version of app (its overwrite announcement
		// may be replaced in node-3's broadcast queue by the delete's: newest wins).
		gossiptest.Eventually(t, 10*time.Second, n.name+" to reject the injected versions", func() bool {
			return counter(t, n.svc.m.rejectedRemote.WithLabelValues("signature")) >= 4
		})
	}
	for _, n := range []*fleetNode{n1, n2, n4} {
		for _, name := range []string{"inject-unsigned", "inject-wrongkey", "inject-forged"} {
			if _, ok := n.svc.Get(name); ok {
				t.Errorf("%s stored %s injected through node-3", n.name, name)
			}
		}
		if r := versionOn(n, "app"); r.Version != good.Version || r.Deleted {
			t.Errorf("%s: app changed by node-3 to %s (deleted %v)", n.name, r.Version, r.Deleted)
		}
	}
	// A signed delete through a trusting node works.
	dv := policy.NextSignedVersion(good.Version, time.Now(), policy.KeyID(pubA))
	r := do(t, n2.mux, "DELETE", "/v1/intents/app", "", SignatureHeader, deleteHeader(t, "app", dv, privA))
	if r.status != 200 {
		t.Fatalf("signed delete: %d %s", r.status, r.body)
	}
	if r := do(t, n2.mux, "DELETE", "/v1/intents/app", ""); r.status != 403 && r.status != 404 {
		t.Errorf("unsigned delete on a trusting node: %d", r.status)
	}
	for _, n := range []*fleetNode{n1, n2, n4} {
		gossiptest.Eventually(t, 10*time.Second, n.name+" to store the signed delete", func() bool {
			return versionOn(n, "app").Deleted && versionOn(n, "app").Version == dv
		})
	}
}
