package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// The workloads subcommands measure placement on a real fleet: a host (agent and its
// instances) losing power and its instances running elsewhere again, the same for the
// region's coordinator, and apply → all replicas running. Every run also reports the
// agents' commit → supervisor delivery histogram.

const (
	scnHost        = "host"
	scnCoordinator = "coordinator"
	scnApply       = "apply"

	deliveryMetric = "murmur_assignment_delivery_seconds"

	// coordinatorGoal: power-off of the coordinator's host → its instances run
	// elsewhere, p99.
	coordinatorGoal = 3500 * time.Millisecond
)

func newWorkloadsCmd(log *slog.Logger, out io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "workloads",
		Short: "Workloads on a real fleet: host death → replaced, coordinator host death → replaced, apply → running",
		Long: `The workloads subcommands start a one-region fleet of real agents on 127.0.0.1, run exec
workloads on it (default /bin/sleep), and time what the operator and the process table
see. A killed host is SIGKILLed together with the process groups of its instances, like
a host losing power. Each run ends with the commit → supervisor delivery histogram
(murmur_assignment_delivery_seconds) summed over every agent, and kills every process
it started: agents and workload instances.`,
		Args: cobra.NoArgs,
	}
	for _, s := range []string{scnHost, scnCoordinator, scnApply} {
		c.AddCommand(newWorkloadsScenarioCmd(s, log, out))
	}
	return c
}

func newWorkloadsScenarioCmd(scn string, log *slog.Logger, out io.Writer) *cobra.Command {
	var o options
	c := &cobra.Command{Use: scn, Args: cobra.NoArgs}
	defWorkloads, defReplicas := 2, 0
	switch scn {
	case scnHost:
		c.Short = "Power off a host that is not the coordinator; time until its instances run elsewhere"
		c.Example = "  murmur-bench workloads host --bin bin/murmur --nodes 5 --trials 20"
	case scnCoordinator:
		c.Short = "Power off the region's coordinator host; time until its instances run elsewhere"
		c.Example = "  murmur-bench workloads coordinator --bin bin/murmur --nodes 5 --trials 20"
	case scnApply:
		defWorkloads, defReplicas = 1, 3
		c.Short = "Apply Workloads; time until every replica runs, then delete them"
		c.Example = "  murmur-bench workloads apply --bin bin/murmur --nodes 5 --trials 20\n  murmur-bench workloads apply --bin bin/murmur --nodes 10 --workloads 100 --replicas 3"
	}
	fs := c.Flags()
	fs.StringVar(&o.Bin, "bin", "", "murmur binary to launch (required)")
	fs.IntVar(&o.Nodes, "nodes", 5, "fleet size (one region)")
	fs.IntVar(&o.Trials, "trials", 20, "measured trials (apply: default 1 when --workloads > 10)")
	fs.IntVar(&o.Workloads, "workloads", defWorkloads, "Workload intents: host, coordinator: the standing set; apply: applied together in one POST per trial")
	fs.IntVar(&o.Replicas, "replicas", defReplicas, "replicas of each Workload; 0: --nodes (one instance of each Workload on every node, so every host, the coordinator too, runs some)")
	fs.StringVar(&o.Command, "command", "/bin/sleep 3600", "the workloads' command, split on spaces; a relative path is taken from the current directory (e.g. \"bin/workload --sleep 24h\")")
	fs.StringVar(&o.InstanceCPU, "cpu", "10m", "resources.cpu of each Workload (\"\" leaves it unset)")
	fs.StringVar(&o.InstanceMemory, "memory", "6Mi", "resources.memory of each Workload (\"\" leaves it unset; the exec runtime refuses less than 6Mi)")
	fs.IntVar(&o.Voters, "voters", 0, "host, coordinator: voters the region must list before each trial; 0: the agents' automatic count (3, or 5 with 7 or more nodes)")
	fs.DurationVar(&o.Poll, "poll", 20*time.Millisecond, "poll interval of the /v1/workloads and process-table observers (apply: default 50ms when --workloads > 10)")
	fs.DurationVar(&o.ConvergeTimout, "converge-timeout", 3*time.Minute, "bound on the initial fleet converging and its standing workloads running")
	fs.DurationVar(&o.EventTimeout, "event-timeout", 30*time.Second, "bound on one measured event")
	fs.DurationVar(&o.RestoreTimeout, "restore-timeout", 2*time.Minute, "bound on the fleet settling after a trial (all alive, agreed coordinator, desired instances running, no extra process)")
	fs.DurationVar(&o.Settle, "settle", 5*time.Second, "pause after the fleet converged (and its standing workloads run), before the first trial")
	fs.DurationVar(&o.Gap, "gap", time.Second, "pause between a settled fleet and the next trial")
	fs.StringVar(&o.LogLevel, "log-level", "info", "agents' --log-level")
	fs.StringVar(&o.Capacity, "capacity", "cpu=500m,memory=256Mi", "agents' --capacity")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (agent logs, data) after a successful run")
	fs.StringArrayVar(&o.ExtraArgs, "agent-arg", nil, "extra argument passed to every agent (repeatable; {name} is replaced by the agent's name), e.g. --agent-arg=--profile=wan or --agent-arg=--tls-cert=tls/{name}.pem")
	fs.IntVar(&o.PortBase, "port-base", 0, "count ports up from this base instead of taking free ephemeral ones (e.g. 40000; each agent uses about 14)")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if o.Replicas == 0 {
			o.Replicas = o.Nodes
		}
		if o.Voters == 0 {
			o.Voters = autoVoters(o.Nodes)
		}
		if scn == scnApply && o.Workloads > 10 {
			if !cmd.Flags().Changed("trials") {
				o.Trials = 1
			}
			if !cmd.Flags().Changed("poll") {
				o.Poll = 50 * time.Millisecond
			}
		}
		if err := o.validate("workloads " + scn); err != nil {
			return usageError{err}
		}
		argv, err := resolveCommand(o.Command)
		if err != nil {
			return usageError{fmt.Errorf("--command: %w", err)}
		}
		f, err := newFleet(o, log)
		if err != nil {
			return usageError{err}
		}
		ok := false
		defer func() { f.Close(o.Keep || !ok) }()
		fmt.Fprintf(out, "command: %s\n", shellJoin(os.Args))
		fmt.Fprintf(out, "murmur-bench workloads %s: bin=%s nodes=%d workloads=%d replicas=%d instance command=%q cores=%d loadavg(start)=%s dir=%s\n",
			scn, o.Bin, o.Nodes, o.Workloads, o.Replicas, argv, goruntime.NumCPU(), loadavg(), f.dir)
		r := &wlRun{f: f, o: f.opts, out: out, command: argv, retired: map[string]histogram{}}
		var runErr error
		switch scn {
		case scnHost, scnCoordinator:
			runErr = r.runReplace(cmd.Context(), scn)
		case scnApply:
			runErr = r.runApply(cmd.Context())
		}
		fmt.Fprintf(out, "loadavg(end)=%s\n", loadavg())
		if runErr != nil {
			return fmt.Errorf("workloads %s: %w (agent logs kept in %s)", scn, runErr, f.dir)
		}
		ok = true
		return nil
	}
	return c
}

