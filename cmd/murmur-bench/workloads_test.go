package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"
)

func TestParseInstanceCwd(t *testing.T) {
	const root = "/tmp/murmur-bench-1"
	tests := []struct {
		link           string
		node, instance string
		ok             bool
	}{
		{"/tmp/murmur-bench-1/n03/runtime/exec/web-12-0", "n03", "web-12-0", true},
		{"/tmp/murmur-bench-1/n03/runtime/exec/web-12-0 (deleted)", "n03", "web-12-0", true},
		{"/tmp/murmur-bench-1", "", "", false},                               // an agent's cwd
		{"/tmp/murmur-bench-1/n03", "", "", false},                           // not an instance dir
		{"/tmp/murmur-bench-1/n03/runtime/exec", "", "", false},              // the driver's dir
		{"/tmp/murmur-bench-1/n03/runtime/exec/a/b", "", "", false},          // below an instance
		{"/tmp/murmur-bench-1/n03/runtime/docker/web-1-0", "", "", false},    // another driver
		{"/tmp/murmur-bench-10/n03/runtime/exec/web-12-0", "", "", false},    // another run's dir
		{"/tmp/other/n03/runtime/exec/web-12-0", "", "", false},              // not under root
		{"/tmp/murmur-bench-1//runtime/exec/web-12-0", "", "", false},        // no node
		{"/tmp/murmur-bench-1/n03/runtime/exec/", "", "", false},             // no instance
		{"/tmp/murmur-bench-1/n 3/runtime/exec/x-1-0", "n 3", "x-1-0", true}, // odd but well-formed
	}
	for _, tt := range tests {
		node, inst, ok := parseInstanceCwd(root, tt.link)
		if node != tt.node || inst != tt.instance || ok != tt.ok {
			t.Errorf("parseInstanceCwd(%q) = %q, %q, %v; want %q, %q, %v", tt.link, node, inst, ok, tt.node, tt.instance, tt.ok)
		}
	}
	// A root given with a trailing slash means the same directory.
	if n, i, ok := parseInstanceCwd(root+"/", root+"/n01/runtime/exec/a-1-2"); !ok || n != "n01" || i != "a-1-2" {
		t.Errorf("root with trailing slash: got %q, %q, %v", n, i, ok)
	}
}

