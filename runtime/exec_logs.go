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
		off, err := sendBacklog(filepath.Join(dir, logFile(s)), s, opts.Tail, opts.MaxBytes, sink)
		if err != nil {
			return fmt.Errorf("logs of %q: %w", h.InstanceID, err)
		}
		offsets[i] = off
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

// sendBacklog sends the backlog of one stream's log at path (path.1, then path): its
// last tail lines (tail < 0: all) within its last maxBytes (<= 0: no cap), read in
// pieces of LogChunkBytes, so a request holds no more than that in memory. It
// returns the size of path it read up to, where following goes on.
func sendBacklog(path string, s LogStream, tail int, maxBytes int64, sink LogSink) (int64, error) {
	cur, curSize, err := openSized(path)
	if err != nil {
		return 0, err
	}
	if cur != nil {
		defer cur.Close()
	}
	old, oldSize, err := openSized(path + ".1")
	if err != nil {
		return 0, err
	}
	if old != nil {
		defer old.Close()
	}
	v := &logView{old: old, cur: cur, oldSize: oldSize, curSize: curSize}
	start, err := v.backlogStart(tail, maxBytes)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, min(v.size()-start, LogChunkBytes))
	for off := start; off < v.size(); {
		n, err := v.ReadAt(buf[:min(v.size()-off, int64(len(buf)))], off)
		if n > 0 {
			if err := sink(s, buf[:n]); err != nil {
				return 0, err
			}
			off += int64(n)
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return curSize, nil
}

// logView reads a stream's log as one sequence of bytes: the previous file, then the
// current one, at the sizes they had when opened.
type logView struct {
	old, cur         *os.File // nil when missing
	oldSize, curSize int64
}

func (v *logView) size() int64 { return v.oldSize + v.curSize }

// ReadAt reads len(p) bytes at off (off+len(p) <= size), across the two files.
func (v *logView) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < v.oldSize {
		k := min(int64(len(p)), v.oldSize-off)
		m, err := v.old.ReadAt(p[:k], off)
		n += m
		if err != nil {
			return n, err
		}
		p, off = p[k:], v.oldSize
	}
	if len(p) > 0 {
		m, err := v.cur.ReadAt(p, off-v.oldSize)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (v *logView) byteAt(off int64) (byte, error) {
	var b [1]byte
	_, err := v.ReadAt(b[:], off)
	return b[0], err
}

// backlogStart is where the backlog begins: the last maxBytes, without a partial
// first line unless the window holds no line break but its last byte (one long line
// keeps its end), then the last tail lines of that (a last line without a break
// counts as a line).
func (v *logView) backlogStart(tail int, maxBytes int64) (int64, error) {
	total := v.size()
	start := int64(0)
	if maxBytes > 0 && maxBytes < total {
		start = total - maxBytes
		before, err := v.byteAt(start - 1)
		if err != nil {
			return 0, err
		}
		if before != '\n' {
			i, err := v.scan(start, total, false, 1)
			if err != nil {
				return 0, err
			}
			if i >= 0 && i+1 < total {
				start = i + 1
			}
		}
	}
	switch {
	case tail < 0:
		return start, nil
	case tail == 0:
		return total, nil
	}
	end := total
	if end > start {
		last, err := v.byteAt(end - 1)
		if err != nil {
			return 0, err
		}
		if last == '\n' {
			end-- // the last line's own break
		}
	}
	i, err := v.scan(start, end, true, tail)
	if err != nil {
		return 0, err
	}
	if i >= 0 {
		start = i + 1
	}
	return start, nil
}

// scan finds the nth line break in [from, to), forward from from or backward from
// to; -1 when there are fewer.
func (v *logView) scan(from, to int64, backward bool, nth int) (int64, error) {
	buf := make([]byte, min(to-from, LogChunkBytes))
	for lo, hi := from, to; lo < hi; {
		k := min(hi-lo, int64(len(buf)))
		off := lo
		if backward {
			off = hi - k
		}
		if _, err := v.ReadAt(buf[:k], off); err != nil {
			return -1, err
		}
		for j := range k {
			idx := j
			if backward {
				idx = k - 1 - j
			}
			if buf[idx] == '\n' {
				if nth--; nth == 0 {
					return off + idx, nil
				}
			}
		}
		if backward {
			hi -= k
		} else {
			lo += k
		}
	}
	return -1, nil
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
