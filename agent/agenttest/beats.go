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
