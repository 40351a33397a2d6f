package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/runtime"
)

// testNet connects Services in memory: a send is a direct HandleMessage call (it
// never blocks), unless drop says to lose it or the destination is down.
type testNet struct {
	t     *testing.T
	mu    sync.Mutex // guards the fields below
	nodes map[string]*Service
	down  map[string]bool
	drop  func(from, to string, msg any) bool
}

func newTestNet(t *testing.T) *testNet {
	return &testNet{t: t, nodes: map[string]*Service{}, down: map[string]bool{}}
}

type localFunc = func(ctx context.Context, instance string, opts runtime.LogOptions, sink runtime.LogSink) error

// add starts a Service named name; tune adjusts its Config.
func (n *testNet) add(name string, local localFunc, tune func(*Config)) *Service {
	cfg := Config{Node: name, Local: local, Send: n.sender(name), Reply: n.sender(name), Hold: time.Second, Slack: time.Second}
	if tune != nil {
		tune(&cfg)
	}
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	n.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			n.t.Errorf("service %s: Run did not return", name)
		}
	})
	n.mu.Lock()
	n.nodes[name] = s
	n.mu.Unlock()
	return s
}

func (n *testNet) setDrop(f func(from, to string, msg any) bool) {
	n.mu.Lock()
	n.drop = f
	n.mu.Unlock()
}

func (n *testNet) sender(from string) func(string, []byte) error {
	return func(to string, b []byte) error {
		n.mu.Lock()
		dst, down, drop := n.nodes[to], n.down[to], n.drop
		n.mu.Unlock()
		if dst == nil || down {
			return fmt.Errorf("send to %s: no such live member", to)
		}
		if drop != nil {
			m, err := Decode(b)
			if err != nil {
				n.t.Errorf("undecodable message from %s: %v", from, err)
			}
			if drop(from, to, m) {
				return nil
			}
		}
		dst.HandleMessage(from, slices.Clone(b))
		return nil
	}
}

// outputs is a sink keeping each stream's bytes.
type outputs struct {
	mu   sync.Mutex
	out  [3]bytes.Buffer
	news chan struct{} // cap 1: something arrived
}

func newOutputs() *outputs { return &outputs{news: make(chan struct{}, 1)} }

func (o *outputs) sink(s runtime.LogStream, p []byte) error {
	o.mu.Lock()
	o.out[s].Write(p)
	o.mu.Unlock()
	select {
	case o.news <- struct{}{}:
	default:
	}
	return nil
}

func (o *outputs) get(s runtime.LogStream) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out[s].String()
}

// waitFor blocks until stream s holds want.
func (o *outputs) waitFor(t *testing.T, s runtime.LogStream, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for o.get(s) != want {
		select {
		case <-o.news:
		case <-deadline:
			t.Fatalf("%s = %q, want %q", s, o.get(s), want)
		}
	}
}

// static serves fixed output per instance, in writes of 1000 bytes.
func static(out map[string][2]string) localFunc {
	return func(ctx context.Context, instance string, opts runtime.LogOptions, sink runtime.LogSink) error {
		o, ok := out[instance]
		if !ok {
			return fmt.Errorf("%w: instance %q is not on node", runtime.ErrNoInstance, instance)
		}
		for i, s := range []runtime.LogStream{runtime.LogStdout, runtime.LogStderr} {
			if (s == runtime.LogStdout && !opts.Stdout) || (s == runtime.LogStderr && !opts.Stderr) {
				continue
			}
			for p := o[i]; len(p) > 0; {
				n := min(len(p), 1000)
				if err := sink(s, []byte(p[:n])); err != nil {
					return err
				}
				p = p[n:]
			}
		}
		return nil
	}
}

// feed is a followed instance: lines come from the test until it closes lines.
type feed struct {
	lines  chan string
	ended  chan error // what Local returned
	opened chan struct{}
}

func newFeed() *feed {
	return &feed{lines: make(chan string), ended: make(chan error, 4), opened: make(chan struct{}, 4)}
}

func (f *feed) local(ctx context.Context, instance string, opts runtime.LogOptions, sink runtime.LogSink) error {
	f.opened <- struct{}{}
	err := func() error {
		for {
			select {
			case l, ok := <-f.lines:
				if !ok {
					return nil
				}
				if err := sink(runtime.LogStdout, []byte(l)); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}()
	f.ended <- err
	return err
}

func allOpts(follow bool) Options {
	return Options{Stdout: true, Stderr: true, Tail: -1, MaxBytes: 1 << 20, Follow: follow}
}

func waitSessions(t *testing.T, s *Service, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Sessions() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", s.Sessions(), want)
		}
		time.Sleep(5 * time.Millisecond) // the poll period of this bounded wait
	}
}

