package agent

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/agenttest"
)

// beatSlack is how long after its last beat an instance may still have run: the
// workload beats every 20 ms; a starved scheduler stretches that.
const beatSlack = 100 * time.Millisecond

func readBeats(t *testing.T, dir string) []agenttest.Interval {
	t.Helper()
	ivs, err := agenttest.ReadBeats(dir, beatSlack)
	if err != nil {
		t.Fatal(err)
	}
	return ivs
}

// onlyRunner is the node whose process table holds the one live instance of intent
// among nodes ("" when there is none, or more than one).
func onlyRunner(nodes []*inprocNode, intent string) string {
	return agenttest.SoleHost(processesOf(nodes, intent))
}

// beatWorkload is an exclusive exec workload that writes beat files (as
// testdata/workload --beat-dir does) with the shell, so this package needs no binary.
func beatWorkload(name, dir string) string {
	script := `f="` + dir + `/$MURMUR_INSTANCE-$MURMUR_EPOCH.beats"; echo "start $(date +%s%N)" >> "$f"; ` +
		`trap 'echo "stop $(date +%s%N)" >> "$f"; exit 0' TERM; while :; do echo "beat $(date +%s%N)" >> "$f"; sleep 0.02; done`
	return fmt.Sprintf("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  replicas: 1\n  exclusive: true\n  driver: exec\n"+
		"  command: [\"/bin/sh\", \"-c\", %q]\n  resources: {cpu: 50m, memory: 16Mi}\n", name, script)
}

