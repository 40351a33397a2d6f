package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupV2 places exec instances in per-instance cgroup v2 groups under
// <root>/murmur/<node>. When the host cannot give murmur such a group
// (cgroup v1 or hybrid host, controllers not delegated, no permission) the
// exec driver runs instances without limits and says why in every handle.
type cgroupV2 struct {
	base string // <root>/murmur/<node>; "" when not usable
}

// probeCgroupV2 prepares the murmur subtree and returns it, or a reason why
// limits cannot be enforced.
func probeCgroupV2(root, node string) (*cgroupV2, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, fmt.Sprintf("cannot stat %s: %v", root, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Sprintf("cgroup v2 is not mounted at %s (cgroup v1 or hybrid host)", root)
	}
	ctrl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Sprintf("read %s/cgroup.controllers: %v", root, err)
	}
	if !hasControllers(string(ctrl)) {
		return nil, fmt.Sprintf("cpu and memory controllers are not available in %s (have %q)", root, strings.TrimSpace(string(ctrl)))
	}
	base := filepath.Join(root, "murmur", safeName(node))
	// Enable the controllers on every level from root to base; the
	// intermediate groups hold no processes, as cgroup v2 requires.
	dir := root
	for _, next := range []string{filepath.Join(root, "murmur"), base} {
		if err := enableControllers(dir); err != nil {
			return nil, err.Error()
		}
		if err := os.Mkdir(next, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Sprintf("create cgroup %s: %v", next, err)
		}
		dir = next
	}
	if err := enableControllers(base); err != nil {
		return nil, err.Error()
	}
	return &cgroupV2{base: base}, ""
}

func hasControllers(list string) bool {
	var cpu, mem bool
	for _, c := range strings.Fields(list) {
		cpu = cpu || c == "cpu"
		mem = mem || c == "memory"
	}
	return cpu && mem
}

func enableControllers(dir string) error {
	p := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := os.ReadFile(p)
	if err == nil && hasControllers(string(cur)) {
		return nil
	}
	if err := os.WriteFile(p, []byte("+cpu +memory"), 0); err != nil {
		return fmt.Errorf("cannot delegate cpu and memory controllers in %s: %v", dir, err)
	}
	return nil
}

// instanceDir is the group of one instance.
func (c *cgroupV2) instanceDir(spec InstanceSpec) string {
	return filepath.Join(c.base, fmt.Sprintf("%s-g%d", spec.ID, spec.Generation))
}

// create makes the instance's group with its limits and returns an open fd
// of the directory for SysProcAttr.CgroupFD (the child is born inside it).
func (c *cgroupV2) create(spec InstanceSpec) (dir string, fd int, err error) {
	dir = c.instanceDir(spec)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", -1, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if err := writeCgroupLimits(dir, spec.Resources); err != nil {
		_ = os.Remove(dir)
		return "", -1, err
	}
	fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(dir)
		return "", -1, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return dir, fd, nil
}

// writeCgroupLimits writes cpu.max and memory.max; a limit of 0 means none.
func writeCgroupLimits(dir string, r Resources) error {
	const period = 100000 // µs
	cpu := "max " + strconv.Itoa(period)
	if r.MilliCPU > 0 {
		cpu = fmt.Sprintf("%d %d", r.MilliCPU*period/1000, period)
	}
	mem := "max"
	if r.MemoryBytes > 0 {
		mem = strconv.FormatInt(r.MemoryBytes, 10)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(cpu), 0o644); err != nil {
		return fmt.Errorf("%w: resources.cpu: write %s/cpu.max %q: %v", ErrInvalidSpec, dir, cpu, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(mem), 0o644); err != nil {
		return fmt.Errorf("%w: resources.memory: write %s/memory.max %q: %v", ErrInvalidSpec, dir, mem, err)
	}
	return nil
}

// cgroupUsage reads cumulative CPU (cpu.stat usage_usec) and memory.current.
func cgroupUsage(dir string) (Usage, error) {
	var u Usage
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return u, fmt.Errorf("read cgroup cpu.stat: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return u, fmt.Errorf("parse cgroup cpu.stat: %w", err)
			}
			u.CPUTime = durationMicro(us)
		}
	}
	b, err = os.ReadFile(filepath.Join(dir, "memory.current"))
	if err != nil {
		return u, fmt.Errorf("read cgroup memory.current: %w", err)
	}
	if u.MemoryBytes, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return u, fmt.Errorf("parse cgroup memory.current: %w", err)
	}
	return u, nil
}

func safeName(s string) string {
	if idPattern.MatchString(s) {
		return s
	}
	return "node"
}
