package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
	ports := make([]int, 4)
	var flags []string
	for i := range ports {
		ports[i] = freePort(t)
		flags = append(flags, "--join", fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	flags = append([]string{"--region", "plant"}, flags...)
	var ps []*proc
	for i, port := range ports {
		ps = append(ps, startAgent(t, fmt.Sprintf("x%d", i+1), port, flags...))
	}
	eventually(t, 60*time.Second, "a coordinator with 3 voters", func() bool {
		_, _, ok := agreedCoordinator(ps, "plant", 3)
		return ok
	})
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
			if runsOn() == "" {
				return false
			}
			for _, p := range alive(ps) {
				ms := members(p.http)
				if len(ms) != len(ports) {
					return false
				}
				for _, m := range ms {
					if m.Status != "alive" {
						return false
					}
				}
			}
			return true
		})
	}
	ivs := beatIntervals(t, beats)
	overlap := time.Duration(0)
	for i := 1; i < len(ivs); i++ {
		if ivs[i][0] < ivs[i-1][1] {
			overlap += time.Duration(min(ivs[i][1], ivs[i-1][1]) - ivs[i][0])
		}
	}
	if overlap > 0 {
		t.Errorf("exclusive instances overlapped for %v", overlap)
	}
	slices.Sort(took)
	t.Logf("exclusive workload, host death → running elsewhere: %d rounds, p50 %v, p99 %v, max %v; %d instances, overlap %v",
		len(took), took[len(took)/2].Round(time.Millisecond), took[(len(took)*99)/100].Round(time.Millisecond),
		took[len(took)-1].Round(time.Millisecond), len(ivs), overlap)
}

// beatIntervals reads the workload's beat files: [start, end] in Unix ns, sorted by
// start; end is the stop line, or the last beat plus 100 ms after a SIGKILL.
func beatIntervals(t *testing.T, dir string) [][2]int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.beats"))
	var out [][2]int64
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var iv [2]int64
		stopped := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			kind, ns, ok := strings.Cut(sc.Text(), " ")
			n, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil {
				continue
			}
			if iv[0] == 0 {
				iv[0] = n
			}
			iv[1], stopped = n, kind == "stop"
		}
		f.Close()
		if !stopped {
			iv[1] += int64(100 * time.Millisecond)
		}
		if iv[0] != 0 {
			out = append(out, iv)
		}
	}
	slices.SortFunc(out, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	return out
}