// TestExclusiveNeverOverlapsUnderPartitions: an exclusive workload on a fleet of 5,
// through MURMUR_EXCLUSIVE_CYCLES (default 50) random partitions of one node (often
// the one running the instance, sometimes the coordinator's), each 0.2–3 s long, with
// 0–1 s between them. Its instances write their start and every 20 ms a beat to files
// on the host; no two intervals may overlap, and each new instance carries a higher
// epoch. After the last heal exactly one instance runs.
func TestExclusiveNeverOverlapsUnderPartitions(t *testing.T) {
	cycles := 50
	if s := os.Getenv("MURMUR_EXCLUSIVE_CYCLES"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MURMUR_EXCLUSIVE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (MURMUR_EXCLUSIVE_SEED replays the schedule), %d cycles", seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 1))
	f := startInprocFleetWith(t, 5, partitionRegion, func(c *Config) { c.Lease = 2 * time.Second })
	dir := t.TempDir()
	const intent = "lock"
	postIntent(t, f.nodes[0].http, beatWorkload(intent, dir))
	runsOn := func() string { return onlyRunner(f.nodes, intent) }
	eventuallyFleet(t, f, 30*time.Second, "the exclusive instance runs once", func() bool { return runsOn() != "" })

	maxProcs := 0
	for c := range cycles {
		var victim *inprocNode
		switch k := rng.IntN(10); {
		case k < 6:
			if n := runsOn(); n != "" {
				victim = f.node(n)
			}
		case k < 8:
			if coord, _, ok := f.agreedCoordinator(f.nodes, 0); ok {
				victim = f.node(coord)
			}
		}
		if victim == nil {
			victim = f.nodes[rng.IntN(len(f.nodes))]
		}
		cut := time.Duration(200+rng.IntN(2800)) * time.Millisecond
		f.partition(victim)
		// Sample the process tables while cut: never two at once (beat files are the
		// real check; this one catches a gross failure early, with the cycle number).
		for end := time.Now().Add(cut); time.Now().Before(end); {
			if n := sum(processesOf(f.nodes, intent)); n > maxProcs {
				maxProcs = n
			}
			if maxProcs > 1 {
				f.dumpLogs(40)
				t.Fatalf("cycle %d: %d instances of the exclusive workload run at once (victim %s)", c, maxProcs, victim.name)
			}
			time.Sleep(10 * time.Millisecond) // sampling period, bounded by the cut's length
		}
		f.heal()
		pause := time.Duration(rng.IntN(1000)) * time.Millisecond
		for end := time.Now().Add(pause); time.Now().Before(end); {
			if n := sum(processesOf(f.nodes, intent)); n > 1 {
				f.dumpLogs(40)
				t.Fatalf("cycle %d: %d instances of the exclusive workload run at once after the heal", c, n)
			}
			time.Sleep(10 * time.Millisecond) // sampling period, bounded by the pause
		}
	}
	eventuallyFleet(t, f, 30*time.Second, "after the last heal: exactly one instance runs", func() bool { return runsOn() != "" })

	ivs := readBeats(t, dir)
	total, pairs := agenttest.Overlaps(ivs)
	if total > 0 {
		t.Errorf("instances overlapped for %v in all: %v", total, pairs)
	}
	if why := agenttest.EpochsRise(ivs); why != "" {
		t.Error(why)
	}
	var gaps []time.Duration
	for i := 1; i < len(ivs); i++ {
		gaps = append(gaps, ivs[i].Start.Sub(ivs[i-1].End))
	}
	slices.Sort(gaps)
	minGap := time.Duration(0)
	if len(gaps) > 0 {
		minGap = gaps[0]
	}
	t.Logf("%d cycles: %d instances ran one after another, overlap %v, smallest gap between two %v", cycles, len(ivs), total, minGap.Round(time.Millisecond))
}

// TestWitnessPartitionKeepsExclusiveSingle: a two-node region (site) with a witness
// from hub runs an exclusive workload. A 1 + 1 partition: the device running it is cut
// from everything (its side does not reach the witness). Only the other side takes
// over, once the lease has run out; the cut-off device stops its instance before
// that, and reports its region headless. Then the device that does not run it is
// cut: nothing moves. Beat files prove the instances never overlapped.
func TestWitnessPartitionKeepsExclusiveSingle(t *testing.T) {
	site := map[string]bool{"n1": true, "n2": true}
	f := startInprocFleetWith(t, 5, "hub", func(c *Config) {
		c.Lease = 2 * time.Second
		c.Region, c.BootstrapExpect = "hub", 3
		if site[c.Name] {
			c.Region, c.BootstrapExpect = "site", 2
		}
	})
	witnessed := func() bool {
		for _, nd := range f.nodes {
			r, ok := regionOf(nd.http, "site")
			if !ok || r.Coordinator == "" || !site[r.Coordinator] || len(r.Voters) != 3 {
				return false
			}
		}
		return true
	}
	eventuallyFleet(t, f, 40*time.Second, "site has its own coordinator and 3 voters (one a witness)", witnessed)
	dir := t.TempDir()
	spec := strings.Replace(beatWorkload("lock", dir), "  exclusive: true\n", "  exclusive: true\n  regions: [site]\n", 1)
	postIntent(t, f.nodes[4].http, spec)
	siteNodes := []*inprocNode{f.node("n1"), f.node("n2")}
	runsOn := func() string { return onlyRunner(siteNodes, "lock") }
	eventuallyFleet(t, f, 30*time.Second, "lock runs once in site", func() bool { return runsOn() != "" })

	holder := f.node(runsOn())
	other := nodeIn(siteNodes, map[string]string{"n1": "n2", "n2": "n1"}[holder.name])
	f.partition(holder)
	eventuallyFleet(t, f, 20*time.Second, "lock runs on "+other.name+" only", func() bool {
		return runsOn() == other.name
	})
	eventuallyFleet(t, f, 20*time.Second, holder.name+" reports site headless", func() bool {
		r, ok := regionOf(holder.http, "site")
		return ok && r.Headless
	})
	f.heal()
	eventuallyFleet(t, f, 40*time.Second, "healed: one coordinator with its witness, lock once", func() bool {
		return witnessed() && runsOn() != ""
	})

	// Now the device that does not run it is cut off: its side has no witness, the
	// holder's does. Nothing moves.
	holder = f.node(runsOn())
	other = nodeIn(siteNodes, map[string]string{"n1": "n2", "n2": "n1"}[holder.name])
	f.partition(other)
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); { // two leases
		if n := runsOn(); n != holder.name {
			t.Fatalf("lock moved (now %q) when the device without it (%s) was cut off", n, other.name)
		}
		time.Sleep(20 * time.Millisecond) // sampling period, bounded by the two leases
	}
	f.heal()

	ivs := readBeats(t, dir)
	if total, pairs := agenttest.Overlaps(ivs); total > 0 {
		t.Errorf("instances overlapped for %v: %v", total, pairs)
	}
	t.Logf("%d instances in turn, no overlap", len(ivs))
}
