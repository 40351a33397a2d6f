package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// logFile is the file name of a stream's log in the instance directory; the
// previous file (after a copy-truncate, see rotateIfLarger) has suffix ".1".
func logFile(s LogStream) string {
	if s == LogStderr {
		return "stderr.log"
	}
	return "stdout.log"
}

// Logs implements LogReader. The backlog comes from std{out,err}.log.1 and
// .log of the instance's directory (stdout first, then stderr: the files hold
// no times to interleave them by). With Follow it then reads what is appended
// to the .log files every LogPoll, until ctx ends or h's process has exited
// (what it wrote before exiting is sent first). When a file shrinks (the size
// cap copy-truncated it) reading starts again at its beginning; what the
// process wrote between the last poll and the truncation is in .log.1 and is
// not sent.
func (d *ExecDriver) Logs(ctx context.Context, h Handle, opts LogOptions, sink LogSink) error {
	dir := d.instDir(h.InstanceID)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: instance %q has not run on node %s yet", ErrNoLogs, h.InstanceID, d.node)
		}
		return fmt.Errorf("logs of %q: %w", h.InstanceID, err)
	}
	var streams []LogStream
	if opts.Stdout {
		streams = append(streams, LogStdout)
	}
	if opts.Stderr {
		streams = append(streams, LogStderr)
	}
	offsets := make([]int64, len(streams))
	for i, s := range streams {
		b, off, err := readBacklog(filepath.Join(dir, logFile(s)), opts.Tail, opts.MaxBytes)
		if err != nil {
			return fmt.Errorf("logs of %q: %w", h.InstanceID, err)
		}
		offsets[i] = off
		if err := sendChunks(sink, s, b); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	files := make([]*os.File, len(streams))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for {
		// Liveness first: whatever the process wrote before it exited is on
		// disk by then and is read below.
		alive := d.alive(h)
		for i, s := range streams {
			if files[i] == nil {
				f, err := os.Open(filepath.Join(dir, logFile(s)))
				if errors.Is(err, os.ErrNotExist) {
					continue // not created yet
				}
				if err != nil {
					return fmt.Errorf("logs of %q: %w", h.InstanceID, err)
				}
				files[i] = f
			}
			off, err := readNew(files[i], offsets[i], s, sink)
			offsets[i] = off
			if err != nil {
				return err
			}
		}
		if !alive {
			return nil
		}
		t := d.clock.NewTimer(d.logPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// readBacklog returns the backlog of one stream's log at path (path.1, then
// path): its last tail lines (tail < 0: all) within its last maxBytes (<= 0:
// no cap), and the size of path it read up to, where following goes on.
func readBacklog(path string, tail int, maxBytes int64) ([]byte, int64, error) {
	cur, curSize, err := openSized(path)
	if err != nil {
		return nil, 0, err
	}
	if cur != nil {
		defer cur.Close()
	}
	old, oldSize, err := openSized(path + ".1")
	if err != nil {
		return nil, 0, err
	}
	if old != nil {
		defer old.Close()
	}
	total := oldSize + curSize
	window := total
	cut := maxBytes > 0 && maxBytes < total
	if cut {
		// One byte more: the one before the window says whether its first line
		// is whole.
		window = maxBytes + 1
	}
	fromCur := min(window, curSize)
	fromOld := window - fromCur
	buf := make([]byte, window)
	if fromOld > 0 {
		if _, err := old.ReadAt(buf[:fromOld], oldSize-fromOld); err != nil {
			return nil, 0, fmt.Errorf("read %s.1: %w", path, err)
		}
	}
	if fromCur > 0 {
		if _, err := cur.ReadAt(buf[fromOld:], curSize-fromCur); err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if cut {
		if buf[0] == '\n' {
			buf = buf[1:]
		} else {
			buf = afterFirstBreak(buf[1:])
		}
	}
	return lastLines(buf, tail), curSize, nil
}

// openSized opens path for reading with its size; a missing file is (nil, 0).
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// readNew sends what f holds beyond off and returns the new offset. A file
// shorter than off was truncated: it is read again from its beginning.
func readNew(f *os.File, off int64, s LogStream, sink LogSink) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return off, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	size := fi.Size()
	if size < off {
		off = 0
	}
	buf := make([]byte, min(size-off, LogChunkBytes))
	for off < size {
		n, err := f.ReadAt(buf[:min(size-off, int64(len(buf)))], off)
		if n > 0 {
			if serr := sink(s, buf[:n]); serr != nil {
				return off, serr
			}
			off += int64(n)
		}
		if err == io.EOF {
			break // truncated while reading: the next poll starts over
		}
		if err != nil {
			return off, fmt.Errorf("read %s: %w", f.Name(), err)
		}
	}
	return off, nil
}
