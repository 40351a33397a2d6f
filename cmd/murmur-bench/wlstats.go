package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// wlView is the part of GET /v1/workloads the bench reads.
type wlView struct {
	Region      string       `json:"region"`
	Coordinator string       `json:"coordinator"`
	Generation  uint64       `json:"generation"`
	Workloads   []wlInstance `json:"workloads"`
	Intents     []wlSummary  `json:"intents"`
}

type wlInstance struct {
	Intent     string `json:"intent"`
	Instance   string `json:"instance"`
	Node       string `json:"node"`
	State      string `json:"state"`
	Generation uint64 `json:"generation"`
	Error      string `json:"error"`
}

type wlSummary struct {
	Intent   string `json:"intent"`
	Desired  int    `json:"desired"`
	Placed   int    `json:"placed"`
	Running  int    `json:"running"`
	Unplaced int    `json:"unplaced"`
	Reason   string `json:"reason"`
}

// decodeWorkloads parses a GET /v1/workloads answer.
func decodeWorkloads(body []byte) (wlView, error) {
	var v wlView
	if err := json.Unmarshal(body, &v); err != nil {
		return wlView{}, fmt.Errorf("decode /v1/workloads: %w", err)
	}
	for _, w := range v.Workloads {
		if w.Intent == "" || w.Instance == "" {
			return wlView{}, errors.New("decode /v1/workloads: an instance without intent or id")
		}
	}
	return v, nil
}

// countView counts, per intent of want, the instances of v not on node exclude ("" =
// none) that pred accepts.
func countView(v wlView, want map[string]int, exclude string, pred func(wlInstance) bool) map[string]int {
	out := make(map[string]int, len(want))
	for _, w := range v.Workloads {
		if _, ok := want[w.Intent]; !ok || (exclude != "" && w.Node == exclude) || !pred(w) {
			continue
		}
		out[w.Intent]++
	}
	return out
}

// reached reports whether got[i] >= want[i] for every intent of want.
func reached(got, want map[string]int) bool {
	for in, n := range want {
		if got[in] < n {
			return false
		}
	}
	return true
}

func isRunning(w wlInstance) bool { return w.State == "running" }
func anyState(wlInstance) bool    { return true }

// allLostOn reports whether v lists at least one instance on node and every one of
// them as "lost" (the coordinator sees the node dead or gone).
func allLostOn(v wlView, node string) bool {
	n := 0
	for _, w := range v.Workloads {
		if w.Node != node {
			continue
		}
		if w.State != "lost" {
			return false
		}
		n++
	}
	return n > 0
}

// settledView reports whether v lists, for every intent of want, exactly want[intent]
// instances, all running, and no instance of an intent outside want among those
// named in also (intents the bench deleted). why says what is missing.
func settledView(v wlView, want map[string]int, gone map[string]bool) (ok bool, why string) {
	total, running := map[string]int{}, map[string]int{}
	for _, w := range v.Workloads {
		if gone[w.Intent] {
			return false, fmt.Sprintf("deleted intent %s still lists %s on %s (%s)", w.Intent, w.Instance, w.Node, w.State)
		}
		if _, ok := want[w.Intent]; !ok {
			continue
		}
		total[w.Intent]++
		if w.State == "running" {
			running[w.Intent]++
		} else if why == "" {
			why = fmt.Sprintf("%s on %s is %q", w.Instance, w.Node, w.State)
			if w.Error != "" {
				why += " (" + w.Error + ")"
			}
		}
	}
	for _, in := range sortedKeys(want) {
		if total[in] != want[in] || running[in] != want[in] {
			return false, fmt.Sprintf("intent %s: %d listed, %d running, want %d; %s", in, total[in], running[in], want[in], why)
		}
	}
	return true, ""
}