func TestIntentOfInstance(t *testing.T) {
	tests := []struct {
		id, intent string
		ok         bool
	}{
		{"web-12-0", "web", true},
		{"bench-a3-0-17-2", "bench-a3-0", true}, // dashes inside the intent name
		{"a-1-10", "a", true},
		{"web-12", "", false},
		{"web", "", false},
		{"-1-2", "", false},
		{"web-x-0", "", false},
		{"web-1-", "", false},
		{"web--0", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := intentOfInstance(tt.id)
		if got != tt.intent || ok != tt.ok {
			t.Errorf("intentOfInstance(%q) = %q, %v; want %q, %v", tt.id, got, ok, tt.intent, tt.ok)
		}
	}
}

func TestProcStatePgrp(t *testing.T) {
	tests := []struct {
		stat    string
		state   byte
		pgrp    int
		wantErr bool
	}{
		{"4242 (sleep) S 17 4242 17 0 -1 4194304 100", 'S', 4242, false},
		{"4243 (odd) name)) Z 1 99 99 0", 'Z', 99, false},
		{"1 (init) R", 0, 0, true},
		{"no parenthesis S 1 2", 0, 0, true},
		{"5 (x) S 1 notanumber", 0, 0, true},
		{"5 (x) SS 1 2", 0, 0, true},
	}
	for _, tt := range tests {
		st, pg, err := procStatePgrp([]byte(tt.stat))
		if (err != nil) != tt.wantErr || st != tt.state || pg != tt.pgrp {
			t.Errorf("procStatePgrp(%q) = %q, %d, %v; want %q, %d, error %v", tt.stat, st, pg, err, tt.state, tt.pgrp, tt.wantErr)
		}
	}
}

func TestCountProcs(t *testing.T) {
	ps := []instProc{
		{PID: 1, Node: "n0", Instance: "a-1-0"},
		{PID: 2, Node: "n1", Instance: "a-1-1"},
		{PID: 3, Node: "n1", Instance: "b-x-2-0"},
		{PID: 4, Node: "n2", Instance: "odd"},
	}
	if diff := cmp.Diff(map[string]int{"a": 2, "b-x": 1, "": 1}, countProcs(ps, "")); diff != "" {
		t.Errorf("countProcs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "": 1}, countProcs(ps, "n1")); diff != "" {
		t.Errorf("countProcs excluding n1 (-want +got):\n%s", diff)
	}
}

const viewJSON = `{"region":"default","coordinator":"n01","generation":9,
 "workloads":[
  {"intent":"a","instance":"a-4-0","node":"n00","region":"default","state":"lost","restarts":0,"generation":4},
  {"intent":"a","instance":"a-4-1","node":"n01","region":"default","state":"running","restarts":0,"generation":4},
  {"intent":"a","instance":"a-9-0","node":"n02","region":"default","state":"starting","restarts":0,"generation":9},
  {"intent":"b","instance":"b-5-0","node":"n00","region":"default","state":"lost","restarts":0,"generation":5},
  {"intent":"b","instance":"b-5-1","node":"n02","region":"default","state":"running","restarts":1,"generation":5},
  {"intent":"c","instance":"c-6-0","node":"n02","region":"default","state":"running","generation":6}],
 "intents":[{"intent":"a","desired":2,"placed":3,"running":1},{"intent":"b","desired":2,"placed":2,"running":1}]}`

func TestDecodeWorkloads(t *testing.T) {
	v, err := decodeWorkloads([]byte(viewJSON))
	if err != nil {
		t.Fatal(err)
	}
	if v.Coordinator != "n01" || v.Generation != 9 || len(v.Workloads) != 6 || len(v.Intents) != 2 {
		t.Fatalf("decoded %+v", v)
	}
	if w := v.Workloads[2]; w.Node != "n02" || w.State != "starting" || w.Instance != "a-9-0" {
		t.Errorf("workload 2 = %+v", w)
	}
	if s := v.Intents[0]; s.Desired != 2 || s.Placed != 3 || s.Running != 1 {
		t.Errorf("summary 0 = %+v", s)
	}
	for _, bad := range []string{`[]`, `{"workloads":[{"intent":"a"}]}`, `{"workloads":[{"instance":"a-1-0"}]}`, `{`} {
		if _, err := decodeWorkloads([]byte(bad)); err == nil {
			t.Errorf("decodeWorkloads(%s) = nil error", bad)
		}
	}
}

func TestReplacementPredicates(t *testing.T) {
	v, err := decodeWorkloads([]byte(viewJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 2, "b": 2}
	if diff := cmp.Diff(map[string]int{"a": 2, "b": 1}, countView(v, want, "n00", anyState)); diff != "" {
		t.Errorf("placed on survivors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 1}, countView(v, want, "n00", isRunning)); diff != "" {
		t.Errorf("running on survivors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 1}, countView(v, want, "", isRunning)); diff != "" {
		t.Errorf("running anywhere (-want +got):\n%s", diff)
	}
	if reached(countView(v, want, "n00", anyState), want) {
		t.Error("reached: b has 1 of 2 on the survivors, want false")
	}
	if !reached(countView(v, map[string]int{"a": 2}, "n00", anyState), map[string]int{"a": 2}) {
		t.Error("reached: a has 2 of 2 placed on the survivors, want true")
	}
	if !reached(nil, nil) {
		t.Error("reached(nil, nil) = false, want true")
	}
	if !allLostOn(v, "n00") {
		t.Error("allLostOn(n00) = false, want true")
	}
	if allLostOn(v, "n02") {
		t.Error("allLostOn(n02) = true, want false")
	}
	if allLostOn(v, "n09") {
		t.Error("allLostOn of a node without instances = true, want false")
	}
	if got, want := notRunning(v, want), "n00 lost ×2, n02 starting ×1"; got != want {
		t.Errorf("notRunning = %q, want %q", got, want)
	}
}

func TestSettled(t *testing.T) {
	run := func(in, id, node string) wlInstance {
		return wlInstance{Intent: in, Instance: id, Node: node, State: "running"}
	}
	ok := wlView{Workloads: []wlInstance{run("a", "a-1-0", "n0"), run("a", "a-1-1", "n1"), run("other", "other-1-0", "n1")}}
	tests := []struct {
		name    string
		v       wlView
		want    map[string]int
		gone    map[string]bool
		wantOK  bool
		wantWhy string
	}{
		{"exact", ok, map[string]int{"a": 2}, nil, true, ""},
		{"one short", ok, map[string]int{"a": 3}, nil, false, "intent a: 2 listed, 2 running, want 3"},
		{"a surplus", ok, map[string]int{"a": 1}, nil, false, "intent a: 2 listed"},
		{"not running", wlView{Workloads: []wlInstance{run("a", "a-1-0", "n0"), {Intent: "a", Instance: "a-1-1", Node: "n1", State: "backoff", Error: "exit 1"}}},
			map[string]int{"a": 2}, nil, false, "a-1-1 on n1 is \"backoff\" (exit 1)"},
		{"a deleted intent still listed", ok, map[string]int{"a": 2}, map[string]bool{"other": true}, false, "deleted intent other"},
		{"nothing wanted, nothing gone", wlView{}, nil, map[string]bool{"x": true}, true, ""},
	}
	for _, tt := range tests {
		got, why := settledView(tt.v, tt.want, tt.gone)
		if got != tt.wantOK || !strings.Contains(why, tt.wantWhy) {
			t.Errorf("%s: settledView = %v, %q; want %v, containing %q", tt.name, got, why, tt.wantOK, tt.wantWhy)
		}
	}
	procs := []struct {
		name   string
		counts map[string]int
		want   map[string]int
		ok     bool
	}{
		{"exact", map[string]int{"a": 2}, map[string]int{"a": 2}, true},
		{"duplicate after a restart", map[string]int{"a": 3}, map[string]int{"a": 2}, false},
		{"missing", map[string]int{"a": 1}, map[string]int{"a": 2}, false},
		{"a stray of a deleted intent", map[string]int{"a": 2, "old": 1}, map[string]int{"a": 2}, false},
		{"zero counts are fine", map[string]int{"a": 2, "old": 0}, map[string]int{"a": 2}, true},
		{"none wanted, none live", map[string]int{}, nil, true},
	}
	for _, tt := range procs {
		if got, why := settledProcs(tt.counts, tt.want); got != tt.ok {
			t.Errorf("%s: settledProcs = %v (%s), want %v", tt.name, got, why, tt.ok)
		}
	}
}

// exposition returns the Prometheus text of a histogram with the agents' buckets that
// observed samples (seconds).
func exposition(t *testing.T, samples ...float64) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: deliveryMetric, Help: "test",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
	reg.MustRegister(h, prometheus.NewCounter(prometheus.CounterOpts{Name: deliveryMetric + "_other_total", Help: "a name with the same prefix"}))
	for _, s := range samples {
		h.Observe(s)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics handler: HTTP %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	return body
}

func TestParseHistogram(t *testing.T) {
	body := exposition(t, 0.0005, 0.003, 0.003, 0.2, 7)
	h, found, err := parseHistogram(body, deliveryMetric)
	if err != nil || !found {
		t.Fatalf("parseHistogram = %v, %v\n%s", found, err, body)
	}
	wantBounds := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, math.Inf(1)}
	wantCounts := []float64{1, 1, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5}
	if diff := cmp.Diff(wantBounds, h.Bounds); diff != "" {
		t.Errorf("bounds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantCounts, h.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if h.Count != 5 || math.Abs(h.Sum-7.2065) > 1e-9 {
		t.Errorf("count, sum = %v, %v; want 5, 7.2065", h.Count, h.Sum)
	}
	if _, found, err := parseHistogram(exposition(t), "absent_metric"); found || err != nil {
		t.Errorf("absent metric: found %v, err %v", found, err)
	}
	// Series with other labels add up.
	two := `m_bucket{node="a",le="1"} 1
m_bucket{node="a",le="+Inf"} 2
m_bucket{node="b",le="1"} 3
m_bucket{le="+Inf",node="b"} 3
m_sum{node="a"} 4
m_sum{node="b"} 1.5
m_count 5
`
	h, found, err = parseHistogram([]byte(two), "m")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if diff := cmp.Diff(histogram{Bounds: []float64{1, math.Inf(1)}, Counts: []float64{4, 5}, Sum: 5.5, Count: 5}, h); diff != "" {
		t.Errorf("two series (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"m_bucket{le=\"1\"} 1\n",      // no +Inf bucket
		"m_bucket{node=\"a\"} 1\n",    // no le
		"m_bucket{le=\"x\"} 1\n",      // bad le
		"m_bucket{le=\"+Inf\"} one\n", // bad value
		"m_bucket{le=\"+Inf\" 1\n",    // unterminated labels
		"m_bucket{le=\"+Inf\"}\n",     // no value
	} {
		if _, _, err := parseHistogram([]byte(bad), "m"); err == nil {
			t.Errorf("parseHistogram(%q) = nil error", bad)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	h := histogram{Bounds: []float64{0.001, 0.01, 0.1, inf}, Counts: []float64{10, 60, 100, 100}, Count: 100}
	tests := []struct {
		name     string
		h        histogram
		q        float64
		want     float64
		overflow bool
		ok       bool
	}{
		{"inside the first bucket interpolates from 0", h, 0.05, 0.0005, false, true},
		{"first bucket's top", h, 0.10, 0.001, false, true},
		{"median inside the second bucket", h, 0.50, 0.001 + 0.009*40/50, false, true},
		{"p99 inside the third bucket", h, 0.99, 0.01 + 0.09*39/40, false, true},
		{"p100 is the last finite bound", h, 1, 0.1, false, true},
		{"rank in +Inf: the last finite bound, overflow", histogram{Bounds: []float64{0.001, 2.5, inf}, Counts: []float64{1, 2, 10}, Count: 10}, 0.5, 2.5, true, true},
		{"only +Inf", histogram{Bounds: []float64{inf}, Counts: []float64{3}}, 0.5, 0, true, true},
		{"empty buckets are skipped", histogram{Bounds: []float64{1, 2, 3, inf}, Counts: []float64{0, 0, 4, 4}}, 0.5, 2.5, false, true},
		{"empty histogram", histogram{}, 0.5, 0, false, false},
		{"no samples", histogram{Bounds: []float64{1, inf}, Counts: []float64{0, 0}}, 0.5, 0, false, false},
		{"q out of range", h, 0, 0, false, false},
		{"q above 1", h, 1.5, 0, false, false},
	}
	for _, tt := range tests {
		got, over, ok := tt.h.quantile(tt.q)
		if math.Abs(got-tt.want) > 1e-12 || over != tt.overflow || ok != tt.ok {
			t.Errorf("%s: quantile(%v) = %v, %v, %v; want %v, %v, %v", tt.name, tt.q, got, over, ok, tt.want, tt.overflow, tt.ok)
		}
	}
}

func TestHistogramAddSub(t *testing.T) {
	inf := math.Inf(1)
	a := histogram{Bounds: []float64{1, inf}, Counts: []float64{1, 2}, Sum: 3, Count: 2}
	b := histogram{Bounds: []float64{1, inf}, Counts: []float64{4, 4}, Sum: 2, Count: 4}
	sum, err := a.add(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(histogram{Bounds: []float64{1, inf}, Counts: []float64{5, 6}, Sum: 5, Count: 6}, sum); diff != "" {
		t.Errorf("add (-want +got):\n%s", diff)
	}
	back, err := sum.sub(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Errorf("sub (-want +got):\n%s", diff)
	}
	if a.Counts[0] != 1 {
		t.Error("add modified its receiver")
	}
	var empty histogram
	if got, err := empty.add(a); err != nil || !cmp.Equal(got, a) {
		t.Errorf("empty + a = %+v, %v; want a", got, err)
	}
	if got, err := a.add(empty); err != nil || !cmp.Equal(got, a) {
		t.Errorf("a + empty = %+v, %v; want a", got, err)
	}
	if _, err := a.add(histogram{Bounds: []float64{2, inf}, Counts: []float64{0, 0}}); err == nil {
		t.Error("adding different bounds: nil error")
	}
	// A scraped exposition round trip: the deltas of two scrapes estimate the window.
	h1, _, _ := parseHistogram(exposition(t, 0.002), deliveryMetric)
	h2, _, _ := parseHistogram(exposition(t, 0.002, 0.02, 0.02, 0.03), deliveryMetric)
	d, err := h2.sub(h1)
	if err != nil {
		t.Fatal(err)
	}
	if v, over, ok := d.quantile(0.5); !ok || over || v <= 0.01 || v > 0.025 {
		t.Errorf("median of the window = %v (overflow %v, ok %v), want in (10ms, 25ms]", v, over, ok)
	}
}

func TestWorkloadDocs(t *testing.T) {
	body := workloadDocs([]string{"bench-a0-0", "bench-a0-1"}, 3, []string{"/bin/sleep", "86400"}, "10m", "6Mi")
	type doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string
		Metadata   struct{ Name string }
		Spec       struct {
			Replicas  int
			Driver    string
			Command   []string
			Resources map[string]string
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(body))
	var got []doc
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode:\n%s\n%v", body, err)
		}
		got = append(got, d)
	}
	if len(got) != 2 {
		t.Fatalf("got %d documents, want 2:\n%s", len(got), body)
	}
	for i, d := range got {
		if d.APIVersion != "murmur/v1" || d.Kind != "Workload" || d.Metadata.Name != []string{"bench-a0-0", "bench-a0-1"}[i] ||
			d.Spec.Replicas != 3 || d.Spec.Driver != "exec" || !cmp.Equal(d.Spec.Command, []string{"/bin/sleep", "86400"}) ||
			!cmp.Equal(d.Spec.Resources, map[string]string{"cpu": "10m", "memory": "6Mi"}) {
			t.Errorf("document %d = %+v", i, d)
		}
	}
	noRes := workloadDocs([]string{"x"}, 1, []string{"/a b/prog", `it's "quoted"`}, "", "")
	if bytes.Contains(noRes, []byte("resources")) {
		t.Errorf("no --cpu and --memory: want no resources, got\n%s", noRes)
	}
	var d doc
	if err := yaml.Unmarshal(noRes, &d); err != nil || !cmp.Equal(d.Spec.Command, []string{"/a b/prog", `it's "quoted"`}) {
		t.Errorf("command with spaces and quotes: %v, %q\n%s", err, d.Spec.Command, noRes)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"bin/murmur-bench", "workloads", "host", "--command", "/bin/sleep 86400", "--x=it's", ""})
	want := `bin/murmur-bench workloads host --command '/bin/sleep 86400' '--x=it'\''s' ''`
	if got != want {
		t.Errorf("shellJoin = %s\nwant        %s", got, want)
	}
}

func TestSplitCommand(t *testing.T) {
	if got, err := splitCommand("  bin/workload   --sleep 24h "); err != nil || !cmp.Equal(got, []string{"bin/workload", "--sleep", "24h"}) {
		t.Errorf("splitCommand = %q, %v", got, err)
	}
	if _, err := splitCommand(" \t"); err == nil {
		t.Error("splitCommand of blanks: nil error")
	}
}

func TestAutoVoters(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 3, 5: 3, 6: 3, 7: 5, 10: 5, 50: 5} {
		if got := autoVoters(n); got != want {
			t.Errorf("autoVoters(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestValidateWorkloads(t *testing.T) {
	ok := options{Bin: "/x/murmur", Nodes: 5, Poll: 20 * time.Millisecond, ConvergeTimout: time.Minute, EventTimeout: 30 * time.Second,
		RestoreTimeout: time.Minute, LogLevel: "info", Voters: 3, Trials: 20, Workloads: 2, Replicas: 5, Command: "/bin/sleep 86400",
		InstanceCPU: "10m", InstanceMemory: "6Mi", Gap: time.Second}
	tests := []struct {
		name    string
		cmd     string
		mod     func(*options)
		wantErr string
	}{
		{"host ok", "workloads host", func(*options) {}, ""},
		{"coordinator ok", "workloads coordinator", func(*options) {}, ""},
		{"apply ok", "workloads apply", func(*options) {}, ""},
		{"apply on one node", "workloads apply", func(o *options) { o.Nodes, o.Voters = 1, 1 }, ""},
		{"host on two nodes", "workloads host", func(o *options) { o.Nodes, o.Voters = 2, 2 }, "--nodes 2"},
		{"zero trials", "workloads host", func(o *options) { o.Trials = 0 }, "--trials 0"},
		{"zero workloads", "workloads apply", func(o *options) { o.Workloads = 0 }, "--workloads 0"},
		{"too many replicas", "workloads apply", func(o *options) { o.Replicas = 101 }, "--replicas 101"},
		{"too many instances", "workloads apply", func(o *options) { o.Workloads, o.Replicas = 500, 5 }, "2500 instances"},
		{"more voters than nodes", "workloads host", func(o *options) { o.Voters = 6 }, "--voters 6"},
		{"empty command", "workloads host", func(o *options) { o.Command = " " }, "--command"},
		{"yaml in --memory", "workloads apply", func(o *options) { o.InstanceMemory = "6Mi}, x: {" }, "--memory"},
		{"unset --cpu", "workloads apply", func(o *options) { o.InstanceCPU = "" }, ""},
		{"long gap", "workloads host", func(o *options) { o.Gap = time.Hour }, "--gap"},
		{"tiny restore timeout", "workloads coordinator", func(o *options) { o.RestoreTimeout = 0 }, "--restore-timeout"},
		{"port base too low", "workloads host", func(o *options) { o.PortBase = 80 }, "--port-base 80"},
		{"port base ok", "workloads host", func(o *options) { o.PortBase = 40000 }, ""},
		{"port base for kill", "kill", func(o *options) { o.Kills, o.PortBase = 1, 40000 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.validate(tt.cmd)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate(%s) = %v, want nil", tt.cmd, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate(%s) = %v, want error containing %q", tt.cmd, err, tt.wantErr)
			}
		})
	}
}

func TestTrailAndErrs(t *testing.T) {
	var tr trail
	tr.note(time.Millisecond, 0)
	tr.note(2*time.Millisecond, 0) // unchanged: not recorded
	tr.note(30*time.Millisecond, 3)
	tr.note(31*time.Millisecond, 30) // "3" is a prefix of "30": recorded
	if got, want := tr.String(), "0@1 ms → 3@30 ms → 30@31 ms"; got != want {
		t.Errorf("trail = %q, want %q", got, want)
	}
	for i := range 100 {
		tr.note(time.Duration(i), i+100)
	}
	if len(tr) != 40 {
		t.Errorf("trail holds %d entries, want at most 40", len(tr))
	}
	if got, want := describeErrs(map[string]int{"b": 1, "a": 3, "c": 1}), "3× a; 1× b; 1× c"; got != want {
		t.Errorf("describeErrs = %q, want %q", got, want)
	}
}

func FuzzParseHistogram(f *testing.F) {
	f.Add([]byte("m_bucket{le=\"0.5\"} 1\nm_bucket{le=\"+Inf\"} 2\nm_sum 3\nm_count 2\n"), "m", 0.5)
	f.Fuzz(func(t *testing.T, text []byte, name string, q float64) {
		h, found, err := parseHistogram(text, name)
		if err != nil || !found {
			return
		}
		if len(h.Bounds) != len(h.Counts) || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
			t.Fatalf("parsed %+v: bounds and counts must pair up and end at +Inf", h)
		}
		_, _, _ = h.quantile(q)
	})
}

func FuzzDecodeWorkloads(f *testing.F) {
	f.Add([]byte(viewJSON))
	f.Add([]byte(`{"workloads":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeWorkloads(b)
		if err != nil {
			return
		}
		for _, w := range v.Workloads {
			if w.Intent == "" || w.Instance == "" {
				t.Fatal("decodeWorkloads accepted an instance without intent or id")
			}
		}
		_ = allLostOn(v, "n0")
		_, _ = settledView(v, map[string]int{"a": 1}, nil)
	})
}

// TestPickPortsFromBase checks that with --port-base the ports count up from the base,
// stay free and keep the same spacing rules as the kernel-picked ones.
func TestPickPortsFromBase(t *testing.T) {
	const base = 47000
	f, err := newFleet(options{Bin: "/bin/sh", PortBase: base}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(false)
	var gossip []int
	prev := base - 1
	for range 3 {
		g, err := f.pickGossipPort()
		if err != nil {
			t.Fatal(err)
		}
		h, err := f.pickHTTPPort()
		if err != nil {
			t.Fatal(err)
		}
		if g <= prev || h <= g+1 || h > base+500 {
			t.Errorf("gossip %d, http %d after %d: want base %d ≤ gossip < gossip+1 < http, counting up", g, h, prev, base)
		}
		for _, q := range gossip {
			if g-q < 10 {
				t.Errorf("gossip ports %d and %d are %d apart, want >= 10", q, g, g-q)
			}
		}
		gossip, prev = append(gossip, g), h
	}
	f2, err := newFleet(options{Bin: "/bin/sh", PortBase: 65535}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close(false)
	if _, err := f2.pickGossipPort(); err == nil || !strings.Contains(err.Error(), "--port-base") {
		t.Errorf("base 65535: err = %v, want one naming --port-base", err)
	}
}

func TestScanInstancesRefusesBroadRoots(t *testing.T) {
	for _, root := range []string{"", "/", "//", "relative/dir"} {
		if _, err := scanInstances(root, ""); err == nil {
			t.Errorf("scanInstances(%q) = nil error, want a refusal", root)
		}
		if _, err := killInstances(root, "", time.Second); err == nil {
			t.Errorf("killInstances(%q) = nil error, want a refusal", root)
		}
	}
	// A run's own directory without instances: nothing found, nothing killed.
	root := t.TempDir()
	if ps, err := scanInstances(root, ""); err != nil || len(ps) != 0 {
		t.Errorf("scanInstances(empty temp dir) = %v, %v", ps, err)
	}
	if n, err := killInstances(root, "", time.Second); err != nil || n != 0 {
		t.Errorf("killInstances(empty temp dir) = %d, %v", n, err)
	}
}

// TestScanAndKillInstance runs a process the way the exec driver does (own process
// group, cwd in an instance directory) and checks that the scan finds it and the
// sweep kills it.
func TestScanAndKillInstance(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "n07", "runtime", "exec", "web-3-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "60")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start /bin/sleep: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	ps, err := scanInstances(root, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []instProc{{PID: cmd.Process.Pid, PGID: cmd.Process.Pid, Node: "n07", Instance: "web-3-1"}}
	if diff := cmp.Diff(want, ps); diff != "" {
		t.Fatalf("scanInstances (-want +got):\n%s", diff)
	}
	if ps, _ := scanInstances(root, "n08"); len(ps) != 0 {
		t.Errorf("scanInstances of another node = %v, want none", ps)
	}
	n, err := killInstances(root, "n07", 5*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("killInstances = %d, %v; want 1, nil", n, err)
	}
	var ee *exec.ExitError
	if err := <-waited; !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the instance ended with %v, want SIGKILL", err)
	}
}
