package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/runtime"
)

// The gossip keyring: the keys memberlist encrypts gossip with (the primary) and
// decrypts it with (any), kept in <data-dir>/keyring.json and changed fleet-wide
// through GET /v1/keyring and POST /v1/keyring/{install,use,remove}
// (gossip.KeyManager does the fan-out). See docs/security.md, "Gossip key rotation".

// KeyringFile is the name of the keyring in the data dir.
const KeyringFile = "keyring.json"

// keyringDisk is the file's format: base64 keys, primary first.
type keyringDisk struct {
	Keys []string `json:"keys"`
}

// maxKeyringFileBytes bounds what loadKeyring reads.
const maxKeyringFileBytes = 64 << 10

// loadKeyring returns the node's gossip keyring, nil when encryption is off. The file
// in the data dir wins over --encrypt (Serf's rule): a node restarted with the key it
// was first given must not undo a rotation. Without a file, --encrypt makes one.
func loadKeyring(dataDir string, encrypt []byte, log *slog.Logger) (*memberlist.Keyring, error) {
	path := filepath.Join(dataDir, KeyringFile)
	b, err := readKeyringFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if len(encrypt) == 0 {
			return nil, nil
		}
		keys := [][]byte{slices.Clone(encrypt)}
		if err := writeKeyring(dataDir, keys); err != nil {
			return nil, err
		}
		return memberlist.NewKeyring(nil, keys[0])
	case err != nil:
		return nil, fmt.Errorf("read the gossip keyring: %w", err)
	}
	keys, err := parseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring %s: %w; fix the file, copy it from a node of the fleet, or remove it and start with --encrypt and the fleet's primary key", path, err)
	}
	if len(encrypt) > 0 && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, encrypt) }) {
		log.Warn("--encrypt is not in the gossip keyring of the data dir: the keyring wins and --encrypt is ignored (remove it from the flags, or remove the keyring file to start from --encrypt)",
			"keyring", path, "keys", len(keys))
	}
	return memberlist.NewKeyring(keys[1:], keys[0])
}

func readKeyringFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyringFileBytes {
		return nil, fmt.Errorf("%s is over %d bytes: not a keyring", path, maxKeyringFileBytes)
	}
	return b, nil
}

// parseKeyring decodes keyring.json: {"keys": ["<base64>", ...]}, primary first,
// at least one key, each 16, 24 or 32 bytes, none twice.
func parseKeyring(b []byte) ([][]byte, error) {
	var d keyringDisk
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf(`not the JSON expected, {"keys": ["<base64 key>", ...]} with the primary key first: %v`, err)
	}
	if dec.More() {
		return nil, errors.New("data after the JSON object")
	}
	if len(d.Keys) == 0 {
		return nil, errors.New("keys: the list is empty")
	}
	if len(d.Keys) > gossip.MaxKeys {
		return nil, fmt.Errorf("keys: %d keys, the limit is %d", len(d.Keys), gossip.MaxKeys)
	}
	keys := make([][]byte, 0, len(d.Keys))
	for i, s := range d.Keys {
		k, err := decodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) }) {
			return nil, fmt.Errorf("keys[%d]: listed twice", i)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// decodeKey decodes a base64 gossip key and checks its length.
func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not base64: %v (make a key with 'murmur keygen')", err)
	}
	if err := gossip.CheckKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