// autoVoters is the agents' automatic voter count for a region of n eligible nodes
// (agent/region: 3, or 5 with 7 or more), capped at n.
func autoVoters(n int) int {
	if n >= 7 {
		return 5
	}
	return min(3, n)
}

// splitCommand splits --command on white space; it must name a program.
func splitCommand(s string) ([]string, error) {
	argv := strings.Fields(s)
	if len(argv) == 0 {
		return nil, errors.New("empty: name a program, e.g. \"/bin/sleep 86400\"")
	}
	return argv, nil
}

// resolveCommand splits --command and makes its program an absolute path: the agents
// run in the bench's temp dir, and each looks the program up itself.
func resolveCommand(s string) ([]string, error) {
	argv, err := splitCommand(s)
	if err != nil {
		return nil, err
	}
	p, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w (build bin/workload with `make workload`, or use /bin/sleep)", argv[0], err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return nil, err
	}
	argv[0] = p
	return argv, nil
}

// shellJoin quotes args for a POSIX shell, so the printed command line can be pasted.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		safe := a != ""
		for _, c := range a {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_./:=,@%+-", c)) {
				safe = false
				break
			}
		}
		if safe {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// workloadDocs returns one YAML document per name: an exec Workload with replicas
// instances of command.
func workloadDocs(names []string, replicas int, command []string, cpu, memory string) []byte {
	cmdJSON, _ := json.Marshal(command) // a JSON array is a YAML flow sequence
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  replicas: %d\n  driver: exec\n  command: %s\n", n, replicas, cmdJSON)
		var res []string
		if cpu != "" {
			res = append(res, "cpu: "+cpu)
		}
		if memory != "" {
			res = append(res, "memory: "+memory)
		}
		if len(res) > 0 {
			fmt.Fprintf(&b, "  resources: {%s}\n", strings.Join(res, ", "))
		}
	}
	return b.Bytes()
}

// wlRun is one run of a workloads subcommand.
type wlRun struct {
	f       *fleet
	o       options
	out     io.Writer
	as      []*agentProc
	command []string
	// retired holds each agent's delivery histogram as scraped just before its last
	// kill: a restarted agent's counters start from zero.
	retired map[string]histogram
}

func (r *wlRun) wantOf(names []string) map[string]int {
	want := make(map[string]int, len(names))
	for _, n := range names {
		want[n] = r.o.Replicas
	}
	return want
}

// apply POSTs the Workloads names to a and checks that the answer lists each one.
func (r *wlRun) apply(ctx context.Context, a *agentProc, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.EventTimeout)
	defer cancel()
	body := workloadDocs(names, r.o.Replicas, r.command, r.o.InstanceCPU, r.o.InstanceMemory)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.httpBase()+"/v1/intents", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := r.f.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST /v1/intents to %s: %w", a.name, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("POST /v1/intents to %s: %w", a.name, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /v1/intents to %s: HTTP %d: %s", a.name, resp.StatusCode, bytes.TrimSpace(rb))
	}
	for _, n := range names {
		if _, err := appliedVersion(rb, n); err != nil {
			return err
		}
	}
	return nil
}

