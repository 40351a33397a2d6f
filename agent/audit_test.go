package agent

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testEntry(i int) AuditEntry {
	return AuditEntry{
		Time: time.Date(2030, 1, 1, 0, 0, i, 0, time.UTC), Token: "ci", Remote: "10.0.0.9:40000", Method: "POST", Path: "/v1/intents",
		Intents: []AuditIntent{{Name: fmt.Sprintf("w%d", i), Kind: "Workload", Version: fmt.Sprintf("v%d", i), Result: "created"}},
		Status:  200, Result: "ok",
	}
}

func appendEntries(t *testing.T, l *auditLog, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := l.Append(testEntry(i)); err != nil {
			t.Fatalf("Append(%d) = %v", i, err)
		}
	}
}

func names(es []AuditEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Intents[0].Name)
	}
	return out
}

func TestAuditAppendAndTail(t *testing.T) {
	dir := t.TempDir()
	l, err := openAuditLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 0, 3)
	for _, tc := range []struct {
		limit int
		want  []string
	}{{1, []string{"w2"}}, {2, []string{"w1", "w2"}}, {100, []string{"w0", "w1", "w2"}}} {
		got, skipped, err := l.Tail(tc.limit)
		if err != nil || skipped != 0 {
			t.Fatalf("Tail(%d) = %v, skipped %d", tc.limit, err, skipped)
		}
		if diff := cmp.Diff(tc.want, names(got)); diff != "" {
			t.Errorf("Tail(%d) (-want +got):\n%s", tc.limit, diff)
		}
	}
	got, _, _ := l.Tail(1)
	if diff := cmp.Diff(testEntry(2), got[0]); diff != "" {
		t.Errorf("the entry read back differs (-want +got):\n%s", diff)
	}
	// One JSON object per line, the time in RFC 3339 UTC.
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `{"time":"2030-01-01T00:00:00Z","token":"ci",`) {
		t.Errorf("audit.log = %q, want 3 JSON lines starting with the UTC time", b)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(testEntry(9)); err == nil {
		t.Error("Append after Close succeeded")
	}
}

func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	line, _ := json.Marshal(testEntry(0))
	size := int64(len(line) + 1)
	l, err := openAuditLog(dir, 3*size) // three entries per file
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cur, old := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.log.1")
	appendEntries(t, l, 0, 3)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("audit.log.1 exists at the cap (%v); rotation is for an entry past the cap", err)
	}
	appendEntries(t, l, 3, 4)
	if st, err := os.Stat(old); err != nil || st.Size() != 3*size {
		t.Fatalf("after the cap: audit.log.1 = %v, %v; want the 3 first entries", st, err)
	}
	got, _, _ := l.Tail(10)
	if diff := cmp.Diff([]string{"w0", "w1", "w2", "w3"}, names(got)); diff != "" {
		t.Errorf("Tail across both files (-want +got):\n%s", diff)
	}
	appendEntries(t, l, 4, 7) // a second rotation drops w0-w2
	got, _, _ = l.Tail(10)
	if diff := cmp.Diff([]string{"w3", "w4", "w5", "w6"}, names(got)); diff != "" {
		t.Errorf("Tail after a second rotation (-want +got):\n%s", diff)
	}
	got, _, _ = l.Tail(2)
	if diff := cmp.Diff([]string{"w5", "w6"}, names(got)); diff != "" {
		t.Errorf("Tail(2) (-want +got):\n%s", diff)
	}
	if st, _ := os.Stat(cur); st.Size() > 3*size {
		t.Errorf("audit.log is %d bytes, over its cap %d", st.Size(), 3*size)
	}
	// A restart keeps counting from the file's size.
	l.Close()
	l2, err := openAuditLog(dir, 3*size)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	appendEntries(t, l2, 7, 10) // audit.log held w6 alone: w7 and w8 fit, w9 rotates
	got, _, _ = l2.Tail(10)
	if diff := cmp.Diff([]string{"w6", "w7", "w8", "w9"}, names(got)); diff != "" {
		t.Errorf("Tail after a reopen and a rotation (-want +got):\n%s", diff)
	}
}

