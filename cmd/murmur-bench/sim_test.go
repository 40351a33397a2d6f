package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A small simulated fleet runs end to end: it converges, every measurement finds its
// event, the sim: line carries every figure and --results appends them as one line.
func TestSimSmallFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 9 agents for about half a minute")
	}
	var out bytes.Buffer
	results := filepath.Join(t.TempDir(), "sim.jsonl")
	if err := os.WriteFile(results, []byte(`{"nodes":3,"dilation":1}`+"\n"), 0o644); err != nil { // a run before: appended to, not replaced
		t.Fatal(err)
	}
	o := simOptions{Results: results, Nodes: 9, Regions: 1, Duration: 2 * time.Second, Kills: 1, Pushes: 2, Replicas: 2,
		Converge: 2 * time.Minute, Event: time.Minute, AgentLog: "error", JoinRate: 50, Drain: time.Minute,
		Dilation: 2} // every timer twice as long: the dilated clock and timers are exercised end to end
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := runSim(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), &out); err != nil {
		t.Fatalf("sim: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-2] // then "appended the figures to …"
	re := regexp.MustCompile(`^sim: nodes=9 regions=1 dilation=2 detect_p99_ms=(\d+) intent_p999_ms=(\d+) gossip_bytes_per_node_s=(\d+) failover_p99_ms=(\d+)$`)
	m := re.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not match %s\n%s", last, re, out.String())
	}
	for i, name := range []string{"detect_p99_ms", "intent_p999_ms", "gossip_bytes_per_node_s", "failover_p99_ms"} {
		if v, _ := strconv.Atoi(m[i+1]); v <= 0 {
			t.Errorf("%s = %d: every figure is measured, none can be 0\n%s", name, v, out.String())
		}
	}
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runs, err := readResults(f, results)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("%d runs in %s, want the one before and this one", len(runs), results)
	}
	r := runs[1]
	if r.Nodes != 9 || r.Regions != 1 || r.Dilation != 2 || r.Cores < 1 || r.Time.IsZero() || r.Commit == "" {
		t.Errorf("run settings: %+v", r)
	}
	if r.DetectFirstN != 1 || r.DetectAllN != 8 || r.FailoverN != 1 || len(r.Intents) != 2 || r.Intents[0].Count != 2 || r.Intents[1].Count != 1 {
		t.Errorf("counts: detect first %d, every node %d, failover %d, intents %+v; want 1, 8 (the survivors), 1 and 2 small, 1 of 64 KiB",
			r.DetectFirstN, r.DetectAllN, r.FailoverN, r.Intents)
	}
	for name, v := range map[string]float64{"gossip out": r.GossipOutMean, "gossip in": r.GossipInMean, "gossip out max": r.GossipOutMax,
		"gossip in max": r.GossipInMax, "cpu": r.CPUPerAgent, "heap": r.HeapPerAgent, "detect p99": r.DetectAllP99, "failover p99": r.FailoverP99} {
		if v <= 0 {
			t.Errorf("%s = %v in the results line: every figure is measured", name, v)
		}
	}
	if !strings.Contains(out.String(), "broadcast queues drained") || r.QueueLeft != 0 || r.DrainMS <= 0 {
		t.Errorf("9 agents: want the join's broadcast backlog drained within a minute; results say %v ms, %d left\n%s", r.DrainMS, r.QueueLeft, out.String())
	}
	// The coordinator's part of the failover: one death, one replacement committed and
	// delivered, each a part of the whole.
	if r.CommitN != 1 || r.DeliverN != 1 || r.CommitP99 <= 0 || r.DeliverP99 <= 0 || r.CommitP99+r.DeliverP99 > r.FailoverP99 {
		t.Errorf("commit %d × %v ms, delivery %d × %v ms: want one each, above 0, together under the failover's %v ms",
			r.CommitN, r.CommitP99, r.DeliverN, r.DeliverP99, r.FailoverP99)
	}
	if got, want := int64(r.DetectAllP99), m[1]; strconv.FormatInt(got, 10) != want {
		t.Errorf("detect_all_p99_ms %v, the sim: line says %s", r.DetectAllP99, want)
	}
	t.Log(out.String())
}

func TestSimOptionsValidate(t *testing.T) {
	good := simOptions{Nodes: 100, Regions: 2, Duration: 10 * time.Second, Kills: 5, Pushes: 10, Replicas: 2, JoinRate: 50}
	if err := good.validate(); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
	for _, tt := range []struct {
		change func(*simOptions)
		want   string
	}{
		{func(o *simOptions) { o.Nodes = 2 }, "--nodes"},
		{func(o *simOptions) { o.Regions = 0 }, "--regions"},
		{func(o *simOptions) { o.Regions = 40 }, "each region needs 3 nodes"},
		{func(o *simOptions) { o.Loss = 1 }, "--loss"},
		{func(o *simOptions) { o.Kills = 50 }, "--kills"},
		{func(o *simOptions) { o.Pushes = 0 }, "--pushes"},
		{func(o *simOptions) { o.Duration = 0 }, "--duration"},
		{func(o *simOptions) { o.Latency = -time.Second }, "--latency"},
		{func(o *simOptions) { o.Replicas = 0 }, "--replicas"},
		{func(o *simOptions) { o.JoinRate = 0 }, "--join-rate"},
		{func(o *simOptions) { o.Dilation = 0.5 }, "--dilation"},
	} {
		o := good
		tt.change(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one naming %s", o, err, tt.want)
		}
	}
}
