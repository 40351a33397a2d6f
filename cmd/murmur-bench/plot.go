package main

import (
	"cmp"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The goals (issue 14), in the unit of their chart.
const (
	goalDetectP99MS   = 4000 // every node declares a dead host dead within 4 s (p99)
	goalIntentP999MS  = 1000 // an intent reaches 99.9 % of the nodes within 1 s
	goalGossipBytesPS = 2000 // 2 KB/s of gossip per node
	goalFailoverP99MS = 3000 // a dead host's instances run elsewhere within 3 s (p99)
)

func newPlotCmd(out io.Writer) *cobra.Command {
	var results, dir string
	c := &cobra.Command{
		Use:   "plot",
		Short: "Draw the figures of murmur-bench sim --results runs against N, as PNGs beside a markdown table",
		Long: `plot reads a results file that murmur-bench sim --results appended to (one JSON line
per run) and writes, into --out (default: the file's directory), one PNG per figure
against the number of nodes N, and figures.md, a markdown table with one row per run
followed by the PNGs:

  detection.png     host death → node_dead: first node and every node, p50 and p99
  intent.png        each intent size to 99 / 99.9 / 100 % of the nodes
  gossip_bytes.png  idle gossip bytes per node per second, out and in, mean and max node
  failover.png      host death → its instances running elsewhere, p50 and p99
  cpu.png           idle CPU per agent, % of a core
  heap.png          heap per agent, MiB

Each run is a point, labelled with its dilation K; the line goes through the median of
the runs at each N. The x axis is logarithmic when the largest N is 10 times the
smallest or more. A dashed line marks the issue's goal where there is one: detection
p99 4 s, intent to 99.9 % 1 s, gossip 2 KB/s per node, failover p99 3 s. Files of the
same name in --out are overwritten; a figure no run measured (--kills 0) is skipped.`,
		Example:       "  murmur-bench sim --nodes 20 --regions 1 --results bench/sim.jsonl\n  murmur-bench plot --results bench/sim.jsonl",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.Flags().StringVar(&results, "results", "", "results file written by murmur-bench sim --results (required)")
	c.Flags().StringVar(&dir, "out", "", "directory for the PNGs and figures.md (default: the directory of --results)")
	c.RunE = func(*cobra.Command, []string) error {
		if results == "" {
			return usageError{fmt.Errorf("--results: give the file murmur-bench sim --results wrote")}
		}
		if dir == "" {
			dir = filepath.Dir(results)
		}
		return runPlot(results, dir, out)
	}
	return c
}

// runPlot reads the results file and writes the charts and figures.md into dir.
func runPlot(results, dir string, out io.Writer) error {
	f, err := os.Open(results)
	if err != nil {
		return usageError{fmt.Errorf("--results: %w", err)}
	}
	runs, err := readResults(f, results)
	f.Close()
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("%s: nothing to plot: no runs in it (murmur-bench sim --results %s appends one per run)", results, results)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	var written []string
	for _, ch := range charts(runs) {
		p, ok, err := ch.draw(runs)
		if err != nil {
			return fmt.Errorf("%s: %w", ch.file, err)
		}
		if !ok {
			fmt.Fprintf(out, "%s: skipped, no run measured it\n", ch.file)
			continue
		}
		path := filepath.Join(dir, ch.file)
		if err := p.Save(chartW, chartH, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		written = append(written, ch.file)
	}
	md := filepath.Join(dir, "figures.md")
	if err := os.WriteFile(md, []byte(figuresTable(runs, written)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", md, err)
	}
	runsWord := "runs"
	if len(runs) == 1 {
		runsWord = "run"
	}
	fmt.Fprintf(out, "plot: %d %s at N = %s: wrote %s and figures.md in %s\n", len(runs), runsWord, nodeList(runs), strings.Join(written, ", "), dir)
	return nil
}

// chart is one PNG: figures of one unit against N.
type chart struct {
	file, title, ylabel string
	goal                float64 // in the y unit; 0: none
	goalLabel           string
	series              []series
}

// series is one figure: value is in the chart's unit, ok false when the run did not
// measure it.
type series struct {
	name  string
	value func(simResult) (v float64, ok bool)
}

// charts are the PNGs plot writes; intent.png has a series per intent size in runs.
func charts(runs []simResult) []chart {
	always := func(get func(simResult) float64) func(simResult) (float64, bool) {
		return func(r simResult) (float64, bool) { return get(r), true }
	}
	intent := chart{file: "intent.png", title: "intent stored by 99 / 99.9 / 100 % of the nodes (worst push)", ylabel: "ms (dilated clock)",
		goal: goalIntentP999MS, goalLabel: "goal: 99.9 % within 1 s"}
	for _, label := range intentLabels(runs) {
		for _, q := range []struct {
			name string
			get  func(intentResult) float64
		}{{"99 %", func(i intentResult) float64 { return i.P99 }}, {"99.9 %", func(i intentResult) float64 { return i.P999 }}, {"100 %", func(i intentResult) float64 { return i.P100 }}} {
			intent.series = append(intent.series, series{label + " to " + q.name, func(r simResult) (float64, bool) {
				for _, in := range r.Intents {
					if in.Label == label && in.Count > 0 {
						return q.get(in), true
					}
				}
				return 0, false
			}})
		}
	}
	return []chart{
		{file: "detection.png", title: "failure detection: host death → node_dead", ylabel: "ms (dilated clock)",
			goal: goalDetectP99MS, goalLabel: "goal: p99 within 4 s",
			series: []series{
				{"first node p50", func(r simResult) (float64, bool) { return r.DetectFirstP50, r.DetectFirstN > 0 }},
				{"first node p99", func(r simResult) (float64, bool) { return r.DetectFirstP99, r.DetectFirstN > 0 }},
				{"every node p50", func(r simResult) (float64, bool) { return r.DetectAllP50, r.DetectAllN > 0 }},
				{"every node p99", func(r simResult) (float64, bool) { return r.DetectAllP99, r.DetectAllN > 0 }},
			}},
		intent,
		{file: "gossip_bytes.png", title: "idle gossip bytes per node per second", ylabel: "B/s per node (dilated clock)",
			goal: goalGossipBytesPS, goalLabel: "goal: 2 KB/s per node",
			series: []series{
				{"out, mean", always(func(r simResult) float64 { return r.GossipOutMean })},
				{"in, mean", always(func(r simResult) float64 { return r.GossipInMean })},
				{"out, max node", always(func(r simResult) float64 { return r.GossipOutMax })},
				{"in, max node", always(func(r simResult) float64 { return r.GossipInMax })},
			}},
		{file: "failover.png", title: "host death → its instances running elsewhere", ylabel: "ms (dilated clock)",
			goal: goalFailoverP99MS, goalLabel: "goal: p99 within 3 s",
			series: []series{
				{"p50", func(r simResult) (float64, bool) { return r.FailoverP50, r.FailoverN > 0 }},
				{"p99", func(r simResult) (float64, bool) { return r.FailoverP99, r.FailoverN > 0 }},
			}},
		{file: "cpu.png", title: "idle CPU per agent (CPU seconds per dilated second)", ylabel: "% of a core",
			series: []series{{"CPU per agent", always(func(r simResult) float64 { return r.CPUPerAgent * 100 })}}},
		{file: "heap.png", title: "heap per agent (in-use heap of the process / N)", ylabel: "MiB",
			series: []series{{"heap per agent", always(func(r simResult) float64 { return r.HeapPerAgent / (1 << 20) })}}},
	}
}

// point is one run's value of one figure.
type point struct {
	N, V, K float64 // nodes, value, dilation
}

// collect is every run's value of s, in the order of runs.
func (s series) collect(runs []simResult) []point {
	var pts []point
	for _, r := range runs {
		if v, ok := s.value(r); ok {
			pts = append(pts, point{N: float64(r.Nodes), V: v, K: r.Dilation})
		}
	}
	return pts
}

// medianByN is the median value at each N, in increasing N (K is left 0).
func medianByN(pts []point) []point {
	byN := map[float64][]float64{}
	for _, p := range pts {
		byN[p.N] = append(byN[p.N], p.V)
	}
	out := make([]point, 0, len(byN))
	for n, vs := range byN {
		out = append(out, point{N: n, V: median(vs)})
	}
	slices.SortFunc(out, func(a, b point) int { return cmp.Compare(a.N, b.N) })
	return out
}

// median of vs (not empty): the middle value, or the mean of the two middle ones.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Chart geometry, for the headroom the legend needs above the data.
const (
	chartW, chartH = 8 * vg.Inch, 5 * vg.Inch
	legendFont     = 9   // points
	dataHeightPt   = 290 // about the data area's height in chartH, in points
)

// draw builds the chart from runs; false when no run measured any of its series.
func (ch chart) draw(runs []simResult) (*plot.Plot, bool, error) {
	type curve struct {
		i   int // series index: colour and glyph
		pts []point
	}
	var curves []curve
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), ch.goal
	for i, s := range ch.series {
		pts := s.collect(runs)
		for _, pt := range pts {
			xmin, xmax, ymax = min(xmin, pt.N), max(xmax, pt.N), max(ymax, pt.V)
		}
		if len(pts) > 0 {
			curves = append(curves, curve{i, pts})
		}
	}
	if len(curves) == 0 {
		return nil, false, nil
	}
	entries := len(curves)
	if ch.goal > 0 {
		entries++
	}
	// The y axis starts at 0 (a latency is read against its goal) and leaves room above
	// the data and the goal for the legend in the top left corner.
	room := min(0.5, float64(entries*(legendFont+3)+12)/dataHeightPt)
	ytop := max(ymax*1.05, 1e-9) / (1 - room)
	// Room at both ends, and on the right for the K labels; the goal line spans it.
	lo, hi := xmin/1.2, xmax*1.25

	p := plot.New()
	p.Title.Text = ch.title
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = "nodes (N)"
	p.Y.Label.Text = ch.ylabel
	p.Y.Tick.Marker = plainTicks{}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(legendFont)
	p.Add(plotter.NewGrid())
	if xmax >= 10*xmin {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	// K labels at about the same place (bucket: 2.5 % of the y axis, about a label's
	// height) stack upwards; the same K there again is not repeated (coinciding series).
	type spot struct {
		n      float64
		bucket int
	}
	placed := map[spot][]float64{}
	for _, c := range curves {
		col := plotutil.DarkColors[c.i%len(plotutil.DarkColors)]
		xys := make(plotter.XYs, len(c.pts))
		for j, pt := range c.pts {
			xys[j] = plotter.XY{X: pt.N, Y: pt.V}
			at := spot{pt.N, int(pt.V / (ytop * 0.025))}
			if slices.Contains(placed[at], pt.K) {
				continue
			}
			lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{xys[j]}, Labels: []string{fmt.Sprintf("K=%g", pt.K)}})
			if err != nil {
				return nil, false, err
			}
			lb.TextStyle[0].Font.Size = vg.Points(7)
			lb.TextStyle[0].Color = col
			lb.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2 + 8*float64(len(placed[at])))}
			placed[at] = append(placed[at], pt.K)
			p.Add(lb)
		}
		med := medianByN(c.pts)
		mxys := make(plotter.XYs, len(med))
		for j, pt := range med {
			mxys[j] = plotter.XY{X: pt.N, Y: pt.V}
		}
		sc, err := plotter.NewScatter(xys) // fails on NaN or Inf only, which JSON cannot carry
		if err != nil {
			return nil, false, err
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = col, plotutil.Shape(c.i), vg.Points(3)
		ln, err := plotter.NewLine(mxys)
		if err != nil {
			return nil, false, err
		}
		ln.LineStyle.Color, ln.LineStyle.Width = col, vg.Points(1.2)
		p.Add(ln, sc)
		p.Legend.Add(ch.series[c.i].name, ln, sc)
	}
	if ch.goal > 0 {
		g, err := plotter.NewLine(plotter.XYs{{X: lo, Y: ch.goal}, {X: hi, Y: ch.goal}})
		if err != nil {
			return nil, false, err
		}
		g.LineStyle.Color = color.Gray{Y: 60}
		g.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		g.LineStyle.Width = vg.Points(1)
		p.Add(g)
		p.Legend.Add(ch.goalLabel, g)
	}
	p.X.Min, p.X.Max = lo, hi // after Add, which widens them to the data
	p.Y.Min, p.Y.Max = 0, ytop
	return p, true, nil
}

// plainTicks are gonum's default ticks labelled without trailing zeros (2500, not
// 2500.00).
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(math.Round(ts[i].Value*1e6)/1e6, 'f', -1, 64)
		}
	}
	return ts
}

