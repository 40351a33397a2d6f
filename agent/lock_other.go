//go:build !unix

package agent

import (
	"fmt"
	"os"
)

// lockDataDir creates dataDir; elsewhere than on unix no lock is taken.
func lockDataDir(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return nil, nil
}

// dataDirError reports a data dir failure as a FieldError (exit 2).
func dataDirError(dataDir string, err error) error { return &FieldError{"data-dir", err} }
