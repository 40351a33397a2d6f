package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// realHarness runs a Supervisor on the wall clock with short delays.
func newRealHarness(t *testing.T, dir string, drivers map[string]Driver) *harness {
	t.Helper()
	h := &harness{t: t, changed: make(chan struct{}, 1)}
	sup, err := New(Config{
		Node:        "n1",
		DataDir:     dir,
		Drivers:     drivers,
		BackoffBase: 50 * time.Millisecond,
		StopGrace:   2 * time.Second,
		OnChange: func() {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.sup = sup
	return h
}

func newTestExecDriver(t *testing.T, dir string) *ExecDriver {
	t.Helper()
	d, err := NewExecDriver(ExecConfig{DataDir: filepath.Join(dir, "exec"), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	// Kill whatever the test leaves behind, even when it fails.
	t.Cleanup(func() {
		hs, _ := d.List(context.Background())
		for _, h := range hs {
			_ = d.Stop(context.Background(), h, 0)
		}
	})
	return d
}

func workSpec(id string, args ...string) InstanceSpec {
	return InstanceSpec{ID: id, Intent: "w", Generation: 1, Driver: DriverExec, Command: append([]string{workloadPath}, args...)}
}

func pidAlive(pid int) bool {
	st, err := readProcStat(pid)
	return err == nil && st.State != 'Z'
}

func TestExecStartStopAndProcessGroup(t *testing.T) {
	dir := t.TempDir()
	d := newTestExecDriver(t, dir)
	sp := workSpec("a", "--sleep", "1h")
	sp.Env = map[string]string{"GREETING": "hi"}
	sp.Resources = Resources{MilliCPU: 100, MemoryBytes: 64 << 20}
	ctx := context.Background()
	h, err := d.Start(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if pgid, _ := unix.Getpgid(h.PID); pgid != h.PID {
		t.Errorf("pgid = %d, want its own group %d", pgid, h.PID)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(h.PID) + "/environ")
	if err != nil || !strings.Contains(string(env), "GREETING=hi") {
		t.Errorf("environment %q lacks GREETING=hi (%v)", env, err)
	}
	if enforced, why := d.LimitsEnforced(); !enforced && !strings.Contains(h.LimitsNote, why) {
		t.Errorf("limits not enforced (%s) but the handle says %q", why, h.LimitsNote)
	}
	hs, err := d.List(ctx)
	if err != nil || len(hs) != 1 || !hs[0].Running || hs[0].PID != h.PID {
		t.Fatalf("List = %+v, %v; want the running instance", hs, err)
	}
	waitLog(t, filepath.Join(dir, "exec", "a", "stdout.log"), "workload: started")
	if err := d.Stop(ctx, h, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if pidAlive(h.PID) {
		t.Errorf("pid %d alive after Stop", h.PID)
	}
	if hs, _ := d.List(ctx); len(hs) != 0 {
		t.Errorf("List after Stop = %+v, want none", hs)
	}
}

func TestExecStopEscalatesToSIGKILL(t *testing.T) {
	d := newTestExecDriver(t, t.TempDir())
	ctx := context.Background()
	h, err := d.Start(ctx, workSpec("a", "--sleep", "1h", "--ignore-term"))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the workload has installed its SIGTERM handler.
	waitLog(t, filepath.Join(d.dir, "a", "stdout.log"), "workload: started")
	t0 := time.Now()
	if err := d.Stop(ctx, h, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period; SIGTERM should have been ignored", el)
	}
	if pidAlive(h.PID) {
		t.Errorf("pid %d survived SIGKILL", h.PID)
	}
}

// waitLog waits (bounded) until file contains s; the workload writes it at
// startup.
func waitLog(t *testing.T, file, s string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if strings.Contains(string(b), s) {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s never contained %q", file, s)
		}
	}
}

func TestExecWaitReportsExitCode(t *testing.T) {
	d := newTestExecDriver(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := d.Start(ctx, workSpec("a", "--exit-code", "3", "--exit-after", "10ms"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := d.Wait(ctx, h)
	if err != nil || es.Code != 3 {
		t.Fatalf("Wait = %+v, %v; want code 3", es, err)
	}
}

func TestExecRecycledPidNotAdopted(t *testing.T) {
	d := newTestExecDriver(t, t.TempDir())
	// A record naming a live process (this test) with another start time,
	// as after pid reuse.
	self, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	h := Handle{Driver: DriverExec, InstanceID: "ghost", PID: os.Getpid(), StartTick: self.StartTick + 1, BootID: d.bootID, Ref: strconv.Itoa(os.Getpid())}
	if err := os.MkdirAll(d.instDir("ghost"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.writeHandle(h); err != nil {
		t.Fatal(err)
	}
	hs, err := d.List(context.Background())
	if err != nil || len(hs) != 1 {
		t.Fatalf("List = %+v, %v", hs, err)
	}
	if hs[0].Running {
		t.Fatalf("a recycled pid was reported running (would be adopted)")
	}
	// Stopping the stale record must not signal the live process (us).
	if err := d.Stop(context.Background(), hs[0], time.Second); err != nil {
		t.Fatal(err)
	}
	if hs, _ := d.List(context.Background()); len(hs) != 0 {
		t.Errorf("stale record not cleaned: %+v", hs)
	}
}

func TestExecMissingBinaryIsInvalidSpec(t *testing.T) {
	d := newTestExecDriver(t, t.TempDir())
	_, err := d.Start(context.Background(), InstanceSpec{ID: "a", Driver: DriverExec, Command: []string{"/nonexistent/vision"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vision not found") {
		t.Fatalf("err = %v, want a not found error", err)
	}
	if !isInvalid(err) {
		t.Errorf("err does not wrap ErrInvalidSpec")
	}
}

func isInvalid(err error) bool {
	return err != nil && strings.Contains(err.Error(), ErrInvalidSpec.Error())
}

func TestExecSupervisorLifecycle(t *testing.T) {
	dir := t.TempDir()
	d := newTestExecDriver(t, dir)
	drivers := map[string]Driver{DriverExec: d}
	h1 := newRealHarness(t, filepath.Join(dir, "sup"), drivers)
	crash := workSpec("crash", "--exit-code", "3", "--exit-after", "100ms")
	port := freePort(t)
	sick := workSpec("sick", "--listen", "127.0.0.1:"+port, "--unhealthy-after", "300ms")
	sick.Health = HealthSpec{HTTP: "http://127.0.0.1:" + port + "/healthz", Interval: 50 * time.Millisecond, FailureThreshold: 2}
	nobin := InstanceSpec{ID: "nobin", Driver: DriverExec, Command: []string{"/nonexistent/vision"}}
	want := []InstanceSpec{workSpec("keep", "--sleep", "1h"), workSpec("extra", "--sleep", "1h"), crash, sick, nobin}
	if err := h1.sup.SetDesired(want); err != nil {
		t.Fatal(err)
	}
	h1.run()
	m := h1.waitFor("crash and sick restarted, nobin failed", func(m map[string]InstanceStatus) bool {
		return m["keep"].State == StateRunning && m["extra"].State == StateRunning &&
			m["crash"].Restarts >= 1 && m["sick"].Restarts >= 1 && m["nobin"].State == StateFailed
	})
	if m["crash"].LastExit == nil || *m["crash"].LastExit != 3 {
		t.Errorf("crash: last exit %v, want 3", m["crash"].LastExit)
	}
	if !strings.Contains(m["nobin"].Error, "not found") {
		t.Errorf("nobin: error %q, want not found", m["nobin"].Error)
	}
	keepPid, _ := strconv.Atoi(m["keep"].Ref)

	// Shrink: extra is stopped.
	extraPid, _ := strconv.Atoi(m["extra"].Ref)
	if err := h1.sup.SetDesired([]InstanceSpec{workSpec("keep", "--sleep", "1h")}); err != nil {
		t.Fatal(err)
	}
	h1.waitFor("only keep", func(m map[string]InstanceStatus) bool { return len(m) == 1 })
	if pidAlive(extraPid) {
		t.Errorf("extra (pid %d) still alive after the desired set shrank", extraPid)
	}

	// The agent dies; a new supervisor over the same data dir adopts keep.
	h1.abandon()
	if !pidAlive(keepPid) {
		t.Fatalf("keep died with its supervisor")
	}
	d2, err := NewExecDriver(ExecConfig{DataDir: filepath.Join(dir, "exec"), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	h2 := newRealHarness(t, filepath.Join(dir, "sup"), map[string]Driver{DriverExec: d2})
	h2.run()
	got := h2.waitState("keep", StateRunning)
	if got.Ref != strconv.Itoa(keepPid) {
		t.Errorf("keep: ref %s, want the adopted pid %d", got.Ref, keepPid)
	}
	if hs, _ := d2.List(context.Background()); len(hs) != 1 {
		t.Errorf("%d exec instances after adoption, want 1 (no duplicate)", len(hs))
	}
	// An adopted process is not watched through wait(): kill it and see the
	// supervisor notice and restart it.
	if err := syscall.Kill(keepPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h2.waitFor("keep restarted", func(m map[string]InstanceStatus) bool {
		return m["keep"].State == StateRunning && m["keep"].Ref != strconv.Itoa(keepPid)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h2.sup.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	if hs, _ := d2.List(ctx); len(hs) != 0 {
		t.Errorf("instances left after StopAll: %+v", hs)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
}

func TestRotateIfLarger(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stdout.log")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rotateIfLarger(p, 4); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(p)
	old, _ := os.ReadFile(p + ".1")
	if len(cur) != 0 || string(old) != "6789" {
		t.Errorf("after rotation: current %q, previous %q; want \"\" and the newest 4 bytes \"6789\"", cur, old)
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		in      string
		want    procStat
		wantErr bool
	}{
		{"42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000 10 18446744073709551615", procStat{State: 'S', UTime: 7, STime: 3, StartTick: 123456}, false},
		{"7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99 0 0", procStat{State: 'R', UTime: 1, STime: 2, StartTick: 99}, false},
		{"7 (x) R 1 2", procStat{}, true},
		{"no paren", procStat{}, true},
	}
	for _, tt := range tests {
		got, err := parseProcStat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseProcStat(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000 10"))
	f.Add([]byte("7 (a) b) R"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseProcStat(b)
	})
}

// agentHelper is the test binary run as a stand-in agent: it starts one instance
// (leased when MURMUR_TEST_LEASED=1) of MURMUR_WORKLOAD_BIN with an exec driver over
// dir, prints its pid and blocks until it is killed.
func agentHelper(dir string) int {
	d, err := NewExecDriver(ExecConfig{DataDir: dir, Node: "n1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sp := InstanceSpec{ID: "a", Intent: "w", Generation: 1, Driver: DriverExec,
		Command: []string{os.Getenv("MURMUR_WORKLOAD_BIN"), "--sleep", "1h"}, Leased: os.Getenv("MURMUR_TEST_LEASED") == "1"}
	h, err := d.Start(context.Background(), sp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(h.PID)
	select {}
}

// An instance started by an agent that then dies (SIGKILL, the host lives on): a
// plain one survives to be adopted; a leased one dies with the agent, so it cannot
// outlive its lease while no agent is there to stop it.
func TestExecLeasedInstanceDiesWithTheAgent(t *testing.T) {
	for _, leased := range []bool{false, true} {
		t.Run(fmt.Sprintf("leased=%v", leased), func(t *testing.T) {
			dir := t.TempDir()
			helper := exec.Command(os.Args[0], "-test.run=^$")
			helper.Env = append(os.Environ(), "MURMUR_TEST_AGENT_HELPER="+dir, "MURMUR_WORKLOAD_BIN="+workloadPath,
				"MURMUR_TEST_LEASED="+map[bool]string{true: "1", false: "0"}[leased])
			out, err := helper.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			helper.Stderr = os.Stderr
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			var pid int
			if _, err := fmt.Fscan(out, &pid); err != nil {
				_ = helper.Process.Kill()
				_ = helper.Wait()
				t.Fatalf("read the instance pid from the helper: %v", err)
			}
			t.Cleanup(func() { _ = unix.Kill(-pid, unix.SIGKILL) })
			pfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatalf("pidfd_open(%d): %v", pid, err)
			}
			defer unix.Close(pfd)
			_ = helper.Process.Signal(syscall.SIGKILL)
			_ = helper.Wait()
			// The pidfd turns readable when the instance exits: wait for that, bounded.
			fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
			wait := 5 * time.Second
			if !leased {
				wait = 300 * time.Millisecond // a plain instance must still run after this
			}
			n, err := unix.Poll(fds, int(wait.Milliseconds()))
			if err != nil {
				t.Fatalf("poll pidfd: %v", err)
			}
			exited := n == 1
			if leased && !exited {
				t.Errorf("leased instance %d still runs %v after its agent was killed", pid, wait)
			}
			if !leased && exited {
				t.Errorf("plain instance %d died with its agent; it must survive to be adopted", pid)
			}
		})
	}
}
