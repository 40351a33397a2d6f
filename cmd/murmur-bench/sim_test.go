package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A small simulated fleet runs end to end: it converges, every measurement finds its
// event, and the last line carries every figure.
func TestSimSmallFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 9 agents for about half a minute")
	}
	var out bytes.Buffer
	o := simOptions{Nodes: 9, Regions: 1, Duration: 2 * time.Second, Kills: 1, Pushes: 2, Replicas: 2,
		Converge: 2 * time.Minute, Event: time.Minute, AgentLog: "error", JoinRate: 50,
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
	last := lines[len(lines)-1]
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
