package main

import (
	"bytes"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlotMedianByN(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []point
		want []point
	}{
		{"one run", []point{{N: 9, V: 5, K: 1}}, []point{{N: 9, V: 5}}},
		{"odd count", []point{{N: 9, V: 5}, {N: 9, V: 1}, {N: 9, V: 3}}, []point{{N: 9, V: 3}}},
		{"even count: mean of the middle two", []point{{N: 9, V: 5}, {N: 9, V: 1}, {N: 9, V: 3}, {N: 9, V: 100}}, []point{{N: 9, V: 4}}},
		{"sorted by N", []point{{N: 100, V: 7}, {N: 9, V: 1}, {N: 40, V: 2}, {N: 9, V: 3}}, []point{{N: 9, V: 2}, {N: 40, V: 2}, {N: 100, V: 7}}},
		{"none", nil, []point{}},
	} {
		if diff := cmp.Diff(tt.want, medianByN(tt.in)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// Each figure collects one point per run that measured it, with the run's N and K.
func TestPlotChartsCollect(t *testing.T) {
	noKills := testResult(100, 4, 0)
	noKills.DetectFirstN, noKills.DetectAllN, noKills.FailoverN = 0, 0, 0
	noKills.Intents = noKills.Intents[:1] // no 64 KiB push
	runs := []simResult{testResult(9, 1, 1900), testResult(9, 1, 2100), testResult(40, 4, 1800), noKills}
	got := map[string][]point{}
	for _, ch := range charts(runs) {
		for _, s := range ch.series {
			got[ch.file+" "+s.name] = s.collect(runs)
		}
	}
	for _, tt := range []struct {
		key  string
		want []point
	}{
		{"detection.png every node p99", []point{{9, 1900, 1}, {9, 2100, 1}, {40, 1800, 4}}},
		{"failover.png p99", []point{{9, 1810, 1}, {9, 1810, 1}, {40, 1810, 4}}},
		{"intent.png small to 99.9 %", []point{{9, 60, 1}, {9, 60, 1}, {40, 60, 4}, {100, 60, 4}}},
		{"intent.png 64 KiB to 100 %", []point{{9, 362, 1}, {9, 362, 1}, {40, 362, 4}}},
		{"gossip_bytes.png in, max node", []point{{9, 1850, 1}, {9, 1850, 1}, {40, 1850, 4}, {100, 1850, 4}}},
		{"cpu.png CPU per agent", []point{{9, 0.4, 1}, {9, 0.4, 1}, {40, 0.4, 4}, {100, 0.4, 4}}},
		{"heap.png heap per agent", []point{{9, 3, 1}, {9, 3, 1}, {40, 3, 4}, {100, 3, 4}}},
	} {
		if diff := cmp.Diff(tt.want, got[tt.key]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.key, diff)
		}
	}
	if m := medianByN(got["detection.png every node p99"]); !cmp.Equal(m, []point{{N: 9, V: 2000}, {N: 40, V: 1800}}) {
		t.Errorf("median line of detection every node p99: %v", m)
	}
}

// plot writes a decodable PNG per figure and figures.md, next to the results file by
// default; a figure no run measured is skipped.
func TestPlotWritesPNGs(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "sim.jsonl")
	noKills := testResult(120, 4, 0)
	noKills.DetectFirstN, noKills.DetectAllN, noKills.FailoverN = 0, 0, 0
	var buf bytes.Buffer
	for _, r := range []simResult{testResult(9, 1, 1900), testResult(9, 1, 2100), testResult(40, 4, 5200), noKills} {
		if err := appendResult(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(results, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := newRootCmd(slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	cmd.SetArgs([]string{"plot", "--results", results})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("plot: %v\n%s", err, out.String())
	}
	for _, name := range []string{"detection.png", "intent.png", "gossip_bytes.png", "failover.png", "cpu.png", "heap.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: not a PNG: %v", name, err)
			continue
		}
		if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
			t.Errorf("%s is %v: too small to read", name, b)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "figures.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(string(md), "\n| 2026-12-11"); rows != 4 {
		t.Errorf("figures.md has %d rows, want one per run:\n%s", rows, md)
	}
	for _, want := range []string{"![detection](detection.png)", "![heap](heap.png)", "| 1400 / 1500 (3) |", "| – | – | – |", "| 40 / 60 / 75 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("figures.md lacks %q:\n%s", want, md)
		}
	}
	if !strings.Contains(out.String(), "4 runs at N = 9, 40, 120") {
		t.Errorf("output %q does not say what was plotted", out.String())
	}

	// Only the run without host deaths: no detection or failover chart.
	only := filepath.Join(dir, "nokills.jsonl")
	buf.Reset()
	if err := appendResult(&buf, noKills); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(only, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	out.Reset()
	if err := runPlot(only, sub, &out); err != nil {
		t.Fatalf("plot: %v", err)
	}
	for name, want := range map[string]bool{"detection.png": false, "failover.png": false, "intent.png": true, "figures.md": true} {
		if _, err := os.Stat(filepath.Join(sub, name)); (err == nil) != want {
			t.Errorf("%s in --out: %v, want written %v", name, err, want)
		}
	}
	if !strings.Contains(out.String(), "failover.png: skipped, no run measured it") {
		t.Errorf("output %q does not say failover.png was skipped", out.String())
	}
}

func TestPlotBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.jsonl", `{"nodes":9,"dilation":1}`+"\n"+`{"nodes": nine}`+"\n")
	empty := write("empty.jsonl", "")
	for _, tt := range []struct {
		name, results, want string
		usage               bool
	}{
		{"malformed line", bad, bad + ":2: not a sim result", false},
		{"empty file", empty, empty + ": nothing to plot", false},
		{"no file", filepath.Join(dir, "absent.jsonl"), "--results: open " + filepath.Join(dir, "absent.jsonl"), true},
	} {
		err := runPlot(tt.results, filepath.Join(dir, "out"), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one with %q", tt.name, err, tt.want)
			continue
		}
		var ue usageError
		if errors.As(err, &ue) != tt.usage {
			t.Errorf("%s: usage error (exit 2) %v, want %v", tt.name, !tt.usage, tt.usage)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "figures.md")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad input wrote figures.md (%v)", err)
	}
	cmd := newRootCmd(slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	cmd.SetArgs([]string{"plot"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--results") {
		t.Errorf("plot without --results: %v, want an error naming --results", err)
	}
}
