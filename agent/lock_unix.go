//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on dataDir (the file "lock", which holds the
// holder's pid), so a second agent on the same data dir refuses to start instead of
// sharing the first one's identity, intent store and workloads. The lock lives as
// long as the returned file is open (and ends with the process).
func lockDataDir(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "another murmur agent (pid " + strconv.Itoa(pid) + ")"
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by %s: stop it, or give this agent its own --data-dir", dataDir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// dataDirError is the error New returns for a failure on the data dir: a FieldError
// (exit 2, fix the flag) unless the storage itself failed (no space, I/O error,
// read-only, quota), which a service manager should retry (exit 1).
func dataDirError(dataDir string, err error) error {
	for _, e := range []error{syscall.ENOSPC, syscall.EIO, syscall.EROFS, syscall.EDQUOT} {
		if errors.Is(err, e) {
			return fmt.Errorf("data dir %s: %w", dataDir, err)
		}
	}
	return &FieldError{"data-dir", err}
}
