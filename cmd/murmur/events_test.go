package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/murmur-edge/murmur/agent/events"
)

var evT0 = time.Date(2030, 1, 2, 15, 4, 5, 123_000_000, time.UTC)

func TestEventsFormat(t *testing.T) {
	now := evT0.Add(time.Hour)
	for _, tc := range []struct {
		e    events.Event
		want string
	}{
		{events.Event{Type: events.TypeReplaced, Time: evT0, Intent: "web", Instance: "web-12-0", Node: "n2", Replaces: "web-3-1", Cause: "replace", Reason: "web-3-1 was lost with node n1"},
			"15:04:05.123  replaced    web-12-0  on n2  (replace)  replaces web-3-1  web-3-1 was lost with node n1"},
		{events.Event{Type: events.TypePlaced, Time: evT0, Intent: "web", Instance: "web-0", Node: "n1"},
			"15:04:05.123  placed      web-0  on n1"},
		{events.Event{Type: events.TypeMigrated, Time: evT0, Instance: "web-0", Node: "n2", From: "n1", Cause: "offload", Reason: "n1 above 85% cpu for 10s"},
			"15:04:05.123  migrated    web-0  from n1 to n2  (offload)  n1 above 85% cpu for 10s"},
		{events.Event{Type: events.TypeStopped, Time: evT0, Instance: "web-5", Node: "n3", Cause: "surplus"},
			"15:04:05.123  stopped     web-5  on n3  (surplus)"},
		{events.Event{Type: events.TypeUnplaced, Time: evT0, Intent: "cam", Count: 2, Reason: "no node has label camera=yes"},
			"15:04:05.123  unplaced    cam  2 instances  no node has label camera=yes"},
		{events.Event{Type: events.TypeNodeDead, Time: evT0, Node: "n1", Region: "a", Reason: "failed probes"},
			"15:04:05.123  node_dead   node n1  region a  failed probes"},
		{events.Event{Type: events.TypeCoordinatorChanged, Time: evT0, Region: "a", Node: "n3", Term: 7},
			"15:04:05.123  coordinator_changed  region a  coordinator n3  term 7"},
		{events.Event{Type: events.TypeHeadless, Time: evT0.Add(-24 * time.Hour), Region: "a", Reason: "no coordinator for 5s"},
			"2030-01-01 15:04:05.123  headless    region a  no coordinator for 5s"},
		{events.Event{Type: "lease_expired", Time: evT0, Instance: "x\x1b[31m", Reason: "line\nbreak"},
			`15:04:05.123  lease_expired  x\x1b[31m  line\nbreak`},
	} {
		if got := formatEvent(tc.e, time.UTC, now); got != tc.want {
			t.Errorf("formatEvent(%+v)\n got %q\nwant %q", tc.e, got, tc.want)
		}
	}
}

// eventsAgent is an API serving GET /v1/events from a ring; requests receives the
// query of every request, and cancels can end the stream of one.
type eventsAgent struct {
	ring     *events.Ring
	srv      *events.Server
	url      string
	requests chan url.Values
	cancels  chan context.CancelFunc
}

func newEventsAgent(t *testing.T, size int) *eventsAgent {
	t.Helper()
	a := &eventsAgent{ring: events.NewRing(size, time.Time{}, nil), requests: make(chan url.Values, 16), cancels: make(chan context.CancelFunc, 16)}
	a.srv = events.Handler(a.ring, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" || r.Header.Get("Accept") != "application/x-ndjson" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		a.cancels <- cancel
		a.requests <- r.URL.Query()
		a.srv.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(func() { a.srv.Close(); hs.Close() })
	a.url = hs.URL
	return a
}

// syncBuffer is a bytes.Buffer safe for the command's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// runEvents runs `murmur events args...` to its end.
func runEvents(t *testing.T, ctx context.Context, stdout io.Writer, args ...string) (string, error) {
	t.Helper()
	cf := &clientFlags{}
	cmd := newEventsCmdWith(cf, func(c *eventsClient) {
		c.loc, c.now = time.UTC, func() time.Time { return evT0 }
		c.minBackoff, c.maxBackoff = time.Millisecond, 4*time.Millisecond
	})
	var stderr syncBuffer
	cmd.SetOut(stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return stderr.String(), err
}

func TestEventsCmdBacklog(t *testing.T) {
	a := newEventsAgent(t, 16)
	a.ring.Add(events.Event{Type: events.TypePlaced, Time: evT0, Region: "a", Instance: "web-0", Node: "n1"})
	a.ring.Add(events.Event{Type: events.TypeNodeDead, Time: evT0, Region: "a", Node: "n1"})
	a.ring.Add(events.Event{Type: events.TypeMigrated, Time: evT0, Region: "b", Instance: "cam-0", Node: "n5", From: "n4"})
	var out bytes.Buffer
	stderr, err := runEvents(t, t.Context(), &out, "--addr", a.url, "--region", "a", "--type", "placed,node_dead", "--since", "10m", "--limit", "50")
	if err != nil || stderr != "" {
		t.Fatalf("events: %v, stderr %q", err, stderr)
	}
	want := "15:04:05.123  placed      web-0  on n1\n15:04:05.123  node_dead   node n1  region a\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	wantQ := url.Values{"region": {"a"}, "type": {"placed,node_dead"}, "since": {"10m"}, "limit": {"50"}}
	if diff := cmp.Diff(wantQ, <-a.requests); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}

	out.Reset()
	if _, err := runEvents(t, t.Context(), &out, "--addr", a.url, "-o", "json", "--node", "n4"); err != nil {
		t.Fatal(err)
	}
	want = `{"id":3,"time":"2030-01-02T15:04:05.123Z","type":"migrated","region":"b","instance":"cam-0","node":"n5","from":"n4"}` + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("-o json output (-want +got):\n%s", diff)
	}
}

