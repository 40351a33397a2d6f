package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/murmur-edge/murmur/agent"
	"github.com/murmur-edge/murmur/agent/events"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/policy"
	"github.com/murmur-edge/murmur/runtime"
)

// simOptions are the flags of murmur-bench sim.
type simOptions struct {
	Nodes, Regions int
	Duration       time.Duration // idle window for the gossip bytes and CPU figures
	Settle         time.Duration // pause between convergence and the idle window
	Drain          time.Duration // then, bound on the broadcast backlog draining
	Loss           float64
	Latency        time.Duration
	Kills          int
	Pushes         int
	Replicas       int
	Converge       time.Duration
	Event          time.Duration
	AgentLog       string
	Dilation       float64 // K: 0 picks one from --nodes
	JoinRate       float64 // agents started per dilated second
	Results        string  // file a JSON line of every figure is appended to; "" for none
	CPUProfile     string  // file for a CPU profile of the run; "" for none
}

// autoDilation is the dilation sim picks for n agents on this machine: an idle agent
// costs about 1 % of a core in real time (BENCHMARKS.md, issue 14), so about 75 agents
// per core keep up with room for the measured bursts.
func autoDilation(n, cores int) float64 {
	return max(1, math.Ceil(float64(n)/float64(75*max(cores, 1))))
}

func (o simOptions) validate() error {
	switch {
	case o.Nodes < 3 || o.Nodes > 50000:
		return fmt.Errorf("--nodes %d: give 3 to 50000", o.Nodes)
	case o.Regions < 1 || o.Regions > o.Nodes:
		return fmt.Errorf("--regions %d: give 1 to --nodes (%d)", o.Regions, o.Nodes)
	case o.Nodes/o.Regions < 3:
		return fmt.Errorf("--regions %d for %d nodes: each region needs 3 nodes or more for its voters", o.Regions, o.Nodes)
	case o.Loss < 0 || o.Loss >= 1:
		return fmt.Errorf("--loss %v: give a probability in [0, 1)", o.Loss)
	case o.Latency < 0:
		return fmt.Errorf("--latency %v: must not be negative", o.Latency)
	case o.Kills < 0 || o.Kills >= o.Nodes/2:
		return fmt.Errorf("--kills %d: give 0 to %d (fewer than half the nodes)", o.Kills, o.Nodes/2-1)
	case o.Pushes < 1:
		return fmt.Errorf("--pushes %d: give 1 or more", o.Pushes)
	case o.Settle < 0:
		return fmt.Errorf("--settle %v: must not be negative", o.Settle)
	case o.Drain < 0:
		return fmt.Errorf("--drain-timeout %v: must not be negative", o.Drain)
	case o.Duration < time.Second:
		return fmt.Errorf("--duration %v: give 1s or more", o.Duration)
	case o.JoinRate <= 0:
		return fmt.Errorf("--join-rate %v: give agents per second, above 0", o.JoinRate)
	case o.Dilation != 0 && (o.Dilation < 1 || o.Dilation > 1000):
		return fmt.Errorf("--dilation %v: give 1 to 1000, or 0 to pick one from --nodes", o.Dilation)
	case o.Replicas < 1 || o.Replicas*o.Regions > o.Nodes/2:
		return fmt.Errorf("--replicas %d: give 1 to %d (instances per region; half the nodes at most)", o.Replicas, max(1, o.Nodes/2/o.Regions))
	}
	return nil
}

