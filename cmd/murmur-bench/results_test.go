package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testResult is a run as sim would write it.
func testResult(nodes int, k float64, detectP99 float64) simResult {
	return simResult{
		Time: time.Date(2026, 12, 11, 10, 0, nodes, 0, time.UTC), Version: "dev", Commit: "d53d650abcde",
		Nodes: nodes, Regions: 1, Dilation: k, Cores: 2, LatencyMS: 0.5, Loss: 0.01,
		GossipOutMean: 1100, GossipInMean: 1090, GossipOutMax: 1900, GossipInMax: 1850,
		CPUPerAgent: 0.004, MachineLoad: 0.9, HeapPerAgent: 3 << 20,
		Intents: []intentResult{
			{Label: "small", Count: 5, P99: 40, P999: 60, P100: 75},
			{Label: "64 KiB", SizeBytes: 64 << 10, Count: 1, P99: 300, P999: 330, P100: 362},
		},
		DetectFirstN: 3, DetectFirstP50: 1400, DetectFirstP99: 1500,
		DetectAllN: 114, DetectAllP50: 1590, DetectAllP99: detectP99,
		FailoverN: 3, FailoverP50: 1650, FailoverP99: 1810,
	}
}

func TestResultsRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	want := []simResult{testResult(9, 1, 1916), testResult(40, 4, 1778)}
	for _, r := range want {
		if err := appendResult(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want one per run:\n%s", n, buf.String())
	}
	got, err := readResults(&buf, "r.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
}

// The field names are the file format: a rename breaks every file written before it.
func TestResultsFieldNames(t *testing.T) {
	b, err := json.Marshal(testResult(9, 1, 1916))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"time":"2026-12-11T10:00:09Z"`, `"commit":`, `"nodes":9`, `"regions":1`, `"dilation":1`, `"cores":2`,
		`"latency_ms":0.5`, `"loss":0.01`, `"gossip_out_bytes_per_node_s":1100`, `"gossip_in_bytes_per_node_s":1090`,
		`"gossip_out_bytes_max_node_s":1900`, `"gossip_in_bytes_max_node_s":1850`, `"cpu_per_agent":0.004`, `"machine_load":0.9`,
		`"heap_bytes_per_agent":3145728`, `"label":"64 KiB","size_bytes":65536,"count":1,"p99_ms":300,"p999_ms":330,"p100_ms":362`,
		`"detect_first_count":3`, `"detect_first_p50_ms":1400`, `"detect_first_p99_ms":1500`, `"detect_all_count":114`,
		`"detect_all_p50_ms":1590`, `"detect_all_p99_ms":1916`, `"failover_count":3`, `"failover_p50_ms":1650`, `"failover_p99_ms":1810`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("line lacks %s:\n%s", f, b)
		}
	}
}

func TestResultsDecode(t *testing.T) {
	for _, tt := range []struct {
		line, want string // want: "" accepts
	}{
		{`{"nodes":9,"dilation":1}`, ""},
		{`{"nodes":9,"dilation":1,"from_a_newer_build":true}`, ""},
		{`  {"nodes":9,"dilation":2.5}  `, ""},
		{`{"nodes":9`, "not a sim result"},
		{`[1,2]`, "not a sim result"},
		{`{"nodes":"9","dilation":1}`, "not a sim result"},
		{`{"nodes":9,"dilation":1} {"nodes":9,"dilation":1}`, "more than one JSON value"},
		{`{"nodes":9,"dilation":1} x`, "more than one JSON value"},
		{`{"dilation":1}`, "nodes 0"},
		{`{"nodes":9}`, "dilation 0"},
		{`{"nodes":9,"dilation":1,"failover_p99_ms":-1}`, "failover_p99_ms -1"},
		{`{"nodes":9,"dilation":1,"intents":[{"count":1}]}`, "intents[0]: label is empty"},
		{`{"nodes":9,"dilation":1,"intents":[{"label":"small","p999_ms":-3}]}`, "intents[0] (small)"},
		{`{"nodes":9,"dilation":1e999}`, "not a sim result"},
	} {
		_, err := decodeResult([]byte(tt.line))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tt.line, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want one with %q", tt.line, err, tt.want)
		}
	}
}

func TestResultsReadErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"bad line", `{"nodes":9,"dilation":1}` + "\n\n" + `{"nodes":9,` + "\n", "r.jsonl:3: not a sim result"},
		{"bad field", `{"nodes":9,"dilation":1}` + "\n" + `{"nodes":0,"dilation":1}` + "\n", "r.jsonl:2: nodes 0"},
		{"too long", `{"nodes":9,"dilation":1,"version":"` + strings.Repeat("x", maxResultLine) + `"}`, "r.jsonl:1: line longer than"},
	} {
		_, err := readResults(strings.NewReader(tt.in), "r.jsonl")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one with %q", tt.name, err, tt.want)
		}
	}
	got, err := readResults(strings.NewReader("\n  \n"), "r.jsonl")
	if err != nil || len(got) != 0 {
		t.Errorf("blank lines: %v, %v; want no runs and no error", got, err)
	}
}

// An unwritable --results fails before any agent starts, naming the file.
func TestSimResultsUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "r.jsonl")
	o := simOptions{Nodes: 9, Regions: 1, Duration: 2 * time.Second, Kills: 1, Pushes: 2, Replicas: 2,
		Converge: time.Minute, Event: time.Minute, AgentLog: "error", JoinRate: 50, Dilation: 1, Results: path}
	var out bytes.Buffer
	t0 := time.Now()
	err := runSim(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want one naming %s", err, path)
	}
	var ue usageError
	if !errors.As(err, &ue) {
		t.Errorf("error %v is not a usage error (exit 2)", err)
	}
	if out.Len() != 0 || time.Since(t0) > 5*time.Second {
		t.Errorf("the fleet ran (%v, output %q): the path must be refused first", time.Since(t0), out.String())
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s: %v, want it still absent", filepath.Dir(path), err)
	}
}

// FuzzResultsDecode feeds arbitrary lines to the results decoder: it never panics, and
// what it accepts encodes and decodes back to the same result.
func FuzzResultsDecode(f *testing.F) {
	b, _ := json.Marshal(testResult(40, 4, 1778))
	f.Add(b)
	f.Add([]byte(`{"nodes":9,"dilation":1}`))
	f.Add([]byte(`{"nodes":9,"dilation":1,"intents":[{"label":"small","count":1,"p99_ms":1.5}]}`))
	f.Add([]byte(`{"nodes":9,"dilation":1,"time":"2026-12-11T10:00:00+01:00"}`))
	f.Add([]byte(`{"nodes":9`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := decodeResult(line)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := appendResult(&buf, r); err != nil {
			t.Fatalf("accepted %q but cannot write it back: %v", line, err)
		}
		again, err := decodeResult(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		if err != nil {
			t.Fatalf("accepted %q but not its re-encoding %q: %v", line, buf.Bytes(), err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("%q: round trip (-first +second):\n%s", line, diff)
		}
	})
}
