package runtime

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The backlog's model: what sendBacklog must send, computed on the whole log in
// memory. lastLines keeps the last n lines (n < 0: all; a last line without a break
// counts); afterFirstBreak drops a partial first line unless the window holds no
// break but its last byte.
func lastLines(b []byte, n int) []byte {
	if n < 0 {
		return b
	}
	if n == 0 {
		return b[:0]
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

func afterFirstBreak(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i+1 < len(b) {
		return b[i+1:]
	}
	return b
}

func modelBacklog(log []byte, tail int, maxBytes int64) []byte {
	b := log
	if maxBytes > 0 && maxBytes < int64(len(log)) {
		b = log[int64(len(log))-maxBytes:]
		if log[int64(len(log))-maxBytes-1] != '\n' {
			b = afterFirstBreak(b)
		}
	}
	return lastLines(b, tail)
}

// backlogOf writes old and cur as a stream's .log.1 and .log and returns what
// sendBacklog sends of them.
func backlogOf(t *testing.T, dir, old, cur string, tail int, maxBytes int64) string {
	t.Helper()
	for name, body := range map[string]string{"stdout.log.1": old, "stdout.log": cur} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got collect
	off, err := sendBacklog(filepath.Join(dir, "stdout.log"), LogStdout, tail, maxBytes, got.sink)
	if err != nil {
		t.Fatalf("sendBacklog: %v", err)
	}
	if off != int64(len(cur)) {
		t.Fatalf("follow offset %d, want the current file's size %d", off, len(cur))
	}
	if got.max > LogChunkBytes {
		t.Fatalf("a chunk of %d bytes, over %d", got.max, LogChunkBytes)
	}
	return got.get(LogStdout)
}

func TestBacklogEdges(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		old, cur string
		tail     int
		max      int64
		want     string
	}{
		{"", "a\nb\nc\n", -1, 0, "a\nb\nc\n"},
		{"", "a\nb\nc\n", 0, 0, ""},
		{"", "a\nb\nc\n", 1, 0, "c\n"},
		{"", "a\nb\nc\n", 3, 0, "a\nb\nc\n"},
		{"", "a\nb\nc\n", 9, 0, "a\nb\nc\n"},
		{"", "a\nb\nc", 1, 0, "c"}, // a last line without a break is a line
		{"", "a\nb\nc", 2, 0, "b\nc"},
		{"", "\n\n", 1, 0, "\n"},
		{"", "", 3, 0, ""},
		{"a\nb", "c\nd\n", 2, 0, "bc\nd\n"}, // a line split by the rotation is one line
		{"", "tial\nb\nc\n", -1, 8, "b\nc\n"},
		{"", "xxxxxxxxxxone long li", -1, 11, "one long li"},
		{"", "x\npartial\n", -1, 8, "partial\n"}, // the window starts on a line
		{"", "xx\nartial\n", -1, 8, "artial\n"},  // the window starts with a break
		{"", "xxx\nrtial\n", -1, 8, "rtial\n"},
		{"", "xxxx\ntial\n", -1, 4, "ial\n"}, // only the last byte is a break: keep the end
	}
	for _, c := range cases {
		if got := backlogOf(t, dir, c.old, c.cur, c.tail, c.max); got != c.want {
			t.Errorf("old %q cur %q tail %d max %d: %q, want %q", c.old, c.cur, c.tail, c.max, got, c.want)
		}
		if model := string(modelBacklog([]byte(c.old+c.cur), c.tail, c.max)); model != c.want {
			t.Errorf("the model disagrees with the case: %q", model)
		}
	}
}

// TestBacklogMatchesModel: random logs with short and very long lines, split at a
// random point into .log.1 and .log, larger than the chunks sendBacklog reads in.
func TestBacklogMatchesModel(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(15, 15))
	for i := 0; i < 150; i++ {
		var b bytes.Buffer
		for size := rng.IntN(300_000); b.Len() < size; {
			n := rng.IntN(100)
			if rng.IntN(20) == 0 {
				n = rng.IntN(3 * LogChunkBytes)
			}
			b.Write(bytes.Repeat([]byte{byte('a' + i%26)}, n))
			if rng.IntN(10) > 0 {
				b.WriteByte('\n')
			}
		}
		log := b.Bytes()
		split := 0
		if len(log) > 0 {
			split = rng.IntN(len(log) + 1)
		}
		tail := rng.IntN(2000) - 1
		var capBytes int64
		if rng.IntN(3) > 0 {
			capBytes = int64(rng.IntN(len(log) + 10))
		}
		want := modelBacklog(log, tail, capBytes)
		got := backlogOf(t, dir, string(log[:split]), string(log[split:]), tail, capBytes)
		if got != string(want) {
			t.Fatalf("log of %d bytes split at %d, tail %d, cap %d: %d bytes sent, want %d", len(log), split, tail, capBytes, len(got), len(want))
		}
	}
}

