package intents

import (
	"strings"
	"testing"
	"time"
)

// A write acknowledged after another must win over it, also when it re-applies the
// content a cut-off node still holds: the fault campaign's lost update. Node 2 stores a
// new spec while cut off from node 1; then node 1 is sent the old spec again, which
// equals its stale copy. Before the fix node 1 answered "unchanged" at its old version,
// and after the heal node 2's earlier write won.
func TestReapplyDuringPartitionWinsAfterHeal(t *testing.T) {
	f := newFleet(t)
	nodes := f.startN(2, nil)
	if r := do(t, nodes[0].mux, "POST", "/v1/intents", workloadYAML("cam", "/bin/old")); r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	old := converged(t, nodes, "cam", 10*time.Second)

	f.net.Partition([]string{nodes[0].name}, []string{nodes[1].name})
	if r := do(t, nodes[1].mux, "POST", "/v1/intents", workloadYAML("cam", "/bin/new")); r.status != 200 || !strings.Contains(r.body, `"result": "updated"`) {
		t.Fatalf("update on the other side: %d %s", r.status, r.body)
	}
	other := versionOn(nodes[1], "cam")
	// Versions order by wall-clock milliseconds first: let the clock pass the other
	// side's write, as it has for any client that saw that write acknowledged.
	for deadline := time.Now().Add(time.Second); time.Now().UnixMilli() <= other.Version.Wall; {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not advance")
		}
	}
	r := do(t, nodes[0].mux, "POST", "/v1/intents", workloadYAML("cam", "/bin/old"))
	if r.status != 200 || !strings.Contains(r.body, `"result": "unchanged"`) {
		t.Fatalf("re-apply of the old spec on the cut-off node: %d %s", r.status, r.body)
	}
	mine := versionOn(nodes[0], "cam")
	if !other.Version.Less(mine.Version) || mine.Hash != old.Hash {
		t.Fatalf("re-apply stored %s (hash %s); want a version above the other side's %s with the old spec's hash %s",
			mine.Version, mine.Hash, other.Version, old.Hash)
	}

	f.net.Heal()
	got := converged(t, nodes, "cam", 10*time.Second)
	if got.Version != mine.Version || got.Hash != old.Hash {
		t.Errorf("after the heal every node holds %s (hash %s); want the last acknowledged write %s (hash %s)",
			got.Version, got.Hash, mine.Version, old.Hash)
	}
}
