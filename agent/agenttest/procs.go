package agenttest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// InstancePids maps the instance ids the exec driver runs live under an agent's data
// dir to their pids (from each instance's handle.json, checked against the process
// table; zombies do not count).
func InstancePids(dataDir string) map[string]int {
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dataDir, "runtime", "exec", "*", "handle.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var h struct {
			InstanceID string `json:"instanceID"`
			PID        int    `json:"pid"`
		}
		if json.Unmarshal(b, &h) != nil || h.PID <= 0 {
			continue
		}
		if syscall.Kill(h.PID, 0) == nil && !Zombie(h.PID) {
			out[h.InstanceID] = h.PID
		}
	}
	return out
}

// ProcessesIn lists the live processes whose working directory is under dir: an
// instance started in the instant before its agent was killed may have no record
// yet, but it runs in its instance dir.
func ProcessesIn(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && strings.HasPrefix(cwd, dir+string(filepath.Separator)) && !Zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// Zombie reports whether pid has exited and awaits its parent's wait (or is gone).
func Zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// SoleHost is the node of procs (node → live instance processes of one workload) when
// exactly one process runs in all, else "".
func SoleHost(procs map[string]int) string {
	host, n := "", 0
	for node, k := range procs {
		n += k
		if k > 0 {
			host = node
		}
	}
	if n != 1 {
		return ""
	}
	return host
}