func newSimCmd(log *slog.Logger, out io.Writer) *cobra.Command {
	var o simOptions
	c := &cobra.Command{
		Use:   "sim",
		Short: "Run N full agents in this process over an in-memory network; measure detection, intents, gossip bytes and failover",
		Long: `sim runs --nodes full murmur agents in one process: gossip, intents, region Raft
groups, coordinators and assignments, over an in-memory network (gossiptest, with
--latency and --loss) and an in-memory Raft network, with a simulated runtime driver
that "runs" instances at once. Nodes are spread round-robin over --regions regions.

It waits for the fleet to converge, then measures:
  - gossip bytes per node per second (in and out) and CPU and heap per agent, idle
    for --duration;
  - intent dissemination: --pushes small intents and one of 64 KiB through random
    nodes; time until 99 %, 99.9 % and 100 % of the nodes stored each;
  - host death, --kills times, of a node running instances of a workload placed
    --replicas per region: its packets are dropped and its agent stopped; time until
    each other node declares it dead (node_dead events) and until its instances run
    elsewhere.

Time is dilated by --dilation K: every protocol timer (memberlist's probes, gossip and
push/pull, Raft's heartbeats and elections, the region and coordinator loops, the
supervisor, network latency) runs K times slower, all agents share one clock that runs
K times slower than the wall clock, and every figure is in that clock's time: what the
fleet would do on a machine K times faster. The default picks K from --nodes and the
cores (about 75 agents per core in real time). Durations given as flags are in the
dilated time too; a run lasts about K times longer. --dilation 1 runs in real time: at a
size that keeps up, runs at K=1 and K>1 should agree (BENCHMARKS.md compares them).
CPU per agent is CPU seconds per dilated second: what one agent costs in real time.

The last line is for scripts:
  sim: nodes=N regions=R dilation=K detect_p99_ms=N intent_p999_ms=N gossip_bytes_per_node_s=N failover_p99_ms=N

--results FILE appends every figure of the run, with its settings, commit and time, to
FILE as one JSON line (created if missing; checked before the fleet starts). Runs at
several sizes collect there, and murmur-bench plot --results FILE draws each figure
against N as a PNG beside a markdown table.`,
		Example:       "  murmur-bench sim --nodes 100 --regions 2\n  murmur-bench sim --nodes 200 --regions 4 --loss 0.01 --kills 5\n  murmur-bench sim --nodes 20 --regions 1 --results bench/sim.jsonl && murmur-bench plot --results bench/sim.jsonl",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	fs := c.Flags()
	fs.IntVar(&o.Nodes, "nodes", 100, "agents to run")
	fs.IntVar(&o.Regions, "regions", 2, "regions (nodes are spread round-robin)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "idle window for the gossip bytes and CPU figures")
	fs.DurationVar(&o.Settle, "settle", 15*time.Second, "pause after convergence before the idle window (the join's broadcasts drain)")
	fs.DurationVar(&o.Drain, "drain-timeout", 10*time.Minute, "after --settle, bound on waiting for the join's broadcast backlog to drain (the agents' murmur_gossip_broadcast_queue under one message each)")
	fs.Float64Var(&o.Loss, "loss", 0, "probability that a gossip packet is lost")
	fs.DurationVar(&o.Latency, "latency", 0, "one-way latency of every packet and stream")
	fs.IntVar(&o.Kills, "kills", 5, "host deaths to measure (one at a time)")
	fs.IntVar(&o.Pushes, "pushes", 10, "small intents to push (plus one of 64 KiB)")
	fs.IntVar(&o.Replicas, "replicas", 2, "instances per region of the workload the host deaths move")
	fs.DurationVar(&o.Converge, "converge-timeout", 3*time.Minute, "bound on the fleet converging")
	fs.DurationVar(&o.Event, "event-timeout", 60*time.Second, "bound on one measured event")
	fs.StringVar(&o.AgentLog, "agent-log-level", "error", "level of the agents' logs on stderr (debug, info, warn, error)")
	fs.Float64Var(&o.Dilation, "dilation", 0, "run every timer K times slower and report in the dilated time (0: pick K from --nodes)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof): where the agents' time goes")
	fs.StringVar(&o.Results, "results", "", "append one JSON line with every figure of the run to this file (JSONL; murmur-bench plot draws them against N)")
	fs.Float64Var(&o.JoinRate, "join-rate", 50, "agents started per (dilated) second: a fleet's devices come up over time, and 1,000 joining one seed at once is a join storm, not the steady state measured here")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.validate(); err != nil {
			return usageError{err}
		}
		return runSim(cmd.Context(), o, log, out)
	}
	return c
}

// simNode is one simulated agent.
type simNode struct {
	name, region string
	raftAddr     string
	reg          *prometheus.Registry // the agent's metrics
	a            *agent.Agent
	tr           *gossiptest.Transport
	drv          *runtime.SimDriver
	cancel       context.CancelFunc
	done         chan error
	dead         bool
}

type simFleet struct {
	o        simOptions
	clock    *runtime.DilatedClock // every agent's clock, and the measurements'
	log      *slog.Logger
	agentLog *slog.Logger // errors only: hundreds of agents share stderr
	gnet     *gossiptest.Network
	rnet     *region.InmemNetwork
	dir      string
	nodes    []*simNode

	mu     sync.Mutex                      // guards stored
	stored map[string]map[string]time.Time // intent → node → when it stored the first version
}

func runSim(ctx context.Context, o simOptions, log *slog.Logger, out io.Writer) error {
	var results *os.File
	if o.Results != "" { // before the fleet: an unwritable path costs no run
		var err error
		if results, err = openResults(o.Results); err != nil {
			return usageError{err}
		}
		defer results.Close()
	}
	var prof *os.File
	if o.CPUProfile != "" {
		var err error
		if prof, err = os.Create(o.CPUProfile); err != nil {
			return usageError{fmt.Errorf("--cpuprofile: %w", err)}
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "murmur-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lvl := new(slog.LevelVar)
	if err := lvl.UnmarshalText([]byte(o.AgentLog)); err != nil {
		return usageError{fmt.Errorf("--agent-log-level %q: give debug, info, warn or error", o.AgentLog)}
	}
	if o.Dilation == 0 {
		o.Dilation = autoDilation(o.Nodes, goruntime.NumCPU())
	}
	f := &simFleet{o: o, clock: runtime.NewDilatedClock(o.Dilation), log: log, agentLog: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), gnet: gossiptest.NewNetwork(), rnet: region.NewInmemNetwork(), dir: dir,
		stored: map[string]map[string]time.Time{}}
	f.gnet.SetLatency(f.real(o.Latency))
	f.rnet.SetTimeout(f.real(500 * time.Millisecond)) // raft's in-memory RPC timeout, dilated
	f.gnet.SetLoss(o.Loss)
	defer func() {
		if prof != nil {
			pprof.StopCPUProfile() // the run, not the teardown
		}
		lvl.Set(slog.LevelError + 4) // the teardown's RPC failures are not findings
		if stuck := f.stop(f.real(30 * time.Second)); len(stuck) > 0 {
			fmt.Fprintf(out, "sim: %d agents did not stop within 30 s (dilated) of being cancelled, e.g. %s; leaving them\n", len(stuck), strings.Join(stuck[:min(len(stuck), 5)], ", "))
		}
	}()
	fmt.Fprintf(out, "murmur-bench sim: nodes=%d regions=%d cores=%d latency=%v loss=%v dilation=%g (figures in dilated time)\n", o.Nodes, o.Regions, goruntime.NumCPU(), o.Latency, o.Loss, o.Dilation)

	start := f.clock.Now()
	if err := f.start(ctx); err != nil {
		return err
	}
	if err := f.converge(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "converged in %v\n", f.clock.Now().Sub(start).Round(time.Millisecond))
	if err := f.sleep(ctx, f.o.Settle); err != nil { // the joins' broadcasts drain: not what an idle fleet costs
		return err
	}
	// Then wait for the broadcast backlog of the join to drain: until it has, every
	// node gossips at its packet ceiling and the idle window would measure the join.
	drain, peak, left, err := f.drainQueues(ctx, f.o.Drain)
	if err != nil {
		return err
	}
	if left > 0 {
		fmt.Fprintf(out, "broadcast queues not drained after %v: %d messages still queued (peak %.1f per node); the idle window measures part of the join\n",
			f.o.Drain, left, peak)
	} else {
		fmt.Fprintf(out, "broadcast queues drained %v after convergence (peak %.1f messages per node)\n", (f.o.Settle + drain).Round(time.Millisecond), peak)
	}

	idle, err := f.idle(ctx)
	if err != nil {
		return err
	}
	intents, err := f.pushIntents(ctx)
	if err != nil {
		return err
	}
	detect, failover, err := f.hostDeaths(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\n| figure | value |\n|---|---|\n")
	fmt.Fprintf(out, "| gossip bytes per node per second, out / in (mean) | %.0f / %.0f |\n", idle.outPerNode, idle.inPerNode)
	fmt.Fprintf(out, "| gossip bytes per node per second, out / in (max node) | %.0f / %.0f |\n", idle.outMax, idle.inMax)
	fmt.Fprintf(out, "| the node that sent most | %s |\n", idle.busiest)
	fmt.Fprintf(out, "| CPU per agent, idle (CPU seconds per dilated second) | %.2f %% of a core |\n", idle.cpuPerAgent*100)
	fmt.Fprintf(out, "| machine load while idle (real CPU seconds per real second, %d cores) | %.2f |\n", goruntime.NumCPU(), idle.machineLoad)
	stalls := f.stalls()
	fmt.Fprintf(out, "| agent stalls over the run (murmur_gossip_stalls_total, all agents) | %d |\n", stalls)
	fmt.Fprintf(out, "| heap per agent | %.1f MiB |\n", idle.heapPerAgent/(1<<20))
	for _, r := range intents {
		fmt.Fprintf(out, "| intent %s to 99 / 99.9 / 100 %% of nodes (worst of %d) | %s / %s / %s |\n", r.label, r.n, ms(r.p99), ms(r.p999), ms(r.all))
	}
	ds, fs := summarize(detect.all), summarize(failover)
	fmt.Fprintf(out, "| detection, first node (p50 / p99 of %d deaths) | %s / %s |\n", len(detect.first), ms(percentile(detect.first, 50)), ms(percentile(detect.first, 99)))
	fmt.Fprintf(out, "| detection, every node (p50 / p99 of %d observations) | %s / %s |\n", ds.N, ms(ds.P50), ms(ds.P99))
	fmt.Fprintf(out, "| host death → instances running elsewhere (p50 / p99 of %d) | %s / %s |\n", fs.N, ms(fs.P50), ms(fs.P99))
	fmt.Fprintf(out, "| of which: dead in the coordinator's view → replacement committed (plan + Raft commit; p50 / p99 of %d deaths) | %s / %s |\n",
		len(detect.commit), msFine(percentile(detect.commit, 50)), msFine(percentile(detect.commit, 99)))
	fmt.Fprintf(out, "| of which: commit → the new host applied its assignment (delivery; p50 / p99 of %d deaths) | %s / %s |\n",
		len(detect.deliver), msFine(percentile(detect.deliver, 50)), msFine(percentile(detect.deliver, 99)))
	worst := time.Duration(0)
	for _, r := range intents {
		worst = max(worst, r.p999)
	}
	fmt.Fprintf(out, "\nsim: nodes=%d regions=%d dilation=%g detect_p99_ms=%d intent_p999_ms=%d gossip_bytes_per_node_s=%.0f failover_p99_ms=%d\n",
		o.Nodes, o.Regions, o.Dilation, ds.P99.Milliseconds(), worst.Milliseconds(), idle.outPerNode, fs.P99.Milliseconds())
	if results == nil {
		return nil
	}
	r := newSimResult(o, idle, intents, detect, failover)
	r.Stalls = stalls
	r.DrainMS, r.QueuePeak, r.QueueLeft = msOf(f.o.Settle+drain), peak, left
	if err := appendResult(results, r); err != nil {
		return fmt.Errorf("--results %s: %w", o.Results, err)
	}
	if err := results.Close(); err != nil {
		return fmt.Errorf("--results %s: %w", o.Results, err)
	}
	fmt.Fprintf(out, "appended the figures to %s\n", o.Results)
	return nil
}

// newSimResult is the --results line of a finished run.
func newSimResult(o simOptions, idle idleFigures, intents []intentFigure, det detection, failover []time.Duration) simResult {
	b := agent.BuildInfo()
	ds, fs := summarize(det.all), summarize(failover)
	r := simResult{
		Time: time.Now().UTC(), Version: b.Version, Commit: b.Commit,
		Nodes: o.Nodes, Regions: o.Regions, Dilation: o.Dilation, Cores: goruntime.NumCPU(),
		LatencyMS: msOf(o.Latency), Loss: o.Loss,
		GossipOutMean: idle.outPerNode, GossipInMean: idle.inPerNode, GossipOutMax: idle.outMax, GossipInMax: idle.inMax,
		CPUPerAgent: idle.cpuPerAgent, MachineLoad: idle.machineLoad, HeapPerAgent: idle.heapPerAgent,
		DetectFirstN: len(det.first), DetectFirstP50: msOf(percentile(det.first, 50)), DetectFirstP99: msOf(percentile(det.first, 99)),
		DetectAllN: ds.N, DetectAllP50: msOf(ds.P50), DetectAllP99: msOf(ds.P99),
		FailoverN: fs.N, FailoverP50: msOf(fs.P50), FailoverP99: msOf(fs.P99),
		CommitN: len(det.commit), CommitP50: msOf(percentile(det.commit, 50)), CommitP99: msOf(percentile(det.commit, 99)),
		DeliverN: len(det.deliver), DeliverP50: msOf(percentile(det.deliver, 50)), DeliverP99: msOf(percentile(det.deliver, 99)),
	}
	for _, in := range intents {
		r.Intents = append(r.Intents, intentResult{Label: in.label, SizeBytes: in.size, Count: in.n, P99: msOf(in.p99), P999: msOf(in.p999), P100: msOf(in.all)})
	}
	return r
}

// start builds and runs every agent; the first three of region 0 are the seeds.
func (f *simFleet) start(ctx context.Context) error {
	var seeds []string
	for i := range f.o.Nodes {
		name := fmt.Sprintf("n%05d", i)
		reg := fmt.Sprintf("r%02d", i%f.o.Regions)
		tr := f.gnet.NewTransport(name)
		nd := &simNode{name: name, region: reg, raftAddr: "127.0.0.1:" + strconv.Itoa(10000+i), tr: tr, drv: runtime.NewSimDriver(runtime.DriverExec), done: make(chan error, 1)}
		cfg := agent.Config{
			Name: name, Region: reg, Bind: tr.Addr(), RaftBind: nd.raftAddr, // an address on the in-memory Raft network, never bound
			HTTP: "127.0.0.1:0", DataDir: filepath.Join(f.dir, name), CoordinatorEligible: true,
			Capacity: agent.Resources{MilliCPU: 4000, MemoryBytes: 8 << 30},
			Join:     slices.Clone(seeds),
		}
		if len(seeds) < 3 {
			seeds = append(seeds, tr.Addr())
		}
		nd.reg = prometheus.NewRegistry()
		deps := agent.Deps{
			Registerer: nd.reg, Gatherer: nd.reg,
			Logger: f.agentLog.With("node", name), GossipTransport: tr, RaftNetwork: f.rnet,
			Drivers: map[string]runtime.Driver{runtime.DriverExec: nd.drv},
			Clock:   f.clock, Dilation: f.o.Dilation,
			OnIntentStored: func(intent string, _ policy.Version) { f.noteStored(intent, name) },
		}
		a, err := agent.New(cfg, deps)
		if err != nil {
			return fmt.Errorf("agent %s: %w", name, err)
		}
		nd.a = a
		actx, cancel := context.WithCancel(ctx)
		nd.cancel = cancel
		go func() { nd.done <- a.Run(actx) }()
		f.nodes = append(f.nodes, nd)
		if err := f.sleep(ctx, time.Duration(float64(time.Second)/f.o.JoinRate)); err != nil {
			return err
		}
	}
	bound := time.NewTimer(f.real(f.o.Converge))
	defer bound.Stop()
	for i, nd := range f.nodes {
		select {
		case <-nd.a.Ready():
		case err := <-nd.done:
			return fmt.Errorf("agent %s stopped: %v", nd.name, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-bound.C:
			notReady := 0
			for _, o := range f.nodes[i:] {
				select {
				case <-o.a.Ready():
				default:
					notReady++
				}
			}
			return fmt.Errorf("%d of %d agents not ready (joined and serving) within %v (%d agent stalls): at this size the machine may not keep up at dilation %g (try a larger --dilation)",
				notReady, len(f.nodes), f.o.Converge, f.stalls(), f.o.Dilation)
		}
	}
	return nil
}

// stop cancels every agent and waits up to bound in all for them to return; it names
// those that did not (a run that failed may leave agents blocked on each other).
func (f *simFleet) stop(bound time.Duration) (stuck []string) {
	for _, nd := range f.nodes {
		if nd.cancel != nil {
			nd.cancel()
		}
	}
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	expired := false
	for _, nd := range f.nodes {
		if nd.cancel == nil || nd.dead {
			continue
		}
		if !expired {
			select {
			case <-nd.done:
				continue
			case <-deadline.C:
				expired = true
			}
		}
		select {
		case <-nd.done:
		default:
			stuck = append(stuck, nd.name)
		}
	}
	return stuck
}

// stalls sums the agents' murmur_gossip_stalls_total: an agent that did not run for
// longer than a probe timeout. On a machine that keeps up with the dilation there are
// none; many mean the figures are the machine's, not murmur's.
func (f *simFleet) stalls() int {
	n := 0.0
	eachMetric(f.nodes, "murmur_gossip_stalls_total", func(m *dto.Metric) { n += m.GetCounter().GetValue() })
	return int(n)
}

// eachMetric calls fn with every sample of metric name in the registries of nodes.
func eachMetric(nodes []*simNode, name string, fn func(m *dto.Metric)) {
	for _, nd := range nodes {
		mfs, err := nd.reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					fn(m)
				}
			}
		}
	}
}

// real is the wall-clock length of a dilated duration.
func (f *simFleet) real(d time.Duration) time.Duration { return f.clock.Real(d) }

// sleep waits d of dilated time.
func (f *simFleet) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(f.real(d)):
		return nil
	}
}

