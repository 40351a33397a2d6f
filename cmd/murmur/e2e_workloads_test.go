package main

import (
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/agenttest"
	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/runtime"
)

// The live instance processes of an agent: agent/agenttest.
var (
	instancePids = agenttest.InstancePids
	processesIn  = agenttest.ProcessesIn
	soleHost     = agenttest.SoleHost
)

// killHost cuts a node's power: SIGKILL of its agent and of every instance process
// group it started.
func killHost(t *testing.T, p *proc) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	for _, pid := range instancePids(p.dataDir) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func workloadsOf(addr, query string) (coordinator.View, bool) {
	var v coordinator.View
	if err := getJSON(addr, "/v1/workloads"+query, &v); err != nil {
		return v, false
	}
	return v, true
}

// running counts, per node, the instances of intent that the view shows running.
func running(v coordinator.View, intent string) map[string]int {
	out := map[string]int{}
	for _, w := range v.Workloads {
		if w.Intent == intent && w.State == runtime.StateRunning {
			out[w.Node]++
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// processes counts, per node, the live instance processes of intent (process table).
func processes(ps []*proc, intent string) map[string]int {
	dirs := make(map[string]string, len(ps))
	for _, p := range ps {
		dirs[p.name] = p.dataDir
	}
	return instanceCounts(dirs, intent)
}

// instanceCounts counts the live instance processes of intent per agent, from each
// agent's data dir (agent name → data dir).
func instanceCounts(dirs map[string]string, intent string) map[string]int {
	out := map[string]int{}
	for name, dir := range dirs {
		for id := range instancePids(dir) {
			if strings.HasPrefix(id, intent+"-") {
				out[name]++
			}
		}
	}
	return out
}

func alive(ps []*proc) []*proc {
	var out []*proc
	for _, p := range ps {
		select {
		case <-p.done:
		default:
			out = append(out, p)
		}
	}
	return out
}

// TestRealWorkloadsFollowTheirHosts is the mission on real processes: 3 replicas on a
// 5-node region run as 3 processes on 3 nodes; a host dies and they run elsewhere;
// the coordinator's host dies and there are still exactly 3; an agent restarts and
// adopts its instances; a global workload runs once per node; delete stops them all.
func TestRealWorkloadsFollowTheirHosts(t *testing.T) {
	ps, flags := startPlant(t, "w", 5)
	byName := map[string]*proc{}
	for _, p := range ps {
		byName[p.name] = p
	}
	body := []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: web}
spec:
  replicas: 3
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 50m, memory: 16Mi}
`)
	postIntent(t, ps[4].http, body, "")
	body = []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: mon}
spec:
  mode: global
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 10m, memory: 8Mi}
`)
	postIntent(t, ps[4].http, body, "")

	settled := func(live []*proc, what string) {
		t.Helper()
		eventuallyWhy(t, 30*time.Second, what, func() (bool, string) {
			v, ok := workloadsOf(live[0].http, "")
			if !ok {
				return false, live[0].name + " does not answer GET /v1/workloads"
			}
			web, procs := running(v, "web"), processes(live, "web")
			mon, monProcs := running(v, "mon"), processes(live, "mon")
			why := fmt.Sprintf("web running per node %v, web processes %v; mon running %v, mon processes %v", web, procs, mon, monProcs)
			if total(web) != 3 || len(web) != 3 || !maps(web, procs) {
				return false, why
			}
			return len(mon) == len(live) && total(mon) == len(live) && total(monProcs) == len(live), why
		})
	}
	// The coordinator all live nodes agree on (an agent just restarted may not know it
	// yet: wait, never act on a disagreement).
	agreed := func(live []*proc) string {
		t.Helper()
		var coord string
		eventually(t, 30*time.Second, "the live nodes agree on the coordinator", func() bool {
			var ok bool
			coord, _, ok = agreedCoordinator(live, "plant", 0)
			return ok
		})
		return coord
	}
	table := func(live []*proc) coordinator.View {
		t.Helper()
		var v coordinator.View
		eventually(t, 30*time.Second, "the workloads table from "+live[0].name, func() bool {
			var ok bool
			v, ok = workloadsOf(live[0].http, "")
			return ok
		})
		return v
	}
	settled(ps, "web as 3 processes on 3 nodes and mon once per node")

	// A host running web dies (not the coordinator): its web instance runs elsewhere.
	coord := agreed(ps)
	v := table(ps)
	var victim *proc
	for n := range running(v, "web") {
		if n != coord && (victim == nil || n < victim.name) {
			victim = byName[n]
		}
	}
	if victim == nil {
		t.Fatalf("no non-coordinator node runs web: %+v", v.Workloads)
	}
	killHost(t, victim)
	settled(alive(ps), "web running 3 times on the survivors after "+victim.name+" died")

	// It comes back: its old instance is not started again (the table moved on).
	back := restartAgent(t, victim, victim.gossipPort(), flags...)
	ps = append(ps, back)
	byName[back.name] = back
	settled(alive(ps), victim.name+" back: still exactly 3 web, mon on every node")
	eventually(t, 60*time.Second, "3 voters again", func() bool {
		_, _, ok := agreedCoordinator(alive(ps), "plant", 3)
		return ok
	})

	// The coordinator's host dies: a new coordinator, still exactly 3, no duplicates.
	coord = agreed(alive(ps))
	killHost(t, byName[coord])
	settled(alive(ps), "exactly 3 web after the coordinator "+coord+"'s host died")

	// An agent restarts (not its host): its instances are adopted, same processes, and
	// nothing moves.
	var keep *proc
	coord = agreed(alive(ps))
	for _, p := range alive(ps) {
		if p.name != coord && len(instancePids(p.dataDir)) >= 2 {
			keep = p
			break
		}
	}
	if keep == nil {
		t.Fatalf("no live node but the coordinator %s runs 2 instances or more", coord)
	}
	before := instancePids(keep.dataDir)
	tableBefore := table(alive(ps))
	_ = keep.cmd.Process.Signal(syscall.SIGKILL)
	<-keep.done
	again := restartAgent(t, keep, keep.gossipPort(), flags...)
	ps = append(ps, again)
	eventually(t, 30*time.Second, keep.name+" restarted and reports its instances running", func() bool {
		v, ok := workloadsOf(again.http, "")
		return ok && running(v, "mon")[keep.name] == 1
	})
	if after := instancePids(keep.dataDir); !equalPids(before, after) {
		t.Errorf("%s's instances after an agent restart = %v, want the same processes %v (adopted)", keep.name, after, before)
	}
	settled(alive(ps), "still exactly 3 web after "+keep.name+"'s agent restarted")
	tableAfter := table(alive(ps))
	if a, b := placementsOf(tableBefore), placementsOf(tableAfter); !slices.Equal(a, b) {
		t.Errorf("an agent restart moved work: before %v, after %v", a, b)
	}

	// The coordinator's agent restarts at once (Raft state intact, so it may lead again
	// before gossip brought it the fleet): no instance elsewhere is touched.
	live := alive(ps)
	coord = agreed(live)
	var cp *proc
	others := map[string]map[string]int{}
	for _, p := range live {
		if p.name == coord {
			cp = p
		} else {
			others[p.name] = instancePids(p.dataDir)
		}
	}
	_ = cp.cmd.Process.Signal(syscall.SIGKILL)
	<-cp.done
	ps = append(ps, restartAgent(t, cp, cp.gossipPort(), flags...))
	settled(alive(ps), "still exactly 3 web after the coordinator "+coord+"'s agent restarted")
	for _, p := range alive(ps) {
		if want, ok := others[p.name]; ok {
			if got := instancePids(p.dataDir); !equalPids(want, got) {
				t.Errorf("%s's instances changed when the coordinator's agent restarted: %v, were %v", p.name, got, want)
			}
		}
	}

	// Update web (a new command): every replica moves to the new version, two-phase, so
	// at no observation do fewer than 3 web processes live.
	oldIDs := map[string]bool{}
	for _, w := range table(alive(ps)).Workloads {
		if w.Intent == "web" {
			oldIDs[w.Instance] = true
		}
	}
	postIntent(t, alive(ps)[0].http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: web}
spec:
  replicas: 3
  driver: exec
  command: ["/bin/sleep", "3601"]
  resources: {cpu: 50m, memory: 16Mi}
`), "")
	fewest := 3
	eventuallyWhy(t, 30*time.Second, "web updated: 3 new instances running, the old ones gone", func() (bool, string) {
		live := alive(ps)
		procs := processes(live, "web")
		if n := total(procs); n < fewest {
			fewest = n
		}
		v, ok := workloadsOf(live[0].http, "")
		if !ok {
			return false, live[0].name + " does not answer GET /v1/workloads"
		}
		n, old := 0, false
		var seen []string
		for _, w := range v.Workloads {
			if w.Intent != "web" {
				continue
			}
			seen = append(seen, w.Instance+"@"+w.Node+"="+w.State)
			old = old || oldIDs[w.Instance]
			if w.State == runtime.StateRunning {
				n++
			}
		}
		why := fmt.Sprintf("table %v, web processes per node %v", seen, procs)
		return !old && n == 3 && total(procs) == 3, why
	})
	if fewest < 3 {
		t.Errorf("during the update only %d web processes were live at one point, want 3 at all times", fewest)
	}

	// Delete: every web process stops; mon keeps running.
	if out, err := exec.Command(murmurBin(t), "delete", "web", "--addr", alive(ps)[0].http).CombinedOutput(); err != nil {
		t.Fatalf("delete web: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "no web process left anywhere", func() bool {
		v, ok := workloadsOf(alive(ps)[0].http, "")
		return ok && total(processes(ps, "web")) == 0 && total(running(v, "web")) == 0 && total(processes(alive(ps), "mon")) == len(alive(ps))
	})
}

func maps(a, b map[string]int) bool {
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

func equalPids(a, b map[string]int) bool { return maps(a, b) }

func placementsOf(v coordinator.View) []string {
	var out []string
	for _, w := range v.Workloads {
		if w.State == runtime.StateRunning {
			out = append(out, w.Instance+"@"+w.Node)
		}
	}
	sort.Strings(out)
	return out
}
