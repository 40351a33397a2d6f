package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func isAlive(st string, listed bool) bool    { return listed && st == "alive" }
func notAlive(st string, listed bool) bool   { return listed && st != "alive" }
func isDead(st string, listed bool) bool     { return listed && st == "dead" }
func goneOrLeft(st string, listed bool) bool { return !listed || st == "left" || st == "dead" }

// slowest returns the largest duration of column j: the time until ALL observers saw it.
func slowest(got [][]time.Duration, j int) time.Duration {
	var m time.Duration
	for _, row := range got {
		m = max(m, row[j])
	}
	return m
}

// fastest returns the smallest duration of column j: the time until the FIRST observer saw it.
func fastest(got [][]time.Duration, j int) time.Duration {
	m := time.Duration(-1)
	for _, row := range got {
		if m < 0 || row[j] < m {
			m = row[j]
		}
	}
	return m
}

func runJoin(ctx context.Context, f *fleet, out io.Writer) error {
	o := f.opts
	base, err := startFleet(ctx, f, o.Nodes-1)
	if err != nil {
		return err
	}
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	var seen, ready, gossip []time.Duration
	for run := range o.Runs {
		a, err := f.add(fmt.Sprintf("join%02d", run))
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := f.start(a, base[0].gossipAddr()); err != nil {
			return err
		}
		// Time until the newcomer's own API answers (process start-up), in parallel.
		readyc := make(chan time.Duration, 1)
		go func() {
			got, err := f.watch(ctx, []*agentProc{a}, a.name, t0, o.EventTimeout, func(string, bool) bool { return true })
			if err != nil {
				readyc <- -1
				return
			}
			readyc <- got[0][0]
		}()
		got, err := f.watch(ctx, base, a.name, t0, o.EventTimeout, isAlive)
		r := <-readyc
		if err != nil {
			return fmt.Errorf("run %d: %w; newcomer log tail:\n%s", run, err, logTail(a, 2000))
		}
		all := slowest(got, 0)
		seen = append(seen, all)
		ready = append(ready, r)
		if r >= 0 {
			gossip = append(gossip, all-r)
		}
		fmt.Fprintf(out, "run %d: %s seen alive by all %d others after %s (first %s; its API up after %s) loadavg=%s\n",
			run, a.name, len(base), ms(all), ms(fastest(got, 0)), ms(r), loadavg())
		// Leave gracefully so the next run starts from the same fleet; bounded.
		if err := f.stop(a, syscall.SIGTERM, 10*time.Second); err != nil {
			return err
		}
		if _, err := f.watch(ctx, base, a.name, time.Now(), o.EventTimeout, goneOrLeft); err != nil {
			return fmt.Errorf("run %d: newcomer never shown left: %w", run, err)
		}
	}
	s, rs, gs := summarize(seen), summarize(ready), summarize(gossip)
	fmt.Fprintf(out, "\n### join: %d-node fleet (%d runs, poll %s)\n\n", o.Nodes, o.Runs, o.Poll)
	fmt.Fprintf(out, "| measure | runs | p50 | max |\n|---|---|---|---|\n")
	fmt.Fprintf(out, "| start of the new agent's process → alive in every other node's /v1/members | %d | %s | %s |\n", s.N, ms(s.P50), ms(s.Max))
	fmt.Fprintf(out, "| start of the new agent's process → its own HTTP API answers | %d | %s | %s |\n", rs.N, ms(rs.P50), ms(rs.Max))
	fmt.Fprintf(out, "| its HTTP API answers → alive everywhere (difference per run) | %d | %s | %s |\n", gs.N, ms(gs.P50), ms(gs.Max))
	return nil
}

