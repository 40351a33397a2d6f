package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/agenttest"
	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/runtime"
)

// Partition tests on real network stacks (netns_test.go): a 5-agent region, one
// namespace per agent, links cut and healed at the bridge.

const partRegion = "edge"

// newPartitionFleet starts 5 agents in their own namespaces and waits for one
// coordinator with 3 voters that every node names.
func newPartitionFleet(t *testing.T, prefix string) *netLab {
	t.Helper()
	lab := newNetLab(t, 5, prefix, partRegion)
	// The default settle rule, on purpose: the 5 agents start at once, each with
	// every seed, and some seeds refuse (not listening yet). Before gossip kept
	// joining unreached seeds, the fleet could form as two pools ({1,2,3} and {4,5})
	// that each bootstrapped a Raft cluster (2 in ~9 starts here).
	ps := lab.startAll()
	eventually(t, 60*time.Second, "5 nodes agree on a coordinator with 3 voters", func() bool {
		_, _, ok := agreedCoordinator(ps, partRegion, 3)
		return ok
	})
	return lab
}

// sleepWorkload is an exec Workload of /bin/sleep 3600 with the given disconnect
// block lines (indented under spec.disconnect).
func sleepWorkload(name string, replicas int, disconnect ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  replicas: %d\n  driver: exec\n", name, replicas)
	b.WriteString("  command: [\"/bin/sleep\", \"3600\"]\n  resources: {cpu: 50m, memory: 16Mi}\n")
	if len(disconnect) > 0 {
		b.WriteString("  disconnect:\n")
		for _, d := range disconnect {
			b.WriteString("    " + d + "\n")
		}
	}
	return []byte(b.String())
}

// removeWorkload deletes name through addr and waits until no process of it is left.
func removeWorkload(t *testing.T, lab *netLab, addr, name string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/intents/"+name, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE %s: %v", name, err)
	}
	resp.Body.Close()
	eventually(t, 30*time.Second, "no process of "+name+" left", func() bool { return total(fleetProcesses(lab, name)) == 0 })
}

// fleetProcesses counts, per node, the live instance processes of intent, from the
// process table (by each node's data dir, so it is safe while agents restart).
func fleetProcesses(lab *netLab, intent string) map[string]int { return processesOn(lab.nodes, intent) }

// processesOn is fleetProcesses over some nodes.
func processesOn(nodes []*nsNode, intent string) map[string]int {
	dirs := make(map[string]string, len(nodes))
	for _, nd := range nodes {
		dirs[nd.name] = nd.dataDir
	}
	return instanceCounts(dirs, intent)
}

// instances are the placements of intent in a view: instance id → workload.
func instances(v coordinator.View, intent string) map[string]coordinator.Workload {
	out := map[string]coordinator.Workload{}
	for _, w := range v.Workloads {
		if w.Intent == intent {
			out[w.Instance] = w
		}
	}
	return out
}

// exactly reports whether every observer's /v1/workloads lists exactly want instances
// of intent on the nodes of scope, all running, the same set on every observer, and
// whether the process tables of scope run exactly those: per node the same count as
// the view. Placements on nodes outside scope (a cut node's, shown lost) are ignored;
// with scope = every node nothing is. It returns instance → node.
func exactly(lab *netLab, observers, scope []*nsNode, intent string, want int) (map[string]string, bool) {
	in := map[string]bool{}
	for _, nd := range scope {
		in[nd.name] = true
	}
	var first map[string]string
	for _, o := range observers {
		v, ok := workloadsOf(o.http, "")
		if !ok {
			return nil, false
		}
		got := map[string]string{}
		for id, w := range instances(v, intent) {
			if !in[w.Node] {
				continue
			}
			if w.State != runtime.StateRunning {
				return nil, false
			}
			got[id] = w.Node
		}
		if len(got) != want {
			return nil, false
		}
		if first == nil {
			first = got
			perNode := map[string]int{}
			for _, n := range got {
				perNode[n]++
			}
			if !maps(perNode, processesOn(scope, intent)) {
				return nil, false
			}
		} else if !maps2(first, got) {
			return nil, false
		}
	}
	return first, true
}

