//go:build unix

package region

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkNotRunning fails when another process (a running agent) holds the raft-wal
// metadata lock of dir: bbolt would otherwise wait for it forever.
func checkNotRunning(dir string) error {
	f, err := os.Open(filepath.Join(dir, "wal", "wal-meta.db"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check raft lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("the raft log in %s is in use: stop the agent on this node first", dir)
		}
		return fmt.Errorf("check raft lock: %w", err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
