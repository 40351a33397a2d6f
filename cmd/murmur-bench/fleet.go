package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// agentProc is one launched agent. Its ports and directories survive a restart.
type agentProc struct {
	name       string
	gossipPort int
	httpPort   int
	dataDir    string
	logPath    string

	// Set by start; replaced on restart. Guarded by fleet.mu.
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
}

func (a *agentProc) gossipAddr() string { return "127.0.0.1:" + strconv.Itoa(a.gossipPort) }
func (a *agentProc) httpBase() string   { return "http://127.0.0.1:" + strconv.Itoa(a.httpPort) }

// fleet launches and tracks agents; Close kills every process it started.
type fleet struct {
	opts   options
	dir    string
	client *http.Client
	log    *slog.Logger

	// realDir is dir with symlinks resolved: what /proc/PID/cwd shows for the
	// workload instances the agents start under it (see instances.go).
	realDir string

	mu       sync.Mutex // guards the fields below
	agents   []*agentProc
	running  map[*agentProc]*exec.Cmd // started and not yet reaped
	reserved map[int]bool             // ports handed out by this fleet
	portNext int                      // with --port-base: the next candidate is PortBase+portNext
}

func newFleet(opts options, log *slog.Logger) (*fleet, error) {
	bin, err := filepath.Abs(opts.Bin)
	if err != nil {
		return nil, fmt.Errorf("--bin %q: %w", opts.Bin, err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("--bin %q: %w (build it: go build -o %s ./cmd/murmur)", opts.Bin, err, opts.Bin)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("--bin %q: not an executable file", opts.Bin)
	}
	opts.Bin = bin
	dir, err := os.MkdirTemp("", "murmur-bench-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("resolve temp dir: %w", err)
	}
	tr := &http.Transport{
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &fleet{
		opts:     opts,
		dir:      dir,
		realDir:  realDir,
		client:   &http.Client{Transport: tr, Timeout: 2 * time.Second},
		log:      log,
		running:  map[*agentProc]*exec.Cmd{},
		reserved: map[int]bool{},
	}, nil
}

// Close SIGKILLs every process still running, reaps it (bounded), then SIGKILLs the
// process group of every workload instance the agents started (they run in their own
// process groups and outlive their agent, see instances.go), and removes the temp dir
// unless keep is set. It is safe to call more than once.
func (f *fleet) Close(keep bool) {
	f.mu.Lock()
	type pending struct {
		a    *agentProc
		done chan struct{}
	}
	var ps []pending
	for a, c := range f.running {
		_ = c.Process.Signal(syscall.SIGKILL)
		ps = append(ps, pending{a, a.done})
	}
	f.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			f.log.Error("agent not reaped after SIGKILL", "name", p.a.name)
		}
	}
	// Agents first, so no supervisor starts an instance again behind the sweep.
	if n, err := killInstances(f.realDir, "", 5*time.Second); err != nil {
		f.log.Error("workload instances left running", "err", err, "dir", f.dir)
	} else if n > 0 {
		f.log.Info("killed workload instances", "count", n)
	}
	if keep {
		f.log.Info("kept agent logs and data", "dir", f.dir)
		return
	}
	_ = os.RemoveAll(f.dir)
}

// pickGossipPort returns a port free on 127.0.0.1 for TCP and UDP whose port+1 (Raft)
// is free too, and that is at least 10 away from any port this fleet handed out.
//
// With --port-base the candidates count up from the base instead of coming from the
// kernel's ephemeral range, so a run stays inside a range of its own.
func (f *fleet) pickGossipPort() (int, error) {
	for range 500 {
		var closers []io.Closer
		var p int
		if f.opts.PortBase > 0 {
			var err error
			if p, err = f.nextBasePort(); err != nil {
				return 0, err
			}
			if f.nearReserved(p, 10) || p+1 > 65535 || !tryListen(&closers, "tcp", p) {
				for _, c := range closers {
					_ = c.Close()
				}
				continue
			}
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("pick port: %w", err)
			}
			p = l.Addr().(*net.TCPAddr).Port
			closers = append(closers, l)
		}
		ok := p+1 <= 65535 && !f.nearReserved(p, 10)
		if ok {
			ok = tryListen(&closers, "udp", p) && tryListen(&closers, "tcp", p+1) && tryListen(&closers, "udp", p+1)
		}
		for _, c := range closers {
			_ = c.Close()
		}
		if ok {
			f.reserve(p, p+1)
			return p, nil
		}
	}
	return 0, errors.New("pick port: no free TCP+UDP port with a free port+1 after 500 tries")
}

