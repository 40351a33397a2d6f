package runtime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is what murmur reads from /proc/<pid>/stat.
type procStat struct {
	State     byte   // field 3: R, S, D, Z, ...
	UTime     uint64 // field 14, clock ticks
	STime     uint64 // field 15, clock ticks
	StartTick uint64 // field 22, clock ticks since boot
}

// parseProcStat parses the content of /proc/<pid>/stat. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("parse /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22-2 {
		return procStat{}, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 20", len(f))
	}
	var st procStat
	if len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc stat: bad state %q", f[0])
	}
	st.State = f[0][0]
	var err error
	if st.UTime, err = strconv.ParseUint(f[14-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat utime: %w", err)
	}
	if st.STime, err = strconv.ParseUint(f[15-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat stime: %w", err)
	}
	if st.StartTick, err = strconv.ParseUint(f[22-3], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat starttime: %w", err)
	}
	return st, nil
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

// readRSS returns the resident set size of pid in bytes (/proc/<pid>/statm).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/statm: too few fields", pid)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/statm: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}

func readBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// clockTicks is USER_HZ, fixed at 100 on every Linux architecture Go supports.
const clockTicks = 100
