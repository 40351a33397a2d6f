package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealWitnessIdleCPU measures what witness duty costs an idle node (BENCHMARKS.md):
// a hub region of three and MURMUR_WITNESS_REGIONS (default 3) two-device regions, all
// of which prefer hub node h1 as their witness (--witness-for); h2 and h3 refuse the
// duty, so they are the baseline. Each agent's CPU is read from /proc over
// MURMUR_WITNESS_IDLE (a duration; unset skips the test: it is a measurement).
func TestRealWitnessIdleCPU(t *testing.T) {
	window, err := time.ParseDuration(os.Getenv("MURMUR_WITNESS_IDLE"))
	if err != nil || window <= 0 {
		t.Skip("set MURMUR_WITNESS_IDLE=2m (and MURMUR_WITNESS_REGIONS=1 or 3) to measure")
	}
	k := 3
	if s := os.Getenv("MURMUR_WITNESS_REGIONS"); s != "" {
		k, _ = strconv.Atoi(s)
	}
	// Two seeds: h1 restarts below, and an agent whose only seed is itself stays alone
	// (the others hold it "left" and do not look for it).
	seedPort, seed2Port := freePort(t), freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	seeds := []string{"--join", seed, "--join", fmt.Sprintf("127.0.0.1:%d", seed2Port)}
	var prefer []string
	for i := 1; i <= k; i++ {
		prefer = append(prefer, "--witness-for", fmt.Sprintf("r%d", i))
	}
	type spec struct{ name, region string }
	specs := []spec{{"h1", "hub"}, {"h2", "hub"}, {"h3", "hub"}}
	for i := 1; i <= k; i++ {
		specs = append(specs, spec{fmt.Sprintf("r%da", i), fmt.Sprintf("r%d", i)}, spec{fmt.Sprintf("r%db", i), fmt.Sprintf("r%d", i)})
	}
	var ps []*proc
	for _, s := range specs {
		args := append([]string{"--region", s.region, "--log-level", "info"}, seeds...)
		switch s.name {
		case "h1":
			args = append(args, prefer...)
		case "h2", "h3":
			args = append(args, "--witness=false")
		}
		port := freePort(t)
		switch s.name {
		case "h1":
			port = seedPort
		case "h2":
			port = seed2Port
		}
		ps = append(ps, startAgent(t, s.name, port, args...))
	}
	eventually(t, 120*time.Second, fmt.Sprintf("each of %d two-device regions has h1 as its witness", k), func() bool {
		rs := regions(ps[0].http)
		for i := 1; i <= k; i++ {
			r := rs[fmt.Sprintf("r%d", i)]
			if r.Coordinator == "" || len(r.Voters) != 3 || !slices.Equal(r.Witnesses, []string{"h1"}) {
				return false
			}
		}
		return rs["hub"].Coordinator != ""
	})
	// A coordinator costs more than a follower: measure h1 as a follower of hub, so the
	// difference to h2/h3 is the witness duty. If h1 leads hub, it restarts (SIGTERM
	// hands the lead over; its witness groups resume from its data dir).
	if rs := regions(ps[0].http); rs["hub"].Coordinator == "h1" {
		_ = ps[0].cmd.Process.Signal(syscall.SIGTERM)
		<-ps[0].done
		ps[0] = restartAgent(t, ps[0], seedPort, append(append([]string{"--region", "hub", "--log-level", "info"}, seeds...), prefer...)...)
		eventually(t, 120*time.Second, "h1 back as a follower of hub, still every region's witness", func() bool {
			rs := regions(ps[1].http)
			for i := 1; i <= k; i++ {
				r := rs[fmt.Sprintf("r%d", i)]
				if r.Coordinator == "" || len(r.Voters) != 3 || !slices.Equal(r.Witnesses, []string{"h1"}) {
					return false
				}
			}
			return rs["hub"].Coordinator != "" && rs["hub"].Coordinator != "h1"
		})
	}
	time.Sleep(10 * time.Second) // settle: the measurement starts from a quiet fleet, as murmur-bench idle does
	ticks := func() []uint64 {
		out := make([]uint64, len(ps))
		for i, p := range ps {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
			u, _ := strconv.ParseUint(f[11], 10, 64)
			s, _ := strconv.ParseUint(f[12], 10, 64)
			out[i] = u + s
		}
		return out
	}
	t0, start := ticks(), time.Now()
	time.Sleep(window) // the measurement window
	t1, took := ticks(), time.Since(start)
	rs := regions(ps[1].http)
	for i := 1; i <= k; i++ {
		if r := rs[fmt.Sprintf("r%d", i)]; r.Coordinator == "" || !slices.Equal(r.Witnesses, []string{"h1"}) {
			t.Errorf("after the window, r%d is %+v: the fleet was not in the measured state", i, r)
		}
	}
	var lines []string
	for i, p := range ps {
		pct := float64(t1[i]-t0[i]) / 100 / took.Seconds() * 100 // USER_HZ = 100
		role := "follower"
		if reg := specs[i].region; rs[reg].Coordinator == p.name {
			role = "coordinator"
		}
		if p.name == "h1" {
			role += fmt.Sprintf(", witness of %d regions", k)
		}
		lines = append(lines, fmt.Sprintf("%-4s %-4s %-36s %.2f %% of a core", p.name, specs[i].region, role, pct))
	}
	t.Logf("idle CPU over %v with %d two-device regions witnessed by h1:\n%s", took.Round(time.Second), k, strings.Join(lines, "\n"))
}