func runKill(ctx context.Context, f *fleet, out io.Writer) error {
	o := f.opts
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	var allDead, firstReport, firstDead, rejoin []time.Duration
	for k := range o.Kills {
		victim := as[1+k%(len(as)-1)]
		var observers []*agentProc
		for _, a := range as {
			if a != victim {
				observers = append(observers, a)
			}
		}
		load := loadavg()
		t0 := time.Now()
		if err := f.stop(victim, syscall.SIGKILL, 5*time.Second); err != nil {
			return err
		}
		got, err := f.watch(ctx, observers, victim.name, t0, o.EventTimeout, notAlive, isDead)
		if err != nil {
			return fmt.Errorf("kill %d of %s: %w", k, victim.name, err)
		}
		first, dead, fdead := fastest(got, 0), slowest(got, 1), fastest(got, 1)
		allDead, firstReport, firstDead = append(allDead, dead), append(firstReport, first), append(firstDead, fdead)

		t1 := time.Now()
		if err := f.start(victim, as[0].gossipAddr()); err != nil {
			return err
		}
		back, err := f.watch(ctx, observers, victim.name, t1, o.EventTimeout, isAlive)
		if err != nil {
			return fmt.Errorf("restart %d of %s: %w; log tail:\n%s", k, victim.name, err, logTail(victim, 2000))
		}
		rejoin = append(rejoin, slowest(back, 0))
		fmt.Fprintf(out, "kill %2d %s: first report %s, first dead %s, all dead %s; restarted, alive again everywhere after %s loadavg=%s\n",
			k, victim.name, ms(first), ms(fdead), ms(dead), ms(slowest(back, 0)), load)
		// Next kill only from a fully converged fleet.
		if err := f.waitAllAlive(ctx, as, names(as), o.EventTimeout); err != nil {
			return fmt.Errorf("after restart %d: %w", k, err)
		}
	}
	ad, fr, fd, rj := summarize(allDead), summarize(firstReport), summarize(firstDead), summarize(rejoin)
	fmt.Fprintf(out, "\n### kill: %d-node fleet, %d SIGKILLs (p99 is nearest-rank)\n\n", o.Nodes, o.Kills)
	fmt.Fprintf(out, "| measure | n | p50 | p99 | max | mean |\n|---|---|---|---|---|---|\n")
	row := func(label string, s summary) {
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s |\n", label, s.N, ms(s.P50), ms(s.P99), ms(s.Max), ms(s.Mean))
	}
	row("SIGKILL → ALL other nodes report `dead`", ad)
	row("SIGKILL → first peer reports it (`suspect` or `dead`)", fr)
	row("SIGKILL → first peer reports `dead`", fd)
	row("restart (same name, data dir) → alive at every other node", rj)
	return nil
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports (the kernel's ABI fixes it independently of CONFIG_HZ).
const clockTicks = 100

type agentSample struct {
	rssSum, rssMax uint64
	rssN           int
	ticks0, ticks1 uint64
}

func runIdle(ctx context.Context, f *fleet, out io.Writer) error {
	o := f.opts
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	samples := make([]agentSample, len(as))
	readTicks := func(i int) (uint64, error) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(f.pid(as[i])) + "/stat")
		if err != nil {
			return 0, fmt.Errorf("cpu of %s: %w", as[i].name, err)
		}
		return procCPUTicks(b)
	}
	for i := range as {
		if samples[i].ticks0, err = readTicks(i); err != nil {
			return err
		}
	}
	// memberlist's own counters (bridged into /metrics) see every suspicion and every
	// dead declaration, including ones shorter than the agent's view refresh.
	counters0, err := scrapeCounters(ctx, f, as)
	if err != nil {
		return err
	}
	type event struct {
		at                     time.Duration
		wall                   time.Time
		observer, target, stat string
	}
	var events []event
	counts := map[string]int{}
	// Who coordinates the region (as n00 sees it), sampled every tick: the Raft leader
	// does more work than the followers, so its CPU is reported separately.
	coordSamples := map[string]int{}
	coordChanges, lastCoord := 0, ""
	pollErrs, polls := 0, 0
	t0 := time.Now()
	deadline := time.NewTimer(o.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(o.Observe)
	defer tick.Stop()
	nextReport := time.Minute
loop:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			break loop
		case <-tick.C:
		}
		at := time.Since(t0)
		for i, a := range as {
			if f.exited(a) {
				return fmt.Errorf("agent %s exited during the idle run; log tail:\n%s", a.name, logTail(a, 2000))
			}
			b, err := os.ReadFile("/proc/" + strconv.Itoa(f.pid(a)) + "/status")
			if err == nil {
				var rss uint64
				if rss, err = procRSSBytes(b); err == nil {
					samples[i].rssSum += rss
					samples[i].rssMax = max(samples[i].rssMax, rss)
					samples[i].rssN++
				}
			}
			if err != nil {
				return fmt.Errorf("rss of %s: %w", a.name, err)
			}
			view, err := f.members(ctx, a)
			polls++
			if err != nil {
				pollErrs++
				continue
			}
			for _, t := range as {
				st, listed := view[t.name]
				if !listed {
					st = "missing"
				}
				if st != "alive" {
					counts[st]++
					if len(events) < 50 {
						events = append(events, event{at, time.Now(), a.name, t.name, st})
					}
				}
			}
		}
		if rv, err := f.region(ctx, as[0]); err == nil {
			coordSamples[rv.Coordinator]++
			if rv.Coordinator != lastCoord && lastCoord != "" {
				coordChanges++
			}
			lastCoord = rv.Coordinator
		}
		if at >= nextReport {
			f.log.Info("idle", "elapsed", at.Round(time.Second), "not-alive observations", counts, "loadavg", loadavg())
			nextReport += time.Minute
		}
	}
	window := time.Since(t0)
	counters1, err := scrapeCounters(ctx, f, as)
	if err != nil {
		return err
	}
	for i := range as {
		if samples[i].ticks1, err = readTicks(i); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\n### idle: %d-node fleet, %s (every node's /v1/members and /proc polled every %s; %d polls, %d poll errors)\n\n", o.Nodes, window.Round(time.Second), o.Observe, polls, pollErrs)
	coord, coordN, coordTotal := mainCoordinator(coordSamples)
	fmt.Fprintf(out, "coordinator (as %s saw it, sampled every %s): %q in %d of %d samples, %d changes\n\n", as[0].name, o.Observe, coord, coordN, coordTotal, coordChanges)
	fmt.Fprintf(out, "| agent | role | mean RSS | max RSS | CPU (%% of one core) |\n|---|---|---|---|---|\n")
	var rssAll, cpuAll, cpuFollowers, cpuCoord float64
	followers := 0
	for i, a := range as {
		s := samples[i]
		mean := float64(s.rssSum) / float64(max(s.rssN, 1)) / (1 << 20)
		cpu := float64(s.ticks1-s.ticks0) / clockTicks / window.Seconds() * 100
		rssAll += mean
		cpuAll += cpu
		role := "follower"
		if a.name == coord {
			role, cpuCoord = "coordinator", cpu
		} else {
			cpuFollowers += cpu
			followers++
		}
		fmt.Fprintf(out, "| %s | %s | %.1f MiB | %.1f MiB | %.2f %% |\n", a.name, role, mean, float64(s.rssMax)/(1<<20), cpu)
	}
	fmt.Fprintf(out, "| **mean per agent** | | %.1f MiB | | %.2f %% |\n", rssAll/float64(len(as)), cpuAll/float64(len(as)))
	if coord != "" {
		fmt.Fprintf(out, "| **coordinator** | | | | %.2f %% |\n", cpuCoord)
	}
	fmt.Fprintf(out, "| **mean per follower** | | | | %.2f %% |\n", cpuFollowers/float64(max(followers, 1)))
	fmt.Fprintf(out, "\n| observation of a member in a /v1/members answer | count |\n|---|---|\n")
	keys := []string{"suspect", "dead", "left", "missing"}
	for k := range counts {
		if k != "suspect" && k != "dead" && k != "left" && k != "missing" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys[4:])
	for _, k := range keys {
		fmt.Fprintf(out, "| not alive: `%s` | %d |\n", k, counts[k])
	}
	fmt.Fprintf(out, "\n| memberlist counter, summed over the agents (increase during the window) | count |\n|---|---|\n")
	for _, m := range idleCounters {
		fmt.Fprintf(out, "| `%s` | %.0f |\n", m, counters1[m]-counters0[m])
	}
	for _, e := range events {
		fmt.Fprintf(out, "  at %s (%s): %s saw %s as %s\n", e.at.Round(time.Second), e.wall.Format(time.TimeOnly), e.observer, e.target, e.stat)
	}
	return nil
}