// deadline is d of dilated time from now, on the dilated clock.
func (f *simFleet) deadline(d time.Duration) time.Time { return f.clock.Now().Add(d) }

func (f *simFleet) noteStored(intent, node string) {
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.stored[intent]
	if m == nil {
		m = map[string]time.Time{}
		f.stored[intent] = m
	}
	if _, ok := m[node]; !ok {
		m[node] = now
	}
}

func (f *simFleet) live() []*simNode {
	var out []*simNode
	for _, nd := range f.nodes {
		if !nd.dead {
			out = append(out, nd)
		}
	}
	return out
}

func simGet(addr, path string, v any) error {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// converge waits until sampled nodes see every node alive and every region has a
// coordinator with 3 voters.
func (f *simFleet) converge(ctx context.Context) error {
	deadline := f.deadline(f.o.Converge)
	rng := rand.New(rand.NewPCG(1, 2))
	var why string
	for f.clock.Now().Before(deadline) {
		why = f.convergedWhy(rng)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond): // poll period, bounded by the deadline
		}
	}
	return fmt.Errorf("the fleet did not converge within %v (%s; %d agent stalls): at this size the machine may not keep up at dilation %g (try a larger --dilation)", f.o.Converge, why, f.stalls(), f.o.Dilation)
}

func (f *simFleet) convergedWhy(rng *rand.Rand) string {
	live := f.live()
	for range 5 {
		nd := live[rng.IntN(len(live))]
		var ms struct {
			Members []struct {
				Name, Status string
			} `json:"members"`
		}
		if err := simGet(nd.a.HTTPAddr(), "/v1/members", &ms); err != nil {
			return err.Error()
		}
		alive := 0
		for _, m := range ms.Members {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != len(live) {
			return fmt.Sprintf("%s sees %d of %d alive", nd.name, alive, len(live))
		}
	}
	var rs struct {
		Regions []struct {
			Name, Coordinator string
			Voters            []string
		} `json:"regions"`
	}
	if err := simGet(live[0].a.HTTPAddr(), "/v1/regions", &rs); err != nil {
		return err.Error()
	}
	ok := 0
	for _, r := range rs.Regions {
		if r.Coordinator != "" && len(r.Voters) >= 3 {
			ok++
		}
	}
	if ok != f.o.Regions {
		return fmt.Sprintf("%d of %d regions have a coordinator and 3 voters or more", ok, f.o.Regions)
	}
	return ""
}

type idleFigures struct {
	outPerNode, inPerNode, outMax, inMax float64
	cpuPerAgent, heapPerAgent            float64
	machineLoad                          float64
	busiest                              string // the node that sent most, and what it is (seed, coordinator)
}

// role says what sets node i apart: a seed (every agent joined through the first
// three), a region's coordinator (murmur_region_is_leader), or nothing.
func (f *simFleet) role(i int) string {
	var roles []string
	if i < 3 {
		roles = append(roles, "seed")
	}
	lead := false
	eachMetric(f.nodes[i:i+1], "murmur_region_is_leader", func(m *dto.Metric) { lead = lead || m.GetGauge().GetValue() > 0 })
	if lead {
		roles = append(roles, "coordinator")
	}
	if len(roles) == 0 {
		return "neither seed nor coordinator"
	}
	return strings.Join(roles, ", ")
}

// idle measures gossip bytes, CPU and heap over the idle window.
func (f *simFleet) idle(ctx context.Context) (idleFigures, error) {
	type cnt struct{ out, in int64 }
	snap := func() []cnt {
		c := make([]cnt, len(f.nodes))
		for i, nd := range f.nodes {
			c[i] = cnt{nd.tr.Sent.Load(), nd.tr.Received.Load()}
		}
		return c
	}
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	before, t0, r0 := snap(), f.clock.Now(), time.Now()
	if err := f.sleep(ctx, f.o.Duration); err != nil {
		return idleFigures{}, err
	}
	after, el, realEl := snap(), f.clock.Now().Sub(t0).Seconds(), time.Since(r0).Seconds()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	var fig idleFigures
	for i := range f.nodes {
		o := float64(after[i].out-before[i].out) / el
		fig.outPerNode += o
		fig.inPerNode += float64(after[i].in-before[i].in) / el
		if o > fig.outMax {
			fig.outMax, fig.busiest = o, f.nodes[i].name+" ("+f.role(i)+")"
		}
		fig.inMax = max(fig.inMax, float64(after[i].in-before[i].in)/el)
	}
	n := float64(len(f.nodes))
	fig.outPerNode /= n
	fig.inPerNode /= n
	cpuSec := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()).Seconds()
	fig.cpuPerAgent = cpuSec / el / n
	fig.machineLoad = cpuSec / realEl
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	fig.heapPerAgent = float64(m.HeapInuse) / n
	return fig, nil
}

