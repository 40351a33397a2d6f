package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/murmur-edge/murmur/agent/api"

	"github.com/murmur-edge/murmur/runtime"
)

// The audit log records every write request that reaches access control, refused ones
// included: one JSON object per line in <data-dir>/audit.log, appended and fsynced per
// entry (writes are rare). When an entry would take the file past its cap, the file
// becomes audit.log.1 (replacing the previous one) and a new audit.log starts, so the
// log holds between one and two caps of history. GET /v1/audit serves the newest
// entries of both files.

// DefaultAuditMaxBytes is the size of audit.log at which it is rotated.
const DefaultAuditMaxBytes = 8 << 20

// Limits of GET /v1/audit?limit=N.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// maxAuditError bounds the error message an entry keeps (in bytes).
const maxAuditError = 256

// AuditEntry is one line of the audit log and one entry of GET /v1/audit.
type AuditEntry struct {
	Time    time.Time     `json:"time"`              // when the answer was complete, UTC
	Token   string        `json:"token"`             // token id; "" on a loopback API without tokens, or when no valid token was sent
	Remote  string        `json:"remote"`            // the client's host:port
	Method  string        `json:"method"`            // HTTP method
	Path    string        `json:"path"`              // URL path, without the query
	Intents []AuditIntent `json:"intents,omitempty"` // POST /v1/intents, DELETE /v1/intents/{name}
	Status  int           `json:"status"`            // HTTP status of the answer
	Result  string        `json:"result"`            // ok, unauthenticated, forbidden, rejected (other 4xx) or failed (5xx)
	Error   string        `json:"error,omitempty"`   // the answer's error message, shortened
}

// AuditIntent is an intent a write touched, as the intent API answered it.
type AuditIntent struct {
	Name    string `json:"name"`
	Kind    string `json:"kind,omitempty"`
	Version string `json:"version,omitempty"`
	Result  string `json:"result,omitempty"` // created, updated, unchanged, deleted...
}

// AuditJSON is the answer of GET /v1/audit: entries oldest first, newest last.
// Skipped counts the lines that could not be decoded (a line torn by a crash).
type AuditJSON struct {
	Entries []AuditEntry `json:"entries"`
	Skipped int          `json:"skipped,omitempty"`
}

// newAuditEntry describes a finished write request from its answer.
func newAuditEntry(now time.Time, token string, r *http.Request, status int, body []byte) AuditEntry {
	e := AuditEntry{
		Time: now.UTC(), Token: token, Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path,
		Status: status, Result: auditResult(status),
	}
	e.Intents = auditIntents(r.Method, r.URL.Path, status, body)
	if status >= 400 {
		var ae api.Error
		if json.Unmarshal(body, &ae) == nil {
			e.Error = shorten(ae.Error, maxAuditError)
		}
	}
	return e
}

func auditResult(status int) string {
	switch {
	case status < 400:
		return "ok"
	case status == http.StatusUnauthorized:
		return "unauthenticated"
	case status == http.StatusForbidden:
		return "forbidden"
	case status < 500:
		return "rejected"
	}
	return "failed"
}

// auditIntents reads the intents of POST /v1/intents and DELETE /v1/intents/{name}
// from the answer ({"intents":[{"name","kind","version","result"}]}); a DELETE that
// did not succeed is recorded with the name of its path.
func auditIntents(method, p string, status int, body []byte) []AuditIntent {
	name, onIntent := strings.CutPrefix(p, "/v1/intents/")
	isDelete := method == http.MethodDelete && onIntent && name != "" && !strings.Contains(name, "/")
	if !isDelete && (method != http.MethodPost || p != "/v1/intents") {
		return nil
	}
	if status/100 == 2 {
		var res struct {
			Intents []AuditIntent `json:"intents"`
		}
		if json.Unmarshal(body, &res) == nil && len(res.Intents) > 0 {
			return res.Intents
		}
	}
	if isDelete {
		return []AuditIntent{{Name: name}}
	}
	return nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// decodeAuditEntry decodes one line of the audit log. Fields it does not know are
// ignored (a newer agent may add some); a line without time, method or path is not an
// entry.
func decodeAuditEntry(line []byte) (AuditEntry, error) {
	var e AuditEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return AuditEntry{}, fmt.Errorf("decode audit entry: %w", err)
	}
	if e.Time.IsZero() || e.Method == "" || e.Path == "" {
		return AuditEntry{}, errors.New("decode audit entry: time, method or path missing")
	}
	return e, nil
}

