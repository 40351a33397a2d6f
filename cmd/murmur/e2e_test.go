package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// These tests run the real binary: several agents on 127.0.0.1, real UDP/TCP gossip
// and real HTTP. make test passes MURMUR_BIN; otherwise the binary is built once.

// prebuilt is a binary the tests run: the path in env (make test sets it), else pkg
// built once into a temporary directory.
type prebuilt struct {
	env, pkg, name string
	once           sync.Once
	path           string
	err            error
}

func (b *prebuilt) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		if p := os.Getenv(b.env); p != "" {
			b.path = p
			return
		}
		dir, err := os.MkdirTemp("", "murmur-"+b.name)
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, b.name)
		if out, err := exec.Command("go", "build", "-o", b.path, b.pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var (
	murmurBuild   = &prebuilt{env: "MURMUR_BIN", pkg: ".", name: "murmur"}
	workloadBuild = &prebuilt{env: "MURMUR_WORKLOAD_BIN", pkg: "../../testdata/workload", name: "workload"}
)

// murmurBin is the murmur binary under test; -short skips the tests that need it.
func murmurBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real-process test; -short skips it")
	}
	return murmurBuild.get(t)
}

// workloadBin is testdata/workload, the test workload.
func workloadBin(t *testing.T) string { return workloadBuild.get(t) }

// freePort returns a port P on 127.0.0.1 whose TCP and UDP P and TCP P+1 (the agent's
// default Raft port) are free, and that this test process has not handed out before:
// an agent binds its HTTP port first, so two picks that return the same free port make
// the second listener fail (seen once in CI-like runs). Ports come from below the
// kernel's ephemeral range (32768 and up on Linux), so the outgoing connections of the
// agents already running cannot take one between this check and the agent's bind.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 500; i++ {
		port := 20000 + rand.IntN(12000)
		if portsUsed[port] || portsUsed[port+1] || portsUsed[port-1] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l2, err2 := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			u.Close()
		}
		if err2 == nil {
			l2.Close()
		}
		if err == nil && err2 == nil {
			portsUsed[port], portsUsed[port+1] = true, true
			return port
		}
	}
	t.Fatal("no free port pair on 127.0.0.1 in 20000-32000 after 500 tries")
	return 0
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

type proc struct {
	name     string
	cmd      *exec.Cmd
	http     string
	gossip   string
	dataDir  string
	log      *bytes.Buffer
	logMu    *sync.Mutex
	done     chan struct{}
	exitCode int
}

type syncBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (s syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// gossipPort is the port of p.gossip.
func (p *proc) gossipPort() int {
	_, port, _ := net.SplitHostPort(p.gossip)
	n, _ := strconv.Atoi(port)
	return n
}

func (p *proc) logs() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// startAgent runs `murmur agent` with the given extra args; it is killed when the test ends.
func startAgent(t *testing.T, name string, gossipPort int, extra ...string) *proc {
	t.Helper()
	return startAgentIn(t, name, gossipPort, filepath.Join(t.TempDir(), name), extra...)
}

// startAgentIn is startAgent with a given data dir (to restart a node with its state).
func startAgentIn(t *testing.T, name string, gossipPort int, dataDir string, extra ...string) *proc {
	t.Helper()
	httpPort := freePort(t)
	p := &proc{
		name: name, http: fmt.Sprintf("127.0.0.1:%d", httpPort), gossip: fmt.Sprintf("127.0.0.1:%d", gossipPort),
		dataDir: dataDir, log: &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan struct{}),
	}
	args := append([]string{"agent", "--name", name, "--bind", p.gossip, "--http", p.http,
		"--data-dir", dataDir, "--capacity", "cpu=500m,memory=256Mi", "--log-level", "debug"}, extra...)
	p.cmd = exec.Command(murmurBin(t), args...)
	p.cmd.Stdout = syncBuf{p.logMu, p.log}
	p.cmd.Stderr = syncBuf{p.logMu, p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		// Agents leave their workload instances running on purpose (they survive an
		// agent restart); a test must not.
		for _, pid := range instancePids(dataDir) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		// An instance started in the instant before the agent was killed may have no
		// record yet; it runs in its instance dir, so find it by its working directory.
		for _, pid := range processesIn(filepath.Join(dataDir, "runtime", "exec")) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("--- log of %s (the last lines above DEBUG):\n%s", name, tail(withoutDebug(p.logs()), 60))
			if dir := os.Getenv("MURMUR_E2E_LOGDIR"); dir != "" {
				// The whole log, for a failure that the tail does not explain.
				f := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+"-"+strconv.Itoa(p.cmd.Process.Pid)+".log")
				_ = os.WriteFile(f, []byte(p.logs()), 0o644)
			}
		}
	})
	return p
}

// withoutDebug drops the DEBUG lines of an agent's log: on a failure the tail of a
// debug log is mostly memberlist's stream chatter, and the lines that explain it
// (placements, grants, refusals, elections) are INFO and above.
func withoutDebug(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, " level=DEBUG ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type memberView struct {
	Name   string            `json:"name"`
	Region string            `json:"region"`
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
	Load   struct {
		CPU    float64 `json:"cpu"`
		Memory float64 `json:"memory"`
	} `json:"load"`
}