// intentLabels are the intent sizes in runs, in order of first appearance.
func intentLabels(runs []simResult) []string {
	var out []string
	for _, r := range runs {
		for _, in := range r.Intents {
			if !slices.Contains(out, in.Label) {
				out = append(out, in.Label)
			}
		}
	}
	return out
}

func nodeList(runs []simResult) string {
	var ns []int
	for _, r := range runs {
		if !slices.Contains(ns, r.Nodes) {
			ns = append(ns, r.Nodes)
		}
	}
	slices.Sort(ns)
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// figuresTable is figures.md: one row per run, by N then time, and the PNGs below it.
func figuresTable(runs []simResult, pngs []string) string {
	rs := slices.Clone(runs)
	slices.SortStableFunc(rs, func(a, b simResult) int {
		return cmp.Or(cmp.Compare(a.Nodes, b.Nodes), a.Time.Compare(b.Time))
	})
	labels := intentLabels(rs)
	var b strings.Builder
	b.WriteString("# murmur-bench sim: figures against N\n\n")
	b.WriteString("Times in ms and rates per second of the dilated clock (K); written by `murmur-bench plot`.\n\n")
	b.WriteString("| time (UTC) | commit | N | regions | K | cores | latency ms | loss | gossip out / in B/s per node (mean) | out / in (max node) | CPU per agent | load | heap per agent |")
	for _, l := range labels {
		fmt.Fprintf(&b, " intent %s to 99 / 99.9 / 100 %% ms |", l)
	}
	b.WriteString(" detection, first node p50 / p99 ms (deaths) | detection, every node p50 / p99 ms (observations) | failover p50 / p99 ms (deaths) |\n|")
	b.WriteString(strings.Repeat("---|", 13+len(labels)+3))
	b.WriteString("\n")
	pair := func(n int, a, c float64) string {
		if n == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f / %.0f (%d)", a, c, n)
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %g | %d | %g | %g | %.0f / %.0f | %.0f / %.0f | %.2f %% | %.2f | %.1f MiB |",
			r.Time.UTC().Format("2006-01-02 15:04:05"), cmp.Or(r.Commit, "?"), r.Nodes, r.Regions, r.Dilation, r.Cores, r.LatencyMS, r.Loss,
			r.GossipOutMean, r.GossipInMean, r.GossipOutMax, r.GossipInMax, r.CPUPerAgent*100, r.MachineLoad, r.HeapPerAgent/(1<<20))
		for _, l := range labels {
			cell := "–"
			for _, in := range r.Intents {
				if in.Label == l && in.Count > 0 {
					cell = fmt.Sprintf("%.0f / %.0f / %.0f", in.P99, in.P999, in.P100)
					break
				}
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n", pair(r.DetectFirstN, r.DetectFirstP50, r.DetectFirstP99),
			pair(r.DetectAllN, r.DetectAllP50, r.DetectAllP99), pair(r.FailoverN, r.FailoverP50, r.FailoverP99))
	}
	for _, png := range pngs {
		fmt.Fprintf(&b, "\n![%s](%s)\n", strings.TrimSuffix(png, ".png"), png)
	}
	return b.String()
}
