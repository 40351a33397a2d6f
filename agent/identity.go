package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/murmur-edge/murmur/runtime"
)

// identity is what a node keeps about itself in its data dir: a stable random node
// id (a node restarted with a wiped data dir is a new member) and a boot counter that
// orders this run's gossip records after every earlier run's, even when the device's
// clock went backwards (edge devices often have no battery-backed clock).
type identity struct {
	ID   string
	Boot uint64
}

func loadIdentity(dataDir string) (identity, error) {
	var id identity
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return id, fmt.Errorf("create data dir: %w", err)
	}
	idPath := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(idPath)
	switch {
	case err == nil:
		id.ID = strings.TrimSpace(string(b))
		if len(id.ID) != 32 {
			return id, fmt.Errorf("%s holds %q, not a node id: remove the file to make a new one", idPath, id.ID)
		}
	case errors.Is(err, fs.ErrNotExist):
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return id, fmt.Errorf("make node id: %w", err)
		}
		id.ID = hex.EncodeToString(raw)
		if err := writeFileSync(idPath, []byte(id.ID+"\n")); err != nil {
			return id, err
		}
	default:
		return id, fmt.Errorf("read node id: %w", err)
	}
	bootPath := filepath.Join(dataDir, "boot-count")
	if b, err := os.ReadFile(bootPath); err == nil {
		id.Boot, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return id, fmt.Errorf("read boot count: %w", err)
	}
	id.Boot++
	if err := writeFileSync(bootPath, []byte(strconv.FormatUint(id.Boot, 10)+"\n")); err != nil {
		return id, err
	}
	return id, nil
}

// writeFileSync writes a file atomically and durably: temp file, fsync, rename, fsync dir.
func writeFileSync(path string, data []byte) error {
	return runtime.WriteFileAtomic(path, data, 0o600)
}
