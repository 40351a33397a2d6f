package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
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
	beats := t.TempDir()
	postIntent(t, ps[0].http, []byte(fmt.Sprintf(`apiVersion: murmur/v1
kind: Workload
metadata: {name: lock}
spec:
  replicas: 1
  exclusive: true
  driver: exec
  command: [%q, "--beat-dir", %q, "--beat-every", "10ms"]
  resources: {cpu: 20m, memory: 16Mi}
`, workloadBin(t), beats)), "")
	runsOn := func() string {
		procs := processes(alive(ps), "lock")
		if total(procs) != 1 {
			return ""
		}
		for n := range procs {
			return n
		}
		return ""
	}
	eventually(t, 30*time.Second, "lock runs once", func() bool { return runsOn() != "" })

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
