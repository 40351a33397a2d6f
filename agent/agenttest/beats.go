package agenttest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Beats are how the at-most-once tests see an exclusive workload run: each instance
// writes DIR/<instance>-<epoch>.beats, a "start <unix ns>" line, then "beat <unix ns>"
// lines, and "stop <unix ns>" when it is stopped politely (testdata/workload
// --beat-dir, or a shell loop doing the same).

// Interval is one instance's run as its beat file shows it.
type Interval struct {
	Name       string // <instance>-<epoch>
	Epoch      uint64
	Start, End time.Time
	Times      []time.Time // every line's time, in file order
}

// ReadBeats reads every beat file in dir, sorted by start. An instance killed without
// a stop line ran until its last beat plus slack (the beat period, stretched by a busy
// machine).
func ReadBeats(dir string, slack time.Duration) ([]Interval, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.beats"))
	if err != nil {
		return nil, err
	}
	var out []Interval
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		iv := Interval{Name: strings.TrimSuffix(filepath.Base(path), ".beats")}
		if i := strings.LastIndex(iv.Name, "-"); i >= 0 {
			iv.Epoch, _ = strconv.ParseUint(iv.Name[i+1:], 10, 64)
		}
		stopped := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			kind, ns, ok := strings.Cut(sc.Text(), " ")
			n, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil {
				continue // a line cut short by SIGKILL
			}
			at := time.Unix(0, n)
			iv.Times = append(iv.Times, at)
			if iv.Start.IsZero() {
				iv.Start = at
			}
			iv.End, stopped = at, kind == "stop"
		}
		f.Close()
		if !stopped {
			iv.End = iv.End.Add(slack)
		}
		if !iv.Start.IsZero() {
			out = append(out, iv)
		}
	}
	slices.SortFunc(out, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// Overlaps is the total time two of the intervals ran at once, and the pairs that did.
func Overlaps(ivs []Interval) (time.Duration, []string) {
	var total time.Duration
	var pairs []string
	for i := range ivs {
		for j := i + 1; j < len(ivs); j++ {
			if !ivs[j].Start.Before(ivs[i].End) {
				continue
			}
			end := ivs[i].End
			if ivs[j].End.Before(end) {
				end = ivs[j].End
			}
			d := end.Sub(ivs[j].Start)
			total += d
			pairs = append(pairs, fmt.Sprintf("%s and %s for %v", ivs[i].Name, ivs[j].Name, d))
		}
	}
	return total, pairs
}

// EpochsRise reports the first interval whose epoch is not above its predecessor's
// ("" when each later instance carries a higher epoch).
func EpochsRise(ivs []Interval) string {
	for i := 1; i < len(ivs); i++ {
		if ivs[i].Epoch <= ivs[i-1].Epoch {
			return fmt.Sprintf("%s started after %s with an epoch that is not higher", ivs[i].Name, ivs[i-1].Name)
		}
	}
	return ""
}

// Fenced replays every instance's lines, in time order, through a sink that keeps the
// highest epoch it has seen and refuses a write of a lower one: what a workload does
// with MURMUR_EPOCH. A paused host's instance can resume for a moment after its lease
// ended, before its agent stops it; its writes are refused there. Fenced returns the
// overlap of the accepted runs (each from its first to its last accepted write, plus
// slack) and how many writes were refused.
func Fenced(ivs []Interval, slack time.Duration) (time.Duration, int) {
	type write struct {
		at  time.Time
		idx int
	}
	var ws []write
	for i, iv := range ivs {
		for _, at := range iv.Times {
			ws = append(ws, write{at, i})
		}
	}
	slices.SortStableFunc(ws, func(a, b write) int { return a.at.Compare(b.at) })
	accepted := make([]Interval, len(ivs))
	var maxEpoch uint64
	refused := 0
	for _, w := range ws {
		e := ivs[w.idx].Epoch
		if e < maxEpoch {
			refused++
			continue
		}
		maxEpoch = e
		a := &accepted[w.idx]
		if a.Start.IsZero() {
			a.Name, a.Epoch, a.Start = ivs[w.idx].Name, e, w.at
		}
		a.End = w.at.Add(slack)
	}
	var runs []Interval
	for _, a := range accepted {
		if !a.Start.IsZero() {
			runs = append(runs, a)
		}
	}
	slices.SortFunc(runs, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	overlap, _ := Overlaps(runs)
	return overlap, refused
}