type intentFigure struct {
	label          string
	size           int // bytes of padding
	n              int
	p99, p999, all time.Duration
}

// pushIntents posts small intents and one 64 KiB one through random live nodes and
// times how long each takes to reach 99 %, 99.9 % and 100 % of the live nodes.
func (f *simFleet) pushIntents(ctx context.Context) ([]intentFigure, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	var small, big intentFigure
	small.label, big.label = "small", "64 KiB"
	for i := range f.o.Pushes + 1 {
		size, fig := 0, &small
		if i == f.o.Pushes {
			size, fig = 64<<10, &big
		}
		fig.size = size
		name := fmt.Sprintf("sim-intent-%d", i)
		body := simWorkload(name, 1, []string{"nowhere"}, size)
		live := f.live()
		at := f.clock.Now()
		if err := simPost(live[rng.IntN(len(live))].a.HTTPAddr(), body); err != nil {
			return nil, err
		}
		times, err := f.waitStored(ctx, name, len(live))
		if err != nil {
			return nil, err
		}
		lat := make([]time.Duration, len(times))
		for j, t := range times {
			lat[j] = t.Sub(at)
		}
		fig.n++
		fig.p99 = max(fig.p99, percentile(lat, 99))
		fig.p999 = max(fig.p999, percentile(lat, 99.9))
		fig.all = max(fig.all, slices.Max(lat))
	}
	return []intentFigure{small, big}, nil
}