// writeKeyring persists keys (primary first) to the data dir: mode 0600, written to
// a temporary file, fsynced and renamed.
func writeKeyring(dataDir string, keys [][]byte) error {
	d := keyringDisk{Keys: make([]string, len(keys))}
	for i, k := range keys {
		d.Keys[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return runtime.WriteFileAtomic(filepath.Join(dataDir, KeyringFile), append(b, '\n'), 0o600)
}

// persistKeys is gossip's Config.PersistKeys: the keyring is on disk before
// memberlist uses it.
func (a *Agent) persistKeys(keys [][]byte) error { return writeKeyring(a.cfg.DataDir, keys) }

// KeyringJSON is the answer of GET /v1/keyring and POST /v1/keyring/{op}. On a
// failure, Error and Details are set as in every error answer.
type KeyringJSON struct {
	Error   string           `json:"error,omitempty"`
	Details []api.FieldError `json:"details,omitempty"`

	Op string `json:"op"`
	// Keys is every key the answering nodes hold, the most used first.
	Keys []KeyJSON `json:"keys"`
	// Nodes is how many members were asked (alive or suspect, this node included);
	// Answered how many answered, Failed how many failed or did not answer.
	Nodes    int `json:"nodes"`
	Answered int `json:"answered"`
	Failed   int `json:"failed"`
	// NoAnswer and Errors name the nodes that did not answer in time and why the
	// operation failed on the others.
	NoAnswer []string          `json:"no_answer"`
	Errors   map[string]string `json:"errors"`
	// Down are the members dead or left, not asked: a node that comes back after the
	// old key was removed needs the new keyring by hand (docs/security.md).
	Down    []string      `json:"down"`
	Results []KeyNodeJSON `json:"results"`
}

// KeyJSON is one key of the fleet: how many nodes hold it, and how many encrypt with
// it (their primary key).
type KeyJSON struct {
	Key     string `json:"key"`
	Nodes   int    `json:"nodes"`
	Primary int    `json:"primary"`
}

// KeyNodeJSON is one asked node's result.
type KeyNodeJSON struct {
	Node    string `json:"node"`
	Result  string `json:"result"` // ok | failed | no answer
	Error   string `json:"error,omitempty"`
	Primary string `json:"primary,omitempty"` // base64
	Keys    int    `json:"keys"`
}

func keyringJSON(r gossip.KeyResponse) KeyringJSON {
	out := KeyringJSON{
		Op: string(r.Op), Keys: []KeyJSON{}, Nodes: len(r.Asked), Failed: r.Failed(),
		NoAnswer: orEmpty(r.NoAnswer), Errors: r.Errors, Down: orEmpty(r.Down), Results: []KeyNodeJSON{},
	}
	if out.Errors == nil {
		out.Errors = map[string]string{}
	}
	out.Answered = len(r.Asked) - len(r.NoAnswer)
	for _, c := range r.Counts() {
		out.Keys = append(out.Keys, KeyJSON{Key: base64.StdEncoding.EncodeToString(c.Key), Nodes: c.Nodes, Primary: c.Primary})
	}
	for _, n := range r.Asked {
		res := KeyNodeJSON{Node: n, Result: "ok", Error: r.Errors[n], Keys: len(r.Keys[n])}
		if keys := r.Keys[n]; len(keys) > 0 {
			res.Primary = base64.StdEncoding.EncodeToString(keys[0])
		}
		switch {
		case slices.Contains(r.NoAnswer, n):
			res.Result = "no answer"
		case res.Error != "":
			res.Result = "failed"
		}
		out.Results = append(out.Results, res)
	}
	return out
}

// maxKeyringTimeout bounds ?timeout= of the keyring endpoints.
const maxKeyringTimeout = 2 * time.Minute

// registerKeyring adds the keyring endpoints (admin only: acl.go).
func (a *Agent) registerKeyring(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/keyring", a.handleKeyring)
	mux.HandleFunc("POST /v1/keyring/{op}", a.handleKeyring)
}

// handleKeyring answers GET /v1/keyring and POST /v1/keyring/{install,use,remove}
// {"key":"<base64>"}, ?timeout= bounding the wait for each round of answers.
func (a *Agent) handleKeyring(w http.ResponseWriter, r *http.Request) {
	op := gossip.KeyList
	if r.Method == http.MethodPost {
		op = gossip.KeyOp(r.PathValue("op"))
		switch op {
		case gossip.KeyInstall, gossip.KeyUse, gossip.KeyRemove:
		default:
			api.WriteError(w, http.StatusNotFound, "no such keyring operation "+r.PathValue("op")+": use POST /v1/keyring/install, /v1/keyring/use or /v1/keyring/remove")
			return
		}
	}
	var timeout time.Duration
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxKeyringTimeout {
			api.WriteError(w, http.StatusBadRequest, "invalid timeout", api.FieldError{Field: "timeout", Message: fmt.Sprintf("%q: give a duration from 1ms to %s, e.g. 10s", s, maxKeyringTimeout)})
			return
		}
		timeout = d
	}
	var key []byte
	if op != gossip.KeyList {
		body, err := api.ReadBody(r, 4<<10)
		if err != nil {
			api.WriteError(w, http.StatusRequestEntityTooLarge, err.Error())
			return
		}
		var req struct {
			Key string `json:"key"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			api.WriteError(w, http.StatusBadRequest, `the body must be {"key": "<base64 key>"}`, api.FieldError{Field: "body", Message: err.Error()})
			return
		}
		if req.Key == "" {
			api.WriteError(w, http.StatusBadRequest, "no key given", api.FieldError{Field: "key", Message: "is empty: give a base64 gossip key (make one with 'murmur keygen')"})
			return
		}
		if key, err = decodeKey(req.Key); err != nil {
			api.WriteError(w, http.StatusBadRequest, "invalid key", api.FieldError{Field: "key", Message: err.Error()})
			return
		}
	}
	km := a.gossip.KeyManager()
	var res gossip.KeyResponse
	var err error
	switch op {
	case gossip.KeyList:
		res, err = km.ListKeys(r.Context(), timeout)
	case gossip.KeyInstall:
		res, err = km.InstallKey(r.Context(), key, timeout)
	case gossip.KeyUse:
		res, err = km.UseKey(r.Context(), key, timeout)
	case gossip.KeyRemove:
		res, err = km.RemoveKey(r.Context(), key, timeout)
	}
	out := keyringJSON(res)
	if err == nil {
		api.WriteJSON(w, http.StatusOK, out)
		return
	}
	out.Error = err.Error()
	status := http.StatusInternalServerError
	var conflict *gossip.KeyConflictError
	switch {
	case errors.Is(err, gossip.ErrEncryptionOff):
		status = http.StatusConflict
	case errors.Is(err, gossip.ErrBadKey):
		status = http.StatusBadRequest
		out.Details = []api.FieldError{{Field: "key", Message: err.Error()}}
	case errors.As(err, &conflict):
		status = http.StatusConflict
		out.Details = nodeDetails(conflict.Nodes)
	case errors.Is(err, gossip.ErrKeyNotInstalled), errors.Is(err, gossip.ErrRemovePrimary):
		status = http.StatusConflict
	case errors.Is(err, gossip.ErrKeyringPartial):
		// The operation ran: some nodes failed or did not answer.
		status = http.StatusBadGateway
		why := maps.Clone(res.Errors)
		if why == nil {
			why = map[string]string{}
		}
		for _, n := range res.NoAnswer {
			why[n] = "did not answer in time"
		}
		out.Details = nodeDetails(why)
	}
	api.WriteJSON(w, status, out)
}

// nodeDetails turns node → message into error details, sorted by node.
func nodeDetails(m map[string]string) []api.FieldError {
	out := make([]api.FieldError, 0, len(m))
	for n, msg := range m {
		out = append(out, api.FieldError{Field: n, Message: msg})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}
