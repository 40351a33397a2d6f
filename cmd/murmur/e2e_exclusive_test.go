package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/agenttest"
)

// An exclusive workload on real agents: the host running it dies (SIGKILL of the
// agent and its instances); it runs elsewhere only once the dead node's lease has run
// out, and never twice at once (the workload's beat files on the host). With
// MURMUR_EXCLUSIVE_ROUNDS=N (default 1) the death is repeated N times and the test
// logs p50/p99 of death → running elsewhere (BENCHMARKS.md).
func TestRealExclusiveHostDeath(t *testing.T) {
	rounds := 1
	if s := os.Getenv("MURMUR_EXCLUSIVE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	ps, flags := startPlant(t, "x", 4)
	beats, runsOn := startLock(t, &ps)

	var took []time.Duration
	for round := range rounds {
		victim := byName(alive(ps), runsOn())
		dead := time.Now()
		killHost(t, victim)
		eventually(t, 30*time.Second, fmt.Sprintf("round %d: lock runs on another node after %s's host died", round, victim.name), func() bool {
			n := runsOn()
			return n != "" && n != victim.name
		})
		took = append(took, time.Since(dead))
		back := restartAgent(t, victim, victim.gossipPort(), flags...)
		ps = append(ps, back)
		eventually(t, 60*time.Second, victim.name+" back and every node sees all alive, lock once", func() bool {
			return runsOn() != "" && allSeeAllAlive(alive(ps), 4)
		})
	}
	ivs, err := agenttest.ReadBeats(beats, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	overlap, pairs := agenttest.Overlaps(ivs)
	if overlap > 0 {
		t.Errorf("exclusive instances overlapped for %v: %v", overlap, pairs)
	}
	if why := agenttest.EpochsRise(ivs); why != "" {
		t.Error(why)
	}
	slices.Sort(took)
	t.Logf("exclusive workload, host death → running elsewhere: %d rounds, p50 %v, p99 %v, max %v; %d instances, overlap %v",
		len(took), took[len(took)/2].Round(time.Millisecond), took[(len(took)*99)/100].Round(time.Millisecond),
		took[len(took)-1].Round(time.Millisecond), len(ivs), overlap)
}

// The agent running an exclusive workload is restarted (SIGTERM, then started again on
// the same data dir: an upgrade, a config change): its instance dies with it, and it
// runs again, on that node or another, never twice at once. MURMUR_EXCLUSIVE_ROUNDS=N
// repeats the restart N times (default 6). The agents run with a 2 s lease
// (MURMUR_LEASE), so the coordinator's hold ends within the longest downtime.
func TestRealExclusiveAgentRestart(t *testing.T) {
	rounds := 6
	if s := os.Getenv("MURMUR_EXCLUSIVE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Setenv("MURMUR_LEASE", "2s") // the agents read it from their environment
	ps, flags := startPlant(t, "xr", 4)
	beats, runsOn := startLock(t, &ps)
	for round := range rounds {
		victim := byName(alive(ps), runsOn())
		_ = victim.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-victim.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: %s did not stop on SIGTERM", round, victim.name)
		}
		// Down for 0 to 2 s: the coordinator sees the leave at different stages
		// (not yet, held for the lease, lease over) when the node comes back.
		time.Sleep(time.Duration(round%6) * 400 * time.Millisecond)
		back := restartAgent(t, victim, victim.gossipPort(), flags...)
		ps = append(ps, back)
		eventually(t, 60*time.Second, fmt.Sprintf("round %d: %s back and every node sees all alive, lock once", round, victim.name), func() bool {
			return runsOn() != "" && allSeeAllAlive(alive(ps), 4)
		})
	}
	ivs, err := agenttest.ReadBeats(beats, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if overlap, pairs := agenttest.Overlaps(ivs); overlap > 0 {
		t.Errorf("exclusive instances overlapped for %v: %v", overlap, pairs)
	}
	if why := agenttest.EpochsRise(ivs); why != "" {
		t.Error(why)
	}
	t.Logf("%d restarts of the lock's agent: %d instances in turn", rounds, len(ivs))
}

// startLock pushes the exclusive workload "lock" (the test workload writing beat files
// every 10 ms) to the plant *ps and waits until it runs once. It returns the beat
// directory and runsOn, which names the one agent of *ps (as it is then) running the
// lock, or "" when not exactly one instance runs.
func startLock(t *testing.T, ps *[]*proc) (beats string, runsOn func() string) {
	t.Helper()
	beats = t.TempDir()
	postIntent(t, (*ps)[0].http, []byte(fmt.Sprintf(`apiVersion: murmur/v1
kind: Workload
metadata: {name: lock}
spec:
  replicas: 1
  exclusive: true
  driver: exec
  command: [%q, "--beat-dir", %q, "--beat-every", "10ms"]
  resources: {cpu: 20m, memory: 16Mi}
`, workloadBin(t), beats)), "")
	runsOn = func() string { return soleHost(processes(alive(*ps), "lock")) }
	eventually(t, 30*time.Second, "lock runs once", func() bool { return runsOn() != "" })
	return beats, runsOn
}
