package agenttest

import (
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
// --beat-dir, or a shell loop doing the same). testdata/workload also writes a
// "netns <namespace>" line first: the host that ran it, in a namespace lab.

// Interval is one instance's run as its beat file shows it.
type Interval struct {
	Name       string // <instance>-<epoch>
	Epoch      uint64
	NetNS      string // the "netns" line (e.g. "net:[4026532601]"), if any
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
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		iv := Interval{Name: strings.TrimSuffix(filepath.Base(path), ".beats")}
		if i := strings.LastIndex(iv.Name, "-"); i >= 0 {
			iv.Epoch, _ = strconv.ParseUint(iv.Name[i+1:], 10, 64)
		}
		// A line is whole only with its newline: one cut short by SIGKILL may still
		// parse ("beat 17" of "beat 1765…") and is dropped.
		lines := strings.Split(string(data), "\n")
		lines = lines[:len(lines)-1]
		stopped := false
		for _, line := range lines {
			kind, ns, ok := strings.Cut(line, " ")
			if kind == "netns" {
				iv.NetNS = ns
				continue
			}
			n, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil {
				continue // not a beat line
			}
			at := time.Unix(0, n)
			iv.Times = append(iv.Times, at)
			if iv.Start.IsZero() {
				iv.Start = at
			}
			iv.End, stopped = at, kind == "stop"
		}
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

// Overlap is a time two instances ran at once: Older started first.
type Overlap struct {
	Older, Newer Interval
	From, To     time.Time // Newer's start, and the earlier of the two ends
}

func (o Overlap) String() string {
	return fmt.Sprintf("%s and %s for %v", o.Older.Name, o.Newer.Name, o.To.Sub(o.From))
}

// OverlapsOf lists every pair of the intervals (sorted by start) that ran at once.
func OverlapsOf(ivs []Interval) []Overlap {
	var out []Overlap
	for i := range ivs {
		for j := i + 1; j < len(ivs); j++ {
			if !ivs[j].Start.Before(ivs[i].End) {
				continue
			}
			end := ivs[i].End
			if ivs[j].End.Before(end) {
				end = ivs[j].End
			}
			out = append(out, Overlap{Older: ivs[i], Newer: ivs[j], From: ivs[j].Start, To: end})
		}
	}
	return out
}

// Overlaps is the total time two of the intervals ran at once, and the pairs that did.
func Overlaps(ivs []Interval) (time.Duration, []string) {
	var total time.Duration
	var pairs []string
	for _, o := range OverlapsOf(ivs) {
		total += o.To.Sub(o.From)
		pairs = append(pairs, o.String())
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

// Refused replays every instance's lines, in time order, through a sink that keeps the
// highest epoch it has seen and refuses a write of a lower one: what a workload does
// with MURMUR_EPOCH. It returns how many writes that sink refuses: those of an
// instance that ran on after a successor started (a paused host's, between its thaw
// and its agent stopping it).
func Refused(ivs []Interval) int {
	type write struct {
		at    time.Time
		epoch uint64
	}
	var ws []write
	for _, iv := range ivs {
		for _, at := range iv.Times {
			ws = append(ws, write{at, iv.Epoch})
		}
	}
	slices.SortStableFunc(ws, func(a, b write) int { return a.at.Compare(b.at) })
	var maxEpoch uint64
	refused := 0
	for _, w := range ws {
		if w.epoch < maxEpoch {
			refused++
			continue
		}
		maxEpoch = w.epoch
	}
	return refused
}
