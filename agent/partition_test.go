package agent

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/events"
)

// In-process partition tests (issue 11): five whole agents in one process over the
// in-memory gossip and Raft networks, cut and healed on both at once. The netns tests
// in cmd/murmur do the same on real network stacks; these are the fast ones.

const partitionRegion = "edge"

// TestPartitionOneNode cuts a node that runs one of two replicas from the other four.
// The cut-off node keeps its instance and says it runs its last-known assignment; the
// connected side replaces the instance; on heal exactly two remain, in the table and in
// the process table, the replacement survives (keep_replacement), and at no sampled
// moment did none run.
func TestPartitionOneNode(t *testing.T) {
	start := time.Now()
	f := startInprocFleet(t, 5, partitionRegion)
	t.Logf("fleet of 5 up with a coordinator after %v", time.Since(start).Round(time.Millisecond))
	const intent = "rep"
	postIntent(t, f.nodes[4].http, sleepWorkload(intent, 2))
	var placed map[string]string
	eventuallyFleet(t, f, 20*time.Second, "2 instances running on every node's view and in the process tables", func() bool {
		var ok bool
		placed, ok = exactly(f.nodes, f.nodes, intent, 2)
		return ok
	})
	coordName, _, ok := f.agreedCoordinator(f.nodes, 0)
	if !ok {
		t.Fatal("the nodes no longer agree on a coordinator")
	}
	coord := f.node(coordName)
	var victim *inprocNode
	var origID, otherID string
	for _, id := range sortedKeys(placed) {
		if victim == nil && placed[id] != coord.name {
			victim, origID = f.node(placed[id]), id
		} else {
			otherID = id
		}
	}
	if victim == nil || placed[otherID] == victim.name {
		t.Fatalf("want the 2 instances on 2 nodes, one outside the coordinator %s: %v", coord.name, placed)
	}
	origPid := instancePids(victim.dataDir)[origID]
	connected := without(f.nodes, victim)
	t.Logf("placed %v; coordinator %s; cutting %s (runs %s, pid %d)", placed, coord.name, victim.name, origID, origPid)

	w := startRunningWatch(f, func() *inprocNode { return coord }, intent)
	f.partition(victim)
	cutAt := time.Now()

	// The connected side replaces the cut node's instance.
	var final map[string]string
	eventuallyFleet(t, f, 20*time.Second, "the connected side runs 2 instances again", func() bool {
		final, ok = exactly(connected, connected, intent, 2)
		return ok
	})
	var repl string
	for id := range final {
		if id != otherID {
			repl = id
		}
	}
	if repl == "" || repl == origID || final[repl] == victim.name {
		t.Fatalf("after the cut the connected side runs %v; want %s and a replacement of %s off %s", final, otherID, origID, victim.name)
	}
	v, _ := workloadsOf(coord.http)
	if wl := instancesOf(v, intent)[repl]; wl.Cause != "replace" {
		t.Errorf("replacement %s on %s: cause %q, want replace (reason %q)", repl, wl.Node, wl.Cause, wl.Reason)
	}
	t.Logf("replacement %s on %s running %v after the cut", repl, final[repl], time.Since(cutAt).Round(time.Millisecond))

	// The cut-off node keeps its instance and runs on its last-known assignment.
	eventuallyFleet(t, f, 10*time.Second, victim.name+" runs its last-known assignment", func() bool {
		a, ok := assignmentsOf(victim.http)
		return ok && a.Source == "last_known" && a.Instances == 1
	})
	if pid := instancePids(victim.dataDir)[origID]; pid != origPid {
		t.Errorf("%s's instance %s: pid %d while cut off, want %d still running", victim.name, origID, pid, origPid)
	}

	f.heal()
	healAt := time.Now()
	var ms healMilestones
	eventuallyFleet(t, f, 20*time.Second, "exactly 2 instances fleet-wide after the heal (every view, every process table)", func() bool {
		ms.observe(healAt, coord, victim, intent)
		final, ok = exactly(f.nodes, f.nodes, intent, 2)
		return ok
	})
	t.Logf("healed in %v: %v; %s", time.Since(healAt).Round(time.Millisecond), final, ms)
	w.Check(t, "cut and heal", 2)
	eventuallyFleet(t, f, 10*time.Second, victim.name+" follows the coordinator again", func() bool {
		a, ok := assignmentsOf(victim.http)
		return ok && a.Source == "coordinator"
	})
	if want := map[string]bool{otherID: true, repl: true}; len(final) != 2 || !want[sortedKeys(final)[0]] || !want[sortedKeys(final)[1]] {
		t.Errorf("after the heal %v run; want %s and the replacement %s (keep_replacement)", final, otherID, repl)
	}
	if _, alive := instancePids(victim.dataDir)[origID]; alive {
		t.Errorf("the original %s still runs on the healed node %s; keep_replacement stops it", origID, victim.name)
	}

	// The events of a connected node: one replaced (cause replace) for the replacement,
	// one stopped (cause surplus) for the original.
	evs, err := eventsOf(coord.http, intent)
	if err != nil {
		t.Fatalf("events of %s: %v", coord.name, err)
	}
	var replaced, surplus []events.Event
	for _, e := range evs {
		switch {
		case e.Type == events.TypeReplaced:
			replaced = append(replaced, e)
		case e.Type == events.TypeStopped && e.Cause == "surplus":
			surplus = append(surplus, e)
		}
	}
	if len(replaced) != 1 || replaced[0].Instance != repl || replaced[0].Cause != "replace" {
		t.Errorf("replaced events on %s: %+v; want exactly one, for %s with cause replace", coord.name, replaced, repl)
	}
	if len(surplus) != 1 || surplus[0].Instance != origID || surplus[0].Node != victim.name || surplus[0].Time.Before(healAt) {
		t.Errorf("stopped/surplus events on %s: %+v; want exactly one, for %s on %s, after the heal at %s",
			coord.name, surplus, origID, victim.name, healAt.Format(time.RFC3339Nano))
	} else {
		t.Logf("surplus stop: %s", surplus[0].Reason)
	}
	if t.Failed() {
		f.dumpLogs(40)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestPartitionMinority cuts the coordinator and a standby (2 of 5) from the other 3.
// The majority (2 of the 3 voters) elects a new coordinator and replaces the
// minority's instances; the minority's voter reports headless, its Raft log does not
// grow, and both keep running what they had. On heal exactly the desired count remains.
func TestPartitionMinority(t *testing.T) {
	start := time.Now()
	f := startInprocFleet(t, 5, partitionRegion)
	const intent, want = "minor", 3
	postIntent(t, f.nodes[0].http, sleepWorkload(intent, want))
	var placed map[string]string
	eventuallyFleet(t, f, 20*time.Second, "3 instances running on every node's view and in the process tables", func() bool {
		var ok bool
		placed, ok = exactly(f.nodes, f.nodes, intent, want)
		return ok
	})
	coordName, oldTerm, ok := f.agreedCoordinator(f.nodes, 3)
	if !ok {
		t.Fatal("the nodes no longer agree on a coordinator with 3 voters")
	}
	coord := f.node(coordName)
	r, _ := regionOf(coord.http, partitionRegion)
	// The minority: the coordinator and a standby (not a voter), one that runs an
	// instance if one does. Two voters cut off would leave the other side without a
	// quorum.
	runsOn := map[string]bool{}
	for _, n := range placed {
		runsOn[n] = true
	}
	var standby *inprocNode
	for _, nd := range f.nodes {
		if nd == coord || slices.Contains(r.Voters, nd.name) {
			continue
		}
		if standby == nil || (runsOn[nd.name] && !runsOn[standby.name]) {
			standby = nd
		}
	}
	if standby == nil {
		t.Fatalf("no standby (voters %v)", r.Voters)
	}
	minority := []*inprocNode{coord, standby}
	majority := without(f.nodes, minority...)
	before := map[string]map[string]int{}
	held := map[string]assignmentsView{}
	lost := 0
	for _, nd := range minority {
		before[nd.name] = instancePids(nd.dataDir)
		lost += len(before[nd.name])
		held[nd.name], _ = assignmentsOf(nd.http)
	}
	if lost == 0 {
		t.Fatalf("the minority runs no instance (placed %v)", placed)
	}
	t.Logf("voters %v, coordinator %s (term %d); cutting %s and %s, which run %v", r.Voters, coord.name, oldTerm, coord.name, standby.name, before)

	f.partition(minority...)
	cutAt := time.Now()

	var newName string
	eventuallyFleet(t, f, 15*time.Second, "the majority agrees on a new coordinator in a later term", func() bool {
		name, term, ok := f.agreedCoordinator(majority, 0)
		newName = name
		return ok && name != coord.name && term > oldTerm
	})
	t.Logf("majority elected %s %v after the cut", newName, time.Since(cutAt).Round(time.Millisecond))
	eventuallyFleet(t, f, 10*time.Second-time.Since(cutAt), "both minority nodes name no coordinator and report headless, within 10 s of the cut", func() bool {
		for _, nd := range minority {
			r, ok := regionOf(nd.http, partitionRegion)
			if !ok || r.Coordinator != "" || !r.Headless {
				return false
			}
		}
		return true
	})
	t.Logf("minority headless %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	lastIndex, ok := metricValue(coord.http, "murmur_region_last_index")
	if !ok {
		t.Fatalf("no murmur_region_last_index on %s", coord.name)
	}
	decisionsBefore := decisions(t, coord, intent)
	eventuallyFleet(t, f, 20*time.Second, "the majority runs 3 instances again", func() bool {
		_, ok := exactly(majority, majority, intent, want)
		return ok
	})
	for _, nd := range minority {
		if got := instancePids(nd.dataDir); !sameCounts(pidSet(got), pidSet(before[nd.name])) {
			t.Errorf("%s runs %v while cut off, want what it had: %v", nd.name, got, before[nd.name])
		}
		if len(before[nd.name]) > 0 {
			eventuallyFleet(t, f, 10*time.Second, nd.name+" runs its last-known assignment", func() bool {
				a, ok := assignmentsOf(nd.http)
				return ok && a.Source == "last_known"
			})
		}
		if a, _ := assignmentsOf(nd.http); a.Generation != held[nd.name].Generation || a.From != held[nd.name].From {
			t.Errorf("%s's held assignment changed while cut off: %+v, was %+v", nd.name, a, held[nd.name])
		}
	}
	if now, _ := metricValue(coord.http, "murmur_region_last_index"); now != lastIndex {
		t.Errorf("the cut-off voter %s's Raft last index moved from %v to %v: the minority committed", coord.name, lastIndex, now)
	}
	// Applied plans become events on the nodes holding the log: none while headless.
	if after := decisions(t, coord, intent); after != decisionsBefore {
		t.Errorf("the cut-off voter %s recorded %d placement decisions for %s while headless (%d before, %d after)", coord.name, after-decisionsBefore, intent, decisionsBefore, after)
	}
	t.Logf("Raft last index of the minority voter %s stayed %v; majority's coordinator %s", coord.name, lastIndex, newName)

	// Sampled from the heal on, through the majority's coordinator. (Not from the cut:
	// right after its election a new coordinator's /v1/workloads shows every instance
	// "assigned" until the nodes' first reports reach it, a view-only dip to 0 running
	// while every process runs.)
	newCoord := f.node(newName)
	w := startRunningWatch(f, func() *inprocNode { return newCoord }, intent)
	f.heal()
	healAt := time.Now()
	var final map[string]string
	eventuallyFleet(t, f, 20*time.Second, "exactly 3 fleet-wide after the heal", func() bool {
		final, ok = exactly(f.nodes, f.nodes, intent, want)
		return ok
	})
	t.Logf("healed in %v: %v", time.Since(healAt).Round(time.Millisecond), final)
	w.Check(t, "heal", want)
	eventuallyFleet(t, f, 15*time.Second, "all 5 agree on one coordinator again", func() bool {
		_, _, ok := f.agreedCoordinator(f.nodes, 0)
		return ok
	})
	checkLogsAgree(t, f)
	if t.Failed() {
		f.dumpLogs(40)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// pidSet turns instance → pid into "instance/pid" → 1, to compare two of them.
func pidSet(m map[string]int) map[string]int {
	out := map[string]int{}
	for id, pid := range m {
		out[id+"/"+strconv.Itoa(pid)] = 1
	}
	return out
}

// decisions counts the placement decisions (placed, replaced, migrated, stopped) for
// intent in nd's /v1/events.
func decisions(t *testing.T, nd *inprocNode, intent string) int {
	t.Helper()
	evs, err := eventsOf(nd.http, intent)
	if err != nil {
		t.Fatalf("events of %s: %v", nd.name, err)
	}
	n := 0
	for _, e := range evs {
		switch e.Type {
		case events.TypePlaced, events.TypeReplaced, events.TypeMigrated, events.TypeStopped:
			n++
		}
	}
	return n
}

// healMilestones records, for the log, when after a heal the coordinator first saw
// the cut node alive, the cut node first saw the coordinator alive, and the cut node's
// surplus process was gone.
type healMilestones struct {
	seenByCoord, seesCoord, surplusGone time.Duration
}

func (m *healMilestones) observe(healAt time.Time, coord, victim *inprocNode, intent string) {
	if m.seenByCoord == 0 && memberStatus(coord.http, victim.name) == "alive" {
		m.seenByCoord = time.Since(healAt)
	}
	if m.seesCoord == 0 && memberStatus(victim.http, coord.name) == "alive" {
		m.seesCoord = time.Since(healAt)
	}
	if m.surplusGone == 0 && len(processesOf([]*inprocNode{victim}, intent)) == 0 {
		m.surplusGone = time.Since(healAt)
	}
}

func (m healMilestones) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("after the heal: coordinator sees the node alive at %v, the node sees the coordinator alive at %v, its surplus process gone at %v",
		r(m.seenByCoord), r(m.seesCoord), r(m.surplusGone))
}

// checkLogsAgree reads every node's /v1/regions/{region}/log: the nodes running the
// region's group list committed entries, and no index is listed with two different
// entries. A region no node runs a group for answers 404.
func checkLogsAgree(t *testing.T, f *inprocFleet) {
	t.Helper()
	type entry struct {
		Index  uint64 `json:"index"`
		Term   uint64 `json:"term"`
		Digest string `json:"digest"`
	}
	seen := map[uint64]entry{}
	by := map[uint64]string{}
	for _, nd := range f.nodes {
		var res struct {
			Cluster string  `json:"cluster"`
			Entries []entry `json:"entries"`
		}
		if err := getJSON(nd.http, "/v1/regions/"+f.region+"/log", &res); err != nil {
			t.Errorf("%s: region log: %v", nd.name, err)
			continue
		}
		if res.Cluster == "" || len(res.Entries) == 0 {
			t.Errorf("%s lists no applied entries for %s (cluster %q)", nd.name, f.region, res.Cluster)
		}
		for _, e := range res.Entries {
			if prev, ok := seen[e.Index]; ok && prev != e {
				t.Errorf("index %d: %s applied %+v, %s applied %+v", e.Index, by[e.Index], prev, nd.name, e)
			}
			seen[e.Index], by[e.Index] = e, nd.name
		}
	}
	resp, err := http.Get("http://" + f.nodes[0].http + "/v1/regions/nowhere/log")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("log of a region this node runs no group for: %d, want 404", resp.StatusCode)
	}
}
