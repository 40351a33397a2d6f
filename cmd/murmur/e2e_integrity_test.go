package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealDamagedRaftLogExitsOneThenRejoins: an agent whose Raft log was emptied (the
// issue's case: before, it came back with no coordinator and headless:false) refuses
// to start with exit 1 and one line naming the segment and the recovery command;
// `murmur operator rejoin` sets the log aside and the node comes back as a new member.
func TestRealDamagedRaftLogExitsOneThenRejoins(t *testing.T) {
	bin := murmurBin(t)
	dir := filepath.Join(t.TempDir(), "d1")
	port := freePort(t)
	p := startAgentIn(t, "d1", port, dir)
	eventually(t, 30*time.Second, "d1 coordinates its region", func() bool { return regions(p.http)["default"].Coordinator == "d1" })
	oldID, err := os.ReadFile(filepath.Join(dir, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("d1 did not stop within 15s of SIGTERM")
	}
	segs, err := filepath.Glob(filepath.Join(dir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v: want one", segs, err)
	}
	if err := os.Truncate(segs[0], 0); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("run %v: %v", args, err)
		return "", 0
	}
	out, code := run("agent", "--name", "d1", "--data-dir", dir, "--bind", fmt.Sprintf("127.0.0.1:%d", port),
		"--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	t.Logf("refused start: exit %d: %s", code, out)
	if code != 1 {
		t.Errorf("agent on a damaged raft log: exit %d, want 1; output: %s", code, out)
	}
	for _, want := range []string{segs[0], "it holds no entries", fmt.Sprintf("`murmur operator rejoin --data-dir %s --region default`", dir)} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q: %s", want, out)
		}
	}
	if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 1 {
		t.Errorf("output has %d lines, want one: %q", lines, out)
	}

	out, code = run("operator", "rejoin", "--data-dir", dir, "--region", "default")
	if code != 0 || !strings.Contains(out, "raft.damaged-") {
		t.Fatalf("operator rejoin: exit %d: %s", code, out)
	}
	if moved, _ := filepath.Glob(filepath.Join(dir, "raft.damaged-*", "wal", "*.wal")); len(moved) != 1 {
		t.Errorf("the damaged log was not kept aside: %v", moved)
	}
	q := startAgentIn(t, "d1", port, dir)
	eventually(t, 30*time.Second, "d1 coordinates its region again", func() bool { return regions(q.http)["default"].Coordinator == "d1" })
	if newID, err := os.ReadFile(filepath.Join(dir, "node-id")); err != nil || string(newID) == string(oldID) {
		t.Errorf("node id after rejoin = %q, %v; want a new one (was %q)", newID, err, oldID)
	}
}
