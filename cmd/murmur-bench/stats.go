package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of samples by the nearest-rank
// method: the smallest sample such that at least p % of the samples are <= it. With 20
// samples p99 is therefore the maximum. It returns 0 for no samples.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

// summary is the distribution of one measured latency.
type summary struct {
	N                  int
	Min, P50, P99, Max time.Duration
	Mean               time.Duration
}

func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return summary{
		N:    len(samples),
		Min:  slices.Min(samples),
		P50:  percentile(samples, 50),
		P99:  percentile(samples, 99),
		Max:  slices.Max(samples),
		Mean: sum / time.Duration(len(samples)),
	}
}

// ms formats a duration in milliseconds, the unit the tables use.
func ms(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
}

// msFine is ms with a tenth of a millisecond below 10 ms: the coordinator's steps in
// one process take less than a millisecond, which ms shows as 0.
func msFine(d time.Duration) string {
	if d < 10*time.Millisecond {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return ms(d)
}

// procCPUTicks parses /proc/PID/stat and returns utime+stime in clock ticks.
// The command name (field 2) may contain spaces and parentheses, so fields are counted
// from the last ')'.
func procCPUTicks(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no ')' after the command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// After ')': state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9)
	// minflt(10) cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15).
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least %d", len(fields), stimeIdx+1)
	}
	u, err := strconv.ParseUint(fields[utimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat utime: %w", err)
	}
	s, err := strconv.ParseUint(fields[stimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat stime: %w", err)
	}
	return u + s, nil
}

// procRSSBytes parses /proc/PID/status and returns VmRSS in bytes.
func procRSSBytes(status []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc status VmRSS %q: want \"<n> kB\"", strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status VmRSS: %w", err)
		}
		if kb > math.MaxUint64/1024 {
			return 0, fmt.Errorf("parse /proc status VmRSS: %d kB overflows", kb)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("parse /proc status: %w", err)
	}
	return 0, errors.New("parse /proc status: no VmRSS line (process gone or a kernel thread)")
}

// options are the settings shared by all subcommands.
type options struct {
	Bin            string
	Nodes          int
	Runs           int
	Kills          int
	Duration       time.Duration
	Poll           time.Duration
	ConvergeTimout time.Duration
	EventTimeout   time.Duration
	Settle         time.Duration
	Observe        time.Duration
	LogLevel       string
	Capacity       string
	Keep           bool
	ExtraArgs      []string
	Pushes         int           // intents
	Size           int           // intents: padding bytes added to each body (from --size)
	Voters         int           // failover, handoff: voters the region settles on
	RestoreTimeout time.Duration // failover, handoff: bound on the fleet's recovery after a restart
	Trail          time.Duration // failover, handoff: print each survivor's views for runs slower than this
	PortBase       int           // 0: free ephemeral ports; else count up from here

	// workloads host|coordinator|apply
	Trials         int
	Workloads      int    // Workload intents (standing set, or applied per trial)
	Replicas       int    // replicas of each
	Command        string // the workloads' command line (split on spaces)
	InstanceCPU    string // resources.cpu of each Workload ("" = unset)
	InstanceMemory string // resources.memory of each Workload ("" = unset)
	Gap            time.Duration
}

// validate checks the options of subcommand cmd ("join", "kill" or "idle") and names
// the flag and the fix in its error.
func (o options) validate(cmd string) error {
	if o.Bin == "" {
		return errors.New("--bin is required: the murmur binary to launch (go build -o /tmp/murmur ./cmd/murmur)")
	}
	minNodes := 2
	switch cmd {
	case "kill", "failover", "handoff":
		minNodes = 3 // a seed, a victim and at least one observer besides the seed
	case "workloads host", "workloads coordinator":
		minNodes = 3 // a victim, the coordinator (or its successor) and an observer
	case "workloads apply":
		minNodes = 1
	}
	if o.Nodes < minNodes || o.Nodes > 200 {
		return fmt.Errorf("--nodes %d: want %d..200 for %s", o.Nodes, minNodes, cmd)
	}
	switch cmd {
	case "join":
		if o.Runs < 1 || o.Runs > 100 {
			return fmt.Errorf("--runs %d: want 1..100", o.Runs)
		}
	case "kill":
		if o.Kills < 1 || o.Kills > 1000 {
			return fmt.Errorf("--kills %d: want 1..1000", o.Kills)
		}
	case "idle":
		if o.Duration < 5*time.Second || o.Duration > 24*time.Hour {
			return fmt.Errorf("--duration %s: want 5s..24h", o.Duration)
		}
		if o.Observe < 100*time.Millisecond || o.Observe > o.Duration {
			return fmt.Errorf("--observe %s: want 100ms..--duration", o.Observe)
		}
	case "failover", "handoff":
		n, flag := o.Kills, "--kills"
		if cmd == "handoff" {
			n, flag = o.Runs, "--runs"
		}
		if n < 1 || n > 1000 {
			return fmt.Errorf("%s %d: want 1..1000", flag, n)
		}
		if o.Voters < 1 || o.Voters > o.Nodes-1 {
			return fmt.Errorf("--voters %d: want 1..%d (--nodes minus one, so a survivor can take over)", o.Voters, o.Nodes-1)
		}
		if o.RestoreTimeout < time.Second {
			return fmt.Errorf("--restore-timeout %s: want at least 1s", o.RestoreTimeout)
		}
	case "intents":
		if o.Pushes < 1 || o.Pushes > 1000 {
			return fmt.Errorf("--pushes %d: want 1..1000 (the agent's store holds 2000 intents)", o.Pushes)
		}
		if o.Size < 0 || o.Size > 900<<10 {
			return fmt.Errorf("--size %d bytes: want 0..900Ki (an intent's limit is 1Mi)", o.Size)
		}
	case "workloads host", "workloads coordinator", "workloads apply":
		if err := o.validateWorkloads(cmd); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown subcommand %q: use join, kill, idle, failover, handoff, intents or workloads host|coordinator|apply", cmd)
	}
	if o.PortBase != 0 && (o.PortBase < 1024 || o.PortBase > 65000) {
		return fmt.Errorf("--port-base %d: want 0 (free ephemeral ports) or 1024..65000", o.PortBase)
	}
	if o.Poll < time.Millisecond || o.Poll > 10*time.Second {
		return fmt.Errorf("--poll %s: want 1ms..10s", o.Poll)
	}
	if o.ConvergeTimout < time.Second {
		return fmt.Errorf("--converge-timeout %s: want at least 1s", o.ConvergeTimout)
	}
	if o.EventTimeout < time.Second {
		return fmt.Errorf("--event-timeout %s: want at least 1s", o.EventTimeout)
	}
	if o.Settle < 0 || o.Settle > 10*time.Minute {
		return fmt.Errorf("--settle %s: want 0..10m", o.Settle)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", o.LogLevel)
	}
	return nil
}

// sumMetric sums every sample of the metric name (any labels) in a Prometheus text
// exposition. found is false when no sample of it is present (memberlist creates its
// counters on first increment, so absent means zero).
func sumMetric(text []byte, name string) (sum float64, found bool, err error) {
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			end := bytes.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, false, fmt.Errorf("parse metric %s: unterminated labels in %q", name, line)
			}
			rest = rest[end+1:]
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0, false, fmt.Errorf("parse metric %s: no value in %q", name, line)
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			return 0, false, fmt.Errorf("parse metric %s: %w", name, err)
		}
		sum += v
		found = true
	}
	return sum, found, nil
}

