package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// simResult is one run of murmur-bench sim as --results appends it: one JSON object on
// one line (JSONL), so a file collects runs at several sizes and `murmur-bench plot`
// draws each figure against N.
//
// Times are milliseconds of the dilated clock (the figures of the table, fractions
// kept); byte rates are bytes per node per dilated second. A figure a run did not
// measure (--kills 0: detection and failover) has count 0 and is left out of the plots.
// Readers ignore fields they do not know, so a file may hold lines of newer builds.
type simResult struct {
	Time    time.Time `json:"time"`    // UTC, when the run ended
	Version string    `json:"version"` // agent.BuildInfo of the measured code: linked in or stamped by the toolchain, else "dev"
	Commit  string    `json:"commit"`  // likewise; "unknown" when the binary carries none

	Nodes     int     `json:"nodes"`
	Regions   int     `json:"regions"`
	Dilation  float64 `json:"dilation"` // K: every timer ran K times slower; figures are in that time
	Cores     int     `json:"cores"`
	LatencyMS float64 `json:"latency_ms"` // --latency, one way
	Loss      float64 `json:"loss"`       // --loss, probability a gossip packet is lost

	// Idle window (--duration), per node and dilated second.
	GossipOutMean float64 `json:"gossip_out_bytes_per_node_s"`
	GossipInMean  float64 `json:"gossip_in_bytes_per_node_s"`
	GossipOutMax  float64 `json:"gossip_out_bytes_max_node_s"` // the busiest node's
	GossipInMax   float64 `json:"gossip_in_bytes_max_node_s"`
	CPUPerAgent   float64 `json:"cpu_per_agent"`        // CPU seconds per dilated second: 0.01 is 1 % of a core
	MachineLoad   float64 `json:"machine_load"`         // real CPU seconds per real second, of Cores
	HeapPerAgent  float64 `json:"heap_bytes_per_agent"` // the process's in-use heap over Nodes
	Stalls        int     `json:"agent_stalls"`         // murmur_gossip_stalls_total over all agents and the run: above 0, the machine did not keep up at this K
	// The join's broadcast backlog: from convergence until the agents' queues held
	// under one message each (--settle included), the largest mean backlog per agent
	// seen meanwhile, and what was still queued at --drain-timeout (0: drained).
	DrainMS   float64 `json:"drain_ms,omitempty"`
	QueuePeak float64 `json:"queue_peak_per_node,omitempty"`
	QueueLeft int     `json:"queue_left,omitempty"`

	Intents []intentResult `json:"intents"` // "small" (--pushes of them) and "64 KiB" (one)

	DetectFirstN   int     `json:"detect_first_count"` // host deaths
	DetectFirstP50 float64 `json:"detect_first_p50_ms"`
	DetectFirstP99 float64 `json:"detect_first_p99_ms"`
	DetectAllN     int     `json:"detect_all_count"` // observations: one per death and live node
	DetectAllP50   float64 `json:"detect_all_p50_ms"`
	DetectAllP99   float64 `json:"detect_all_p99_ms"`
	FailoverN      int     `json:"failover_count"` // host death → its instances running elsewhere
	FailoverP50    float64 `json:"failover_p50_ms"`
	FailoverP99    float64 `json:"failover_p99_ms"`
	// The coordinator's part of each failover, per death (the mean of its
	// observations): dead in its view → replacement committed, and commit → applied
	// on the new host.
	CommitN    int     `json:"commit_count,omitempty"`
	CommitP50  float64 `json:"commit_p50_ms,omitempty"`
	CommitP99  float64 `json:"commit_p99_ms,omitempty"`
	DeliverN   int     `json:"deliver_count,omitempty"`
	DeliverP50 float64 `json:"deliver_p50_ms,omitempty"`
	DeliverP99 float64 `json:"deliver_p99_ms,omitempty"`
}

// intentResult is one intent size: the worst, over Count pushes, of the time until 99,
// 99.9 and 100 % of the live nodes stored it.
type intentResult struct {
	Label     string  `json:"label"`
	SizeBytes int     `json:"size_bytes"` // padding added to the Workload
	Count     int     `json:"count"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p999_ms"`
	P100      float64 `json:"p100_ms"`
}

// msOf is d in milliseconds, fractions kept.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// openResults opens path for appending, creating it: sim calls it before the fleet
// starts, so an unwritable path costs no run.
func openResults(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--results: %w (give a file in a writable directory)", err)
	}
	return f, nil
}

// appendResult writes r as one line in a single write, so runs appending to the same
// file do not interleave.
func appendResult(w io.Writer, r simResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// maxResultLine bounds one line of a results file; sim writes about 1.5 KB.
const maxResultLine = 1 << 20

// decodeResult decodes one line of a results file: one JSON object and nothing after
// it, with the fields a plot needs in range.
func decodeResult(line []byte) (simResult, error) {
	var r simResult
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&r); err != nil {
		return simResult{}, fmt.Errorf("not a sim result: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return simResult{}, errors.New("not a sim result: more than one JSON value on the line")
	}
	return r, r.check()
}

// check refuses what sim never writes and a plot cannot draw.
func (r simResult) check() error {
	if r.Nodes < 1 {
		return fmt.Errorf("nodes %d: want 1 or more (the x axis)", r.Nodes)
	}
	if r.Dilation < 1 {
		return fmt.Errorf("dilation %v: want 1 or more", r.Dilation)
	}
	for _, n := range []struct {
		name string
		v    float64
	}{
		{"regions", float64(r.Regions)}, {"cores", float64(r.Cores)}, {"latency_ms", r.LatencyMS}, {"loss", r.Loss},
		{"gossip_out_bytes_per_node_s", r.GossipOutMean}, {"gossip_in_bytes_per_node_s", r.GossipInMean},
		{"gossip_out_bytes_max_node_s", r.GossipOutMax}, {"gossip_in_bytes_max_node_s", r.GossipInMax},
		{"cpu_per_agent", r.CPUPerAgent}, {"machine_load", r.MachineLoad}, {"heap_bytes_per_agent", r.HeapPerAgent},
		{"detect_first_count", float64(r.DetectFirstN)}, {"detect_first_p50_ms", r.DetectFirstP50}, {"detect_first_p99_ms", r.DetectFirstP99},
		{"detect_all_count", float64(r.DetectAllN)}, {"detect_all_p50_ms", r.DetectAllP50}, {"detect_all_p99_ms", r.DetectAllP99},
		{"failover_count", float64(r.FailoverN)}, {"failover_p50_ms", r.FailoverP50}, {"failover_p99_ms", r.FailoverP99},
	} {
		if n.v < 0 {
			return fmt.Errorf("%s %v: must not be negative", n.name, n.v)
		}
	}
	for i, in := range r.Intents {
		if in.Label == "" {
			return fmt.Errorf("intents[%d]: label is empty", i)
		}
		if in.SizeBytes < 0 || in.Count < 0 || in.P99 < 0 || in.P999 < 0 || in.P100 < 0 {
			return fmt.Errorf("intents[%d] (%s): a size, count or time is negative", i, in.Label)
		}
	}
	return nil
}

// readResults reads a results file; name is for errors, which give the file and the
// line (name:line: why). Blank lines are skipped.
func readResults(r io.Reader, name string) ([]simResult, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxResultLine)
	var out []simResult
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		res, err := decodeResult(b)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out = append(out, res)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes: not a sim result", name, line+1, maxResultLine)
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}
