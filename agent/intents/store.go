package intents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/murmur-edge/murmur/policy"
)

// fileRecord is the on-disk form of a policy.Record: one JSON file per name, the body
// embedded as JSON so the files are readable.
type fileRecord struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind,omitempty"`
	Version   policy.Version    `json:"version"`
	Hash      string            `json:"hash"`
	Origin    string            `json:"origin"`
	Deleted   bool              `json:"deleted,omitempty"`
	Signature *policy.Signature `json:"signature,omitempty"`
	Body      json.RawMessage   `json:"body,omitempty"`
}

// diskStore keeps one file per intent name in dir. Writes are atomic and durable:
// temp file, write, fsync, rename, fsync of the directory. It is not safe for
// concurrent use; Service serialises calls under its mutex.
type diskStore struct {
	dir string
}

func openStore(dir string) (*diskStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create intent store %s: %w", dir, err)
	}
	return &diskStore{dir: dir}, nil
}

func (d *diskStore) path(name string) string { return filepath.Join(d.dir, name+".json") }

// put writes r durably.
func (d *diskStore) put(r *policy.Record) error {
	fr := fileRecord{Name: r.Name, Kind: r.Kind, Version: r.Version, Hash: r.Hash, Origin: r.Origin, Deleted: r.Deleted, Signature: r.Signature, Body: r.Body}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the body must stay byte-identical to its hash
	if err := enc.Encode(fr); err != nil {
		return fmt.Errorf("store %s: %w", r.Name, err)
	}
	b := buf.Bytes()
	f, err := os.CreateTemp(d.dir, "."+r.Name+".*.tmp")
	if err != nil {
		return fmt.Errorf("store %s: %w", r.Name, err)
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("store %s: write: %w", r.Name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("store %s: fsync: %w", r.Name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store %s: close: %w", r.Name, err)
	}
	if err := os.Rename(tmp, d.path(r.Name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store %s: rename: %w", r.Name, err)
	}
	return d.syncDir()
}

// remove deletes name's file durably (tombstone garbage collection).
func (d *diskStore) remove(name string) error {
	if err := os.Remove(d.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return d.syncDir()
}

func (d *diskStore) syncDir() error {
	dir, err := os.Open(d.dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", d.dir, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", d.dir, err)
	}
	return nil
}

// loadProblem is a file load skipped, with the reason.
type loadProblem struct {
	file string
	err  error
}

// load reads every record. Leftover temp files are removed; files that do not decode
// or whose body does not match its hash are renamed to *.corrupt and reported.
func (d *diskStore) load() ([]policy.Record, []loadProblem, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read intent store %s: %w", d.dir, err)
	}
	var out []policy.Record
	var bad []loadProblem
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			continue
		}
		if strings.HasSuffix(n, ".tmp") {
			os.Remove(filepath.Join(d.dir, n)) // a write interrupted before its rename
			continue
		}
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		r, err := d.read(n)
		if err != nil {
			bad = append(bad, loadProblem{file: n, err: err})
			os.Rename(filepath.Join(d.dir, n), filepath.Join(d.dir, n+".corrupt"))
			continue
		}
		out = append(out, r)
	}
	return out, bad, nil
}

func (d *diskStore) read(file string) (policy.Record, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, file))
	if err != nil {
		return policy.Record{}, err
	}
	var fr fileRecord
	if err := json.Unmarshal(b, &fr); err != nil {
		return policy.Record{}, fmt.Errorf("decode: %w", err)
	}
	r := policy.Record{Name: fr.Name, Kind: fr.Kind, Version: fr.Version, Hash: fr.Hash, Origin: fr.Origin, Deleted: fr.Deleted, Signature: fr.Signature, Body: []byte(fr.Body)}
	if fr.Name+".json" != file {
		return r, fmt.Errorf("file holds intent %q", fr.Name)
	}
	if !r.Deleted && policy.Hash(r.Body) != r.Hash {
		return r, fmt.Errorf("body does not match its hash")
	}
	return r, nil
}
