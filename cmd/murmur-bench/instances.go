package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Workload instances in the process table.
//
// The exec driver starts each instance with its working directory set to
// <data-dir>/runtime/exec/<instance> and in a process group of its own, with no
// parent-death signal: an instance outlives its agent (an agent restart adopts it).
// The bench therefore finds the instances of its fleet by /proc/PID/cwd, which is
// under the fleet's temp dir, counts the live ones, kills a "powered off" host's
// instances, and sweeps every one on Close. If the bench itself is SIGKILLed, its
// agents die (PR_SET_PDEATHSIG) but their instances do not: they are the processes
// whose cwd is under the run's /tmp/murmur-bench-* directory.

// instProc is one live workload instance process.
type instProc struct {
	PID, PGID int
	Node      string // the agent whose data dir holds the instance
	Instance  string // instance id: <intent>-<generation>-<ordinal>
}

// parseInstanceCwd maps the target of /proc/PID/cwd to the node and instance it
// belongs to when it is <root>/<node>/runtime/exec/<instance> (a " (deleted)" suffix,
// for a removed directory, is ignored).
func parseInstanceCwd(root, link string) (node, instance string, ok bool) {
	link = strings.TrimSuffix(link, " (deleted)")
	rest, found := strings.CutPrefix(link, strings.TrimSuffix(root, "/")+"/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] != "runtime" || parts[2] != "exec" || parts[0] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[0], parts[3], true
}

// intentOfInstance returns the intent of an instance id <intent>-<generation>-<ordinal>
// (the scheduler's newID); ok is false for any other shape.
func intentOfInstance(id string) (string, bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || !allDigits(id[i+1:]) {
		return "", false
	}
	j := strings.LastIndexByte(id[:i], '-')
	if j <= 0 || !allDigits(id[j+1:i]) {
		return "", false
	}
	return id[:j], true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// procStatePgrp parses /proc/PID/stat and returns the state letter and the process
// group. Fields are counted from the last ')' (the command name may contain spaces).
func procStatePgrp(stat []byte) (state byte, pgrp int, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("parse /proc stat: no ')' after the command name")
	}
	// After ')': state(3) ppid(4) pgrp(5).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, errors.New("parse /proc stat: want state, ppid and pgrp after the command name")
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc stat pgrp: %w", err)
	}
	return f[0][0], pgrp, nil
}

// scanInstances lists the live (not zombie) processes whose cwd is an instance
// directory under root. node limits the result to that node ("" = every node).
// Processes that vanish during the scan are skipped.
func scanInstances(root, node string) ([]instProc, error) {
	if !strings.HasPrefix(root, "/") || strings.Trim(root, "/") == "" {
		// Never match (and kill) processes outside a run's own directory.
		return nil, fmt.Errorf("scan instances: root %q is not an absolute directory below /", root)
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan /proc: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("scan /proc: %w", err)
	}
	var out []instProc
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 1 {
			continue
		}
		link, err := os.Readlink("/proc/" + name + "/cwd")
		if err != nil {
			continue
		}
		n, inst, ok := parseInstanceCwd(root, link)
		if !ok || (node != "" && n != node) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		st, pgrp, err := procStatePgrp(stat)
		if err != nil || st == 'Z' || st == 'X' {
			continue
		}
		out = append(out, instProc{PID: pid, PGID: pgrp, Node: n, Instance: inst})
	}
	return out, nil
}

// killProc SIGKILLs p's process group when p leads it (the exec driver's Setpgid),
// and p alone otherwise. It never signals group 0 or 1 or the bench's own group.
func killProc(p instProc) {
	if p.PGID == p.PID && p.PGID > 1 && p.PGID != syscall.Getpgrp() {
		_ = syscall.Kill(-p.PGID, syscall.SIGKILL)
		return
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
}

// killInstances SIGKILLs every instance under root (of node, or of every node for
// "") until a scan finds none, bounded by timeout. It returns the number of
// processes signalled.
func killInstances(root, node string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	killed := map[int]bool{}
	for {
		ps, err := scanInstances(root, node)
		if err != nil {
			return len(killed), err
		}
		if len(ps) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%d workload processes still alive after %s (first: pid %d, instance %s of %s)", len(ps), timeout, ps[0].PID, ps[0].Instance, ps[0].Node)
		}
		for _, p := range ps {
			killProc(p)
			killed[p.PID] = true
		}
		time.Sleep(10 * time.Millisecond) // let the kernel finish the kills before the next scan
	}
}

// countProcs counts live instance processes per intent, leaving out those on node
// exclude ("" = none). Processes whose instance id has another shape are counted
// under "".
func countProcs(ps []instProc, exclude string) map[string]int {
	out := map[string]int{}
	for _, p := range ps {
		if exclude != "" && p.Node == exclude {
			continue
		}
		in, _ := intentOfInstance(p.Instance)
		out[in]++
	}
	return out
}
