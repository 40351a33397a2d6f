package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExecConfig configures the exec driver.
type ExecConfig struct {
	// DataDir holds one directory per instance: handle.json (pid, start
	// time, boot id) and stdout.log / stderr.log. Required.
	DataDir string
	// Node is this node's name (used for the cgroup subtree and messages).
	Node string
	// CgroupRoot is where cgroup v2 is mounted (default /sys/fs/cgroup).
	CgroupRoot string
	// MaxLogBytes caps each of stdout.log and stderr.log (default 10 MiB);
	// one previous file (.1) is kept, so at most twice this per stream.
	MaxLogBytes int64
	// LogPoll is how often Logs with Follow looks for new output (default
	// 250 ms), on Clock (default RealClock).
	LogPoll time.Duration
	Clock   Clock
	Logger  *slog.Logger
}

// ExecDriver runs instances as plain processes: argv without a shell, each
// in its own process group, never tied to the agent's life (no Pdeathsig,
// output to files rather than pipes) so they survive an agent restart and
// are adopted by pid plus process start time. Leased (at-most-once)
// instances are the exception: they get Pdeathsig SIGKILL, since their lease
// ends with the agent.
//
// Output goes straight from the process to <DataDir>/<id>/std{out,err}.log
// (O_APPEND). Usage() also enforces the size cap by copy-truncate: the file
// is copied to .log.1 and truncated, losing at most what the process writes
// during the copy.
//
// ExecDriver holds no mutable state besides the files; it is safe for
// concurrent use.
type ExecDriver struct {
	dir     string
	node    string
	maxLog  int64
	log     *slog.Logger
	bootID  string
	logPoll time.Duration
	clock   Clock
	cgroup  *cgroupV2 // nil when limits cannot be enforced
	noLimit string    // why limits are not enforced
}

var (
	_ Driver    = (*ExecDriver)(nil)
	_ LogReader = (*ExecDriver)(nil)
)