func maps2(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// settle waits until exactly holds: the observers' views and the process tables of
// scope agree on want running instances of intent.
func settle(t *testing.T, lab *netLab, observers, scope []*nsNode, intent string, want int, what string) map[string]string {
	t.Helper()
	var got map[string]string
	eventually(t, 60*time.Second, what, func() bool {
		var ok bool
		got, ok = exactly(lab, observers, scope, intent, want)
		return ok
	})
	return got
}

// coordinatorNode is the node the given nodes agree leads the region.
func coordinatorNode(t *testing.T, lab *netLab, among []*nsNode) (*nsNode, uint64) {
	t.Helper()
	var ps []*proc
	for _, nd := range among {
		ps = append(ps, nd.proc)
	}
	var name string
	var term uint64
	eventually(t, 30*time.Second, "an agreed coordinator", func() bool {
		var ok bool
		name, term, ok = agreedCoordinator(ps, partRegion, 0)
		return ok
	})
	return lab.node(name), term
}

// startWatch samples, every 20 ms until checked (at most 3 minutes), the live
// instance processes of intent fleet-wide and the running instances in observer's
// /v1/workloads (agenttest.Watch).
func startWatch(lab *netLab, observer func() *nsNode, intent string) *agenttest.Watch {
	return agenttest.StartWatch(func() agenttest.Sample {
		sm := agenttest.Sample{Procs: total(fleetProcesses(lab, intent)), View: -1}
		if v, ok := workloadsOf(observer().http, ""); ok {
			sm.View = total(running(v, intent))
			ins := instances(v, intent)
			for _, id := range sortedKeys(ins) {
				sm.States += fmt.Sprintf(" %s@%s:%s", id, ins[id].Node, ins[id].State)
			}
		}
		return sm
	}, 3*time.Minute)
}

// memberSince is the status of name in addr's /v1/members and since when.
func memberSince(addr, name string) (string, time.Time) {
	var res struct {
		Members []struct {
			Name   string    `json:"name"`
			Status string    `json:"status"`
			Since  time.Time `json:"since"`
		} `json:"members"`
	}
	if getJSON(addr, "/v1/members", &res) != nil {
		return "", time.Time{}
	}
	for _, m := range res.Members {
		if m.Name == name {
			return m.Status, m.Since
		}
	}
	return "", time.Time{}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pickVictim returns a node that runs one of the instances in placed and is not the
// coordinator, preferring the lowest name (deterministic given the placement).
func pickVictim(t *testing.T, lab *netLab, placed map[string]string, coord *nsNode) (*nsNode, string) {
	t.Helper()
	for _, id := range sortedKeys(placed) {
		if n := placed[id]; n != coord.name {
			return lab.node(n), id
		}
	}
	t.Fatalf("no instance runs outside the coordinator %s: %v", coord.name, placed)
	return nil, ""
}

func without(nodes []*nsNode, cut ...*nsNode) []*nsNode {
	var out []*nsNode
	for _, nd := range nodes {
		if !slices.Contains(cut, nd) {
			out = append(out, nd)
		}
	}
	return out
}

// TestNetnsPartitionOneNode cuts a node that runs one of two replicas. The node keeps
// its instance (last-known assignment); the connected side replaces it (at once, or
// only once disconnect.replaceAfter has passed since the node was declared dead); on
// heal exactly two instances remain, never none, and the reconcile rule decides which.
func TestNetnsPartitionOneNode(t *testing.T) {
	lab := newPartitionFleet(t, "p")
	cases := []struct {
		name, intent string
		disconnect   []string
		replaceAfter time.Duration
		keep         string // which instance survives the heal: replacement | original
	}{
		{"default_keeps_replacement", "rep", nil, 0, "replacement"},
		{"replace_after_5s", "late", []string{"replaceAfter: 5s"}, 5 * time.Second, "replacement"},
		{"keep_original", "orig", []string{"replaceAfter: 0s", "reconcile: keep_original"}, 0, "original"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab.heal()
			t.Cleanup(lab.heal)
			postIntent(t, lab.nodes[4].http, sleepWorkload(tc.intent, 2, tc.disconnect...), "")
			t.Cleanup(func() { removeWorkload(t, lab, lab.nodes[0].http, tc.intent) })
			placed := settle(t, lab, lab.nodes, lab.nodes, tc.intent, 2, "2 "+tc.intent+" instances running on 2 nodes")
			coord, _ := coordinatorNode(t, lab, lab.nodes)
			victim, origID := pickVictim(t, lab, placed, coord)
			origPid := instancePids(victim.dataDir)[origID]
			connected := without(lab.nodes, victim)
			t.Logf("placed %v; coordinator %s; cutting %s (runs %s, pid %d)", placed, coord.name, victim.name, origID, origPid)

			w := startWatch(lab, func() *nsNode { return coord }, tc.intent)
			lab.cut(victim.name)
			cutAt := time.Now()

			// Poll every 20 ms from the cut until the replacement runs: when the
			// coordinator declared the victim dead, and when a new instance first shows.
			var deadSince, firstSeen time.Time
			var repl coordinator.Workload
			deadline := time.Now().Add(time.Minute)
			for {
				if time.Now().After(deadline) {
					t.Fatalf("no replacement of %s running within a minute of the cut (dead since %v)", origID, deadSince)
				}
				if deadSince.IsZero() {
					if st, since := memberSince(coord.http, victim.name); st == "dead" {
						deadSince = since
					}
				}
				if v, ok := workloadsOf(coord.http, ""); ok {
					for id, wl := range instances(v, tc.intent) {
						if _, old := placed[id]; old {
							continue
						}
						if firstSeen.IsZero() {
							firstSeen, repl = time.Now(), wl
							t.Logf("replacement %s on %s first seen %v after the cut, state %s since %s", id, wl.Node,
								firstSeen.Sub(cutAt).Round(time.Millisecond), wl.State, wl.Since.Format("15:04:05.000"))
						}
						if wl.State == runtime.StateRunning && total(fleetProcesses(lab, tc.intent)) == 3 {
							repl = wl
						}
					}
				}
				if repl.State == runtime.StateRunning && !deadSince.IsZero() {
					break
				}
				time.Sleep(20 * time.Millisecond) // the poll period of this bounded loop
			}
			t.Logf("%s declared dead %v after the cut; replacement %s on %s", victim.name, deadSince.Sub(cutAt).Round(time.Millisecond), repl.Instance, repl.Node)
			if repl.Node == victim.name {
				t.Fatalf("replacement %s placed on the cut node %s", repl.Instance, victim.name)
			}
			if tc.replaceAfter > 0 {
				// firstSeen is after the placement; Since of the first sight is the
				// placement time (state assigned) or the start (later still). Either
				// before deadSince+replaceAfter means it was placed too early.
				if early := deadSince.Add(tc.replaceAfter).Sub(firstSeen); early > 0 {
					t.Errorf("replacement seen %v after %s was declared dead, before replaceAfter %v", firstSeen.Sub(deadSince), victim.name, tc.replaceAfter)
				}
				if d := repl.Since.Sub(deadSince); d < tc.replaceAfter-100*time.Millisecond {
					t.Errorf("replacement placed/started %v after %s was declared dead, want ≥ replaceAfter %v", d, victim.name, tc.replaceAfter)
				} else {
					t.Logf("replacement placed/started %v after death (replaceAfter %v)", d.Round(time.Millisecond), tc.replaceAfter)
				}
			}
			// The cut node keeps its instance and says it runs its last-known set.
			eventually(t, 15*time.Second, victim.name+" runs its last-known assignment", func() bool {
				a, ok := assignmentsOf(victim.http)
				return ok && a.Source == "last_known" && a.Instances == 1
			})
			if pid := instancePids(victim.dataDir)[origID]; pid != origPid {
				t.Errorf("%s's instance %s: pid %d after the cut, want %d still running", victim.name, origID, pid, origPid)
			}
			settle(t, lab, connected, connected, tc.intent, 2, "the connected side runs 2 "+tc.intent+" again")

			lab.heal()
			healAt := time.Now()
			final := settle(t, lab, lab.nodes, lab.nodes, tc.intent, 2, "exactly 2 "+tc.intent+" fleet-wide after the heal")
			t.Logf("healed: exactly 2 on every node's view and in the process tables after %v: %v", time.Since(healAt).Round(time.Millisecond), final)
			w.Check(t, "cut and heal", 2)
			eventually(t, 15*time.Second, victim.name+" follows the coordinator again", func() bool {
				a, ok := assignmentsOf(victim.http)
				return ok && a.Source == "coordinator"
			})

			var otherID string
			for id := range placed {
				if id != origID {
					otherID = id
				}
			}
			want := map[string]bool{otherID: true, repl.Instance: true}
			if tc.keep == "original" {
				want = map[string]bool{otherID: true, origID: true}
			}
			for id := range final {
				if !want[id] {
					t.Errorf("after the heal %s runs; want the %s kept: %v", id, tc.keep, sortedKeys(want))
				}
			}
			_, origAlive := instancePids(victim.dataDir)[origID]
			if tc.keep == "replacement" && origAlive {
				t.Errorf("the original %s still runs on the healed node %s; keep_replacement stops it", origID, victim.name)
			}
			if tc.keep == "original" && !origAlive {
				t.Errorf("the original %s no longer runs on %s; keep_original keeps it", origID, victim.name)
			}

			// Each decision of the scenario is in the coordinator's event stream once,
			// with its reason: the replacement, and the stop the rule chose on heal.
			loser := origID
			if tc.keep == "original" {
				loser = repl.Instance
			}
			eventually(t, 10*time.Second, "the coordinator's events name the heal's stop", func() bool {
				evs, err := eventsOf(coord.http, "?intent="+tc.intent)
				if err != nil {
					return false
				}
				replaced, stopped := 0, 0
				for _, e := range evs {
					if e.Type == "replaced" && e.Instance == repl.Instance && strings.Contains(e.Reason, origID) {
						replaced++
					}
					if e.Type == "stopped" && e.Instance == loser && e.Cause == "surplus" && strings.Contains(e.Reason, "keep_"+tc.keep) {
						stopped++
					}
				}
				if replaced > 1 || stopped > 1 {
					t.Fatalf("events for %s: %d replaced, %d surplus stops of %s; want exactly one each: %+v", tc.intent, replaced, stopped, loser, evs)
				}
				return replaced == 1 && stopped == 1
			})
		})
	}
}

// metric reads the value of the first sample of a metric family from addr's /metrics.
func metric(addr, name string) (float64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// TestNetnsPartitionMinority cuts the coordinator and a standby (2 of 5) from the
// other 3, the two still seeing each other. The majority (2 of 3 voters) elects a new
// coordinator and replaces the minority's instances; the minority has no coordinator,
// reports headless, commits nothing (its voter's Raft log does not grow, its held
// assignment does not change) and keeps running what it had. On heal exactly the
// desired count remains, and there was never none.
func TestNetnsPartitionMinority(t *testing.T) {
	lab := newPartitionFleet(t, "m")
	const intent, want = "minor", 3
	postIntent(t, lab.nodes[0].http, sleepWorkload(intent, want), "")
	placed := settle(t, lab, lab.nodes, lab.nodes, intent, want, "3 instances running on 3 nodes")
	coord, oldTerm := coordinatorNode(t, lab, lab.nodes)
	voters := regions(coord.http)[partRegion].Voters
	// The minority: the coordinator and a standby (a non-voter), one that runs an
	// instance if one does. Two voters cut off would leave the majority without a
	// quorum (1 of 3): the whole region would be headless, which is another test.
	var standby *nsNode
	runsOn := map[string]bool{}
	for _, n := range placed {
		runsOn[n] = true
	}
	for _, nd := range lab.nodes {
		if nd == coord || slices.Contains(voters, nd.name) {
			continue
		}
		if standby == nil || (runsOn[nd.name] && !runsOn[standby.name]) {
			standby = nd
		}
	}
	if standby == nil {
		t.Fatalf("no standby among %v (voters %v)", lab.nodes, voters)
	}
	minority := []*nsNode{coord, standby}
	majority := without(lab.nodes, minority...)
	minorityPids := map[string]map[string]int{}
	lostHere := 0
	for _, nd := range minority {
		minorityPids[nd.name] = instancePids(nd.dataDir)
		lostHere += len(minorityPids[nd.name])
	}
	t.Logf("voters %v, coordinator %s (term %d); cutting %s and %s, which run %v; placed %v",
		voters, coord.name, oldTerm, coord.name, standby.name, minorityPids, placed)
	if lostHere == 0 {
		t.Fatalf("the minority runs no instance (placed %v): 3 replicas on 5 nodes should spread onto it", placed)
	}

	w := startWatch(lab, func() *nsNode { return majority[0] }, intent)
	lab.cut(coord.name, standby.name)
	cutAt := time.Now()

	// The majority elects a coordinator of its own, in a later term.
	var majPs []*proc
	for _, nd := range majority {
		majPs = append(majPs, nd.proc)
	}
	var newName string
	var newTerm uint64
	eventually(t, 30*time.Second, "the majority agrees on a new coordinator in a later term", func() bool {
		var ok bool
		newName, newTerm, ok = agreedCoordinator(majPs, partRegion, 0)
		return ok && newName != coord.name && newTerm > oldTerm
	})
	newCoord := lab.node(newName)
	t.Logf("majority elected %s in term %d, %v after the cut", newCoord.name, newTerm, time.Since(cutAt).Round(time.Millisecond))

	// The minority: no coordinator, headless, workloads unanswerable.
	eventually(t, 30*time.Second, "the minority sees no coordinator and reports headless", func() bool {
		for _, nd := range minority {
			r, ok := regions(nd.http)[partRegion]
			if !ok || r.Coordinator != "" || !r.Headless {
				return false
			}
		}
		return true
	})
	t.Logf("minority headless %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	lastIndex, ok := metric(coord.http, "murmur_region_last_index")
	if !ok {
		t.Fatalf("no murmur_region_last_index on %s", coord.name)
	}
	heldBefore := map[string]assignmentsView{}
	for _, nd := range minority {
		a, ok := assignmentsOf(nd.http)
		if !ok {
			t.Fatalf("no status from %s", nd.name)
		}
		heldBefore[nd.name] = a
		if _, ok := workloadsOf(nd.http, ""); ok {
			t.Errorf("%s answers /v1/workloads without a coordinator; want 503", nd.name)
		}
	}

	// The majority replaces the minority's instances.
	settle(t, lab, majority, majority, intent, want, "the majority runs 3 instances again")
	// The minority still runs what it had, on its own.
	for _, nd := range minority {
		if got := instancePids(nd.dataDir); !equalPids(got, minorityPids[nd.name]) {
			t.Errorf("%s runs %v during the partition, want what it had: %v", nd.name, got, minorityPids[nd.name])
		}
		if len(minorityPids[nd.name]) > 0 {
			eventually(t, 15*time.Second, nd.name+" runs its last-known assignment", func() bool {
				a, ok := assignmentsOf(nd.http)
				return ok && a.Source == "last_known"
			})
		}
		if a, _ := assignmentsOf(nd.http); a.Generation != heldBefore[nd.name].Generation || a.From != heldBefore[nd.name].From {
			t.Errorf("%s's held assignment changed while cut off: %+v, was %+v", nd.name, a, heldBefore[nd.name])
		}
	}
	if now, _ := metric(coord.http, "murmur_region_last_index"); now != lastIndex {
		t.Errorf("the cut-off voter %s's Raft last index moved from %v to %v: the minority committed", coord.name, lastIndex, now)
	}
	majIndex, _ := metric(newCoord.http, "murmur_region_last_index")
	t.Logf("Raft last index: minority voter %s %v, majority %v", coord.name, lastIndex, majIndex)

	lab.heal()
	healAt := time.Now()
	final := settle(t, lab, lab.nodes, lab.nodes, intent, want, "exactly 3 fleet-wide after the heal")
	t.Logf("healed: exactly %d on every node's view and in the process tables after %v: %v", want, time.Since(healAt).Round(time.Millisecond), final)
	w.Check(t, "minority cut and heal", want)
	var all []*proc
	for _, nd := range lab.nodes {
		all = append(all, nd.proc)
	}
	eventually(t, 30*time.Second, "all 5 agree on one coordinator again", func() bool {
		_, _, ok := agreedCoordinator(all, partRegion, 0)
		return ok
	})

	// Never silently headless: two nodes that hold no vote are cut off together. No
	// voter is with them to raise the region's headless flag; they say so themselves,
	// with since when and why, once they have seen no coordinator for 5 s.
	voters = regions(lab.nodes[0].http)[partRegion].Voters
	var standbys []*nsNode
	for _, nd := range lab.nodes {
		if !slices.Contains(voters, nd.name) {
			standbys = append(standbys, nd)
		}
	}
	if len(standbys) != 2 {
		t.Fatalf("standbys %v, want 2 (voters %v)", standbys, voters)
	}
	names := []string{standbys[0].name, standbys[1].name}
	lab.cut(names...)
	cutAt = time.Now()
	for _, nd := range standbys {
		var r regionSince
		eventually(t, 20*time.Second, nd.name+" (no vote, cut off) reports its region headless", func() bool {
			r = regionWithSince(nd.http, partRegion)
			return r.Headless && r.Coordinator == "" && !r.Since.IsZero() && r.Why != ""
		})
		t.Logf("%s: headless %v after the cut (since %s): %s", nd.name, time.Since(cutAt).Round(100*time.Millisecond), r.Since.Format("15:04:05.000"), r.Why)
		if got := metricSum(t, nd.http, "murmur_regions_headless"); got != 1 {
			t.Errorf("%s: murmur_regions_headless = %v, want 1", nd.name, got)
		}
		// The event loop looks at the fleet once a second: the event may follow the
		// API's answer by up to that.
		eventually(t, 5*time.Second, nd.name+" records a headless event", func() bool {
			evs, err := eventsOf(nd.http, "?type=headless&region="+partRegion)
			return err == nil && len(evs) > 0
		})
		if out, code := murmurCLI(t, "get", "regions", "--addr", nd.http); code != 0 || !strings.Contains(out, "HEADLESS since") {
			t.Errorf("%s: murmur get regions (exit %d) does not say headless:\n%s", nd.name, code, out)
		}
	}
	lab.heal()
	for _, nd := range standbys {
		eventually(t, 30*time.Second, nd.name+" sees a coordinator again", func() bool {
			r := regionWithSince(nd.http, partRegion)
			return !r.Headless && r.Coordinator != ""
		})
	}
}

// regionSince is a region of GET /v1/regions with the headless details.
type regionSince struct {
	Coordinator string    `json:"coordinator"`
	Headless    bool      `json:"headless"`
	Since       time.Time `json:"headless_since"`
	Why         string    `json:"headless_reason"`
}

func regionWithSince(addr, name string) regionSince {
	var res struct {
		Regions []struct {
			Name string `json:"name"`
			regionSince
		} `json:"regions"`
	}
	if getJSON(addr, "/v1/regions", &res) != nil {
		return regionSince{}
	}
	for _, r := range res.Regions {
		if r.Name == name {
			return r.regionSince
		}
	}
	return regionSince{}
}

// TestNetnsPartitionOfflineReboot: a node with an instance is cut off, then its power
// fails (agent and instances killed) and it boots inside the still-cut namespace with
// its data dir. Its instance runs again from disk (last_known); on heal nothing is
// duplicated.
func TestNetnsPartitionOfflineReboot(t *testing.T) {
	lab := newPartitionFleet(t, "r")
	const intent, want = "boot", 2
	postIntent(t, lab.nodes[0].http, sleepWorkload(intent, want), "")
	placed := settle(t, lab, lab.nodes, lab.nodes, intent, want, "2 instances running on 2 nodes")
	coord, _ := coordinatorNode(t, lab, lab.nodes)
	victim, origID := pickVictim(t, lab, placed, coord)
	connected := without(lab.nodes, victim)
	w := startWatch(lab, func() *nsNode { return coord }, intent)
	lab.cut(victim.name)
	settle(t, lab, connected, connected, intent, want, "the connected side replaced "+origID)
	eventually(t, 15*time.Second, victim.name+" runs its last-known assignment", func() bool {
		a, ok := assignmentsOf(victim.http)
		return ok && a.Source == "last_known"
	})

	old := instancePids(victim.dataDir)
	killHost(t, victim.proc)
	eventually(t, 10*time.Second, "the killed instance reaped", func() bool {
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				return false
			}
		}
		return true
	})
	bootAt := time.Now()
	lab.start(victim.name)
	eventually(t, 15*time.Second, victim.name+"'s instance "+origID+" runs again from disk", func() bool {
		pid, ok := instancePids(victim.dataDir)[origID]
		return ok && pid != old[origID]
	})
	t.Logf("%s booted cut off; %s live again %v after the agent's start", victim.name, origID, time.Since(bootAt).Round(time.Millisecond))
	eventually(t, 15*time.Second, victim.name+" says it runs its last-known assignment", func() bool {
		a, ok := assignmentsOf(victim.http)
		return ok && a.Source == "last_known" && a.Instances == 1
	})

	lab.heal()
	healAt := time.Now()
	final := settle(t, lab, lab.nodes, lab.nodes, intent, want, "exactly 2 fleet-wide after the heal")
	t.Logf("healed: exactly %d everywhere after %v: %v", want, time.Since(healAt).Round(time.Millisecond), final)
	w.Check(t, "cut, reboot and heal", want)
	if _, ok := final[origID]; ok {
		t.Logf("note: the original %s survived the heal", origID)
	}
}

// TestNetnsPartitionHealFigure cuts a node running an instance until the connected side
// replaced it, heals, and measures the time from the link being back to every node's
// /v1/workloads showing exactly the desired count, all running, and the process tables
// agreeing. MURMUR_HEAL_ROUNDS sets the number of cycles (default 3).
func TestNetnsPartitionHealFigure(t *testing.T) {
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("MURMUR_HEAL_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	lab := newPartitionFleet(t, "f")
	const intent, want = "fig", 2
	postIntent(t, lab.nodes[0].http, sleepWorkload(intent, want), "")
	placed := settle(t, lab, lab.nodes, lab.nodes, intent, want, "2 instances running")
	var took []time.Duration
	for r := 0; r < rounds; r++ {
		coord, _ := coordinatorNode(t, lab, lab.nodes)
		// Rotate the victim over the nodes that run an instance and do not lead.
		var victim *nsNode
		for _, id := range sortedKeys(placed) {
			if n := lab.node(placed[id]); n != coord && (victim == nil || r%2 == 1) {
				victim = n
			}
		}
		if victim == nil {
			t.Fatalf("round %d: no instance outside the coordinator %s: %v", r, coord.name, placed)
		}
		connected := without(lab.nodes, victim)
		w := startWatch(lab, func() *nsNode { return coord }, intent)
		lab.cut(victim.name)
		cutAt := time.Now()
		settle(t, lab, connected, connected, intent, want, fmt.Sprintf("round %d: the connected side replaced %s's instance", r, victim.name))
		replaced := time.Since(cutAt)
		lab.heal()
		healAt := time.Now()
		// Milestones of the heal, for the log: when the coordinator sees the node
		// alive again, when the node sees the coordinator, when its surplus
		// instance's process is gone.
		var seenByCoord, seesCoord, surplusGone time.Duration
		var ok bool
		deadline := healAt.Add(time.Minute)
		for !ok {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: not exactly %d everywhere within a minute of the heal", r, want)
			}
			time.Sleep(20 * time.Millisecond) // the poll period of this bounded loop
			if st, _ := memberSince(coord.http, victim.name); seenByCoord == 0 && st == "alive" {
				seenByCoord = time.Since(healAt)
			}
			if st, _ := memberSince(victim.http, coord.name); seesCoord == 0 && st == "alive" {
				seesCoord = time.Since(healAt)
			}
			if surplusGone == 0 && total(fleetProcesses(lab, intent)) == want {
				surplusGone = time.Since(healAt)
			}
			placed, ok = exactly(lab, lab.nodes, lab.nodes, intent, want)
		}
		d := time.Since(healAt)
		t.Logf("round %d: after the heal, %s alive for the coordinator at %v, %s sees the coordinator alive at %v, surplus process gone at %v",
			r, victim.name, seenByCoord.Round(time.Millisecond), victim.name, seesCoord.Round(time.Millisecond), surplusGone.Round(time.Millisecond))
		took = append(took, d)
		w.Check(t, fmt.Sprintf("round %d", r), want)
		t.Logf("round %d: cut %s (coordinator %s), replaced after %v, healed in %v", r, victim.name, coord.name,
			replaced.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	pct := func(p float64) time.Duration { // nearest rank
		i := int(float64(len(sorted))*p+0.999999) - 1
		return sorted[max(0, min(i, len(sorted)-1))]
	}
	t.Logf("heal: rounds=%d p50_ms=%d p99_ms=%d max_ms=%d", rounds, pct(0.50).Milliseconds(), pct(0.99).Milliseconds(), sorted[len(sorted)-1].Milliseconds())
}