// pickHTTPPort returns a free TCP port not near any gossip/Raft port of this fleet.
func (f *fleet) pickHTTPPort() (int, error) {
	for range 500 {
		var p int
		if f.opts.PortBase > 0 {
			var err error
			if p, err = f.nextBasePort(); err != nil {
				return 0, err
			}
			var closers []io.Closer
			free := !f.nearReserved(p, 1) && tryListen(&closers, "tcp", p)
			for _, c := range closers {
				_ = c.Close()
			}
			if !free {
				continue
			}
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("pick port: %w", err)
			}
			p = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
		}
		if !f.nearReserved(p, 1) {
			f.reserve(p)
			return p, nil
		}
	}
	return 0, errors.New("pick port: no free TCP port after 500 tries")
}

// nextBasePort returns the next candidate port counting up from --port-base.
func (f *fleet) nextBasePort() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.opts.PortBase + f.portNext
	f.portNext++
	if p > 65535 {
		return 0, fmt.Errorf("pick port: counting up from --port-base %d ran past 65535; use a lower base", f.opts.PortBase)
	}
	return p, nil
}

func tryListen(closers *[]io.Closer, network string, port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		*closers = append(*closers, c)
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	*closers = append(*closers, l)
	return true
}

func (f *fleet) nearReserved(p, dist int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for q := range f.reserved {
		if q >= p-dist && q <= p+dist {
			return true
		}
	}
	return false
}

func (f *fleet) reserve(ports ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ports {
		f.reserved[p] = true
	}
}

// add allocates ports and directories for a new agent (does not start it).
func (f *fleet) add(name string) (*agentProc, error) {
	gp, err := f.pickGossipPort()
	if err != nil {
		return nil, err
	}
	hp, err := f.pickHTTPPort()
	if err != nil {
		return nil, err
	}
	a := &agentProc{
		name:       name,
		gossipPort: gp,
		httpPort:   hp,
		dataDir:    filepath.Join(f.dir, name),
		logPath:    filepath.Join(f.dir, name+".log"),
	}
	if err := os.MkdirAll(a.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	f.mu.Lock()
	f.agents = append(f.agents, a)
	f.mu.Unlock()
	return a, nil
}

// start launches a (again, after a kill) and returns once the process is started,
// without waiting for it to be ready. join is the seed's gossip address or "".
func (f *fleet) start(a *agentProc, join string) error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open agent log: %w", err)
	}
	args := []string{"agent",
		"--name", a.name,
		"--bind", a.gossipAddr(),
		"--http", "127.0.0.1:" + strconv.Itoa(a.httpPort),
		"--data-dir", a.dataDir,
		"--capacity", f.opts.Capacity,
		"--log-level", f.opts.LogLevel,
	}
	if join != "" {
		args = append(args, "--join", join)
	}
	for _, x := range f.opts.ExtraArgs {
		// {name} stands for the agent's name: per-node files such as TLS certificates.
		args = append(args, strings.ReplaceAll(x, "{name}", a.name))
	}
	cmd := exec.Command(f.opts.Bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = f.dir
	cmd.SysProcAttr = childAttr()
	// The agent must not inherit MURMUR_* settings of the caller's shell.
	env := []string{}
	for _, kv := range os.Environ() {
		if !bytes.HasPrefix([]byte(kv), []byte("MURMUR_")) {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", a.name, err)
	}
	done := make(chan struct{})
	a.cmd, a.done = cmd, done
	f.running[a] = cmd
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		f.mu.Lock()
		if f.running[a] == cmd {
			delete(f.running, a)
		}
		f.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig to a's current process and waits (bounded) for it to exit.
func (f *fleet) stop(a *agentProc, sig syscall.Signal, timeout time.Duration) error {
	f.mu.Lock()
	cmd, done := a.cmd, a.done
	f.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("stop %s: never started", a.name)
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", a.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("stop %s: no exit %s after %s, killed", a.name, timeout, sig)
	}
}

// exited reports whether a's current process has exited.
func (f *fleet) exited(a *agentProc) bool {
	f.mu.Lock()
	done := a.done
	f.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (f *fleet) pid(a *agentProc) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return a.cmd.Process.Pid
}

// member is the part of /v1/members the bench reads.
type member struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// members returns a's fleet view: member name → status.
func (f *fleet) members(ctx context.Context, a *agentProc) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.httpBase()+"/v1/members", nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", a.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", a.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("members of %s: HTTP %d: %s", a.name, resp.StatusCode, bytes.TrimSpace(body))
	}
	return decodeMembers(body)
}