// NewExecDriver prepares the data directory and probes cgroup v2. It starts
// nothing.
func NewExecDriver(cfg ExecConfig) (*ExecDriver, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("exec driver: DataDir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("exec driver: create data dir: %w", err)
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = 10 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogPoll <= 0 {
		cfg.LogPoll = 250 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	d := &ExecDriver{dir: cfg.DataDir, node: cfg.Node, maxLog: cfg.MaxLogBytes, log: cfg.Logger, bootID: readBootID(),
		logPoll: cfg.LogPoll, clock: cfg.Clock}
	d.cgroup, d.noLimit = probeCgroupV2(cfg.CgroupRoot, cfg.Node)
	if d.cgroup == nil {
		d.log.Warn("exec driver: resource limits not enforced", "reason", d.noLimit)
	}
	return d, nil
}

// Name implements Driver.
func (d *ExecDriver) Name() string { return DriverExec }

// LimitsEnforced reports whether CPU and memory limits are enforced through
// cgroup v2, and if not, why.
func (d *ExecDriver) LimitsEnforced() (bool, string) { return d.cgroup != nil, d.noLimit }

func (d *ExecDriver) instDir(id string) string { return filepath.Join(d.dir, id) }

// Start implements Driver.
func (d *ExecDriver) Start(ctx context.Context, spec InstanceSpec) (Handle, error) {
	if err := spec.Validate(); err != nil {
		return Handle{}, err
	}
	path, err := exec.LookPath(spec.Command[0])
	if err != nil {
		return Handle{}, fmt.Errorf("%w: instance %q: command: %s not found or not executable on node %s: %v", ErrInvalidSpec, spec.ID, spec.Command[0], d.node, errors.Unwrap(err))
	}
	if !filepath.IsAbs(path) {
		if path, err = filepath.Abs(path); err != nil {
			return Handle{}, fmt.Errorf("resolve %s: %w", spec.Command[0], err)
		}
	}
	dir := d.instDir(spec.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Handle{}, fmt.Errorf("create instance dir: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return Handle{}, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	stdout, err := os.OpenFile(filepath.Join(dir, "stdout.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Handle{}, fmt.Errorf("open stdout log: %w", err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(dir, "stderr.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Handle{}, fmt.Errorf("open stderr log: %w", err)
	}
	defer stderr.Close()

	env := make([]string, 0, len(spec.Env)+1)
	hasPath := false
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}

	sys := &syscall.SysProcAttr{Setpgid: true}
	if spec.Leased {
		// A leased (at-most-once) instance must not outlive the agent that holds
		// its lease: were the agent to die while the host lives, the coordinator
		// would place a replacement once the lease ran out while this one still ran.
		// Pdeathsig fires when the thread that forked exits; Go ends a thread only
		// when a goroutine locked to it exits, which this package never does, so in
		// practice it fires with the agent process. Only the instance's own process
		// gets it; a restarted agent stops the rest of its group (Supervisor.New).
		sys.Pdeathsig = syscall.SIGKILL
	}
	h := Handle{Driver: DriverExec, InstanceID: spec.ID, Intent: spec.Intent, Generation: spec.Generation, SpecHash: spec.Hash(), BootID: d.bootID}
	limited := spec.Resources.MilliCPU > 0 || spec.Resources.MemoryBytes > 0
	var cgDir string
	if limited && d.cgroup != nil {
		var fd int
		cgDir, fd, err = d.cgroup.create(spec)
		if err != nil {
			return Handle{}, fmt.Errorf("instance %q: %w", spec.ID, err)
		}
		defer unix.Close(fd)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
	} else if limited {
		h.LimitsNote = "limits not enforced: " + d.noLimit
	}

	p, err := os.StartProcess(path, spec.Command, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []*os.File{devnull, stdout, stderr},
		Sys:   sys,
	})
	if err != nil {
		if cgDir != "" {
			_ = os.Remove(cgDir)
		}
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			return Handle{}, fmt.Errorf("%w: instance %q: command: cannot run %s on node %s: %v", ErrInvalidSpec, spec.ID, path, d.node, err)
		}
		return Handle{}, fmt.Errorf("start instance %q: %w", spec.ID, err)
	}
	h.PID = p.Pid
	h.Ref = strconv.Itoa(p.Pid)
	h.StartedAt = time.Now()
	_ = p.Release() // we reap with wait4 ourselves; the handle is the pid
	// The child cannot be reaped before we read its stat: only Wait reaps.
	st, err := readProcStat(h.PID)
	if err != nil {
		_ = unix.Kill(-h.PID, unix.SIGKILL)
		d.reap(h.PID)
		return Handle{}, fmt.Errorf("start instance %q: read start time: %w", spec.ID, err)
	}
	h.StartTick = st.StartTick
	if err := d.writeHandle(h); err != nil {
		_ = unix.Kill(-h.PID, unix.SIGKILL)
		d.reap(h.PID)
		return Handle{}, fmt.Errorf("start instance %q: %w", spec.ID, err)
	}
	return h, nil
}

type execRecord struct {
	Handle
	CgroupDir string `json:"cgroupDir,omitempty"`
}

func (d *ExecDriver) writeHandle(h Handle) error {
	rec := execRecord{Handle: h}
	if d.cgroup != nil {
		rec.CgroupDir = d.cgroup.instanceDir(InstanceSpec{ID: h.InstanceID, Generation: h.Generation})
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("marshal handle: %w", err)
	}
	return WriteFileAtomic(filepath.Join(d.instDir(h.InstanceID), "handle.json"), b, 0o644)
}

// alive reports whether h's process still exists and is the same process
// (same boot, same start time) and has not exited (a zombie has exited).
func (d *ExecDriver) alive(h Handle) bool {
	if h.PID <= 0 || (h.BootID != "" && h.BootID != d.bootID) {
		return false
	}
	st, err := readProcStat(h.PID)
	return err == nil && st.StartTick == h.StartTick && st.State != 'Z' && st.State != 'X'
}

// same reports whether h's pid still names the same process (possibly a
// zombie still to be reaped).
func (d *ExecDriver) same(h Handle) bool {
	if h.PID <= 0 || (h.BootID != "" && h.BootID != d.bootID) {
		return false
	}
	st, err := readProcStat(h.PID)
	return err == nil && st.StartTick == h.StartTick
}

// reap collects pid's exit status if it is our child. ok is false when it
// is not our child (adopted) or has not exited.
func (d *ExecDriver) reap(pid int) (es ExitStatus, ok bool) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if err != nil || got != pid {
		return ExitStatus{Code: -1}, false
	}
	return exitStatusOf(ws), true
}

func exitStatusOf(ws unix.WaitStatus) ExitStatus {
	switch {
	case ws.Exited():
		return ExitStatus{Code: ws.ExitStatus()}
	case ws.Signaled():
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
	}
	return ExitStatus{Code: -1}
}

// Wait implements Driver. It waits on a pidfd through the Go poller (no
// thread is parked per instance); where pidfds are unavailable it polls
// liveness twice a second. Children are reaped with their exit status; an
// adopted process (not our child) reports Code -1.
func (d *ExecDriver) Wait(ctx context.Context, h Handle) (ExitStatus, error) {
	if !d.same(h) {
		if es, ok := d.reap(h.PID); ok && h.BootID == d.bootID {
			return es, nil
		}
		return ExitStatus{Code: -1}, nil
	}
	if err := d.waitPidfd(ctx, h); err != nil {
		if ctx.Err() != nil {
			return ExitStatus{}, ctx.Err()
		}
		if err := d.waitPoll(ctx, h); err != nil {
			return ExitStatus{}, err
		}
	}
	// The process has exited; as our child it is a zombie until reaped.
	for i := 0; i < 50; i++ {
		if es, ok := d.reap(h.PID); ok {
			return es, nil
		}
		if !d.same(h) { // not our child, or reaped by someone else
			return ExitStatus{Code: -1}, nil
		}
		select {
		case <-ctx.Done():
			return ExitStatus{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return ExitStatus{Code: -1}, nil
}

// errNoPidfd means the pidfd path is unavailable; the caller polls.
var errNoPidfd = errors.New("pidfd unavailable")

func (d *ExecDriver) waitPidfd(ctx context.Context, h Handle) error {
	fd, err := unix.PidfdOpen(h.PID, unix.PIDFD_NONBLOCK)
	if err != nil {
		return errNoPidfd
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if !d.same(h) { // the pid was recycled between the check and the open
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return errNoPidfd
	}
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return errNoPidfd // not registered with the poller
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err == nil && n > 0
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errNoPidfd
	}
	return nil
}

func (d *ExecDriver) waitPoll(ctx context.Context, h Handle) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for d.alive(h) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Stop implements Driver: SIGTERM to the process group, SIGKILL to the group
// after grace, then cleanup of the record and cgroup. Logs are kept.
func (d *ExecDriver) Stop(ctx context.Context, h Handle, grace time.Duration) error {
	// Signal only a process whose identity (pid + start time + boot) is
	// verified: a stale record's pid may belong to a stranger by now.
	if d.same(h) {
		_ = unix.Kill(-h.PID, unix.SIGTERM)
		wctx, cancel := context.WithTimeout(ctx, grace)
		_, err := d.Wait(wctx, h)
		cancel()
		if err != nil {
			_ = unix.Kill(-h.PID, unix.SIGKILL)
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, err = d.Wait(kctx, h)
			cancel()
			if err != nil {
				return fmt.Errorf("stop instance %q (pid %d): still running after SIGKILL", h.InstanceID, h.PID)
			}
		}
		// Group members the leader left behind. The leader was ours a
		// moment ago, and a pid still used as a group id is not recycled.
		_ = unix.Kill(-h.PID, unix.SIGKILL)
	}
	return d.cleanup(h)
}

func (d *ExecDriver) cleanup(h Handle) error {
	rec, err := d.readRecord(h.InstanceID)
	if err == nil && rec.PID == h.PID && rec.StartTick == h.StartTick {
		if rec.CgroupDir != "" {
			if err := os.Remove(rec.CgroupDir); err != nil && !errors.Is(err, os.ErrNotExist) {
				d.log.Warn("exec driver: remove cgroup", "dir", rec.CgroupDir, "err", err)
			}
		}
		if err := os.Remove(filepath.Join(d.instDir(h.InstanceID), "handle.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove handle of %q: %w", h.InstanceID, err)
		}
	}
	return nil
}

func (d *ExecDriver) readRecord(id string) (execRecord, error) {
	var rec execRecord
	b, err := os.ReadFile(filepath.Join(d.instDir(id), "handle.json"))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode handle of %q: %w", id, err)
	}
	return rec, nil
}

// List implements Driver: every instance with a record in the data dir;
// Running is false when its process is gone (exited, or the node rebooted).
func (d *ExecDriver) List(ctx context.Context) ([]Handle, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("list exec instances: %w", err)
	}
	var out []Handle
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		rec, err := d.readRecord(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			d.log.Warn("exec driver: unreadable instance record; ignoring it", "instance", e.Name(), "err", err)
			continue
		}
		h := rec.Handle
		h.Running = d.alive(h)
		out = append(out, h)
	}
	return out, nil
}

// Usage implements Driver: from the instance's cgroup when limits are
// enforced, else from the main process alone (/proc/<pid>/stat and statm;
// its children are not counted). It also enforces the log size cap.
func (d *ExecDriver) Usage(ctx context.Context, h Handle) (Usage, error) {
	d.rotateLogs(h.InstanceID)
	if rec, err := d.readRecord(h.InstanceID); err == nil && rec.CgroupDir != "" && rec.PID == h.PID {
		if u, err := cgroupUsage(rec.CgroupDir); err == nil {
			return u, nil
		}
	}
	if !d.alive(h) {
		return Usage{}, fmt.Errorf("usage of %q: process %d is gone", h.InstanceID, h.PID)
	}
	st, err := readProcStat(h.PID)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %q: %w", h.InstanceID, err)
	}
	rss, err := readRSS(h.PID)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %q: %w", h.InstanceID, err)
	}
	cpu := time.Duration(st.UTime+st.STime) * (time.Second / clockTicks)
	return Usage{CPUTime: cpu, MemoryBytes: rss}, nil
}

// rotateLogs copy-truncates any log of the instance over the cap.
func (d *ExecDriver) rotateLogs(id string) {
	for _, name := range []string{"stdout.log", "stderr.log"} {
		p := filepath.Join(d.instDir(id), name)
		if err := rotateIfLarger(p, d.maxLog); err != nil {
			d.log.Warn("exec driver: rotate log", "file", p, "err", err)
		}
	}
}

func rotateIfLarger(path string, max int64) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= max {
		return nil
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(path + ".1")
	if err != nil {
		return err
	}
	// Keep the newest max bytes.
	if _, err := src.Seek(-max, io.SeekEnd); err != nil {
		dst.Close()
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return src.Truncate(0)
}

func durationMicro(us int64) time.Duration { return time.Duration(us) * time.Microsecond }
