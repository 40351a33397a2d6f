package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cmd := newRootCmd(log, os.Stdout)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "murmur-bench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks bad flags (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRootCmd(log *slog.Logger, out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "murmur-bench",
		Short: "Measure a real murmur fleet on 127.0.0.1: join latency, failure detection, idle cost, workload placement",
		Long: `murmur-bench launches real agents from --bin on 127.0.0.1 in a temporary directory,
measures, prints the figures and a markdown table, and kills every process it started
(also on Ctrl-C and on error).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, name := range []string{"join", "kill", "idle", "failover", "handoff", "intents"} {
		root.AddCommand(newSubCmd(name, log, out))
	}
	root.AddCommand(newWorkloadsCmd(log, out))
	root.AddCommand(newSimCmd(log, out))
	root.AddCommand(newPlotCmd(out))
	return root
}

func newSubCmd(name string, log *slog.Logger, out io.Writer) *cobra.Command {
	var o options
	var runsSet bool
	c := &cobra.Command{Use: name, Args: cobra.NoArgs}
	switch name {
	case "join":
		c.Short = "Time until a new node is seen alive by every other node"
		c.Example = "  murmur-bench join --bin /tmp/murmur --nodes 5\n  murmur-bench join --bin /tmp/murmur --nodes 50 --runs 3"
	case "kill":
		c.Short = "SIGKILL a node repeatedly; time until every peer reports it dead"
		c.Example = "  murmur-bench kill --bin /tmp/murmur --nodes 5 --kills 20"
	case "idle":
		c.Short = "Leave a fleet idle; count false suspect/dead, sample RSS and CPU"
		c.Example = "  murmur-bench idle --bin /tmp/murmur --nodes 5 --duration 10m"
	case "failover":
		c.Short = "SIGKILL the region's coordinator repeatedly; time until every survivor names the same new one"
		c.Example = "  murmur-bench failover --bin /tmp/murmur --nodes 5 --kills 20"
	case "handoff":
		c.Short = "SIGTERM the region's coordinator (leadership transfer); time until every other node names the new one"
		c.Example = "  murmur-bench handoff --bin /tmp/murmur --nodes 5 --runs 20"
	case "intents":
		c.Short = "POST new intents, rotating over the nodes; time until every node stores the version"
		c.Example = "  murmur-bench intents --bin /tmp/murmur --nodes 5 --pushes 50\n  murmur-bench intents --bin /tmp/murmur --nodes 5 --pushes 50 --size 64Ki"
	}
	fs := c.Flags()
	fs.StringVar(&o.Bin, "bin", "", "murmur binary to launch (required)")
	fs.IntVar(&o.Nodes, "nodes", 5, "fleet size (for join: the size after the new node joined)")
	fs.IntVar(&o.Runs, "runs", 5, "join: repetitions, each with a fresh node (default 5, or 3 for --nodes > 20); handoff: number of SIGTERMs (default 20)")
	fs.IntVar(&o.Kills, "kills", 20, "kill, failover: number of SIGKILLs")
	fs.IntVar(&o.Pushes, "pushes", 50, "intents: number of intents pushed")
	var size string
	fs.StringVar(&size, "size", "0", "intents: bytes of padding (an env value) added to each intent, e.g. 64Ki")
	fs.IntVar(&o.Voters, "voters", 3, "failover, handoff: voters the region must list before each measurement")
	fs.DurationVar(&o.Trail, "trail-over", 1500*time.Millisecond, "failover, handoff: print what each survivor named, over time, for runs slower than this")
	fs.DurationVar(&o.RestoreTimeout, "restore-timeout", 2*time.Minute, "failover, handoff: bound on the restarted fleet agreeing on a coordinator with --voters voters")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "idle: measurement window")
	fs.DurationVar(&o.Poll, "poll", 20*time.Millisecond, "poll interval of each observer's /v1/members while timing an event")
	fs.DurationVar(&o.ConvergeTimout, "converge-timeout", 3*time.Minute, "bound on waiting for the initial fleet to converge")
	fs.DurationVar(&o.EventTimeout, "event-timeout", 30*time.Second, "bound on waiting for one measured event")
	fs.DurationVar(&o.Observe, "observe", time.Second, "idle: interval of the /v1/members and /proc samples of every agent")
	fs.DurationVar(&o.Settle, "settle", 10*time.Second, "join, kill: pause after the fleet converged, before measuring (idle measures from convergence)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "agents' --log-level")
	fs.StringVar(&o.Capacity, "capacity", "cpu=500m,memory=256Mi", "agents' --capacity")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (agent logs, data) after a successful run")
	fs.StringArrayVar(&o.ExtraArgs, "agent-arg", nil, "extra argument passed to every agent (repeatable; {name} is replaced by the agent's name), e.g. --agent-arg=--profile=wan or --agent-arg=--tls-cert=tls/{name}.pem")
	fs.IntVar(&o.PortBase, "port-base", 0, "count ports up from this base instead of taking free ephemeral ones (e.g. 40000; each agent uses about 14)")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		runsSet = cmd.Flags().Changed("runs")
		if name == "join" && !runsSet && o.Nodes > 20 {
			o.Runs = 3
		}
		if name == "handoff" && !runsSet {
			o.Runs = 20
		}
		if name == "intents" && !cmd.Flags().Changed("poll") {
			o.Poll = 10 * time.Millisecond
		}
		n, err := parseSize(size)
		if err != nil {
			return usageError{fmt.Errorf("--size: %w", err)}
		}
		o.Size = n
		if err := o.validate(name); err != nil {
			return usageError{err}
		}
		f, err := newFleet(o, log)
		if err != nil {
			return usageError{err}
		}
		ok := false
		defer func() { f.Close(o.Keep || !ok) }()
		fmt.Fprintf(out, "murmur-bench %s: bin=%s nodes=%d cores=%d loadavg(start)=%s\n", name, o.Bin, o.Nodes, goruntime.NumCPU(), loadavg())
		var runErr error
		switch name {
		case "join":
			runErr = runJoin(cmd.Context(), f, out)
		case "kill":
			runErr = runKill(cmd.Context(), f, out)
		case "idle":
			runErr = runIdle(cmd.Context(), f, out)
		case "failover":
			runErr = runCoordinatorLoss(cmd.Context(), f, out, name, syscall.SIGKILL, o.Kills)
		case "handoff":
			runErr = runCoordinatorLoss(cmd.Context(), f, out, name, syscall.SIGTERM, o.Runs)
		case "intents":
			runErr = runIntents(cmd.Context(), f, out)
		}
		fmt.Fprintf(out, "loadavg(end)=%s\n", loadavg())
		if runErr != nil {
			return fmt.Errorf("%s: %w (agent logs kept in %s)", name, runErr, f.dir)
		}
		ok = true
		return nil
	}
	return c
}

// startFleet starts n agents named prefix0..prefix{n-1}; the first is the seed the
// others join. It returns once every agent sees all n alive.
func startFleet(ctx context.Context, f *fleet, n int) ([]*agentProc, error) {
	var as []*agentProc
	for i := range n {
		a, err := f.add(fmt.Sprintf("n%02d", i))
		if err != nil {
			return nil, err
		}
		join := ""
		if i > 0 {
			join = as[0].gossipAddr()
		}
		if err := f.start(a, join); err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	t0 := time.Now()
	if err := f.waitAllAlive(ctx, as, names(as), f.opts.ConvergeTimout); err != nil {
		return nil, err
	}
	f.log.Info("fleet converged", "nodes", n, "after", time.Since(t0).Round(time.Millisecond))
	return as, nil
}
