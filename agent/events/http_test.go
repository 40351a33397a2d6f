package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/murmur-edge/murmur/agent/api"
)

// testServer serves a Server over HTTP; handled receives once per finished request.
type testServer struct {
	ring    *Ring
	srv     *Server
	url     string
	handled chan struct{}
}

func newTestServer(t *testing.T, size int, configure func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{ring: NewRing(size, time.Time{}, nil), handled: make(chan struct{}, 100)}
	ts.srv = Handler(ts.ring, nil)
	ts.srv.Now = func() time.Time { return t0.Add(time.Hour) }
	if configure != nil {
		configure(ts.srv)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ts.handled <- struct{}{} }()
		ts.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ts.srv.Close()
		hs.Close()
	})
	ts.url = hs.URL + "/v1/events"
	return ts
}

// get sends GET /v1/events?query with the headers (name, value, name, value...) and
// returns the response once its headers have arrived.
func (ts *testServer) get(t *testing.T, ctx context.Context, query string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHTTPBacklogNDJSON(t *testing.T) {
	ts := newTestServer(t, 8, nil)
	ts.ring.Add(Event{Type: TypeReplaced, Time: t0, Region: "a", Intent: "web", Instance: "web-12-0", Node: "n2", Replaces: "web-3-1", Cause: "replace", Reason: "web-3-1 was lost with node n1", Generation: 12})
	ts.ring.Add(Event{Type: TypeNodeDead, Time: t0.Add(time.Millisecond), Region: "a", Node: "n1", Reason: "no answer to probes for 4s"})
	ts.ring.Add(Event{Type: TypeUnplaced, Time: t0.Add(2 * time.Millisecond), Region: "b", Intent: "cam", Count: 2, Reason: "no node has label camera=yes"})
	resp := ts.get(t, t.Context(), "region=a")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want := `{"id":1,"time":"2030-01-02T03:04:05Z","type":"replaced","region":"a","intent":"web","instance":"web-12-0","node":"n2","replaces":"web-3-1","cause":"replace","reason":"web-3-1 was lost with node n1","generation":12}
{"id":2,"time":"2030-01-02T03:04:05.001Z","type":"node_dead","region":"a","node":"n1","reason":"no answer to probes for 4s"}
`
	if diff := cmp.Diff(want, readAll(t, resp)); diff != "" {
		t.Errorf("NDJSON (-want +got):\n%s", diff)
	}
}

func TestHTTPBacklogSSE(t *testing.T) {
	ts := newTestServer(t, 8, func(s *Server) { s.Retry = 1500 * time.Millisecond })
	ts.ring.Add(Event{Type: TypeMigrated, Time: t0, Instance: "web-0", Node: "n2", From: "n1", Cause: "offload"})
	ts.ring.Add(Event{Type: TypeCoordinatorChanged, Time: t0, Region: "a", Node: "n3", Term: 7})
	for _, h := range [][]string{{"Accept", "text/event-stream"}, nil} {
		q := ""
		if h == nil {
			q = "format=sse"
		}
		resp := ts.get(t, t.Context(), q, h...)
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
			t.Errorf("%v %q: content type %q", h, q, ct)
		}
		want := "retry: 1500\n\n" +
			"id: 1\nevent: migrated\ndata: {\"id\":1,\"time\":\"2030-01-02T03:04:05Z\",\"type\":\"migrated\",\"instance\":\"web-0\",\"node\":\"n2\",\"from\":\"n1\",\"cause\":\"offload\"}\n\n" +
			"id: 2\nevent: coordinator_changed\ndata: {\"id\":2,\"time\":\"2030-01-02T03:04:05Z\",\"type\":\"coordinator_changed\",\"region\":\"a\",\"node\":\"n3\",\"term\":7}\n\n"
		if diff := cmp.Diff(want, readAll(t, resp)); diff != "" {
			t.Errorf("SSE (-want +got):\n%s", diff)
		}
	}
}