// collect is a LogSink that keeps what it gets per stream.
type collect struct {
	mu  sync.Mutex
	out map[LogStream]*bytes.Buffer
	max int // largest chunk seen
}

func (c *collect) sink(s LogStream, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil {
		c.out = map[LogStream]*bytes.Buffer{}
	}
	if c.out[s] == nil {
		c.out[s] = &bytes.Buffer{}
	}
	c.out[s].Write(p)
	c.max = max(c.max, len(p))
	return nil
}

func (c *collect) get(s LogStream) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out[s] == nil {
		return ""
	}
	return c.out[s].String()
}

func writeLog(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendLog(t *testing.T, path, body string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
}

func TestExecLogsBacklog(t *testing.T) {
	dir := t.TempDir()
	d, err := NewExecDriver(ExecConfig{DataDir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(dir, "web-1")
	writeLog(t, inst, "stdout.log.1", "old1\nold2\n")
	writeLog(t, inst, "stdout.log", "new1\nnew2\nnew3\n")
	writeLog(t, inst, "stderr.log", "oops\n")
	h := Handle{Driver: DriverExec, InstanceID: "web-1"}
	cases := []struct {
		name             string
		opts             LogOptions
		wantOut, wantErr string
	}{
		{"all of both, .1 first", LogOptions{Stdout: true, Stderr: true, Tail: -1}, "old1\nold2\nnew1\nnew2\nnew3\n", "oops\n"},
		{"stdout only", LogOptions{Stdout: true, Tail: -1}, "old1\nold2\nnew1\nnew2\nnew3\n", ""},
		{"stderr only", LogOptions{Stderr: true, Tail: -1}, "", "oops\n"},
		{"tail 2", LogOptions{Stdout: true, Stderr: true, Tail: 2}, "new2\nnew3\n", "oops\n"},
		{"tail reaches into .1", LogOptions{Stdout: true, Tail: 4}, "old2\nnew1\nnew2\nnew3\n", ""},
		{"tail 0", LogOptions{Stdout: true, Stderr: true, Tail: 0}, "", ""},
		// The last 7 bytes are "2\nnew3\n": the partial first line goes.
		{"cap cuts a line", LogOptions{Stdout: true, Tail: -1, MaxBytes: 7}, "new3\n", ""},
		{"cap across files", LogOptions{Stdout: true, Tail: -1, MaxBytes: 17}, "new1\nnew2\nnew3\n", ""},
		// The byte before the last 20 is a line break: the first line is whole.
		{"cap on a line break", LogOptions{Stdout: true, Tail: -1, MaxBytes: 20}, "old2\nnew1\nnew2\nnew3\n", ""},
		{"cap over everything", LogOptions{Stdout: true, Tail: -1, MaxBytes: 1 << 20}, "old1\nold2\nnew1\nnew2\nnew3\n", ""},
		{"cap and tail: tail wins", LogOptions{Stdout: true, Tail: 1, MaxBytes: 1 << 20}, "new3\n", ""},
		{"cap and tail: cap wins", LogOptions{Stdout: true, Tail: 5, MaxBytes: 9}, "new3\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got collect
			if err := d.Logs(context.Background(), h, c.opts, got.sink); err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if g := got.get(LogStdout); g != c.wantOut {
				t.Errorf("stdout = %q, want %q", g, c.wantOut)
			}
			if g := got.get(LogStderr); g != c.wantErr {
				t.Errorf("stderr = %q, want %q", g, c.wantErr)
			}
		})
	}

	// One long line over the cap keeps its end.
	writeLog(t, filepath.Join(dir, "long"), "stdout.log", strings.Repeat("x", 100)+"END")
	var got collect
	if err := d.Logs(context.Background(), Handle{InstanceID: "long"}, LogOptions{Stdout: true, Tail: -1, MaxBytes: 10}, got.sink); err != nil {
		t.Fatal(err)
	}
	if g := got.get(LogStdout); g != "xxxxxxxEND" {
		t.Errorf("long line capped to %q, want its last 10 bytes", g)
	}

	// Chunks stay within LogChunkBytes.
	writeLog(t, filepath.Join(dir, "big"), "stdout.log", strings.Repeat("0123456789abcde\n", 20000))
	got = collect{}
	if err := d.Logs(context.Background(), Handle{InstanceID: "big"}, LogOptions{Stdout: true, Tail: -1}, got.sink); err != nil {
		t.Fatal(err)
	}
	if n := len(got.get(LogStdout)); n != 16*20000 || got.max > LogChunkBytes {
		t.Errorf("big: %d bytes in chunks of up to %d, want %d in chunks of at most %d", n, got.max, 16*20000, LogChunkBytes)
	}

	// An instance that never ran.
	err = d.Logs(context.Background(), Handle{InstanceID: "nothere"}, LogOptions{Stdout: true, Tail: -1}, got.sink)
	if !errors.Is(err, ErrNoLogs) || !strings.Contains(err.Error(), `"nothere"`) {
		t.Errorf("Logs of an instance that never ran = %v, want ErrNoLogs naming it", err)
	}
}

// TestExecLogsFollow drives the follow loop with a fake clock: each Advance is one
// poll, so every read is explicit.
func TestExecLogsFollow(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	d, err := NewExecDriver(ExecConfig{DataDir: dir, Node: "n1", Clock: clk, LogPoll: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := d.Start(ctx, InstanceSpec{ID: "f", Intent: "w", Generation: 1, Driver: DriverExec, Command: []string{"/bin/sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), h, 0) })
	out := filepath.Join(dir, "f", "stdout.log")
	appendLog(t, out, "before\n")

	type chunk struct {
		s LogStream
		p string
	}
	chunks := make(chan chunk, 16)
	done := make(chan error, 1)
	go func() {
		done <- d.Logs(ctx, h, LogOptions{Stdout: true, Stderr: true, Tail: -1, Follow: true}, func(s LogStream, p []byte) error {
			chunks <- chunk{s, string(p)}
			return nil
		})
	}()
	next := func(what string) chunk {
		t.Helper()
		select {
		case c := <-chunks:
			return c
		case err := <-done:
			done <- err // for the final check
			select {    // Logs may have returned right after its last send
			case c := <-chunks:
				return c
			default:
			}
			t.Fatalf("%s: Logs returned %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing within 10 s", what)
		}
		return chunk{}
	}
	if c := next("backlog"); c != (chunk{LogStdout, "before\n"}) {
		t.Fatalf("backlog = %+v, want stdout before", c)
	}
	// The loop's only wait is its poll timer: once that is armed, the loop is
	// idle until fire moves the clock past it.
	armed := func() { clk.waitPending(t, 1) }
	fire := func() { clk.Advance(time.Second) }
	armed()
	appendLog(t, out, "one\n")
	appendLog(t, filepath.Join(dir, "f", "stderr.log"), "warn\n")
	fire()
	if c := next("first poll"); c != (chunk{LogStdout, "one\n"}) {
		t.Errorf("first poll: %+v, want stdout one", c)
	}
	if c := next("first poll, stderr"); c != (chunk{LogStderr, "warn\n"}) {
		t.Errorf("first poll: %+v, want stderr warn", c)
	}
	// A poll with nothing new sends nothing; the next one sends what came since.
	armed()
	fire()
	armed()
	appendLog(t, out, "partial")
	fire()
	if c := next("partial line"); c != (chunk{LogStdout, "partial"}) {
		t.Errorf("partial line: %+v", c)
	}
	// The size cap copy-truncated the file: reading starts over at its beginning.
	armed()
	if err := os.Truncate(out, 0); err != nil {
		t.Fatal(err)
	}
	appendLog(t, out, "after rotation\n")
	fire()
	if c := next("after rotation"); c != (chunk{LogStdout, "after rotation\n"}) {
		t.Errorf("after rotation: %+v", c)
	}
	// The process exits: what it wrote last is sent, then Logs returns.
	armed()
	if err := d.Stop(ctx, h, time.Second); err != nil {
		t.Fatal(err)
	}
	appendLog(t, out, "last words\n")
	fire()
	if c := next("last words"); c != (chunk{LogStdout, "last words\n"}) {
		t.Errorf("last words: %+v", c)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Logs after the process exited = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs still following 10 s after the process exited")
	}
}

func TestExecLogsFollowEndsWithContext(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	d, err := NewExecDriver(ExecConfig{DataDir: dir, Node: "n1", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Start(context.Background(), InstanceSpec{ID: "c", Intent: "w", Generation: 1, Driver: DriverExec, Command: []string{"/bin/sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), h, 0) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Logs(ctx, h, LogOptions{Stdout: true, Tail: -1, Follow: true}, func(LogStream, []byte) error { return nil })
	}()
	clk.waitPending(t, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Logs after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs did not end with its context")
	}
}

func TestSupervisorLogs(t *testing.T) {
	dir := t.TempDir()
	ex, err := NewExecDriver(ExecConfig{DataDir: filepath.Join(dir, "exec"), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := New(Config{Node: "n1", DataDir: dir, Drivers: map[string]Driver{DriverExec: ex, DriverDocker: newFakeDriver()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.SetDesired([]InstanceSpec{
		{ID: "e", Intent: "w", Generation: 1, Driver: DriverExec, Command: []string{"/bin/true"}},
		{ID: "k", Intent: "w", Generation: 1, Driver: DriverDocker, Image: "x:1"},
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := LogOptions{Stdout: true, Tail: -1}
	nop := func(LogStream, []byte) error { return nil }
	if err := sup.Logs(ctx, "zz", opts, nop); !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), `"zz"`) || !strings.Contains(err.Error(), "n1") {
		t.Errorf("unknown instance: %v, want ErrNoInstance naming it and the node", err)
	}
	if err := sup.Logs(ctx, "k", opts, nop); !errors.Is(err, ErrNoLogs) {
		t.Errorf("driver without logs: %v, want ErrNoLogs", err)
	}
	// Not started yet: no directory.
	if err := sup.Logs(ctx, "e", opts, nop); !errors.Is(err, ErrNoLogs) {
		t.Errorf("exec instance that never ran: %v, want ErrNoLogs", err)
	}
	// Between runs the files are still served.
	writeLog(t, filepath.Join(dir, "exec", "e"), "stdout.log", "hello\n")
	var got collect
	if err := sup.Logs(ctx, "e", opts, got.sink); err != nil || got.get(LogStdout) != "hello\n" {
		t.Errorf("exec instance between runs: %q, %v; want hello", got.get(LogStdout), err)
	}
}

func TestDockerBacklogCap(t *testing.T) {
	b := &backlog{max: 10}
	for _, e := range []struct {
		s LogStream
		p string
	}{{LogStdout, "o1\n"}, {LogStderr, "e1\n"}, {LogStdout, "o2\n"}, {LogStdout, "o3\n"}, {LogStdout, "o4\n"}, {LogStderr, "a very long error\n"}} {
		_ = b.add(e.s, time.Time{}, []byte(e.p))
	}
	var order []string
	if err := b.send(func(s LogStream, p []byte) error { order = append(order, s.String()+":"+string(p)); return nil }); err != nil {
		t.Fatal(err)
	}
	// stdout keeps its last 9 bytes (3 lines: o2..o4, since o1 would make 12);
	// stderr's newest entry alone is over the cap and keeps its last 10 bytes.
	want := []string{"stdout:o2\n", "stdout:o3\n", "stdout:o4\n", "stderr:ong error\n"}
	if strings.Join(order, "|") != strings.Join(want, "|") {
		t.Errorf("backlog sent %q, want %q", order, want)
	}

	// Many small entries: compaction keeps the order and the cap.
	b = &backlog{max: 100}
	for i := 0; i < 20000; i++ {
		_ = b.add(LogStream(1+i%2), time.Time{}, []byte("0123456789"))
	}
	var n [3]int
	_ = b.send(func(s LogStream, p []byte) error { n[s] += len(p); return nil })
	if n[LogStdout] != 100 || n[LogStderr] != 100 || len(b.entries) > 8192 {
		t.Errorf("after 20000 entries: %d/%d bytes kept, %d entries held; want 100/100 and compaction", n[LogStdout], n[LogStderr], len(b.entries))
	}
}

func TestSplitTimestamp(t *testing.T) {
	ts, rest := splitTimestamp([]byte("2025-01-02T03:04:05.123456789Z hello world\n"))
	if ts.IsZero() || ts.Nanosecond() != 123456789 || string(rest) != "hello world\n" {
		t.Errorf("split = %v %q", ts, rest)
	}
	for _, in := range []string{"no timestamp here\n", "", " leading space", "2025-13-99 bad"} {
		ts, rest := splitTimestamp([]byte(in))
		if !ts.IsZero() || string(rest) != in {
			t.Errorf("splitTimestamp(%q) = %v %q, want it whole", in, ts, rest)
		}
	}
}