// validateWorkloads checks the flags of the workloads subcommands.
func (o options) validateWorkloads(cmd string) error {
	if o.Trials < 1 || o.Trials > 1000 {
		return fmt.Errorf("--trials %d: want 1..1000", o.Trials)
	}
	if o.Workloads < 1 || o.Workloads > 500 {
		return fmt.Errorf("--workloads %d: want 1..500", o.Workloads)
	}
	if o.Replicas < 1 || o.Replicas > 100 {
		return fmt.Errorf("--replicas %d: want 1..100", o.Replicas)
	}
	if n := o.Workloads * o.Replicas; n > 2000 {
		return fmt.Errorf("--workloads × --replicas = %d instances: want at most 2000", n)
	}
	if o.Voters < 1 || o.Voters > o.Nodes {
		return fmt.Errorf("--voters %d: want 1..%d (--nodes), or 0 for the agents' automatic count", o.Voters, o.Nodes)
	}
	if o.RestoreTimeout < time.Second {
		return fmt.Errorf("--restore-timeout %s: want at least 1s", o.RestoreTimeout)
	}
	if o.Gap < 0 || o.Gap > time.Minute {
		return fmt.Errorf("--gap %s: want 0..1m", o.Gap)
	}
	if strings.TrimSpace(o.Command) == "" {
		return errors.New("--command is empty: name a program, e.g. \"/bin/sleep 86400\"")
	}
	for _, q := range []struct{ flag, v string }{{"--cpu", o.InstanceCPU}, {"--memory", o.InstanceMemory}} {
		if strings.ContainsAny(q.v, " \t\n{},:#\"'") {
			return fmt.Errorf("%s %q: want a plain quantity such as 10m or 6Mi", q.flag, q.v)
		}
	}
	return nil
}
