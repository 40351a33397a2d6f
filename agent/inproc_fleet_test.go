package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/agenttest"
	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/agent/events"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/runtime"
)

// An in-process fleet: whole Agents (New + Run) in one test process, gossiping over a
// gossiptest.Network and running Raft over a region.InmemNetwork, each with its own
// data dir, Prometheus registry and loopback HTTP API. Workloads use the real exec
// driver, so instances are real processes; the fleet kills every process whose
// working directory lies in one of its data dirs when the test ends.

type inprocFleet struct {
	t      *testing.T
	region string
	gnet   *gossiptest.Network
	rnet   *region.InmemNetwork
	nodes  []*inprocNode
}

type inprocNode struct {
	name    string
	gossip  string // address on the gossip network
	raft    string // address on the Raft network
	dataDir string
	http    string // the API, valid once started
	agent   *Agent
	cancel  context.CancelFunc
	done    chan error
	logs    *lockedBuffer
}

// lockedBuffer is an io.Writer many goroutines may log to.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startInprocFleet starts n agents in one region, every one coordinator-eligible,
// joining the first and expecting n for the region's bootstrap, and waits until all of them name one coordinator with 3 voters.
func startInprocFleet(t *testing.T, n int, regionName string) *inprocFleet {
	t.Helper()
	return startInprocFleetWith(t, n, regionName, nil)
}