func TestEventsCmdTruncated(t *testing.T) {
	a := newEventsAgent(t, 2)
	for range 5 {
		a.ring.Add(events.Event{Type: events.TypeStopped, Time: evT0, Instance: "x"})
	}
	var out bytes.Buffer
	stderr, err := runEvents(t, t.Context(), &out, "--addr", a.url, "--since", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "stopped"); got != 2 {
		t.Errorf("%d events printed, want the 2 kept:\n%s", got, out.String())
	}
	if !strings.Contains(stderr, "murmur: events were missed: events 2 to 3 are no longer kept") {
		t.Errorf("stderr %q, want a note about the missed events", stderr)
	}
	out.Reset()
	if _, err := runEvents(t, t.Context(), &out, "--addr", a.url, "--since", "1", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), `{"id":0,`) || !strings.Contains(out.String(), `"type":"truncated"`) {
		t.Errorf("-o json: the truncated line is not passed on:\n%s", out.String())
	}
}

func TestEventsCmdErrors(t *testing.T) {
	a := newEventsAgent(t, 2)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool   // exit 2
		want  string // in the message
	}{
		{"bad type", []string{"--addr", a.url, "--type", "Placed"}, true, `invalid --type "Placed"`},
		{"bad limit", []string{"--addr", a.url, "--limit", "10001"}, true, "invalid --limit"},
		{"bad output", []string{"--addr", a.url, "-o", "yaml"}, true, "invalid --output"},
		{"agent refuses since", []string{"--addr", a.url, "--since", "yesterday"}, true, "since: since \"yesterday\" is not an event id"},
		{"agent refuses since while following", []string{"--addr", a.url, "-f", "--since", "yesterday"}, true, "(HTTP 400)"},
		{"unreachable", []string{"--addr", closed.URL}, false, "is an agent running there?"},
		{"unreachable while following", []string{"--addr", closed.URL, "-f"}, false, "is an agent running there?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runEvents(t, t.Context(), io.Discard, tc.args...)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tc.usage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (usage error: %v), want one containing %q, usage error %v", err, errors.As(err, &ue), tc.want, tc.usage)
			}
		})
	}
}

// lineWriter hands each line written to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// -f follows, and when the stream breaks resumes after the last event it printed.
func TestEventsCmdFollowReconnects(t *testing.T) {
	a := newEventsAgent(t, 16)
	a.ring.Add(events.Event{Type: events.TypePlaced, Time: evT0, Instance: "web-0", Node: "n1"})
	ctx, cancel := context.WithCancel(t.Context())
	out := &lineWriter{lines: make(chan string, 16)}
	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		stderr, err := runEvents(t, ctx, out, "--addr", a.url, "-f", "--node", "n1")
		done <- result{stderr, err}
	}()
	if q := <-a.requests; q.Get("follow") != "1" || q.Get("node") != "n1" || q.Has("since") {
		t.Errorf("first request %v, want follow=1, node=n1 and no since", q)
	}
	if got := <-out.lines; !strings.Contains(got, "placed      web-0  on n1") {
		t.Errorf("first line %q", got)
	}
	(<-a.cancels)() // the stream breaks
	q := <-a.requests
	if q.Get("since") != "1" || q.Get("follow") != "1" || q.Get("node") != "n1" {
		t.Errorf("reconnection %v, want since=1 (the last event seen), follow=1, node=n1", q)
	}
	a.ring.Add(events.Event{Type: events.TypeNodeDead, Time: evT0, Node: "n1"})
	if got := <-out.lines; !strings.Contains(got, "node_dead   node n1") {
		t.Errorf("line after reconnecting %q", got)
	}
	cancel() // Ctrl-C
	r := <-done
	if r.err != nil {
		t.Errorf("events -f after Ctrl-C: %v, want a clean exit", r.err)
	}
	if !strings.Contains(r.stderr, "reconnecting in 1ms from event 1") || !strings.Contains(r.stderr, "murmur: reconnected to "+a.url) {
		t.Errorf("stderr %q, want notes about the reconnection", r.stderr)
	}
}

// A connection on which nothing arrives (not even keepalives) is given up and
// opened again.
func TestEventsCmdFollowIdle(t *testing.T) {
	requests := make(chan struct{}, 16)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- struct{}{}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // silent until the client goes away
	}))
	defer hs.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var stderr string
	go func() {
		cf := &clientFlags{}
		cmd := newEventsCmdWith(cf, func(c *eventsClient) { c.idle, c.minBackoff = 5*time.Millisecond, time.Millisecond })
		var errBuf syncBuffer
		cmd.SetOut(io.Discard)
		cmd.SetErr(&errBuf)
		cmd.SetArgs([]string{"--addr", hs.URL, "-f"})
		err := cmd.ExecuteContext(ctx)
		stderr = errBuf.String()
		done <- err
	}()
	<-requests
	<-requests // given up, and opened again
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no data from the agent for 5ms") {
		t.Errorf("stderr %q, want the reason of the reconnection", stderr)
	}
}
