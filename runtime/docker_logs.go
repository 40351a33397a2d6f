package runtime

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

var _ LogReader = (*DockerDriver)(nil)

// Logs implements LogReader from the engine's log of h's container, in two
// reads. The backlog: ContainerLogs with Tail and timestamps, demultiplexed
// (stdcopy), the last MaxBytes of each stream kept, then sent in the order the
// engine logged the lines. With Follow: ContainerLogs with follow since just
// after the backlog's last line (or since the call, for an empty backlog), so
// nothing is sent twice; it ends when the container stops or ctx ends.
func (d *DockerDriver) Logs(ctx context.Context, h Handle, opts LogOptions, sink LogSink) error {
	if h.Ref == "" {
		return fmt.Errorf("%w: instance %q has no container on node %s", ErrNoLogs, h.InstanceID, d.node)
	}
	start := time.Now()
	tail := "all"
	if opts.Tail >= 0 {
		tail = strconv.Itoa(opts.Tail)
	}
	back := &backlog{max: opts.MaxBytes}
	last, err := d.readLogs(ctx, h, container.LogsOptions{ShowStdout: opts.Stdout, ShowStderr: opts.Stderr, Timestamps: true, Tail: tail}, back.add)
	if err != nil {
		return err
	}
	if err := back.send(sink); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}
	since := start
	if !last.IsZero() {
		since = last.Add(time.Nanosecond) // the engine's since is inclusive
	}
	_, err = d.readLogs(ctx, h, container.LogsOptions{
		ShowStdout: opts.Stdout, ShowStderr: opts.Stderr, Timestamps: true, Follow: true, Tail: "all",
		Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
	}, func(s LogStream, _ time.Time, line []byte) error { return sendChunks(sink, s, line) })
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// readLogs reads one ContainerLogs answer to its end, passing every entry
// without its timestamp to f, and returns the last entry's time.
func (d *DockerDriver) readLogs(ctx context.Context, h Handle, o container.LogsOptions, f func(LogStream, time.Time, []byte) error) (time.Time, error) {
	rc, err := d.cli.ContainerLogs(ctx, h.Ref, o)
	if err != nil {
		if client.IsErrNotFound(err) {
			return time.Time{}, fmt.Errorf("%w: container %s of instance %q is gone", ErrNoLogs, shortID(h.Ref), h.InstanceID)
		}
		return time.Time{}, fmt.Errorf("logs of container %s: %w", shortID(h.Ref), err)
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	var last time.Time
	entry := func(s LogStream) entryWriter {
		return func(p []byte) error {
			t, line := splitTimestamp(p)
			if !t.IsZero() {
				last = t
			}
			return f(s, t, line)
		}
	}
	// stdcopy writes each frame with one Write: one log entry.
	if _, err := stdcopy.StdCopy(entry(LogStdout), entry(LogStderr), rc); err != nil {
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		return last, fmt.Errorf("logs of container %s: %w", shortID(h.Ref), err)
	}
	return last, nil
}

// entryWriter turns stdcopy's writes into calls of a function.
type entryWriter func(p []byte) error

func (w entryWriter) Write(p []byte) (int, error) {
	if err := w(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// splitTimestamp splits the "<RFC 3339 time> " prefix the engine puts before an
// entry when asked for timestamps. An entry without one is returned whole.
func splitTimestamp(p []byte) (time.Time, []byte) {
	i := bytes.IndexByte(p, ' ')
	if i <= 0 || i > 40 {
		return time.Time{}, p
	}
	t, err := time.Parse(time.RFC3339Nano, string(p[:i]))
	if err != nil {
		return time.Time{}, p
	}
	return t, p[i+1:]
}

// backlog keeps the newest entries of each stream within max bytes (0: all)
// and sends them in their order of arrival.
type backlog struct {
	max     int64
	entries []backlogEntry
	live    int      // entries not dropped
	size    [3]int64 // bytes kept per stream
	first   [3]int   // index of the oldest kept entry per stream
}

type backlogEntry struct {
	stream LogStream
	data   []byte // nil once dropped
}

func (b *backlog) add(s LogStream, _ time.Time, p []byte) error {
	if s != LogStdout && s != LogStderr {
		return nil
	}
	b.entries = append(b.entries, backlogEntry{stream: s, data: slices.Clone(p)})
	b.live++
	b.size[s] += int64(len(p))
	// Drop the stream's oldest entries while the cap is exceeded; the newest
	// entry alone over the cap keeps its end.
	for b.max > 0 && b.size[s] > b.max {
		i := b.first[s]
		for b.entries[i].stream != s || b.entries[i].data == nil {
			i++
		}
		e := &b.entries[i]
		if i == len(b.entries)-1 {
			cut := b.size[s] - b.max
			e.data = e.data[cut:]
			b.size[s] -= cut
			break
		}
		b.size[s] -= int64(len(e.data))
		e.data = nil
		b.live--
		b.first[s] = i + 1
	}
	if len(b.entries) > 4096 && len(b.entries) > 2*b.live {
		b.compact()
	}
	return nil
}

func (b *backlog) compact() {
	b.entries = slices.DeleteFunc(b.entries, func(e backlogEntry) bool { return e.data == nil })
	b.first = [3]int{}
}

func (b *backlog) send(sink LogSink) error {
	for _, e := range b.entries {
		if len(e.data) == 0 {
			continue
		}
		if err := sendChunks(sink, e.stream, e.data); err != nil {
			return err
		}
	}
	return nil
}
