//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestDataDirErrorExitCodes: a storage failure is not the operator's input (exit 1, a
// service manager retries); anything else about the data dir is (FieldError, exit 2).
func TestDataDirErrorExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err   error
		field bool
	}{
		{&os.PathError{Op: "write", Path: "/d/boot-count", Err: syscall.ENOSPC}, false},
		{fmt.Errorf("make node id: %w", &os.PathError{Op: "write", Path: "/d/node-id", Err: syscall.EIO}), false},
		{&os.PathError{Op: "open", Path: "/d/lock", Err: syscall.EROFS}, false},
		{&os.PathError{Op: "open", Path: "/d/lock", Err: syscall.EACCES}, true},
		{errors.New(`/d/node-id holds "x", not a node id: remove the file to make a new one`), true},
	} {
		err := dataDirError("/d", tc.err)
		var fe *FieldError
		if got := errors.As(err, &fe); got != tc.field {
			t.Errorf("dataDirError(%v) is a FieldError: %v, want %v", tc.err, got, tc.field)
		}
		if !errors.Is(err, tc.err) && !errors.Is(err, errors.Unwrap(tc.err)) {
			t.Errorf("dataDirError(%v) = %v lost the cause", tc.err, err)
		}
	}
}

// TestSecondLockRefused: the data dir lock is exclusive and names the holder's pid.
func TestSecondLockRefused(t *testing.T) {
	dir := t.TempDir()
	f, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Errorf("second lock: %v, want a refusal naming pid %d", err, os.Getpid())
	}
	f.Close()
	g, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	g.Close()
}