func getJSON(addr, path string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func members(addr string) map[string]memberView {
	var res struct {
		Members []memberView `json:"members"`
	}
	if err := getJSON(addr, "/v1/members", &res); err != nil {
		return nil
	}
	out := map[string]memberView{}
	for _, m := range res.Members {
		out[m.Name] = m
	}
	return out
}

// eventually polls cond every 50 ms until it holds or timeout passes.
// allSeeAllAlive reports whether every observer's /v1/members lists n members, all
// alive.
func allSeeAllAlive(observers []*proc, n int) bool {
	for _, p := range observers {
		ms := members(p.http)
		if len(ms) != n {
			return false
		}
		for _, m := range ms {
			if m.Status != "alive" {
				return false
			}
		}
	}
	return true
}

// startPlant starts n agents named <prefix>1..n in region plant, each listing every
// address as a seed (it skips its own, as an operator's config would: tests kill
// nodes for good, seeds included), and waits for a coordinator with 3 voters. flags
// restart one of them (restartAgent).
func startPlant(t *testing.T, prefix string, n int) (ps []*proc, flags []string) {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
		flags = append(flags, "--join", fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	flags = append([]string{"--region", "plant"}, flags...)
	for i, port := range ports {
		ps = append(ps, startAgent(t, fmt.Sprintf("%s%d", prefix, i+1), port, flags...))
	}
	eventually(t, 60*time.Second, "a coordinator with 3 voters", func() bool {
		_, _, ok := agreedCoordinator(ps, "plant", 3)
		return ok
	})
	return ps, flags
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	eventuallyWhy(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// eventuallyWhy is eventually for a condition that says what it saw when it does not
// hold: a timeout reports the last such state, so a failure in CI explains itself.
func eventuallyWhy(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			if why != "" {
				t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, why)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

func TestRealFleetJoinKillLeave(t *testing.T) {
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	var ps []*proc
	// Start the seed last: the others must retry --join until it answers.
	for i := 2; i <= 5; i++ {
		ps = append(ps, startAgent(t, fmt.Sprintf("n%d", i), freePort(t), "--join", seed, "--label", "camera=yes"))
	}
	for _, p := range ps {
		eventually(t, 10*time.Second, p.name+" serves its API before any seed answers", func() bool {
			var st map[string]any
			return getJSON(p.http, "/v1/status", &st) == nil
		})
	}
	ps = append(ps, startAgent(t, "n1", seedPort))
	for _, p := range ps {
		eventually(t, 30*time.Second, p.name+" sees 5 alive members", func() bool {
			ms := members(p.http)
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" && m.Load.CPU > 0 {
					alive++
				}
			}
			return alive == 5
		})
	}
	if m := members(ps[4].http)["n3"]; m.Labels["camera"] != "yes" || m.Region != "default" {
		t.Errorf("n1 sees n3 as %+v, want label camera=yes in region default", m)
	}

	// SIGKILL n2: the rest report it dead.
	if err := ps[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps[1:] {
		eventually(t, 15*time.Second, p.name+" reports n2 dead", func() bool { return members(p.http)["n2"].Status == "dead" })
	}
	// SIGTERM n3: the rest report it left, and it exits 0.
	if err := ps[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ps[1].done:
		if ps[1].exitCode != 0 {
			t.Errorf("n3 exited %d after SIGTERM, want 0", ps[1].exitCode)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("n3 did not exit within 15s of SIGTERM")
	}
	for _, p := range ps[2:] {
		eventually(t, 5*time.Second, p.name+" reports n3 left", func() bool { return members(p.http)["n3"].Status == "left" })
	}
}

func TestRealWrongKeyCannotJoin(t *testing.T) {
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	other := "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	a := startAgent(t, "k1", seedPort, "--encrypt", key)
	b := startAgent(t, "k2", freePort(t), "--encrypt", key, "--join", seed)
	eventually(t, 20*time.Second, "k1 and k2 see each other", func() bool { return len(members(a.http)) == 2 && len(members(b.http)) == 2 })

	wrong := startAgent(t, "wrong", freePort(t), "--encrypt", other, "--join", seed)
	plain := startAgent(t, "plain", freePort(t), "--join", seed)
	for _, p := range []*proc{wrong, plain} {
		eventually(t, 20*time.Second, p.name+" logs why it cannot join", func() bool {
			return strings.Contains(p.logs(), "join failed") && strings.Contains(p.logs(), "--encrypt")
		})
		if n := strings.Count(p.logs(), "level=WARN msg=\"join failed"); n != 1 {
			t.Errorf("%s logged %d join warnings, want exactly one clear line (repeats go to debug)", p.name, n)
		}
	}
	for _, p := range []*proc{a, b} {
		ms := members(p.http)
		if len(ms) != 2 {
			t.Errorf("%s sees %d members %v, want 2: a node without the key got in", p.name, len(ms), ms)
		}
	}
}

func TestRealBadInputExitsTwo(t *testing.T) {
	bin := murmurBin(t)
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("region: factory-1\nbindd: 1.2.3.4:5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"agent", "--bogus"}, nil, "unknown flag: --bogus"},
		{"bad bind", []string{"agent", "--bind", "nope", "--data-dir", dir}, nil, `invalid --bind: "nope" is not host:port`},
		{"bad join", []string{"agent", "--join", "1.2.3.4", "--data-dir", dir}, nil, "invalid --join"},
		{"bad region", []string{"agent", "--region", "Factory_1", "--data-dir", dir}, nil, "invalid --region"},
		{"bad capacity", []string{"agent", "--capacity", "cpu=lots", "--data-dir", dir}, nil, "invalid --capacity"},
		{"bad key", []string{"agent", "--encrypt", "c2hvcnQ=", "--data-dir", dir}, nil, "invalid --encrypt: key is 5 bytes"},
		{"bad env", []string{"agent", "--data-dir", dir}, []string{"MURMUR_VOTERS=two"}, "invalid MURMUR_VOTERS"},
		{"unknown config key", []string{"agent", "--config", badCfg}, nil, `unknown key "bindd" on line 2`},
		{"public API without token", []string{"agent", "--http", "0.0.0.0:0", "--data-dir", dir}, nil, "--api-token-file"},
		{"bad log level", []string{"agent", "--log-level", "loud", "--data-dir", dir}, nil, "invalid --log-level"},
		{"seven voters", []string{"agent", "--voters", "7", "--data-dir", dir}, nil, "invalid --voters: 7: use 1, 3 or 5"},
		{"negative timeout", []string{"apply", "-f", badCfg, "--wait", "--timeout", "-5s"}, nil, "invalid --timeout: -5s: give a positive duration"},
		{"zero timeout on delete", []string{"delete", "web", "--timeout", "0s"}, nil, "invalid --timeout: 0s"},
		{"beyond loopback without encryption and TLS", []string{"agent", "--bind", "0.0.0.0:7946", "--data-dir", dir}, nil, "invalid --insecure: gossip or Raft is reachable beyond loopback (0.0.0.0) and agents would trust any packet: give --encrypt"},
		{"beyond loopback with a key but no TLS", []string{"agent", "--bind", "127.0.0.1:7946", "--advertise", "10.1.2.3:7946", "--encrypt", "MDEyMzQ1Njc4OWFiY2RlZg==", "--data-dir", dir}, nil, "give --tls-ca, --tls-cert and --tls-key"},
		{"Raft on every interface", []string{"agent", "--bind", "127.0.0.1:7946", "--raft-bind", ":7947", "--data-dir", dir}, nil, "reachable beyond loopback (every interface)"},
		{"half the TLS files", []string{"agent", "--bind", "127.0.0.1:7946", "--tls-ca", badCfg, "--data-dir", dir}, nil, "invalid --tls-cert: give all three of --tls-ca, --tls-cert and --tls-key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err == nil {
				code = 0
			}
			if code != 2 {
				t.Errorf("exit code %d, want 2; output: %s", code, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q does not contain %q", out, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines != 1 {
				t.Errorf("output has %d lines, want one: %q", lines, out)
			}
		})
	}
}

func TestRealMetricsPassPromlint(t *testing.T) {
	port := freePort(t)
	p := startAgent(t, "m1", port)
	q := startAgent(t, "m2", freePort(t), "--join", fmt.Sprintf("127.0.0.1:%d", port))
	eventually(t, 20*time.Second, "m1 sees m2", func() bool { return members(p.http)["m2"].Status == "alive" })
	_ = q
	var body []byte
	eventually(t, 10*time.Second, "/metrics has memberlist and murmur metrics", func() bool {
		resp, err := http.Get("http://" + p.http + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		body = buf.Bytes()
		s := buf.String()
		return strings.Contains(s, "memberlist_") && strings.Contains(s, `murmur_gossip_members{status="alive"} 2`) &&
			strings.Contains(s, "murmur_gossip_messages_received_total") && strings.Contains(s, "murmur_gossip_decode_errors_total")
	})
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

// TestRealDataDirLockAndHTTPLimits: a second agent on a running agent's data dir
// refuses to start (exit 2, naming the other pid) instead of sharing its identity; the
// API refuses oversized request headers.
func TestRealDataDirLockAndHTTPLimits(t *testing.T) {
	p := startAgent(t, "l1", freePort(t))
	eventually(t, 20*time.Second, "l1's API answers", func() bool { return members(p.http) != nil })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, murmurBin(t), "agent", "--name", "l1", "--data-dir", p.dataDir,
		"--bind", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second agent on the same data dir: err %v, want exit 2; output: %s", err, out)
	}
	want := fmt.Sprintf("is in use by another murmur agent (pid %d)", p.cmd.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Errorf("output %q does not contain %q", out, want)
	}
	if b, err := os.ReadFile(filepath.Join(p.dataDir, "boot-count")); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("boot-count = %q, %v: the refused agent must not touch the data dir", b, err)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+p.http+"/v1/status", nil)
	req.Header.Set("X-Filler", strings.Repeat("a", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB of request headers: HTTP %d, want 431", resp.StatusCode)
	}
}