func TestStreamBacklogInChunks(t *testing.T) {
	n := newTestNet(t)
	big := strings.Repeat("0123456789abcdef", 45000) // 720,000 bytes
	srv := n.add("n2", static(map[string][2]string{"web-1": {big, "warn\n"}}), func(c *Config) {
		c.ChunkBytes, c.BufferBytes = 64<<10, 128<<10
	})
	asker := n.add("n1", nil, nil)
	chunks := 0
	n.setDrop(func(from, to string, m any) bool {
		if c, ok := m.(Chunk); ok && len(c.Frames) > 0 {
			chunks++
		}
		return false
	})
	out := newOutputs()
	if err := asker.Stream(context.Background(), "n2", "web-1", allOpts(false), out.sink); err != nil {
		t.Fatal(err)
	}
	if out.get(runtime.LogStdout) != big || out.get(runtime.LogStderr) != "warn\n" {
		t.Errorf("got %d bytes of stdout and %q, want %d and warn", len(out.get(runtime.LogStdout)), out.get(runtime.LogStderr), len(big))
	}
	if chunks < 720000/(64<<10) {
		t.Errorf("%d chunks with output, want at least %d of 64 KiB", chunks, 720000/(64<<10))
	}
	waitSessions(t, srv, 0)
}

func TestStreamFollowUntilTheEnd(t *testing.T) {
	n := newTestNet(t)
	f := newFeed()
	srv := n.add("n2", f.local, nil)
	asker := n.add("n1", nil, nil)
	out := newOutputs()
	done := make(chan error, 1)
	go func() { done <- asker.Stream(context.Background(), "n2", "web-1", allOpts(true), out.sink) }()
	f.lines <- "one\n"
	out.waitFor(t, runtime.LogStdout, "one\n")
	f.lines <- "two\n"
	out.waitFor(t, runtime.LogStdout, "one\ntwo\n")
	close(f.lines) // the instance's run ends
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Stream at the end of the output = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream still running after the output ended")
	}
	waitSessions(t, srv, 0)
}

// TestStreamSurvivesLosses loses the second chunk once, then the pull acknowledging
// it once: each is sent again, and the output arrives whole, in order, once.
func TestStreamSurvivesLosses(t *testing.T) {
	n := newTestNet(t)
	lines := make([]string, 50)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %02d\n", i)
	}
	want := strings.Join(lines, "")
	n.add("n2", static(map[string][2]string{"web-1": {want, ""}}), func(c *Config) { c.ChunkBytes = 100 })
	asker := n.add("n1", nil, func(c *Config) { c.Hold, c.Slack = 20*time.Millisecond, 20*time.Millisecond })
	var mu sync.Mutex
	lostChunk, lostPull := false, false
	n.setDrop(func(from, to string, m any) bool {
		mu.Lock()
		defer mu.Unlock()
		switch m := m.(type) {
		case Chunk:
			if m.Seq == 2 && !lostChunk {
				lostChunk = true
				return true
			}
		case Pull:
			if m.Ack == 3 && !lostPull {
				lostPull = true
				return true
			}
		}
		return false
	})
	out := newOutputs()
	if err := asker.Stream(context.Background(), "n2", "web-1", allOpts(false), out.sink); err != nil {
		t.Fatal(err)
	}
	if got := out.get(runtime.LogStdout); got != want {
		t.Errorf("output after losses:\n%q\nwant\n%q", got, want)
	}
	if !lostChunk || !lostPull {
		t.Errorf("lost a chunk %v, lost a pull %v: want both", lostChunk, lostPull)
	}
}

func TestStreamErrors(t *testing.T) {
	n := newTestNet(t)
	n.add("n2", static(map[string][2]string{}), nil)
	asker := n.add("n1", nil, nil)
	out := newOutputs()
	err := asker.Stream(context.Background(), "n2", "ghost-1", allOpts(false), out.sink)
	if !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "n2") || !strings.Contains(err.Error(), `"ghost-1"`) {
		t.Errorf("unknown instance: %v, want ErrNoInstance naming node and instance", err)
	}
	err = asker.Stream(context.Background(), "n9", "web-1", allOpts(false), out.sink)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "n9") {
		t.Errorf("unknown node: %v, want ErrUnreachable naming it", err)
	}
	if err := asker.Stream(context.Background(), "n2", "web-1", Options{Tail: -1}, out.sink); err == nil || !strings.Contains(err.Error(), "stream") {
		t.Errorf("no stream asked: %v, want an error naming stream", err)
	}
}

