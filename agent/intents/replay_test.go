package intents

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/policy"
)

// TestFleetSignedReplay: a signed intent is stored at the version its signer chose, so
// replaying an older signed body or an older signed delete through any node is refused
// there (409) and the version every node holds does not move; the exact record held
// again is a retry and succeeds; a newer signed version wins everywhere; a relay that
// moves a signed record to another version is refused on dissemination. Nodes 1-3
// trust key A; node-4 trusts no key (it verifies nothing, but applies the same version
// rules to signed intents).
func TestFleetSignedReplay(t *testing.T) {
	pubA, privA := key(t, 1)
	keyID := policy.KeyID(pubA)
	trust := []ed25519.PublicKey{pubA}
	f := newFleet(t)
	trusting := []*fleetNode{
		f.start("node-1", "", trust, true),
		f.start("node-2", "", trust, true),
		f.start("node-3", "", trust, true),
	}
	n4 := f.start("node-4", "", nil, true)
	all := append(trusting[:3:3], n4)
	gossiptest.Eventually(t, 20*time.Second, "a fleet of 4", func() bool {
		for _, n := range all {
			if gossiptest.CountStatus(n.g.Gossip, "alive") != 4 {
				return false
			}
		}
		return true
	})

	next := func(held policy.Version) policy.Version { return policy.NextSignedVersion(held, time.Now(), keyID) }
	post := func(n *fleetNode, body string) httpResult {
		t.Helper()
		return do(t, n.mux, "POST", "/v1/intents", body)
	}
	del := func(n *fleetNode, hdr string) httpResult {
		t.Helper()
		return do(t, n.mux, "DELETE", "/v1/intents/app", "", SignatureHeader, hdr)
	}
	expect := func(what string, r httpResult, status int, parts ...string) {
		t.Helper()
		if r.status != status {
			t.Errorf("%s: %d %s; want %d", what, r.status, r.body, status)
			return
		}
		for _, p := range parts {
			if !strings.Contains(r.body, p) {
				t.Errorf("%s: %d %s; want it to contain %q", what, r.status, r.body, p)
			}
		}
	}
	holds := func(nodes []*fleetNode, want policy.Record) {
		t.Helper()
		for _, n := range nodes {
			got := versionOn(n, "app")
			if got.Version != want.Version || got.Hash != want.Hash || got.Deleted != want.Deleted {
				t.Errorf("%s holds app at %s (hash %.8s, deleted %v); want %s (hash %.8s, deleted %v)",
					n.name, got.Version, got.Hash, got.Deleted, want.Version, want.Hash, want.Deleted)
			}
		}
	}

	// v1 through node-1, then v2 through node-2: each stored everywhere at exactly the
	// version its signer chose.
	v1 := next(policy.Version{})
	doc1 := signedDoc(t, workloadYAML("app", "/bin/v1"), privA, v1)
	expect("v1 on node-1", post(all[0], doc1), 200, `"result": "created"`, v1.String())
	if rec := converged(t, all, "app", 10*time.Second); rec.Version != v1 {
		t.Fatalf("stored at %s, want the signed version %s", rec.Version, v1)
	}
	v2 := next(v1)
	doc2 := signedDoc(t, workloadYAML("app", "/bin/v2"), privA, v2)
	expect("v2 on node-2", post(all[1], doc2), 200, `"result": "updated"`, v2.String())
	rec2 := converged(t, all, "app", 10*time.Second)
	if rec2.Version != v2 || rec2.Origin != "node-2" {
		t.Fatalf("stored at %s from %s, want %s from node-2", rec2.Version, rec2.Origin, v2)
	}

	// The same record again, through any node: a retry, answered unchanged.
	for _, n := range all {
		expect("retry of v2 on "+n.name, post(n, doc2), 200, `"result": "unchanged"`, v2.String())
	}
	// Replay of the older signed body, and other content signed at the held version:
	// refused by every node, and nothing moves.
	atV2 := signedDoc(t, workloadYAML("app", "/bin/other"), privA, v2)
	for _, n := range all {
		expect("replay of v1 on "+n.name, post(n, doc1), 409, "not above version "+v2.String(), "sign the intent again")
		expect("other content at v2 on "+n.name, post(n, atV2), 409, "not above version "+v2.String())
	}
	holds(all, rec2)

	// A signed delete through node-3. Its retry succeeds everywhere; replays of the
	// older bodies after it are refused everywhere.
	d1 := next(v2)
	del1 := deleteHeader(t, "app", d1, privA)
	expect("delete on node-3", del(all[2], del1), 200, `"result": "deleted"`, d1.String())
	tomb := converged(t, all, "app", 10*time.Second)
	if !tomb.Deleted || tomb.Version != d1 {
		t.Fatalf("after the delete: %s deleted=%v, want a tombstone at %s", tomb.Version, tomb.Deleted, d1)
	}
	for _, n := range all {
		expect("retry of the delete on "+n.name, del(n, del1), 200, `"result": "deleted"`, d1.String())
		expect("replay of v1 after the delete on "+n.name, post(n, doc1), 409, "holds a delete of", d1.String())
		expect("replay of v2 after the delete on "+n.name, post(n, doc2), 409, "holds a delete of", d1.String())
	}
	holds(all, tomb)

	// Created again at v3 through node-4, which verifies nothing but keeps the signed
	// version (so the trusting nodes accept it from it). Replaying the older signed
	// delete through every node is refused.
	v3 := next(d1)
	expect("v3 on node-4", post(n4, signedDoc(t, workloadYAML("app", "/bin/v3"), privA, v3)), 200, `"result": "created"`, v3.String())
	rec3 := converged(t, all, "app", 10*time.Second)
	if rec3.Version != v3 || rec3.Deleted {
		t.Fatalf("after re-create: %s deleted=%v, want %s", rec3.Version, rec3.Deleted, v3)
	}
	for _, n := range all {
		expect("replay of the delete on "+n.name, del(n, del1), 409, "not above version "+v3.String())
	}
	holds(all, rec3)

	// Relays that move the signed record to a later version. One sends it straight to
	// the trusting nodes, its signature unchanged; the other rewrites the signature's
	// version too and gives it to node-4, which stores what it is sent (it trusts no
	// key) and offers it in its anti-entropy digest. Every trusting node refuses both.
	before := map[string]float64{}
	for _, n := range trusting {
		before[n.name] = counter(t, n.svc.m.rejectedRemote.WithLabelValues("signature"))
	}
	moved := rec3
	moved.Version.Wall += 1000
	direct, err := encodeMsg(msgRecords, records{Records: []policy.Record{moved}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range trusting {
		n.svc.HandleMessage("node-4", direct)
	}
	relayed := rec3
	relayed.Version.Wall += 2000
	sig := *rec3.Signature
	sig.Version = relayed.Version.String()
	relayed.Signature = &sig
	viaNode4, err := encodeMsg(msgRecords, records{Records: []policy.Record{relayed}})
	if err != nil {
		t.Fatal(err)
	}
	n4.svc.HandleMessage("node-3", viaNode4)
	gossiptest.Eventually(t, 10*time.Second, "node-4 to store the relayed version", func() bool {
		return versionOn(n4, "app").Version == relayed.Version
	})
	for _, n := range trusting {
		gossiptest.Eventually(t, 10*time.Second, n.name+" to refuse both moved versions", func() bool {
			return counter(t, n.svc.m.rejectedRemote.WithLabelValues("signature")) >= before[n.name]+2
		})
	}
	holds(trusting, rec3)

	// A newer signed version wins everywhere (node-4 included: it is above what the
	// relay gave node-4).
	v4 := next(relayed.Version)
	expect("v4 on node-1", post(all[0], signedDoc(t, workloadYAML("app", "/bin/v4"), privA, v4)), 200, `"result": "updated"`, v4.String())
	if rec4 := converged(t, all, "app", 10*time.Second); rec4.Version != v4 {
		t.Errorf("newest signed version: every node holds %s, want %s", rec4.Version, v4)
	}
}

// TestSignedVersionRules checks the API's rules for signed versions on one node with a
// fake clock: exact version kept, retries, stale and skewed versions, signatures of an
// earlier release, all-or-nothing requests, deletes, and the HLC of a node that trusts
// no key.
func TestSignedVersionRules(t *testing.T) {
	pub, priv := key(t, 7)
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	dir := t.TempDir()
	s, mux := single(t, dir, clock, func(c *Config) { c.TrustedKeys = []ed25519.PublicKey{pub} })
	now := clock.Now().UnixMilli()
	hour := int64(time.Hour / time.Millisecond)
	at := func(wall int64) policy.Version { return signedAt(priv, wall) }
	detail := func(r httpResult) (field, msg string) {
		var env struct {
			Details []struct{ Field, Message string }
		}
		json.Unmarshal([]byte(r.body), &env)
		if len(env.Details) == 0 {
			return "", ""
		}
		return env.Details[0].Field, env.Details[0].Message
	}
	tests := []struct {
		name   string
		body   string
		status int
		field  string
		msg    string
	}{
		{"signed", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now)), 200, "", ""},
		{"retry", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now)), 200, "", ""},
		{"same content, older version", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now-1)), 409, "signature.version", "not above version " + at(now).String()},
		{"other content, same version", signedDoc(t, workloadYAML("a", "/bin/y"), priv, at(now)), 409, "signature.version", "sign the intent again"},
		{"unversioned (earlier release)", unversioned(t, workloadYAML("a", "/bin/y"), priv), 403, "signature.version", "covers no version"},
		{"25h ahead", signedDoc(t, workloadYAML("a", "/bin/y"), priv, at(now+25*hour)), 400, "signature.version", "25h0m0s ahead of this node's clock; at most 24h0m0s"},
		{"25h behind, new name", signedDoc(t, workloadYAML("old", "/bin/y"), priv, at(now-25*hour)), 400, "signature.version", "behind this node's clock"},
		{"one stale document refuses the request", "[" + signedDoc(t, workloadYAML("b", "/bin/b"), priv, at(now+1)) + "," + signedDoc(t, workloadYAML("a", "/bin/y"), priv, at(now-5)) + "]", 409, "documents[1].signature.version", "not above"},
		{"23h ahead", signedDoc(t, workloadYAML("ahead", "/bin/y"), priv, at(now+23*hour)), 200, "", ""},
	}
	for _, tt := range tests {
		r := do(t, mux, "POST", "/v1/intents", tt.body)
		field, msg := detail(r)
		if r.status != tt.status || field != tt.field || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: %d %s; want %d with detail %s: ...%s...", tt.name, r.status, r.body, tt.status, tt.field, tt.msg)
		}
	}
	if rec, _ := s.Get("a"); rec.Version != at(now) {
		t.Errorf("a is at %s, want the signed version %s", rec.Version, at(now))
	}
	if _, ok := s.Get("b"); ok {
		t.Error("a refused request stored part of itself")
	}
	if got := counter(t, s.m.rejected.WithLabelValues("stale")); got != 3 {
		t.Errorf("rejected{stale} = %v, want 3", got)
	}

	// Deletes.
	legacy := policy.Sign(priv, policy.TombstoneBytes("a"))
	dels := []struct {
		name   string
		hdr    string
		status int
		msg    string
	}{
		{"unversioned (earlier release)", legacy.KeyID + ":" + legacy.Value, 403, "covers no version"},
		{"malformed version", legacy.KeyID + ":" + legacy.Value + ":soon", 400, "want wall.counter@node"},
		{"signed for another name", deleteHeader(t, "b", at(now+10), priv), 403, "does not verify"},
		{"not above the held version", deleteHeader(t, "a", at(now), priv), 409, "not above version " + at(now).String()},
		{"25h ahead", deleteHeader(t, "a", at(now+25*hour), priv), 400, "ahead of this node's clock"},
		{"signed", deleteHeader(t, "a", at(now+10), priv), 200, `"version": "` + at(now+10).String()},
		{"retry", deleteHeader(t, "a", at(now+10), priv), 200, `"version": "` + at(now+10).String()},
		{"another delete of a deleted name", deleteHeader(t, "a", at(now+11), priv), 404, "deleted at version " + at(now+10).String()},
	}
	for _, tt := range dels {
		r := do(t, mux, "DELETE", "/v1/intents/a", "", SignatureHeader, tt.hdr)
		if r.status != tt.status || !strings.Contains(r.body, tt.msg) {
			t.Errorf("delete, %s: %d %s; want %d containing %q", tt.name, r.status, r.body, tt.status, tt.msg)
		}
	}
	if r := do(t, mux, "POST", "/v1/intents", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now+9))); r.status != 409 || !strings.Contains(r.body, "holds a delete of") {
		t.Errorf("signed below the tombstone: %d %s", r.status, r.body)
	}
	if r := do(t, mux, "POST", "/v1/intents", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now+12))); r.status != 200 || !strings.Contains(r.body, `"result": "created"`) {
		t.Errorf("signed above the tombstone: %d %s", r.status, r.body)
	}
	// After a restart the store holds the signed version and signature: the retry is
	// still unchanged, an older version still refused.
	_, mux1 := single(t, dir, clock, func(c *Config) { c.TrustedKeys = []ed25519.PublicKey{pub} })
	if r := do(t, mux1, "POST", "/v1/intents", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now+12))); r.status != 200 || !strings.Contains(r.body, `"result": "unchanged"`) {
		t.Errorf("retry after a restart: %d %s", r.status, r.body)
	}
	if r := do(t, mux1, "POST", "/v1/intents", signedDoc(t, workloadYAML("a", "/bin/y"), priv, at(now+11))); r.status != 409 {
		t.Errorf("older version after a restart: %d %s", r.status, r.body)
	}

	// The bound behind the clock is the tombstone TTL when that is shorter.
	_, mux2 := single(t, t.TempDir(), clock, func(c *Config) {
		c.TrustedKeys = []ed25519.PublicKey{pub}
		c.TombstoneTTL = time.Hour
	})
	if r := do(t, mux2, "POST", "/v1/intents", signedDoc(t, workloadYAML("a", "/bin/x"), priv, at(now-2*hour))); r.status != 400 || !strings.Contains(r.body, "at most 1h0m0s") {
		t.Errorf("2h behind with a 1h tombstone TTL: %d %s", r.status, r.body)
	}

	// A node that trusts no key keeps minting versions for unsigned intents, stores a
	// signed intent at its signed version, and its clock observes it: what it mints
	// next is above the signed version even though that is ahead of its clock.
	open, omux := single(t, t.TempDir(), clock, nil)
	ahead := at(now + hour)
	if r := do(t, omux, "POST", "/v1/intents", signedDoc(t, workloadYAML("s", "/bin/x"), priv, ahead)); r.status != 200 {
		t.Fatalf("signed on a node without keys: %d %s", r.status, r.body)
	}
	if rec, _ := open.Get("s"); rec.Version != ahead {
		t.Errorf("stored at %s, want the signed version %s", rec.Version, ahead)
	}
	for _, body := range []string{workloadYAML("u", "/bin/x"), workloadYAML("s", "/bin/y")} {
		res, err := open.Apply([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if v := res[0].Version; !ahead.Less(v) || v.Node != "solo" {
			t.Errorf("minted %s after storing %s; want a version of solo above it", v, ahead)
		}
	}
	if res, err := open.Apply([]byte(workloadYAML("u", "/bin/x"))); err != nil || res[0].Result != "unchanged" {
		t.Errorf("unsigned re-apply: %+v, %v; want unchanged", res, err)
	}
}

// TestFutureSignedRecordFetchedAgain: a signed record from a peer more than
// MaxSignedSkew ahead is refused as "future", but not for good: once this node's clock
// is close enough it is stored. A record with a bad signature is refused for good.
func TestFutureSignedRecordFetchedAgain(t *testing.T) {
	pub, priv := key(t, 8)
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, _ := single(t, t.TempDir(), clock, func(c *Config) { c.TrustedKeys = []ed25519.PublicKey{pub} })
	record := func(name string, v policy.Version) policy.Record {
		ins, err := policy.Parse([]byte(workloadYAML(name, "/bin/x")))
		if err != nil {
			t.Fatal(err)
		}
		if err := policy.SignIntent(&ins[0], v, priv); err != nil {
			t.Fatal(err)
		}
		b, _ := policy.Canonical(&ins[0])
		return policy.Record{Name: name, Kind: policy.KindWorkload, Version: v, Hash: policy.Hash(b), Origin: "peer", Body: b, Signature: ins[0].Signature}
	}
	future := record("f", signedAt(priv, clock.Now().Add(25*time.Hour).UnixMilli()))
	s.storeRemote(&future)
	if _, ok := s.Get("f"); ok {
		t.Fatal("stored a signed version 25h ahead")
	}
	if got := counter(t, s.m.rejectedRemote.WithLabelValues("future")); got != 1 {
		t.Errorf("rejected{future} = %v, want 1", got)
	}
	if !s.wants("f", future.Version) {
		t.Error("a version refused only for being ahead is never fetched again")
	}
	clock.Add(2 * time.Hour)
	s.storeRemote(&future)
	if rec, ok := s.Get("f"); !ok || rec.Version != future.Version {
		t.Errorf("once the clock is close enough: %+v, want it stored at %s", rec.Version, future.Version)
	}

	forged := record("g", signedAt(priv, clock.Now().UnixMilli()))
	forged.Version.Counter++
	s.storeRemote(&forged)
	if _, ok := s.Get("g"); ok || s.wants("g", forged.Version) {
		t.Error("a record moved to another version was stored, or would be fetched again")
	}
}