func (f *simFleet) waitStored(ctx context.Context, name string, want int) ([]time.Time, error) {
	deadline := f.deadline(f.o.Event)
	for {
		f.mu.Lock()
		m := f.stored[name]
		n := len(m)
		var times []time.Time
		if n >= want {
			for _, t := range m {
				times = append(times, t)
			}
		}
		f.mu.Unlock()
		if times != nil {
			return times, nil
		}
		if f.clock.Now().After(deadline) {
			return nil, fmt.Errorf("intent %s reached %d of %d nodes within %v", name, n, want, f.o.Event)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond): // poll period, bounded by the deadline
		}
	}
}

func simWorkload(name string, replicas int, regions []string, pad int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  replicas: %d\n", name, replicas)
	if len(regions) > 0 {
		fmt.Fprintf(&b, "  regions: [%s]\n", strings.Join(regions, ", "))
	}
	b.WriteString("  driver: exec\n  command: [\"/bin/true\"]\n  resources: {cpu: 10m, memory: 8Mi}\n")
	if pad > 0 {
		fmt.Fprintf(&b, "  env: {PAD: %q}\n", strings.Repeat("x", pad))
	}
	return b.String()
}

func simPost(addr, body string) error {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post("http://"+addr+"/v1/intents", "application/yaml", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST /v1/intents: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// detection is what the host deaths measured: failure detection (the first node and
// every node), and for each death the coordinator's part of the failover, from the
// agents' own histograms: death in the coordinator's view → replacement committed
// (murmur_coordinator_replacement_seconds: plan and Raft commit) and commit → the new
// host applied its assignment (murmur_assignment_delivery_seconds), each the mean of
// the death's observations.
type detection struct{ first, all, commit, deliver []time.Duration }

// queued sums murmur_gossip_broadcast_queue over the live agents.
func (f *simFleet) queued() int {
	n := 0.0
	eachMetric(f.live(), "murmur_gossip_broadcast_queue", func(m *dto.Metric) { n += m.GetGauge().GetValue() })
	return int(n)
}

// drainQueues waits, at most bound, until the live agents' broadcast queues hold
// fewer messages than there are agents (under one each on average: what record
// changes keep in them when idle). It returns how long that took, the largest mean
// backlog per agent it saw, and what was still queued at the bound (0: drained).
func (f *simFleet) drainQueues(ctx context.Context, bound time.Duration) (took time.Duration, peak float64, left int, err error) {
	start := f.clock.Now()
	deadline := start.Add(bound)
	for {
		n, live := f.queued(), len(f.live())
		peak = max(peak, float64(n)/float64(max(live, 1)))
		if n < live {
			return f.clock.Now().Sub(start), peak, 0, nil
		}
		if f.clock.Now().After(deadline) {
			return f.clock.Now().Sub(start), peak, n, nil
		}
		if err := f.sleep(ctx, time.Second); err != nil {
			return 0, peak, n, err
		}
	}
}

// histTotals sums a histogram's sample sum (seconds) and count over every agent's
// registry (dead agents' included: theirs no longer change).
func (f *simFleet) histTotals(name string) (sum float64, count uint64) {
	eachMetric(f.nodes, name, func(m *dto.Metric) {
		sum += m.GetHistogram().GetSampleSum()
		count += m.GetHistogram().GetSampleCount()
	})
	return sum, count
}

// meanSince is the mean of the observations of histogram name made since (sum0,
// count0); ok is false when there were none.
func (f *simFleet) meanSince(name string, sum0 float64, count0 uint64) (time.Duration, bool) {
	sum, count := f.histTotals(name)
	if count <= count0 {
		return 0, false
	}
	return time.Duration((sum - sum0) / float64(count-count0) * float64(time.Second)), true
}

const (
	histReplacement = "murmur_coordinator_replacement_seconds"
	histDelivery    = "murmur_assignment_delivery_seconds"
)

// hostDeaths places a workload with --replicas instances per region, then kills, one
// at a time, a node that runs one: detection from every live node's node_dead event,
// failover from the simulated drivers.
func (f *simFleet) hostDeaths(ctx context.Context) (detection, []time.Duration, error) {
	var det detection
	var moved []time.Duration
	if f.o.Kills == 0 {
		return det, nil, nil
	}
	want := f.o.Replicas * f.o.Regions
	if err := simPost(f.live()[0].a.HTTPAddr(), simWorkload("sim-app", f.o.Replicas, nil, 0)); err != nil {
		return det, nil, err
	}
	if err := f.waitRunning(ctx, want, nil); err != nil {
		return det, nil, fmt.Errorf("placing sim-app: %w", err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for k := range f.o.Kills {
		var hosts []*simNode
		for _, nd := range f.live() {
			if nd.drv.Running() > 0 {
				hosts = append(hosts, nd)
			}
		}
		victim := hosts[rng.IntN(len(hosts))]
		rSum, rCount := f.histTotals(histReplacement)
		dSum, dCount := f.histTotals(histDelivery)
		at := f.clock.Now()
		f.gnet.SetDown(victim.name, true) // its packets are lost from now on, as with a power cut
		f.rnet.Down(victim.raftAddr)
		victim.dead = true
		victim.cancel()
		<-victim.done
		if err := f.waitRunning(ctx, want, victim); err != nil {
			return det, nil, fmt.Errorf("host death %d (%s): %w", k, victim.name, err)
		}
		moved = append(moved, f.clock.Now().Sub(at))
		if d, ok := f.meanSince(histReplacement, rSum, rCount); ok {
			det.commit = append(det.commit, d)
		}
		if d, ok := f.meanSince(histDelivery, dSum, dCount); ok {
			det.deliver = append(det.deliver, d)
		}
		first, all, err := f.detected(ctx, victim.name, at)
		if err != nil {
			return det, nil, fmt.Errorf("host death %d (%s): %w", k, victim.name, err)
		}
		det.first = append(det.first, first)
		det.all = append(det.all, all...)
	}
	return det, moved, nil
}

// waitRunning waits until the live nodes' simulated drivers run want instances, none
// of them on gone.
func (f *simFleet) waitRunning(ctx context.Context, want int, gone *simNode) error {
	deadline := f.deadline(f.o.Event)
	for {
		n := 0
		for _, nd := range f.live() {
			n += nd.drv.Running()
		}
		if n == want {
			return nil
		}
		if f.clock.Now().After(deadline) {
			return fmt.Errorf("%d of %d instances running after %v", n, want, f.o.Event)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond): // poll period, bounded by the deadline
		}
	}
}

// detected waits until every live node has recorded node_dead for name since at and
// returns the first and every node's delay.
func (f *simFleet) detected(ctx context.Context, name string, at time.Time) (time.Duration, []time.Duration, error) {
	deadline := f.deadline(f.o.Event)
	since := at.Add(-time.Millisecond).UTC().Format(time.RFC3339Nano)
	seen := map[string]time.Duration{}
	for {
		for _, nd := range f.live() {
			if _, ok := seen[nd.name]; ok {
				continue
			}
			evs, err := simEvents(nd.a.HTTPAddr(), since)
			if err != nil {
				return 0, nil, err
			}
			for _, e := range evs {
				if e.Type == events.TypeNodeDead && e.Node == name {
					seen[nd.name] = e.Time.Sub(at)
					break
				}
			}
		}
		if len(seen) == len(f.live()) {
			break
		}
		if f.clock.Now().After(deadline) {
			return 0, nil, fmt.Errorf("%d of %d nodes declared it dead within %v", len(seen), len(f.live()), f.o.Event)
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond): // poll period, bounded by the deadline
		}
	}
	all := make([]time.Duration, 0, len(seen))
	for _, d := range seen {
		all = append(all, d)
	}
	return slices.Min(all), all, nil
}

func simEvents(addr, since string) ([]events.Event, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/v1/events?type=" + events.TypeNodeDead + "&since=" + since)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("GET /v1/events: " + resp.Status)
	}
	var out []events.Event
	dec := json.NewDecoder(resp.Body)
	for {
		var e events.Event
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, e)
	}
}