// decodeMembers parses a /v1/members answer into name → status.
func decodeMembers(body []byte) (map[string]string, error) {
	var out struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("decode /v1/members: %w", err)
	}
	m := make(map[string]string, len(out.Members))
	for _, mb := range out.Members {
		if mb.Name == "" {
			return nil, errors.New("decode /v1/members: a member without a name")
		}
		m[mb.Name] = mb.Status
	}
	return m, nil
}

// logTail returns the last n bytes of a's log, for error messages.
func logTail(a *agentProc, n int64) string {
	fh, err := os.Open(a.logPath)
	if err != nil {
		return ""
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	_, _ = fh.ReadAt(b, off)
	return string(b)
}

// waitFleet polls every observer until each sees every name in want with status
// "alive", bounded by timeout. It fails early if an agent process exits.
func (f *fleet) waitAllAlive(ctx context.Context, observers []*agentProc, want []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(max(f.opts.Poll, 100*time.Millisecond))
	defer tick.Stop()
	var lastErr error
	for {
		ok := true
		for _, o := range observers {
			if f.exited(o) {
				return fmt.Errorf("agent %s exited; log tail:\n%s", o.name, logTail(o, 2000))
			}
			view, err := f.members(ctx, o)
			if err != nil {
				lastErr, ok = err, false
				break
			}
			for _, n := range want {
				if view[n] != "alive" {
					lastErr, ok = fmt.Errorf("%s sees %s as %q", o.name, n, view[n]), false
					break
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("fleet not converged after %s: %v", timeout, lastErr)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// names returns the names of agents.
func names(as []*agentProc) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.name
	}
	return out
}

// watch polls every observer in parallel, every f.opts.Poll, until each predicate has
// held once for target in that observer's view. got[i][j] is the time from t0 to the
// first answer of observer i in which predicate j held. It is bounded by timeout.
func (f *fleet) watch(ctx context.Context, observers []*agentProc, target string, t0 time.Time, timeout time.Duration, preds ...func(status string, listed bool) bool) ([][]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	got := make([][]time.Duration, len(observers))
	errs := make([]error, len(observers))
	var wg sync.WaitGroup
	for i, o := range observers {
		got[i] = make([]time.Duration, len(preds))
		wg.Go(func() {
			seen := make([]bool, len(preds))
			left := len(preds)
			tick := time.NewTicker(f.opts.Poll)
			defer tick.Stop()
			var lastErr error
			for {
				view, err := f.members(ctx, o)
				now := time.Since(t0)
				if err != nil {
					lastErr = err
				} else {
					st, listed := view[target]
					for j, p := range preds {
						if !seen[j] && p(st, listed) {
							seen[j], got[i][j] = true, now
							left--
						}
					}
					lastErr = fmt.Errorf("%s sees %s as %q", o.name, target, st)
				}
				if left == 0 {
					return
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("observer %s: %w (last: %v)", o.name, ctx.Err(), lastErr)
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
	return got, errors.Join(errs...)
}

// loadavg returns /proc/loadavg's first three fields, for the report.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return "unknown"
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}
