package intents

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/policy"
)

// longName is a 63-byte intent name (the DNS-label maximum) ending in i.
func longName(i int) string {
	s := fmt.Sprintf("-%04d", i)
	return strings.Repeat("a", policy.MaxNameLen-len(s)) + s
}

// At the size where the old digest broke: 2000 intents (the default store limit)
// with 63-byte names and a 63-byte node name. The old digest listed every name with
// its version: over 256 KiB, so the receiver refused it and repair stopped for good.
// The bucket digest stays a few KB, an old-format one of that size still decodes, and
// a node with an empty store is repaired by one exchange of digests.
func TestDigestAtTheStoreLimit(t *testing.T) {
	const n = 2000
	node := strings.Repeat("n", 63)
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	net := newViewNet()
	full := net.add(t, node, clock)
	var docs []string
	for i := range n {
		docs = append(docs, workloadYAML(longName(i), "/bin/x"))
	}
	for i := 0; i < n; i += 100 { // 100 documents a request
		if _, err := full.Apply([]byte(strings.Join(docs[i:i+100], "---\n"))); err != nil {
			t.Fatal(err)
		}
	}

	var old digest
	for _, r := range full.Records() {
		old.Entries = append(old.Entries, ack{Name: r.Name, Version: r.Version})
	}
	oldBytes, err := encodeDigest(old)
	if err != nil {
		t.Fatal(err)
	}
	if len(oldBytes) <= 256<<10 {
		t.Fatalf("the full digest of %d long names is %d bytes; the test no longer covers the old 256 KiB limit", n, len(oldBytes))
	}
	if d, err := decodeDigest(oldBytes); err != nil || len(d.Entries) != n {
		t.Fatalf("an older node's full digest (%d bytes) does not decode: %d entries, %v", len(oldBytes), len(d.Entries), err)
	}
	state := full.LocalState()
	if len(state) > 8<<10 {
		t.Errorf("bucket digest of %d intents is %d bytes; want at most 8 KiB", n, len(state))
	}
	t.Logf("%d intents with 63-byte names: full digest %d bytes, bucket digest %d bytes", n, len(oldBytes), len(state))

	empty := net.add(t, "joiner", clock)
	runService(t, full)
	runService(t, empty)
	empty.MergeRemoteState(node, state)
	want := full.Records()
	// Every step below is an event. The guard bounds a hang: 20 s without one more
	// record stored (storing 2000 records under -race on a loaded 2-core machine
	// takes longer than 20 s in all, so the bound is on progress, not on the total).
	held := 0
	guard := time.NewTimer(20 * time.Second)
	defer guard.Stop()
	for {
		changed := empty.Changed()
		if recordsGap(empty.Records(), want) == "" {
			break
		}
		if h := len(empty.Records()); h > held {
			held = h
			guard.Reset(20 * time.Second)
		}
		select {
		case <-changed:
		case <-guard.C:
			gap := recordsGap(empty.Records(), want)
			t.Fatalf("not repaired by one digest: %d of %d held, none more for 20 s; first gaps: %.300s", len(empty.Records()), n, gap)
		}
	}
	// In sync, the two summaries agree: nothing more is asked.
	if a, b := empty.LocalState(), full.LocalState(); string(a) != string(b) {
		t.Errorf("stores in sync send different digests (%d and %d bytes)", len(a), len(b))
	}
}

// Bucket summaries: the same store gives the same summary whatever the order it was
// filled in; one version more or one name more changes exactly one bucket.
func TestDigestBuckets(t *testing.T) {
	mk := func(names []string, v map[string]policy.Version) *snapshot {
		sn := &snapshot{byName: map[string]*entry{}}
		for _, n := range names {
			sn.byName[n] = &entry{rec: policy.Record{Name: n, Version: v[n]}}
			sn.names = append(sn.names, n)
		}
		return sn
	}
	vs := map[string]policy.Version{}
	var names []string
	for i := range 300 {
		n := fmt.Sprintf("w%d", i)
		names = append(names, n)
		vs[n] = policy.Version{Wall: int64(1000 + i), Node: "a"}
	}
	nb := digestBucketCount(len(names))
	if nb != 128 {
		t.Errorf("bucket count for 300 names = %d, want 128", nb)
	}
	a := mk(names, vs).bucketsOf(nb)
	rev := append([]string(nil), names...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if b := mk(rev, vs).bucketsOf(nb); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the summary depends on the order of the names")
	}
	newer := map[string]policy.Version{}
	for k, v := range vs {
		newer[k] = v
	}
	newer["w7"] = policy.Version{Wall: 5000, Node: "b"}
	if d := diffBuckets(a, mk(names, newer).bucketsOf(nb)); len(d) != 1 || d[0] != bucketOf("w7", nb) {
		t.Errorf("a newer version of w7 changed buckets %v; want only %d", d, bucketOf("w7", nb))
	}
	vs["extra"] = policy.Version{Wall: 1, Node: "a"}
	if d := diffBuckets(a, mk(append(names, "extra"), vs).bucketsOf(nb)); len(d) != 1 || d[0] != bucketOf("extra", nb) {
		t.Errorf("one more name changed buckets %v; want only %d", d, bucketOf("extra", nb))
	}
	for _, tt := range []struct{ n, want int }{{0, 16}, {64, 16}, {65, 32}, {2000, 512}, {1 << 20, 4096}} {
		if got := digestBucketCount(tt.n); got != tt.want {
			t.Errorf("digestBucketCount(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func diffBuckets(a, b []uint64) []int {
	var out []int
	for i := range a {
		if a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}