// TestStreamNoAnswer: a node that takes pulls and never answers is unreachable
// after Retries more pulls, each waited for Hold + Slack on the asker's clock.
func TestStreamNoAnswer(t *testing.T) {
	n := newTestNet(t)
	n.add("n2", static(map[string][2]string{"web-1": {"x\n", ""}}), nil)
	clk := newFakeClock()
	asker := n.add("n1", nil, func(c *Config) { c.Clock, c.Retries = clk, 2 })
	pulls := 0
	n.setDrop(func(from, to string, m any) bool {
		if _, ok := m.(Pull); ok && to == "n2" {
			pulls++
			return true
		}
		return false
	})
	done := make(chan error, 1)
	go func() { done <- asker.Stream(context.Background(), "n2", "web-1", allOpts(false), newOutputs().sink) }()
	for i := 0; i < 3; i++ {
		clk.waitPending(t, 1)
		clk.Advance(2 * time.Second)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "n2") {
			t.Errorf("Stream = %v, want ErrUnreachable naming n2", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream still waiting after 3 unanswered pulls")
	}
	if pulls != 3 {
		t.Errorf("%d pulls sent, want 3 (1 + 2 retries)", pulls)
	}
}

// TestStreamCancelEndsTheSession: the asker goes away; the serving node stops
// reading the instance's output.
func TestStreamCancelEndsTheSession(t *testing.T) {
	n := newTestNet(t)
	f := newFeed()
	srv := n.add("n2", f.local, nil)
	asker := n.add("n1", nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	out := newOutputs()
	done := make(chan error, 1)
	go func() { done <- asker.Stream(ctx, "n2", "web-1", allOpts(true), out.sink) }()
	f.lines <- "one\n"
	out.waitFor(t, runtime.LogStdout, "one\n")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Stream after cancel = %v, want context.Canceled", err)
	}
	select {
	case err := <-f.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the instance's reader ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the serving node still reads the output after the asker went away")
	}
	waitSessions(t, srv, 0)
}

func TestStreamBusy(t *testing.T) {
	n := newTestNet(t)
	f := newFeed()
	n.add("n2", f.local, func(c *Config) { c.MaxSessions = 1 })
	asker := n.add("n1", nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- asker.Stream(ctx, "n2", "web-1", allOpts(true), newOutputs().sink) }()
	<-f.opened
	err := asker.Stream(context.Background(), "n2", "web-2", allOpts(false), newOutputs().sink)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "n2") {
		t.Errorf("second stream = %v, want ErrBusy naming n2", err)
	}
	cancel()
	<-done
}

// TestSessionIdleExpires: a session nobody pulls ends after Idle (the serving
// node's clock), and stops reading.
func TestSessionIdleExpires(t *testing.T) {
	n := newTestNet(t)
	f := newFeed()
	clk := newFakeClock()
	srv := n.add("n2", f.local, func(c *Config) { c.Clock, c.Hold, c.Idle = clk, time.Second, 30*time.Second })
	n.add("n1", nil, nil)
	b, err := Encode(Pull{ID: 1, Instance: "web-1", Options: allOpts(true)})
	if err != nil {
		t.Fatal(err)
	}
	srv.HandleMessage("n1", b) // an open whose asker never pulls again
	<-f.opened
	clk.waitPending(t, 1) // the first pull waits up to Hold for output
	clk.Advance(time.Second)
	clk.waitPending(t, 1) // then the session waits up to Idle for the next pull
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions before Idle, want 1", srv.Sessions())
	}
	clk.Advance(30 * time.Second)
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the reader of an idle session ended with %v, want context.Canceled", err)
	}
	waitSessions(t, srv, 0)
}

// fakeClock is a manual runtime.Clock: timers fire when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{} // cap 1: a timer was armed
}

type fakeTimer struct {
	c        chan time.Time
	deadline time.Time
	fired    bool
	clk      *fakeClock
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), added: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) runtime.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), deadline: c.now.Add(d), clk: c}
	c.timers = append(c.timers, t)
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.fired
	t.fired = true
	return was
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.fired {
			n++
		}
	}
	return n
}

// waitPending blocks until at least n timers are armed.
func (c *fakeClock) waitPending(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for c.pending() < n {
		select {
		case <-c.added:
		case <-deadline:
			t.Fatalf("fake clock: %d timers armed, want %d", c.pending(), n)
		}
	}
}

// Advance moves time forward and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.fired {
			continue
		}
		if !t.deadline.After(c.now) {
			t.fired = true
			t.c <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}