// mainCoordinator returns the coordinator seen in most samples (ties: the smaller
// name; "" counts as no coordinator and never wins), its count and the total samples.
func mainCoordinator(samples map[string]int) (name string, n, total int) {
	for c, k := range samples {
		total += k
		if c == "" {
			continue
		}
		if k > n || (k == n && c < name) {
			name, n = c, k
		}
	}
	return name, n, total
}

// idleCounters are memberlist's go-metrics counters that reveal false positives:
// a node marking a peer suspect, a peer declared dead, and Lifeguard slowing probes.
var idleCounters = []string{
	"memberlist_msg_suspect_total",
	"memberlist_msg_dead_total",
	"memberlist_degraded_probe_total",
	"memberlist_degraded_timeout_total",
}

// scrapeCounters sums idleCounters over every agent's /metrics.
func scrapeCounters(ctx context.Context, f *fleet, as []*agentProc) (map[string]float64, error) {
	out := map[string]float64{}
	for _, a := range as {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.httpBase()+"/metrics", nil)
		if err != nil {
			cancel()
			return nil, err
		}
		resp, err := f.client.Do(req)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("metrics of %s: %w", a.name, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		resp.Body.Close()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", a.name, err)
		}
		for _, m := range idleCounters {
			v, _, err := sumMetric(body, m)
			if err != nil {
				return nil, fmt.Errorf("metrics of %s: %w", a.name, err)
			}
			out[m] += v
		}
	}
	return out, nil
}

// settle lets a freshly converged fleet finish its start-up work (bounded by d) so
// the measurement does not include it.
func settle(ctx context.Context, f *fleet, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	f.log.Info("settling", "for", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