// A crash in the middle of an append leaves a torn last line: reading skips it, and
// the next entry after a restart starts on its own line.
func TestAuditTornLine(t *testing.T) {
	dir := t.TempDir()
	l, err := openAuditLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 0, 2)
	l.Close()
	line, _ := json.Marshal(testEntry(2))
	f, err := os.OpenFile(filepath.Join(dir, "audit.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line[:len(line)/2])
	f.Close()

	l, err = openAuditLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, skipped, err := l.Tail(10)
	if err != nil || skipped != 1 {
		t.Errorf("Tail = %v, skipped %d; want the torn line skipped", err, skipped)
	}
	if diff := cmp.Diff([]string{"w0", "w1"}, names(got)); diff != "" {
		t.Errorf("Tail with a torn line (-want +got):\n%s", diff)
	}
	appendEntries(t, l, 3, 4)
	got, skipped, _ = l.Tail(10)
	if diff := cmp.Diff([]string{"w0", "w1", "w3"}, names(got)); diff != "" || skipped != 1 {
		t.Errorf("Tail after appending past a torn line (-want +got), skipped %d:\n%s", skipped, diff)
	}
}

func TestTailEntries(t *testing.T) {
	e := func(i int) string { b, _ := json.Marshal(testEntry(i)); return string(b) }
	cases := []struct {
		name    string
		data    string
		n       int
		want    []string // newest first
		skipped int
	}{
		{"empty", "", 5, nil, 0},
		{"newlines only", "\n\n", 5, nil, 0},
		{"no final newline", e(0) + "\n" + e(1), 5, []string{"w1", "w0"}, 0},
		{"torn last line", e(0) + "\n" + e(1)[:20], 5, []string{"w0"}, 1},
		{"garbage between", e(0) + "\nnot json\n{}\n" + e(1) + "\n", 5, []string{"w1", "w0"}, 2},
		{"stops at n", e(0) + "\n" + e(1) + "\n" + e(2) + "\n", 2, []string{"w2", "w1"}, 0},
		{"crlf", e(0) + "\r\n", 5, []string{"w0"}, 0},
	}
	for _, tc := range cases {
		got, skipped := tailEntries([]byte(tc.data), tc.n)
		if diff := cmp.Diff(tc.want, names(got)); diff != "" || skipped != tc.skipped {
			t.Errorf("%s: skipped %d (want %d), entries (-want +got):\n%s", tc.name, skipped, tc.skipped, diff)
		}
	}
}

func TestAuditLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{{"", 100, true}, {"1", 1, true}, {"1000", 1000, true}, {"0", 0, false}, {"1001", 0, false}, {"-3", 0, false}, {"ten", 0, false}} {
		got, err := auditLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("auditLimit(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNewAuditEntry(t *testing.T) {
	when := time.Date(2030, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))
	apply := `{"intents":[{"name":"vision","kind":"Workload","version":"v1","result":"created"},{"name":"rules","kind":"Policy","version":"v2","result":"unchanged"}]}`
	cases := []struct {
		name, method, path string
		status             int
		body               string
		want               AuditEntry
	}{
		{"apply", "POST", "/v1/intents", 200, apply, AuditEntry{Intents: []AuditIntent{
			{Name: "vision", Kind: "Workload", Version: "v1", Result: "created"}, {Name: "rules", Kind: "Policy", Version: "v2", Result: "unchanged"}}, Status: 200, Result: "ok"}},
		{"apply rejected", "POST", "/v1/intents", 400, `{"error":"invalid intent","details":[{"field":"spec","message":"x"}]}`,
			AuditEntry{Status: 400, Result: "rejected", Error: "invalid intent"}},
		{"delete", "DELETE", "/v1/intents/vision", 200, `{"intents":[{"name":"vision","kind":"Workload","version":"v3","result":"deleted"}]}`,
			AuditEntry{Intents: []AuditIntent{{Name: "vision", Kind: "Workload", Version: "v3", Result: "deleted"}}, Status: 200, Result: "ok"}},
		{"delete failed", "DELETE", "/v1/intents/vision", 500, `{"error":"disk full"}`,
			AuditEntry{Intents: []AuditIntent{{Name: "vision"}}, Status: 500, Result: "failed", Error: "disk full"}},
		{"other write", "POST", "/v1/keyring/install", 200, apply, AuditEntry{Status: 200, Result: "ok"}},
		{"long error", "POST", "/v1/x", 404, `{"error":"` + strings.Repeat("é", 200) + `"}`,
			AuditEntry{Status: 404, Result: "rejected", Error: strings.Repeat("é", 128) + "…"}},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, tc.path+"?wait=fleet", nil)
		got := newAuditEntry(when, "ci", r, tc.status, []byte(tc.body))
		want := tc.want
		want.Time, want.Token, want.Remote, want.Method, want.Path = when.UTC(), "ci", "192.0.2.1:1234", tc.method, tc.path
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// FuzzAuditEntry: audit lines are read back from disk, where a crash may tear them;
// decodeAuditEntry never panics and what it accepts survives a round trip.
func FuzzAuditEntry(f *testing.F) {
	line, _ := json.Marshal(testEntry(1))
	f.Add(line)
	f.Add(line[:len(line)/2])
	f.Add([]byte(`{"time":"2030-01-01T00:00:00Z","method":"POST","path":"/","intents":[{}],"extra":1}`))
	f.Add([]byte(`{"time":"2030-01-01T00:00:00+01:00","method":"\u0000","path":"\xff"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeAuditEntry(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("an accepted entry %+v does not encode: %v", e, err)
		}
		e2, err := decodeAuditEntry(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		if !e.Time.Equal(e2.Time) {
			t.Fatalf("time %v became %v", e.Time, e2.Time)
		}
		e.Time, e2.Time = time.Time{}, time.Time{}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", b, diff)
		}
	})
}

// FuzzAuditTail: whatever a file holds, tailEntries never panics and returns at most n
// valid entries.
func FuzzAuditTail(f *testing.F) {
	line, _ := json.Marshal(testEntry(1))
	f.Add(append(append(line, '\n'), line[:10]...), 3)
	f.Add([]byte("\n\n{}\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		n = n%maxAuditLimit + 1
		if n < 1 {
			n += maxAuditLimit
		}
		got, skipped := tailEntries(b, n)
		if len(got) > n || skipped < 0 {
			t.Fatalf("tailEntries(n=%d) = %d entries, skipped %d", n, len(got), skipped)
		}
		for _, e := range got {
			if e.Time.IsZero() || e.Method == "" || e.Path == "" {
				t.Fatalf("tailEntries returned an invalid entry %+v", e)
			}
		}
	})
}
