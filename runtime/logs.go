package runtime

import (
	"context"
	"errors"
	"fmt"
)

// LogStream names one output stream of an instance. The values are those of
// Docker's multiplexed stream format (1 stdout, 2 stderr).
type LogStream uint8

// The output streams of an instance.
const (
	LogStdout LogStream = 1
	LogStderr LogStream = 2
)

func (s LogStream) String() string {
	switch s {
	case LogStdout:
		return "stdout"
	case LogStderr:
		return "stderr"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// LogChunkBytes is the most a driver passes to a LogSink in one call.
const LogChunkBytes = 64 << 10

// LogOptions says which part of an instance's output Logs sends.
//
// The backlog is the output that exists when Logs is called. Tail and MaxBytes
// bound it: the last Tail lines, but never more than the last MaxBytes bytes,
// of each stream. A window cut by MaxBytes sends no partial first line (it
// drops it, unless the window holds no line break at all: one long line keeps
// its end).
// Docker applies Tail to the container's log as a whole, both streams
// together, as `docker logs --tail` does; exec applies it to each stream.
type LogOptions struct {
	Stdout, Stderr bool
	// Tail is the number of backlog lines per stream; negative: all.
	Tail int
	// MaxBytes caps the backlog of each stream; 0 or negative: no cap.
	MaxBytes int64
	// Follow keeps sending new output after the backlog until ctx ends or the
	// instance's current run ends (its process or container exits). A run
	// the supervisor starts afterwards is not followed.
	Follow bool
}

// LogSink receives output in order within each stream. p is valid only during
// the call and holds at most LogChunkBytes. A non-nil error ends Logs with it.
type LogSink func(stream LogStream, p []byte) error

// LogReader is implemented by drivers that keep their instances' output (exec:
// the log files in the instance's directory; docker: the engine's log).
type LogReader interface {
	// Logs sends h's output to sink (see LogOptions). It returns nil when the
	// backlog has been sent (and, with Follow, the run has ended), ctx.Err()
	// when ctx ends first, ErrNoLogs when the driver has no output of h.
	Logs(ctx context.Context, h Handle, opts LogOptions, sink LogSink) error
}

// Errors of Supervisor.Logs and LogReader.Logs, checked with errors.Is.
var (
	// ErrNoInstance: this node's supervisor has no instance of that ID.
	ErrNoInstance = errors.New("no such instance on this node")
	// ErrNoLogs: the instance exists but its output cannot be read (a driver
	// that keeps none, or a container that is gone).
	ErrNoLogs = errors.New("no output kept for this instance")
)

// Logs sends the output of instance id to sink through its driver (see
// LogOptions). It takes the instance's current run: between runs (backoff)
// exec still serves its log files, docker has no container to read. It never
// holds the supervisor's lock while the driver reads.
func (s *Supervisor) Logs(ctx context.Context, id string, opts LogOptions, sink LogSink) error {
	s.mu.Lock()
	st, ok := s.status[id]
	var h Handle
	var driver, state string
	if ok {
		driver, state = st.Driver, st.State
		if r := s.runners[id]; r != nil && r.handle != nil {
			h = *r.handle
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: instance %q is not on node %s", ErrNoInstance, id, s.cfg.Node)
	}
	lr, ok := s.cfg.Drivers[driver].(LogReader)
	if !ok {
		return fmt.Errorf("%w: instance %q runs under driver %q, which keeps no output on node %s", ErrNoLogs, id, driver, s.cfg.Node)
	}
	if h.InstanceID == "" {
		if driver != DriverExec {
			return fmt.Errorf("%w: instance %q has no container on node %s now (state %s); the engine's log ends with its container", ErrNoLogs, id, s.cfg.Node, state)
		}
		h = Handle{Driver: driver, InstanceID: id}
	}
	return lr.Logs(ctx, h, opts, sink)
}

// sendChunks passes p to sink in pieces of at most LogChunkBytes.
func sendChunks(sink LogSink, stream LogStream, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), LogChunkBytes)
		if err := sink(stream, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