// remove DELETEs the intent name through a.
func (r *wlRun) remove(ctx context.Context, a *agentProc, name string) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.EventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, a.httpBase()+"/v1/intents/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	resp, err := r.f.client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE /v1/intents/%s at %s: %w", name, a.name, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE /v1/intents/%s at %s: HTTP %d: %s", name, a.name, resp.StatusCode, bytes.TrimSpace(rb))
	}
	return nil
}

// view returns a's GET /v1/workloads (of one intent unless intent is "").
func (r *wlRun) view(ctx context.Context, a *agentProc, intent string) (wlView, error) {
	path := "/v1/workloads"
	if intent != "" {
		path += "?intent=" + url.QueryEscape(intent)
	}
	body, err := r.f.get(ctx, a, path)
	if err != nil {
		return wlView{}, err
	}
	return decodeWorkloads(body)
}

// waitSettled polls observer's /v1/workloads and the process table until both show
// exactly want (intent → instances, every one running), nothing of the intents in
// gone, and no other instance process. Bounded by timeout.
func (r *wlRun) waitSettled(ctx context.Context, observer *agentProc, want map[string]int, gone map[string]bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(max(r.o.Poll, 50*time.Millisecond))
	defer tick.Stop()
	var last string
	for {
		v, err := r.view(ctx, observer, "")
		switch {
		case err != nil:
			last = err.Error()
		default:
			ok, why := settledView(v, want, gone)
			if !ok {
				last = "/v1/workloads of " + observer.name + ": " + why
				break
			}
			ps, err := scanInstances(r.f.realDir, "")
			if err != nil {
				return err
			}
			if ok, why := settledProcs(countProcs(ps, ""), want); !ok {
				last = "process table: " + why
				break
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("workloads not settled after %s: %s", timeout, last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// respread deletes the standing workloads, waits until they are gone, applies them
// again and waits until they run, and returns how many instances each node runs.
func (r *wlRun) respread(ctx context.Context, a *agentProc, names []string, want map[string]int) (map[string]int, error) {
	gone := map[string]bool{}
	for _, n := range names {
		if err := r.remove(ctx, a, n); err != nil {
			return nil, err
		}
		gone[n] = true
	}
	if err := r.waitSettled(ctx, a, map[string]int{}, gone, r.o.ConvergeTimout); err != nil {
		return nil, fmt.Errorf("deleting the standing workloads: %w", err)
	}
	if err := r.apply(ctx, a, names); err != nil {
		return nil, err
	}
	if err := r.waitSettled(ctx, a, want, nil, r.o.ConvergeTimout); err != nil {
		return nil, fmt.Errorf("standing workloads applied again: %w", err)
	}
	v, err := r.view(ctx, a, "")
	if err != nil {
		return nil, err
	}
	onNode := map[string]int{}
	for _, w := range v.Workloads {
		if _, ok := want[w.Intent]; ok {
			onNode[w.Node]++
		}
	}
	return onNode, nil
}

// scrapeDelivery returns a's delivery histogram (empty when the agent has none yet).
func (r *wlRun) scrapeDelivery(ctx context.Context, a *agentProc) (histogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := r.f.get(ctx, a, "/metrics")
	if err != nil {
		return histogram{}, err
	}
	h, _, err := parseHistogram(body, deliveryMetric)
	if err != nil {
		return histogram{}, fmt.Errorf("metrics of %s: %w", a.name, err)
	}
	return h, nil
}

// deliveryTotal sums the delivery histogram over every agent, counting what agents
// observed before their last kill.
func (r *wlRun) deliveryTotal(ctx context.Context) (histogram, error) {
	var sum histogram
	for _, a := range r.as {
		var h histogram
		if !r.f.exited(a) { // a powered-off agent counts by what it had before
			var err error
			if h, err = r.scrapeDelivery(ctx, a); err != nil {
				return histogram{}, err
			}
		}
		h, err := h.add(r.retired[a.name])
		if err != nil {
			return histogram{}, err
		}
		if sum, err = sum.add(h); err != nil {
			return histogram{}, err
		}
	}
	return sum, nil
}

// accumulate adds to acc what every agent observed since the total from, and returns
// the total now.
func (r *wlRun) accumulate(ctx context.Context, acc *histogram, from histogram) (histogram, error) {
	now, err := r.deliveryTotal(ctx)
	if err != nil {
		return histogram{}, err
	}
	d, err := now.sub(from)
	if err != nil {
		return histogram{}, err
	}
	if *acc, err = acc.add(d); err != nil {
		return histogram{}, err
	}
	return now, nil
}

// pause waits d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// powerOff SIGKILLs victim's agent and, right after, the process group of each of its
// instances, like a host losing power; then it sweeps any instance the supervisor may
// have started in between. It returns how many instance processes it found at first.
func (r *wlRun) powerOff(victim *agentProc) (int, error) {
	pre, err := scanInstances(r.f.realDir, victim.name)
	if err != nil {
		return 0, err
	}
	r.f.mu.Lock()
	cmd, done := victim.cmd, victim.done
	r.f.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("SIGKILL %s: %w", victim.name, err)
	}
	for _, p := range pre {
		killProc(p)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return 0, fmt.Errorf("agent %s not reaped 5s after SIGKILL", victim.name)
	}
	if _, err := killInstances(r.f.realDir, victim.name, 5*time.Second); err != nil {
		return 0, fmt.Errorf("power off %s: %w", victim.name, err)
	}
	return len(pre), nil
}

// replaceTimes are the milestones of one host death, from the SIGKILL; -1 = not seen.
type replaceTimes struct {
	lost      time.Duration // view: every instance of the victim shown "lost"
	placed    time.Duration // view: desired placements of every intent on the survivors
	running   time.Duration // view: desired instances of every intent running on the survivors
	newCoord  time.Duration // view: answered by a coordinator other than the old one
	firstProc time.Duration // process table: a new instance process on a survivor
	procs     time.Duration // process table: desired live processes of every intent on the survivors
	slowPoll  time.Duration // the slowest /v1/workloads request of the trial
	viewErrs  int
	errs      string // the distinct /v1/workloads errors, with counts
}

// describeErrs lists distinct errors with their counts, most frequent first.
func describeErrs(errs map[string]int) string {
	ks := sortedKeys(errs)
	slices.SortStableFunc(ks, func(a, b string) int { return errs[b] - errs[a] })
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, "%d× %s; ", errs[k], k)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// watchReplace polls observer's /v1/workloads and the process table in parallel, every
// poll interval, until the survivors run want again. Bounded by EventTimeout.
func (r *wlRun) watchReplace(ctx context.Context, observer *agentProc, victim, oldCoord string, want map[string]int, prePIDs map[int]bool, t0 time.Time) (replaceTimes, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.EventTimeout)
	defer cancel()
	res := replaceTimes{lost: -1, placed: -1, running: -1, newCoord: -1, firstProc: -1, procs: -1}
	var viewErr, procErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		last := "no answer"
		errs := map[string]int{}
		err := pollAnswers(ctx, r.o.Poll, 16, func(ctx context.Context) (wlView, error) {
			return r.view(ctx, observer, "")
		}, func(v wlView, err error, asked, answered time.Time) bool {
			now := answered.Sub(t0)
			res.slowPoll = max(res.slowPoll, answered.Sub(asked))
			if err != nil {
				res.viewErrs++
				if len(errs) < 4 || errs[err.Error()] > 0 {
					errs[err.Error()]++
				}
				last = err.Error()
				return false
			}
			if res.newCoord < 0 && v.Coordinator != "" && v.Coordinator != oldCoord {
				res.newCoord = now
			}
			if res.lost < 0 && allLostOn(v, victim) {
				res.lost = now
			}
			if res.placed < 0 && reached(countView(v, want, victim, anyState), want) {
				res.placed = now
			}
			run := countView(v, want, victim, isRunning)
			if reached(run, want) {
				res.running = now
				return true
			}
			last = fmt.Sprintf("coordinator %s, generation %d, running on survivors %v, want %v", v.Coordinator, v.Generation, run, want)
			return false
		})
		res.errs = describeErrs(errs)
		if err != nil {
			viewErr = fmt.Errorf("/v1/workloads of %s: %w (last: %s)", observer.name, err, last)
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(r.o.Poll)
		defer tick.Stop()
		var last map[string]int
		for {
			ps, err := scanInstances(r.f.realDir, "")
			now := time.Since(t0)
			if err != nil {
				procErr = err
				return
			}
			if res.firstProc < 0 && slices.ContainsFunc(ps, func(p instProc) bool { return p.Node != victim && !prePIDs[p.PID] }) {
				res.firstProc = now
			}
			last = countProcs(ps, victim)
			if reached(last, want) {
				res.procs = now
				return
			}
			select {
			case <-ctx.Done():
				procErr = fmt.Errorf("process table: %w (live on survivors %v, want %v)", ctx.Err(), last, want)
				return
			case <-tick.C:
			}
		}
	})
	wg.Wait()
	return res, errors.Join(viewErr, procErr)
}

// runReplace is workloads host and workloads coordinator: a standing set of Workloads;
// per trial, power off a host (not the coordinator, or the coordinator), time until
// its instances run on the survivors, restart it and wait for a settled fleet.
func (r *wlRun) runReplace(ctx context.Context, scn string) error {
	o, f := r.o, r.f
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	r.as = as
	byName := map[string]*agentProc{}
	for _, a := range as {
		byName[a.name] = a
	}
	coord, err := f.waitCoordinator(ctx, as, "", o.Voters, o.ConvergeTimout)
	if err != nil {
		return err
	}
	var standing []string
	for i := range o.Workloads {
		standing = append(standing, fmt.Sprintf("bench-s%d", i))
	}
	want := r.wantOf(standing)
	if err := r.apply(ctx, as[0], standing); err != nil {
		return err
	}
	if err := r.waitSettled(ctx, as[0], want, nil, o.ConvergeTimout); err != nil {
		return fmt.Errorf("standing workloads: %w", err)
	}
	f.log.Info("standing workloads run", "workloads", len(standing), "replicas", o.Replicas, "coordinator", coord)
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	hTotal, err := r.deliveryTotal(ctx)
	if err != nil {
		return err
	}
	var hReplace, hRestart histogram // deliveries while replacing, and after the restarts
	var lostT, placedT, runT, procT, firstT, coordT, restoreT []time.Duration
	var instCount []int
	printed := false
	printSummary := func() {
		printed = true
		what := "a host that is not the coordinator"
		if scn == scnCoordinator {
			what = "the coordinator's host"
		}
		fmt.Fprintf(r.out, "\n### workloads %s: %d-node region, %d × power-off (SIGKILL of the agent and of its instances' process groups) of %s; %d Workloads × %d replicas of %s (poll %s, p99 nearest-rank)\n\n",
			scn, o.Nodes, len(runT), what, o.Workloads, o.Replicas, r.command[0], o.Poll)
		fmt.Fprintf(r.out, "| measure | n | p50 | p99 | max | mean |\n|---|---|---|---|---|---|\n")
		row := func(label string, ds []time.Duration) {
			s := summarize(ds)
			fmt.Fprintf(r.out, "| %s | %d | %s | %s | %s | %s |\n", label, s.N, ms(s.P50), ms(s.P99), ms(s.Max), ms(s.Mean))
		}
		row("SIGKILL → **all its instances `running` elsewhere** (a survivor's GET /v1/workloads: desired running per intent on the survivors)", runT)
		row("SIGKILL → **all its instances live elsewhere** (process table: desired live instance processes per intent on the survivors)", procT)
		row("SIGKILL → first replacement process live", firstT)
		row("SIGKILL → its instances shown `lost` (the coordinator sees the node dead)", lostT)
		row("SIGKILL → replacements placed (committed; listed on survivors)", placedT)
		if scn == scnCoordinator {
			row("SIGKILL → a survivor's /v1/workloads answered by the new coordinator", coordT)
		}
		row(fmt.Sprintf("restart (same name, data dir, ports) → settled (%d alive, %d voters, desired running, no extra process)", o.Nodes, o.Voters), restoreT)
		if scn == scnCoordinator {
			v, p := summarize(runT).P99, summarize(procT).P99
			verdict := "met"
			if max(v, p) > coordinatorGoal {
				verdict = "missed"
			}
			fmt.Fprintf(r.out, "\ngoal: p99 ≤ %s from the coordinator host's power-off to its instances running elsewhere — %s (view p99 %s, process table p99 %s, %d trials)\n",
				coordinatorGoal, verdict, ms(v), ms(p), len(runT))
		}
		if len(instCount) > 0 {
			fmt.Fprintf(r.out, "\ninstances on the powered-off host per trial: %v\n", instCount)
		}
	}
	defer func() { // on error: what was measured so far
		if !printed && len(runT) > 0 {
			printSummary()
		}
	}()
	for k := range o.Trials {
		observer := as[0]
		v, err := r.view(ctx, observer, "")
		if err != nil {
			return fmt.Errorf("trial %d: %w", k, err)
		}
		onNode := map[string]int{}
		for _, w := range v.Workloads {
			if _, ok := want[w.Intent]; ok {
				onNode[w.Node]++
			}
		}
		var victim *agentProc
		if scn == scnCoordinator {
			victim = byName[coord]
			if victim == nil {
				return fmt.Errorf("trial %d: coordinator %q is not one of the fleet's agents", k, coord)
			}
			if onNode[coord] == 0 {
				// Replacements stay where they were placed, so after earlier trials the
				// coordinator may run nothing: spread the standing workloads again.
				f.log.Info("the coordinator hosts no instance; applying the standing workloads again", "coordinator", coord, "placement", onNode)
				if onNode, err = r.respread(ctx, as[0], standing, want); err != nil {
					return fmt.Errorf("trial %d: %w", k, err)
				}
				if onNode[coord] == 0 {
					return fmt.Errorf("trial %d: the coordinator %s hosts no instance even after a fresh apply (placement %v); run one replica per node (--replicas = --nodes, the default)", k, coord, onNode)
				}
			}
		} else {
			var cands []*agentProc
			for _, a := range as {
				if a.name != coord && onNode[a.name] > 0 {
					cands = append(cands, a)
				}
			}
			if len(cands) == 0 {
				return fmt.Errorf("trial %d: no host but the coordinator %s runs an instance (placement %v)", k, coord, onNode)
			}
			victim = cands[k%len(cands)]
		}
		for _, a := range as {
			if a != victim && a.name != coord {
				observer = a
				break
			}
		}
		pre, err := scanInstances(f.realDir, "")
		if err != nil {
			return err
		}
		prePIDs := map[int]bool{}
		for _, p := range pre {
			prePIDs[p.PID] = true
		}
		hv, err := r.scrapeDelivery(ctx, victim)
		if err != nil {
			return err
		}
		if r.retired[victim.name], err = r.retired[victim.name].add(hv); err != nil {
			return err
		}

		load := loadavg()
		t0 := time.Now()
		type watchRes struct {
			t   replaceTimes
			err error
		}
		wc := make(chan watchRes, 1)
		go func() {
			t, err := r.watchReplace(ctx, observer, victim.name, coord, want, prePIDs, t0)
			wc <- watchRes{t, err}
		}()
		n, offErr := r.powerOff(victim)
		offAt := time.Since(t0)
		w := <-wc
		if offErr != nil {
			return fmt.Errorf("trial %d: %w", k, offErr)
		}
		if w.err != nil {
			return fmt.Errorf("trial %d, power-off of %s (%d instances): %w", k, victim.name, n, w.err)
		}
		if hTotal, err = r.accumulate(ctx, &hReplace, hTotal); err != nil {
			return err
		}
		runT, procT, instCount = append(runT, w.t.running), append(procT, w.t.procs), append(instCount, n)
		for _, p := range []struct {
			d  time.Duration
			to *[]time.Duration
		}{{w.t.firstProc, &firstT}, {w.t.lost, &lostT}, {w.t.placed, &placedT}, {w.t.newCoord, &coordT}} {
			if p.d >= 0 {
				*p.to = append(*p.to, p.d)
			}
		}

		t1 := time.Now()
		if err := f.start(victim, observer.gossipAddr()); err != nil {
			return err
		}
		if err := f.waitAllAlive(ctx, as, names(as), o.RestoreTimeout); err != nil {
			return fmt.Errorf("trial %d: restart of %s: %w", k, victim.name, err)
		}
		next, err := f.waitCoordinator(ctx, as, "", o.Voters, o.RestoreTimeout)
		if err != nil {
			return fmt.Errorf("trial %d: after restart of %s: %w", k, victim.name, err)
		}
		if err := r.waitSettled(ctx, as[0], want, nil, o.RestoreTimeout); err != nil {
			return fmt.Errorf("trial %d: after restart of %s: %w", k, victim.name, err)
		}
		restore := time.Since(t1)
		restoreT = append(restoreT, restore)
		if hTotal, err = r.accumulate(ctx, &hRestart, hTotal); err != nil {
			return err
		}
		extra := ""
		if scn == scnCoordinator {
			extra = fmt.Sprintf(", new coordinator answers %s", ms(w.t.newCoord))
		}
		fmt.Fprintf(r.out, "%s %2d: power-off of %s (%d instances, killed in %s; coordinator %s): lost %s, placed %s, running %s (view of %s), processes %s (first %s)%s; slowest poll %s, %d poll errors; restarted, settled after %s (coordinator %s) loadavg=%s\n",
			scn, k, victim.name, n, ms(offAt), coord, ms(w.t.lost), ms(w.t.placed), ms(w.t.running), observer.name, ms(w.t.procs), ms(w.t.firstProc), extra,
			ms(w.t.slowPoll), w.t.viewErrs, ms(restore), next, load)
		if w.t.errs != "" {
			fmt.Fprintf(r.out, "    /v1/workloads errors of %s: %s\n", observer.name, w.t.errs)
		}
		coord = next
		if err := pause(ctx, o.Gap); err != nil {
			return err
		}
	}
	printSummary()
	r.printDelivery(hReplace, "from each power-off until its instances ran elsewhere (the replacements)")
	r.printDelivery(hRestart, "from each restart until the fleet settled (the restarted node's assignment, stops of surplus instances)")
	return nil
}

// runApply is workloads apply: per trial, POST --workloads Workloads of --replicas
// replicas to one node (rotating), time until all run, then delete them and time until
// every process is gone.
func (r *wlRun) runApply(ctx context.Context) error {
	o, f := r.o, r.f
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	r.as = as
	if _, err := f.waitCoordinator(ctx, as, "", o.Voters, o.ConvergeTimout); err != nil {
		return err
	}
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	hTotal, err := r.deliveryTotal(ctx)
	if err != nil {
		return err
	}
	var hApply, hDelete histogram
	total := o.Workloads * o.Replicas
	var firstT, allT, procT, firstProcT, rttT, delT, unlistedT, stoppedT []time.Duration
	printed := false
	printSummary := func() {
		printed = true
		fmt.Fprintf(r.out, "\n### workloads apply: %d-node region, %d trials of %d Workload(s) × %d replicas = %d instances of %s in one POST, rotating over the nodes (poll %s, p99 nearest-rank)\n\n",
			o.Nodes, len(allT), o.Workloads, o.Replicas, total, r.command[0], o.Poll)
		fmt.Fprintf(r.out, "| measure | n | p50 | p99 | max | mean |\n|---|---|---|---|---|---|\n")
		row := func(label string, ds []time.Duration) {
			s := summarize(ds)
			fmt.Fprintf(r.out, "| %s | %d | %s | %s | %s | %s |\n", label, s.N, ms(s.P50), ms(s.P99), ms(s.Max), ms(s.Mean))
		}
		row(fmt.Sprintf("before POST → **all %d instances `running`** (GET /v1/workloads of the receiving node)", total), allT)
		row(fmt.Sprintf("before POST → all %d instance processes live (process table)", total), procT)
		row("before POST → first instance `running` (GET /v1/workloads)", firstT)
		row("before POST → first instance process live", firstProcT)
		row("POST /v1/intents round trip (stored durably on the receiving node)", rttT)
		row(fmt.Sprintf("first DELETE → all %d instance processes gone and none listed", total), delT)
		row("first DELETE → none listed (GET /v1/workloads)", unlistedT)
		row("first DELETE → no instance process left (process table)", stoppedT)
	}
	defer func() {
		if !printed && len(allT) > 0 {
			printSummary()
		}
	}()
	for k := range o.Trials {
		target := as[k%len(as)]
		var names []string
		for i := range o.Workloads {
			names = append(names, fmt.Sprintf("bench-a%d-%d", k, i))
		}
		want := r.wantOf(names)
		filter := ""
		if len(names) == 1 {
			filter = names[0]
		}
		load := loadavg()
		t0 := time.Now()
		var (
			wg                       sync.WaitGroup
			first, all, fproc, procs = time.Duration(-1), time.Duration(-1), time.Duration(-1), time.Duration(-1)
			viewErr, procErr         error
			wctx, cancel             = context.WithTimeout(ctx, o.EventTimeout)
			lastView                 string
			viewTrail, procTrail     trail
			lastProcs                map[string]int
		)
		wg.Go(func() {
			err := pollAnswers(wctx, o.Poll, 16, func(ctx context.Context) (wlView, error) {
				return r.view(ctx, target, filter)
			}, func(v wlView, err error, _, answered time.Time) bool {
				now := answered.Sub(t0)
				if err != nil {
					lastView = err.Error()
					return false
				}
				run := countView(v, want, "", isRunning)
				viewTrail.note(now, sumOf(run, want))
				if first < 0 && len(run) > 0 {
					first = now
				}
				if reached(run, want) {
					all = now
					return true
				}
				lastView = fmt.Sprintf("%d of %d running; not running: %s", sumOf(run, want), total, notRunning(v, want))
				return false
			})
			if err != nil {
				viewErr = fmt.Errorf("/v1/workloads of %s: %w (last: %s)", target.name, err, lastView)
			}
		})
		wg.Go(func() {
			tick := time.NewTicker(o.Poll)
			defer tick.Stop()
			for {
				ps, err := scanInstances(f.realDir, "")
				now := time.Since(t0)
				if err != nil {
					procErr = err
					return
				}
				lastProcs = countProcs(ps, "")
				procTrail.note(now, sumOf(lastProcs, want))
				if fproc < 0 && slices.ContainsFunc(names, func(n string) bool { return lastProcs[n] > 0 }) {
					fproc = now
				}
				if reached(lastProcs, want) {
					procs = now
					return
				}
				select {
				case <-wctx.Done():
					procErr = fmt.Errorf("process table: %w (%d of %d live)", wctx.Err(), sumOf(lastProcs, want), total)
					return
				case <-tick.C:
				}
			}
		})
		postErr := r.apply(wctx, target, names)
		rtt := time.Since(t0)
		if postErr != nil {
			cancel()
		}
		wg.Wait()
		cancel()
		if postErr != nil {
			return fmt.Errorf("trial %d: %w", k, postErr)
		}
		if err := errors.Join(viewErr, procErr); err != nil {
			return fmt.Errorf("trial %d (%d × %d via %s): %w", k, o.Workloads, o.Replicas, target.name, err)
		}
		firstT, allT, procT, firstProcT, rttT = append(firstT, first), append(allT, all), append(procT, procs), append(firstProcT, fproc), append(rttT, rtt)
		if hTotal, err = r.accumulate(ctx, &hApply, hTotal); err != nil {
			return err
		}

		t1 := time.Now()
		gone := map[string]bool{}
		for _, n := range names {
			if err := r.remove(ctx, target, n); err != nil {
				return fmt.Errorf("trial %d: %w", k, err)
			}
			gone[n] = true
		}
		unlisted, stopped, err := r.watchGone(ctx, target, want, t1)
		if err != nil {
			return fmt.Errorf("trial %d: after DELETE: %w", k, err)
		}
		if err := r.waitSettled(ctx, target, nil, gone, o.RestoreTimeout); err != nil {
			return fmt.Errorf("trial %d: after DELETE: %w", k, err)
		}
		del := max(unlisted, stopped)
		delT, unlistedT, stoppedT = append(delT, del), append(unlistedT, unlisted), append(stoppedT, stopped)
		if hTotal, err = r.accumulate(ctx, &hDelete, hTotal); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "apply %2d via %s: POST %s; first running %s, all %d running %s (view), processes %s (first %s); DELETE → none listed %s, no process %s loadavg=%s\n",
			k, target.name, ms(rtt), ms(first), total, ms(all), ms(procs), ms(fproc), ms(unlisted), ms(stopped), load)
		if total > 10 {
			fmt.Fprintf(r.out, "    running in /v1/workloads of %s over time: %s\n    live processes over time: %s\n    the last answer before all ran: %s\n", target.name, viewTrail, procTrail, lastView)
		}
		if err := pause(ctx, o.Gap); err != nil {
			return err
		}
	}
	printSummary()
	r.printDelivery(hApply, "from each POST until every instance ran")
	r.printDelivery(hDelete, "from each DELETE until every instance was gone")
	return nil
}

// watchGone polls a's /v1/workloads and the process table until neither holds an
// instance of the intents of want; it returns the time from t0 until each did.
// Bounded by EventTimeout.
func (r *wlRun) watchGone(ctx context.Context, a *agentProc, want map[string]int, t0 time.Time) (unlisted, stopped time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.EventTimeout)
	defer cancel()
	unlisted, stopped = -1, -1
	tick := time.NewTicker(r.o.Poll)
	defer tick.Stop()
	var last string
	for {
		if unlisted < 0 {
			v, err := r.view(ctx, a, "")
			if err == nil && sumOf(countView(v, want, "", anyState), want) == 0 {
				unlisted = time.Since(t0)
			} else if err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d instances still listed", sumOf(countView(v, want, "", anyState), want))
			}
		}
		if stopped < 0 {
			ps, err := scanInstances(r.f.realDir, "")
			if err != nil {
				return 0, 0, err
			}
			if n := sumOf(countProcs(ps, ""), want); n == 0 {
				stopped = time.Since(t0)
			} else {
				last = fmt.Sprintf("%d instance processes still live", n)
			}
		}
		if unlisted >= 0 && stopped >= 0 {
			return unlisted, stopped, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("instances not gone: %w (last: %s)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// notRunning counts the instances of want that v shows in a state other than running,
// by node and state.
func notRunning(v wlView, want map[string]int) string {
	by := map[string]int{}
	for _, w := range v.Workloads {
		if _, ok := want[w.Intent]; ok && w.State != "running" {
			by[w.Node+" "+w.State]++
		}
	}
	var b strings.Builder
	for _, k := range sortedKeys(by) {
		fmt.Fprintf(&b, "%s ×%d, ", k, by[k])
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// trail records a count over time, one entry per change, at most 40.
type trail []string

func (t *trail) note(at time.Duration, n int) {
	last := ""
	if len(*t) > 0 {
		last = (*t)[len(*t)-1]
	}
	e := fmt.Sprintf("%d", n)
	if strings.HasPrefix(last, e+"@") || len(*t) >= 40 {
		return
	}
	*t = append(*t, e+"@"+ms(at))
}

func (t trail) String() string { return strings.Join(t, " → ") }

func sumOf(counts, want map[string]int) int {
	n := 0
	for in := range want {
		n += counts[in]
	}
	return n
}

// printDelivery prints a delivery histogram observed during window.
func (r *wlRun) printDelivery(h histogram, window string) {
	fmt.Fprintf(r.out, "\n### commit → supervisor (`%s`, summed over all %d agents, %s)\n\n", deliveryMetric, len(r.as), window)
	if h.Count <= 0 {
		fmt.Fprintf(r.out, "no deliveries observed\n")
		return
	}
	q := func(p float64) string {
		v, over, ok := h.quantile(p)
		switch {
		case !ok:
			return "-"
		case over:
			return fmt.Sprintf("> %s", fmtSeconds(v))
		}
		return "≈ " + fmtSeconds(v)
	}
	fmt.Fprintf(r.out, "| measure | n | p50 | p99 | mean |\n|---|---|---|---|---|\n")
	fmt.Fprintf(r.out, "| commit of a plan on the coordinator → the node's supervisor holds the assignment (p50/p99 **bucket-estimated**: linear within a bucket, as histogram_quantile; mean exact) | %.0f | %s | %s | %s |\n",
		h.Count, q(0.50), q(0.99), fmtSeconds(h.Sum/h.Count))
	var b strings.Builder
	prev := 0.0
	for i, le := range h.Bounds {
		n := h.Counts[i] - prev
		prev = h.Counts[i]
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "≤%s: %.0f", fmtSeconds(le), n)
	}
	fmt.Fprintf(r.out, "\nbuckets: %s\n", b.String())
}

// fmtSeconds formats seconds as milliseconds, "+Inf" for the last bucket.
func fmtSeconds(s float64) string {
	if s > 1e300 {
		return "+Inf"
	}
	ms := s * 1000
	if ms < 10 {
		return fmt.Sprintf("%.2g ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// pollAnswers starts fetch every interval, with at most inFlight requests outstanding,
// and hands each answer to handle, one at a time, with the times it was asked and
// answered, until handle returns true (then it returns nil) or ctx ends (then ctx's
// error). A slow answer (an agent that waits for a dead coordinator) thus delays no
// later request; an answer overtaken by the answer to a later request is dropped, so
// handle sees the observer's state move forward only. It returns after every fetch
// it started has returned.
func pollAnswers[T any](ctx context.Context, interval time.Duration, inFlight int, fetch func(context.Context) (T, error), handle func(v T, err error, asked, answered time.Time) bool) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex // guards done and newest, and serialises handle
		done   bool
		newest time.Time // when the newest handled answer was asked
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, inFlight)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				asked := time.Now()
				v, err := fetch(ctx)
				answered := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if done || ctx.Err() != nil || asked.Before(newest) {
					return // an answer to an older question than one already handled
				}
				newest = asked
				if handle(v, err, asked, answered) {
					done = true
					cancel()
				}
			})
		case <-ctx.Done():
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if done {
				return nil
			}
			return parent.Err()
		case <-tick.C:
		}
	}
}