func TestHTTPQueries(t *testing.T) {
	ts := newTestServer(t, 4, nil)
	fill(ts.ring, 6) // 3..6 kept, at t0+2s..t0+5s; Now is t0+1h
	ts.ring.Add(Event{Type: TypeNodeDead, Time: t0.Add(6 * time.Second), Node: "n1"})
	ts.ring.Add(Event{Type: TypeMigrated, Time: t0.Add(7 * time.Second), Node: "n2", From: "n1", Intent: "web"})
	// kept now: 5, 6 (placed), 7 (node_dead), 8 (migrated)
	for _, tc := range []struct {
		query   string
		headers []string
		want    []uint64 // 0: the truncated marker
	}{
		{"", nil, []uint64{5, 6, 7, 8}},                     // no since: no truncation reported
		{"since=6", nil, []uint64{7, 8}},                    // an id
		{"since=1", nil, []uint64{0, 5, 6, 7, 8}},           // events 2..4 are gone
		{"since=4", nil, []uint64{5, 6, 7, 8}},              // nothing missed
		{"since=2030-01-02T03:04:11Z", nil, []uint64{7, 8}}, // a time: t0+6s
		{"since=1h", nil, []uint64{0, 5, 6, 7, 8}},          // a duration: events since t0, 1..4 gone
		{"since=59m54s", nil, []uint64{7, 8}},               // t0+1h-59m54s = t0+6s
		{"node=n1", nil, []uint64{7, 8}},                    // node or from
		{"intent=web", nil, []uint64{8}},
		{"type=node_dead,migrated", nil, []uint64{7, 8}},
		{"type=placed&limit=1", nil, []uint64{6}},
		{"since=4&type=placed&limit=1", nil, []uint64{0, 6}},     // limit cut event 5
		{"since=1", []string{"Last-Event-ID", "7"}, []uint64{8}}, // the header wins
		{"region=x", nil, []uint64{}},
		{"since=99999", nil, []uint64{0, 5, 6, 7, 8}}, // an id this run never gave
	} {
		t.Run(tc.query+strings.Join(tc.headers, ":"), func(t *testing.T) {
			resp := ts.get(t, t.Context(), tc.query, tc.headers...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
			}
			d := NewDecoder(resp.Body, false)
			got := []uint64{}
			for {
				e, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if (e.ID == 0) != (e.Type == TypeTruncated) {
					t.Errorf("event %d of type %s", e.ID, e.Type)
				}
				if e.Type == TypeTruncated && !strings.HasPrefix(e.Reason, "events were missed: ") {
					t.Errorf("truncated reason %q", e.Reason)
				}
				got = append(got, e.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHTTPBadInput(t *testing.T) {
	ts := newTestServer(t, 4, nil)
	for _, tc := range []struct {
		query   string
		headers []string
		fields  []string
	}{
		{"since=yesterday", nil, []string{"since"}},
		{"since=", nil, []string{"since"}},
		{"", []string{"Last-Event-ID", "abc"}, []string{"Last-Event-ID"}},
		{"type=placed,Bad", nil, []string{"type"}},
		{"type=", nil, nil}, // empty: no filter
		{"follow=maybe", nil, []string{"follow"}},
		{"limit=0", nil, []string{"limit"}},
		{"limit=10001", nil, []string{"limit"}},
		{"limit=x", nil, []string{"limit"}},
		{"format=xml", nil, []string{"format"}},
		{"node=a%20b", nil, []string{"node"}},
		{"region=" + strings.Repeat("r", 254), nil, []string{"region"}},
		{"intent=%1b", nil, []string{"intent"}},
		{"since=-1m&limit=-1&type=X", nil, []string{"since", "type", "limit"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp := ts.get(t, t.Context(), tc.query, tc.headers...)
			if tc.fields == nil {
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d, want 200", resp.StatusCode)
				}
				return
			}
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, d := range e.Details {
				fields = append(fields, d.Field)
				if d.Message == "" {
					t.Errorf("field %s without a message", d.Field)
				}
			}
			if resp.StatusCode != http.StatusBadRequest || e.Error == "" || !cmp.Equal(fields, tc.fields) {
				t.Errorf("status %d, error %q, fields %v; want 400 naming %v", resp.StatusCode, e.Error, fields, tc.fields)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, ts.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST: status %d, Allow %q; want 405, GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// lineReader reads a stream line by line.
type lineReader struct {
	t  *testing.T
	sc *bufio.Scanner
}

func (lr lineReader) next() string {
	lr.t.Helper()
	if !lr.sc.Scan() {
		lr.t.Fatalf("stream ended: %v", lr.sc.Err())
	}
	return lr.sc.Text()
}

func TestHTTPFollow(t *testing.T) {
	ts := newTestServer(t, 8, nil)
	ts.ring.Add(Event{Type: TypePlaced, Time: t0, Node: "n1"})
	// The answer's headers arrive after the backlog is written, so the stream is
	// past its first read of the ring: what comes next is followed.
	resp := ts.get(t, t.Context(), "follow=1&node=n2")
	lr := lineReader{t, bufio.NewScanner(resp.Body)}
	ts.ring.Add(Event{Type: TypePlaced, Time: t0, Node: "n1"}) // filtered out
	ts.ring.Add(Event{Type: TypeMigrated, Time: t0, Node: "n2", From: "n1"})
	if got, want := lr.next(), `{"id":3,"time":"2030-01-02T03:04:05Z","type":"migrated","node":"n2","from":"n1"}`; got != want {
		t.Errorf("followed line %s, want %s", got, want)
	}
	ts.ring.Add(Event{Type: TypeNodeDead, Time: t0, Node: "n2"})
	if got := lr.next(); !strings.HasPrefix(got, `{"id":4,`) {
		t.Errorf("second followed line %s", got)
	}
	if n := ts.srv.Followers(); n != 1 {
		t.Errorf("Followers() = %d, want 1", n)
	}
}

// A follower that reconnects with Last-Event-ID (as EventSource does) gets what it
// missed, and then what comes.
func TestHTTPFollowSSEResume(t *testing.T) {
	ts := newTestServer(t, 8, nil)
	for i := range 3 {
		ts.ring.Add(Event{Type: TypePlaced, Time: t0, Instance: fmt.Sprintf("i%d", i)})
	}
	resp := ts.get(t, t.Context(), "follow=true&since=1h", "Accept", "text/event-stream", "Last-Event-ID", "2")
	d := NewDecoder(resp.Body, true)
	e, err := d.Next()
	if err != nil || e.ID != 3 {
		t.Fatalf("first event %+v, %v; want id 3", e, err)
	}
	ts.ring.Add(Event{Type: TypeStopped, Time: t0, Instance: "i0"})
	e, err = d.Next()
	if err != nil || e.ID != 4 || e.Type != TypeStopped {
		t.Fatalf("followed event %+v, %v; want 4 stopped", e, err)
	}
}

func TestHTTPKeepalive(t *testing.T) {
	ts := newTestServer(t, 8, func(s *Server) { s.Keepalive = time.Millisecond })
	for _, tc := range []struct{ format, want string }{{"sse", ": keepalive"}, {"ndjson", ""}} {
		resp := ts.get(t, t.Context(), "follow=1&format="+tc.format)
		lr := lineReader{t, bufio.NewScanner(resp.Body)}
		if tc.format == "sse" {
			if got := lr.next(); got != "retry: 3000" {
				t.Errorf("first SSE line %q", got)
			}
			lr.next()
		}
		if got := lr.next(); got != tc.want {
			t.Errorf("%s: keepalive line %q, want %q", tc.format, got, tc.want)
		}
	}
}

func TestHTTPFollowerCap(t *testing.T) {
	ts := newTestServer(t, 8, func(s *Server) { s.MaxFollowers = 1 })
	ctx, cancel := context.WithCancel(t.Context())
	first := ts.get(t, ctx, "follow=1")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first follower: status %d", first.StatusCode)
	}
	second := ts.get(t, t.Context(), "follow=1")
	var e api.Error
	json.NewDecoder(second.Body).Decode(&e)
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" || !strings.Contains(e.Error, "at most 1") {
		t.Errorf("second follower: status %d, Retry-After %q, error %q; want 503", second.StatusCode, second.Header.Get("Retry-After"), e.Error)
	}
	<-ts.handled // the refused one
	if resp := ts.get(t, t.Context(), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("a backlog request while the cap is reached: status %d, want 200", resp.StatusCode)
	}
	<-ts.handled
	cancel() // the first follower goes away
	<-ts.handled
	if n := ts.srv.Followers(); n != 0 {
		t.Errorf("Followers() = %d after the follower left", n)
	}
	if resp := ts.get(t, t.Context(), "follow=1"); resp.StatusCode != http.StatusOK {
		t.Errorf("a follower after the first left: status %d, want 200", resp.StatusCode)
	}
}

func TestHTTPCloseEndsStreams(t *testing.T) {
	ts := newTestServer(t, 8, nil)
	resp := ts.get(t, t.Context(), "follow=1&format=sse")
	ts.srv.Close()
	if got := readAll(t, resp); got != "retry: 3000\n\n" {
		t.Errorf("stream after Close: %q", got)
	}
	resp = ts.get(t, t.Context(), "follow=1")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("follow after Close: status %d, want 503", resp.StatusCode)
	}
	if resp := ts.get(t, t.Context(), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("backlog after Close: status %d, want 200", resp.StatusCode)
	}
}

// A follower that falls more than the ring's size behind is told so.
func TestHTTPFollowTruncated(t *testing.T) {
	woken, proceed := make(chan struct{}), make(chan struct{})
	ts := newTestServer(t, 2, func(s *Server) {
		s.testHookWoken = func() {
			woken <- struct{}{}
			<-proceed
		}
	})
	resp := ts.get(t, t.Context(), "follow=1")
	d := NewDecoder(resp.Body, false)
	ts.ring.Add(Event{Type: TypePlaced, Time: t0})
	<-woken // the handler was woken by event 1 and has not read the ring yet
	for range 4 {
		ts.ring.Add(Event{Type: TypePlaced, Time: t0})
	}
	close(proceed)
	var got []string
	for len(got) < 3 {
		e, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", e.ID, e.Type))
	}
	if diff := cmp.Diff([]string{"0 truncated", "4 placed", "5 placed"}, got); diff != "" {
		t.Errorf("followed (-want +got):\n%s", diff)
	}
}

// The filter runs under the ring's lock: at most 16 distinct types, duplicates
// folded; and at most MaxBacklogs backlogs are served at once.
func TestHTTPTypeCapAndBacklogCap(t *testing.T) {
	ts := newTestServer(t, 8, nil)
	ts.ring.Add(Event{Type: TypePlaced, Time: t0})
	many := make([]string, 17)
	for i := range many {
		many[i] = "type_" + strings.Repeat("x", i+1)
	}
	if resp := ts.get(t, context.Background(), "type="+strings.Join(many, ",")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("17 distinct types: HTTP %d, want 400", resp.StatusCode)
	} else if body := readAll(t, resp); !strings.Contains(body, "at most 16") {
		t.Errorf("17 distinct types: %s, want the cap named", body)
	}
	dup := strings.TrimSuffix(strings.Repeat("placed,", 40), ",")
	if resp := ts.get(t, context.Background(), "type="+dup); resp.StatusCode != http.StatusOK {
		t.Errorf("one type repeated 40 times: HTTP %d, want 200", resp.StatusCode)
	} else if got := strings.Count(readAll(t, resp), `"type":"placed"`); got != 1 {
		t.Errorf("one type repeated: %d events, want 1", got)
	}
	for range MaxBacklogs {
		ts.srv.backlogs <- struct{}{}
	}
	resp := ts.get(t, context.Background(), "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("backlog beyond the cap: HTTP %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	readAll(t, resp)
	for range MaxBacklogs {
		<-ts.srv.backlogs
	}
}

// A client resuming with an id of an earlier run of the agent is told it missed what
// that run recorded after it.
func TestRingReportsARestart(t *testing.T) {
	boot := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	old := NewRing(8, boot, nil)
	seen := old.Add(Event{Type: TypePlaced}).ID
	old.Add(Event{Type: TypeStopped}) // recorded, never read: lost with the restart
	r := NewRing(8, boot.Add(time.Minute), nil)
	r.Add(Event{Type: TypeNodeAlive})
	evs, truncated := r.Since(seen, Filter{}, 0)
	if len(evs) != 1 || !truncated {
		t.Errorf("resume from an earlier run's id: %d events, truncated %v; want 1 and true", len(evs), truncated)
	}
	if _, truncated := r.Since(r.LastID(), Filter{}, 0); truncated {
		t.Error("resume from this run's newest id reported truncated")
	}
}