// settledProcs reports whether the process table holds exactly want[intent] live
// instances of every intent of want and none of any other intent.
func settledProcs(counts, want map[string]int) (ok bool, why string) {
	for in, n := range counts {
		if _, wanted := want[in]; !wanted && n > 0 {
			return false, fmt.Sprintf("%d live processes of intent %q, want none", n, in)
		}
	}
	for _, in := range sortedKeys(want) {
		if counts[in] != want[in] {
			return false, fmt.Sprintf("%d live processes of intent %s, want %d", counts[in], in, want[in])
		}
	}
	return true, ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// histogram is a Prometheus histogram: cumulative counts per upper bound, the last
// bound +Inf.
type histogram struct {
	Bounds []float64 // ascending; the last is +Inf
	Counts []float64 // cumulative: Counts[i] samples are <= Bounds[i]
	Sum    float64
	Count  float64
}

// parseHistogram reads the histogram name from a Prometheus text exposition, adding
// up series with different labels (other than le). found is false when it has no
// bucket.
func parseHistogram(text []byte, name string) (h histogram, found bool, err error) {
	byLE := map[float64]float64{}
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok {
			continue
		}
		var suffix string
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if r, ok := bytes.CutPrefix(rest, []byte(s)); ok && len(r) > 0 && (r[0] == ' ' || r[0] == '{') {
				suffix, rest = s, r
				break
			}
		}
		if suffix == "" {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := bytes.LastIndexByte(rest, '}')
			if end < 0 {
				return histogram{}, false, fmt.Errorf("parse histogram %s: unterminated labels in %q", name, line)
			}
			labels, rest = string(rest[1:end]), rest[end+1:]
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return histogram{}, false, fmt.Errorf("parse histogram %s: no value in %q", name, line)
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			return histogram{}, false, fmt.Errorf("parse histogram %s: %w", name, err)
		}
		switch suffix {
		case "_sum":
			h.Sum += v
		case "_count":
			h.Count += v
		case "_bucket":
			le, ok := labelValue(labels, "le")
			if !ok {
				return histogram{}, false, fmt.Errorf("parse histogram %s: bucket without le in %q", name, line)
			}
			b, err := strconv.ParseFloat(le, 64)
			if err == nil && math.IsNaN(b) {
				err = errors.New("not a number")
			}
			if err != nil {
				return histogram{}, false, fmt.Errorf("parse histogram %s: le %q: %w", name, le, err)
			}
			byLE[b] += v
			found = true
		}
	}
	if !found {
		return histogram{}, false, nil
	}
	for b := range byLE {
		h.Bounds = append(h.Bounds, b)
	}
	slices.Sort(h.Bounds)
	if !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
		return histogram{}, false, fmt.Errorf("parse histogram %s: no +Inf bucket", name)
	}
	for _, b := range h.Bounds {
		h.Counts = append(h.Counts, byLE[b])
	}
	return h, true, nil
}

// labelValue returns the value of label key in a Prometheus label list
// (`a="x",le="0.5"`). Values here hold no escaped quotes.
func labelValue(labels, key string) (string, bool) {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == key && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			return v[1 : len(v)-1], true
		}
	}
	return "", false
}

// add returns h + o. An empty histogram (no bounds) is the identity; otherwise the
// bounds must match.
func (h histogram) add(o histogram) (histogram, error) {
	return h.combine(o, 1)
}

// sub returns h - o (the samples observed between two scrapes of counters that only
// grow).
func (h histogram) sub(o histogram) (histogram, error) {
	return h.combine(o, -1)
}

func (h histogram) combine(o histogram, sign float64) (histogram, error) {
	if len(o.Bounds) == 0 {
		return h, nil
	}
	if len(h.Bounds) == 0 {
		h = histogram{Bounds: o.Bounds, Counts: make([]float64, len(o.Bounds))}
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return histogram{}, fmt.Errorf("histogram bounds differ: %v and %v", h.Bounds, o.Bounds)
	}
	out := histogram{Bounds: slices.Clone(h.Bounds), Counts: slices.Clone(h.Counts), Sum: h.Sum + sign*o.Sum, Count: h.Count + sign*o.Count}
	for i := range out.Counts {
		out.Counts[i] += sign * o.Counts[i]
	}
	return out, nil
}

// quantile estimates the q-quantile (0 < q <= 1) the way Prometheus'
// histogram_quantile does: find the bucket holding rank q·count and interpolate
// linearly inside it (from 0 for the first bucket). When the rank falls in the +Inf
// bucket it returns the highest finite bound and overflow: the value is only known to
// be above it. ok is false for an empty histogram.
func (h histogram) quantile(q float64) (v float64, overflow, ok bool) {
	n := len(h.Counts)
	if n == 0 || h.Counts[n-1] <= 0 || q <= 0 || q > 1 {
		return 0, false, false
	}
	rank := q * h.Counts[n-1]
	i, _ := slices.BinarySearchFunc(h.Counts, rank, func(c, r float64) int {
		if c < r {
			return -1
		}
		return 1
	})
	if i >= n {
		i = n - 1
	}
	if math.IsInf(h.Bounds[i], 1) {
		if n < 2 {
			return 0, true, true
		}
		return h.Bounds[n-2], true, true
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = h.Bounds[i-1], h.Counts[i-1]
	}
	inBucket := h.Counts[i] - below
	if inBucket <= 0 {
		return h.Bounds[i], false, true
	}
	return lower + (h.Bounds[i]-lower)*(rank-below)/inBucket, false, true
}
