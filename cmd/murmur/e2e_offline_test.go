package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

type assignmentsView struct {
	Source     string    `json:"source"`
	Since      time.Time `json:"since"`
	Reason     string    `json:"reason"`
	From       string    `json:"from"`
	Generation uint64    `json:"generation"`
	Instances  int       `json:"instances"`
}

func assignmentsOf(addr string) (assignmentsView, bool) {
	var st struct {
		Assignments assignmentsView `json:"assignments"`
	}
	if err := getJSON(addr, "/v1/status", &st); err != nil {
		return assignmentsView{}, false
	}
	return st.Assignments, true
}

// A site loses power; one device boots with no network (no peer reachable). Its
// instances run again from disk, its status says it runs its last-known assignment and
// since when; once the others are back, the coordinator's table is followed again and
// the global workload runs exactly once per node.
//
// MURMUR_OFFLINE_ROUNDS=N repeats the cut-off boot N times and logs the time from the
// agent's start to its instance process being live (the BENCHMARKS.md figure).
func TestRealOfflineRebootRunsFromDisk(t *testing.T) {
	ports := make([]int, 3)
	var seeds []string
	for i := range ports {
		ports[i] = freePort(t)
		seeds = append(seeds, "--join", fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	flags := append([]string{"--region", "site"}, seeds...)
	var ps []*proc
	for i, port := range ports {
		ps = append(ps, startAgent(t, fmt.Sprintf("o%d", i+1), port, flags...))
	}
	eventually(t, 60*time.Second, "a coordinator with 3 voters", func() bool {
		_, _, ok := agreedCoordinator(ps, "site", 3)
		return ok
	})
	postIntent(t, ps[0].http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: cam}
spec:
  mode: global
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 10m, memory: 8Mi}
`), "")
	eventually(t, 30*time.Second, "one cam instance live on each node", func() bool {
		for _, p := range ps {
			if len(instancePids(p.dataDir)) != 1 {
				return false
			}
		}
		return true
	})
	for _, p := range ps {
		a, ok := assignmentsOf(p.http)
		if !ok || a.Source != "coordinator" || a.Instances != 1 {
			t.Fatalf("%s before the outage: assignments %+v, want source coordinator with 1 instance", p.name, a)
		}
	}

	// The whole site loses power.
	before := instancePids(ps[0].dataDir)
	for _, p := range ps {
		killHost(t, p)
	}
	rounds := 1
	if n, _ := strconv.Atoi(os.Getenv("MURMUR_OFFLINE_ROUNDS")); n > 0 {
		rounds = n
	}
	var took []time.Duration
	var lone *proc
	for r := 0; r < rounds; r++ {
		old := before
		if lone != nil {
			old = instancePids(lone.dataDir)
			killHost(t, lone)
		}
		// A rebooted device has no process left from before: wait until the killed
		// instance is gone (reaped), or the supervisor would first wait for it to die.
		eventually(t, 10*time.Second, "the killed instance reaped", func() bool {
			for _, pid := range old {
				if syscall.Kill(pid, 0) == nil {
					return false
				}
			}
			return true
		})
		// o1 boots alone: no --join, and its peers are down anyway.
		start := time.Now()
		lone = startAgentIn(t, "o1", ports[0], ps[0].dataDir, "--region", "site")
		eventually(t, 10*time.Second, "o1's instance live again from disk", func() bool { return len(instancePids(lone.dataDir)) == 1 })
		took = append(took, time.Since(start))
		eventually(t, 10*time.Second, "o1 says it runs its last-known assignment", func() bool {
			a, ok := assignmentsOf(lone.http)
			return ok && a.Source == "last_known" && a.Instances == 1 && a.From != "" && !a.Since.IsZero() && a.Reason != ""
		})
	}
	t.Logf("offline reboot → instance live from disk (agent start to process live), %d rounds: %v", rounds, took)

	// The others come back: the table is followed again, exactly one instance per node.
	back := []*proc{lone}
	for i := 1; i < 3; i++ {
		back = append(back, startAgentIn(t, ps[i].name, ports[i], ps[i].dataDir, flags...))
	}
	eventually(t, 60*time.Second, "the site agrees on a coordinator again", func() bool {
		_, _, ok := agreedCoordinator(back, "site", 0)
		return ok
	})
	eventually(t, 30*time.Second, "every node follows a coordinator again, one cam each", func() bool {
		for _, p := range back {
			a, ok := assignmentsOf(p.http)
			if !ok || a.Source != "coordinator" || len(instancePids(p.dataDir)) != 1 {
				return false
			}
		}
		v, ok := workloadsOf(back[0].http, "")
		return ok && total(running(v, "cam")) == 3
	})
}