// tailEntries decodes the last n entries of data, JSON lines oldest first, and returns
// them newest first with the number of lines it could not decode on the way. A torn
// last line (a crash in the middle of an append) is one such line.
func tailEntries(data []byte, n int) (newestFirst []AuditEntry, skipped int) {
	rest := data
	for len(rest) > 0 && len(newestFirst) < n {
		rest = bytes.TrimSuffix(rest, []byte("\n"))
		i := bytes.LastIndexByte(rest, '\n')
		line := rest[i+1:]
		rest = rest[:i+1]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := decodeAuditEntry(line)
		if err != nil {
			skipped++
			continue
		}
		newestFirst = append(newestFirst, e)
	}
	return newestFirst, skipped
}

// auditLog is <data-dir>/audit.log and its one rotated predecessor, audit.log.1.
type auditLog struct {
	path     string // audit.log
	maxBytes int64

	mu     sync.Mutex // guards f, size and closed, and orders appends, rotation and reads
	f      *os.File   // nil after a failed rotation; Append reopens it
	size   int64
	closed bool
}

// openAuditLog opens (or creates) dir/audit.log for appending. maxBytes <= 0 means
// DefaultAuditMaxBytes.
func openAuditLog(dir string, maxBytes int64) (*auditLog, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultAuditMaxBytes
	}
	l := &auditLog{path: filepath.Join(dir, "audit.log"), maxBytes: maxBytes}
	if err := l.openLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// openLocked opens the current file. A last line without its newline (torn by a
// crash) is ended, so the next entry starts on a line of its own. Needs l.mu (or no
// other user yet).
func (l *auditLog) openLocked() error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	l.f, l.size = f, st.Size()
	if l.size == 0 {
		return runtime.SyncDir(filepath.Dir(l.path))
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, l.size-1); err != nil {
		return fmt.Errorf("open audit log: read its end: %w", err)
	}
	if last[0] != '\n' {
		return l.writeLocked([]byte("\n"))
	}
	return nil
}

// Append writes e as one line and fsyncs it, rotating first when the line would take
// the file past its cap.
func (l *auditLog) Append(e AuditEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("append to audit log: closed (the agent is stopping)")
	}
	if l.f == nil {
		if err := l.openLocked(); err != nil {
			return err
		}
	}
	if l.size > 0 && l.size+int64(len(line)) > l.maxBytes {
		if err := l.rotateLocked(); err != nil {
			return err
		}
	}
	return l.writeLocked(line)
}

func (l *auditLog) writeLocked(b []byte) error {
	n, err := l.f.Write(b)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("append to audit log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsync audit log: %w", err)
	}
	return nil
}

// rotateLocked moves audit.log to audit.log.1 and starts a new audit.log.
func (l *auditLog) rotateLocked() error {
	if err := l.f.Close(); err != nil {
		l.f = nil
		return fmt.Errorf("rotate audit log: close: %w", err)
	}
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	return l.openLocked()
}

// Tail returns the newest n entries of both files, oldest first, and the number of
// lines it could not decode.
func (l *auditLog) Tail(n int) ([]AuditEntry, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var rev []AuditEntry
	skipped := 0
	for _, p := range []string{l.path, l.path + ".1"} {
		if len(rev) >= n {
			break
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read audit log: %w", err)
		}
		es, s := tailEntries(data, n-len(rev))
		rev, skipped = append(rev, es...), skipped+s
	}
	out := make([]AuditEntry, len(rev))
	for i, e := range rev {
		out[len(rev)-1-i] = e
	}
	return out, skipped, nil
}

// Close closes the current file.
func (l *auditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// auditLimit reads ?limit=N of GET /v1/audit.
func auditLimit(s string) (int, error) {
	if s == "" {
		return defaultAuditLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxAuditLimit {
		return 0, fmt.Errorf("%q: want a whole number from 1 to %d", s, maxAuditLimit)
	}
	return n, nil
}

// handleAudit serves GET /v1/audit (admin: see requiredRole).
func (a *Agent) handleAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := auditLimit(r.URL.Query().Get("limit"))
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "invalid query", api.FieldError{Field: "limit", Message: err.Error()})
		return
	}
	entries, skipped, err := a.audit.Tail(limit)
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	api.WriteJSON(w, http.StatusOK, AuditJSON{Entries: entries, Skipped: skipped})
}