// startInprocFleetWith is startInprocFleet with every node's Config passed through opt.
func startInprocFleetWith(t *testing.T, n int, regionName string, opt func(*Config)) *inprocFleet {
	t.Helper()
	f := &inprocFleet{t: t, region: regionName, gnet: gossiptest.NewNetwork(), rnet: region.NewInmemNetwork()}
	base := t.TempDir()
	// Registered after TempDir, so it runs before the directory is removed: stop
	// every agent, then kill what is left of their instances.
	t.Cleanup(f.stop)
	var seed string
	for i := 1; i <= n; i++ {
		nd := &inprocNode{name: fmt.Sprintf("n%d", i), dataDir: filepath.Join(base, fmt.Sprintf("n%d", i)), logs: &lockedBuffer{}}
		tr := f.gnet.NewTransport(nd.name)
		nd.gossip = tr.Addr()
		// The gossip meta advertises <gossip host>:<raft-bind port>; the Raft endpoint
		// must sit at that address so peers found by gossip are reachable.
		nd.raft = "127.0.0.1:" + strconv.Itoa(30000+i)
		cfg := Config{
			Name: nd.name, Region: regionName, Bind: nd.gossip, RaftBind: nd.raft, HTTP: "127.0.0.1:0",
			DataDir: nd.dataDir, Capacity: Resources{MilliCPU: 2000, MemoryBytes: 1 << 30}, CoordinatorEligible: true,
			// Bootstrap once all n are seen rather than after the 3 s settle period.
			BootstrapExpect: n,
		}
		if seed != "" {
			cfg.Join = []string{seed}
		} else {
			seed = nd.gossip
		}
		if opt != nil {
			opt(&cfg)
		}
		logger := slog.New(slog.NewTextHandler(nd.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", nd.name)
		a, err := New(cfg, Deps{Logger: logger, GossipTransport: tr, RaftNetwork: f.rnet})
		if err != nil {
			t.Fatalf("New(%s): %v", nd.name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nd.agent, nd.cancel, nd.done = a, cancel, make(chan error, 1)
		go func() { nd.done <- a.Run(ctx) }()
		f.nodes = append(f.nodes, nd)
	}
	for _, nd := range f.nodes {
		select {
		case <-nd.agent.Ready():
			nd.http = nd.agent.HTTPAddr()
		case err := <-nd.done:
			nd.done <- err
			t.Fatalf("agent %s ended before it was ready: %v\n%s", nd.name, err, tail(nd.logs.String(), 30))
		case <-time.After(30 * time.Second):
			t.Fatalf("agent %s not ready within 30 s", nd.name)
		}
	}
	eventuallyFleet(t, f, 30*time.Second, fmt.Sprintf("%d nodes agree on a coordinator with 3 voters", n), func() bool {
		_, _, ok := f.agreedCoordinator(f.nodes, 3)
		return ok
	})
	return f
}

// stop cancels every agent, waits for each Run to return (bounded), and kills the
// processes left in the data dirs (exec instances outlive their agent by design).
func (f *inprocFleet) stop() {
	stopAt := time.Now()
	for _, nd := range f.nodes {
		nd.cancel()
	}
	for _, nd := range f.nodes {
		select {
		case err := <-nd.done:
			if err != nil {
				f.t.Errorf("agent %s: Run = %v", nd.name, err)
			}
		case <-time.After(20 * time.Second):
			f.t.Errorf("agent %s did not stop within 20 s", nd.name)
		}
	}
	f.t.Logf("agents stopped in %v", time.Since(stopAt).Round(time.Millisecond))
	for _, nd := range f.nodes {
		for _, pid := range processesIn(nd.dataDir) {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // its process group (exec starts one per instance)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range f.nodes {
		for len(processesIn(nd.dataDir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // the poll period of this bounded wait for the kernel to reap
		}
		if left := processesIn(nd.dataDir); len(left) > 0 {
			f.t.Errorf("processes still running in %s after SIGKILL: %v", nd.dataDir, left)
		}
	}
}

// dumpLogs logs the tail of every agent's log (on failure).
func (f *inprocFleet) dumpLogs(lines int) {
	for _, nd := range f.nodes {
		f.t.Logf("---- %s (last %d lines) ----\n%s", nd.name, lines, tail(nd.logs.String(), lines))
	}
}

func (f *inprocFleet) node(name string) *inprocNode {
	for _, nd := range f.nodes {
		if nd.name == name {
			return nd
		}
	}
	f.t.Fatalf("no node %q", name)
	return nil
}

// partition cuts the nodes in cut from the others on both networks (gossip and Raft).
func (f *inprocFleet) partition(cut ...*inprocNode) {
	var ga, gb, ra, rb []string
	for _, nd := range f.nodes {
		if slices.Contains(cut, nd) {
			ga, ra = append(ga, nd.name), append(ra, nd.raft)
		} else {
			gb, rb = append(gb, nd.name), append(rb, nd.raft)
		}
	}
	f.gnet.Partition(ga, gb)
	f.rnet.Partition(ra, rb)
}

// heal removes every partition on both networks.
func (f *inprocFleet) heal() {
	f.gnet.Heal()
	f.rnet.Heal()
}

// The live instance processes of an agent: agent/agenttest.
var (
	instancePids = agenttest.InstancePids
	processesIn  = agenttest.ProcessesIn
)

// processesOf counts, per node, the live instance processes of intent.
func processesOf(nodes []*inprocNode, intent string) map[string]int {
	out := map[string]int{}
	for _, nd := range nodes {
		for id := range instancePids(nd.dataDir) {
			if strings.HasPrefix(id, intent+"-") {
				out[nd.name]++
			}
		}
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// eventuallyFleet polls cond every 20 ms until it holds or timeout passes; on timeout
// it dumps the fleet's logs and fails the test.
func eventuallyFleet(t *testing.T, f *inprocFleet, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if f != nil {
				f.dumpLogs(40)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // the poll period of this bounded wait
	}
	t.Logf("%s (after %v)", what, time.Since(start).Round(time.Millisecond))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// HTTP API clients.

var apiClient = &http.Client{Timeout: 2 * time.Second}

func getJSON(addr, path string, v any) error {
	resp, err := apiClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func postIntent(t *testing.T, addr string, body string) {
	t.Helper()
	resp, err := apiClient.Post("http://"+addr+"/v1/intents", "application/yaml", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/intents to %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/intents to %s: HTTP %d: %s", addr, resp.StatusCode, b)
	}
}

// sleepWorkload is an exec Workload of /bin/sleep 3600.
func sleepWorkload(name string, replicas int) string {
	return fmt.Sprintf("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  replicas: %d\n  driver: exec\n"+
		"  command: [\"/bin/sleep\", \"3600\"]\n  resources: {cpu: 50m, memory: 16Mi}\n", name, replicas)
}

type regionView struct {
	Name        string   `json:"name"`
	Coordinator string   `json:"coordinator"`
	Voters      []string `json:"voters"`
	Term        uint64   `json:"term"`
	Headless    bool     `json:"headless"`
}

func regionOf(addr, name string) (regionView, bool) {
	var res struct {
		Regions []regionView `json:"regions"`
	}
	if getJSON(addr, "/v1/regions", &res) != nil {
		return regionView{}, false
	}
	for _, r := range res.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return regionView{}, false
}

// agreedCoordinator reports the coordinator every node of among names, if they all
// name the same one in the same term (with wantVoters voters; 0: any number).
func (f *inprocFleet) agreedCoordinator(among []*inprocNode, wantVoters int) (string, uint64, bool) {
	coord, term := "", uint64(0)
	for i, nd := range among {
		r, ok := regionOf(nd.http, f.region)
		if !ok || r.Coordinator == "" || (wantVoters > 0 && len(r.Voters) != wantVoters) {
			return "", 0, false
		}
		if i == 0 {
			coord, term = r.Coordinator, r.Term
		} else if r.Coordinator != coord || r.Term != term {
			return "", 0, false
		}
	}
	return coord, term, true
}

// memberStatus is name's status in addr's /v1/members ("" when unknown).
func memberStatus(addr, name string) string {
	var res struct {
		Members []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"members"`
	}
	if getJSON(addr, "/v1/members", &res) != nil {
		return ""
	}
	for _, m := range res.Members {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

type assignmentsView struct {
	Source     string `json:"source"`
	Reason     string `json:"reason"`
	From       string `json:"from"`
	Generation uint64 `json:"generation"`
	Instances  int    `json:"instances"`
}

func assignmentsOf(addr string) (assignmentsView, bool) {
	var st struct {
		Assignments assignmentsView `json:"assignments"`
	}
	if getJSON(addr, "/v1/status", &st) != nil {
		return assignmentsView{}, false
	}
	return st.Assignments, true
}

func workloadsOf(addr string) (coordinator.View, bool) {
	var v coordinator.View
	if getJSON(addr, "/v1/workloads", &v) != nil {
		return v, false
	}
	return v, true
}

// instancesOf are the placements of intent in a view: instance id → workload.
func instancesOf(v coordinator.View, intent string) map[string]coordinator.Workload {
	out := map[string]coordinator.Workload{}
	for _, w := range v.Workloads {
		if w.Intent == intent {
			out[w.Instance] = w
		}
	}
	return out
}

// eventsOf reads addr's /v1/events backlog for intent (NDJSON).
func eventsOf(addr, intent string) ([]events.Event, error) {
	resp, err := apiClient.Get("http://" + addr + "/v1/events?format=ndjson&intent=" + intent)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/events: HTTP %d", resp.StatusCode)
	}
	var out []events.Event
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("decode event %q: %w", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// metricValue reads the first sample of a metric family from addr's /metrics.
func metricValue(addr, name string) (float64, bool) {
	resp, err := apiClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// exactly reports whether each observer's /v1/workloads lists exactly want running
// instances of intent on the nodes of scope (placements on other nodes, such as a cut
// node's lost ones, are ignored), the same set on every observer, and whether the
// process tables of scope run exactly those, node by node. It returns instance → node.
func exactly(observers, scope []*inprocNode, intent string, want int) (map[string]string, bool) {
	in := map[string]bool{}
	for _, nd := range scope {
		in[nd.name] = true
	}
	var first map[string]string
	for _, o := range observers {
		v, ok := workloadsOf(o.http)
		if !ok {
			return nil, false
		}
		got := map[string]string{}
		for id, w := range instancesOf(v, intent) {
			if !in[w.Node] {
				continue
			}
			if w.State != runtime.StateRunning {
				return nil, false
			}
			got[id] = w.Node
		}
		if len(got) != want {
			return nil, false
		}
		if first == nil {
			first = got
			perNode := map[string]int{}
			for _, n := range got {
				perNode[n]++
			}
			procs := processesOf(scope, intent)
			if !sameCounts(perNode, procs) {
				return nil, false
			}
			// Every listed instance is a live process on its node.
			for id, n := range got {
				nd := nodeIn(scope, n)
				if _, ok := instancePids(nd.dataDir)[id]; !ok {
					return nil, false
				}
			}
		} else if !sameNodes(first, got) {
			return nil, false
		}
	}
	return first, true
}

func nodeIn(nodes []*inprocNode, name string) *inprocNode {
	for _, nd := range nodes {
		if nd.name == name {
			return nd
		}
	}
	return nil
}

func sameCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func sameNodes(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func without(nodes []*inprocNode, cut ...*inprocNode) []*inprocNode {
	var out []*inprocNode
	for _, nd := range nodes {
		if !slices.Contains(cut, nd) {
			out = append(out, nd)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// startRunningWatch samples, every 20 ms until checked (at most 50 s), the live
// instance processes of intent on the fleet's nodes and the running instances in
// observer's /v1/workloads (agenttest.Watch).
func startRunningWatch(f *inprocFleet, observer func() *inprocNode, intent string) *agenttest.Watch {
	return agenttest.StartWatch(func() agenttest.Sample {
		sm := agenttest.Sample{Procs: sum(processesOf(f.nodes, intent)), View: -1}
		if v, ok := workloadsOf(observer().http); ok {
			sm.View = 0
			ins := instancesOf(v, intent)
			for _, id := range sortedKeys(ins) {
				if ins[id].State == runtime.StateRunning {
					sm.View++
				}
				sm.States += fmt.Sprintf(" %s@%s:%s", id, ins[id].Node, ins[id].State)
			}
		}
		return sm
	}, 50*time.Second)
}
