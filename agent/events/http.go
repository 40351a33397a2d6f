package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/murmur-edge/murmur/agent/api"
)

// Defaults of Server.
const (
	DefaultKeepalive    = 15 * time.Second
	DefaultRetry        = 3 * time.Second
	DefaultMaxFollowers = 64
	DefaultWriteTimeout = 30 * time.Second
	DefaultLimit        = 1000  // backlog events sent when the request gives no limit
	MaxLimit            = 10000 // the largest limit a request may give
)

// Server serves GET /v1/events from a Ring.
//
// Query parameters:
//
//	since   where to start (ParseSince: event id, RFC 3339 time or duration); the SSE
//	        Last-Event-ID header, an event id, takes precedence. Without either the
//	        backlog is the newest events kept and no truncation is reported.
//	region, intent, node, type
//	        filters (Filter); type is a comma-separated list of types.
//	follow  1 or true: after the backlog keep the stream open and send new events.
//	limit   the backlog's cap, 1 to MaxLimit (default DefaultLimit): the newest
//	        matching events are kept. Events that arrive while following are not capped.
//	format  sse or ndjson; without it, Accept: text/event-stream selects SSE.
//
// NDJSON (Content-Type application/x-ndjson): one Event as a JSON object per line.
// While following, an empty line is sent every Keepalive.
//
// Server-Sent Events (Content-Type text/event-stream): the stream starts with
// "retry: <ms>", then one message per event,
//
//	id: <id>
//	event: <type>
//	data: <the Event as JSON>
//
// and, while following, a ": keepalive" comment every Keepalive.
//
// Missed events: when the client asked for events (since or Last-Event-ID) that are
// gone — overwritten in the ring, cut by limit, or from another run whose clock was
// ahead — the events sent are preceded by one Event of type "truncated" with the
// time it was sent and a Reason, and ID 0. In NDJSON it is a line like any other;
// in SSE it is "event: truncated" with that JSON as data and no "id:" line, so the
// client's Last-Event-ID is unchanged. A follower that falls behind by more than the
// ring's size gets one too.
//
// Errors: 400 with the project's error envelope naming the field, 405 for other
// methods than GET, 503 beyond MaxFollowers following streams or after Close.
//
// Set the exported fields before the first request; zero values take the defaults.
type Server struct {
	Keepalive    time.Duration    // keepalive interval while following
	Retry        time.Duration    // SSE reconnection delay advised to clients
	MaxFollowers int              // concurrent following streams
	WriteTimeout time.Duration    // deadline of each write: a client that stops reading is dropped
	Now          func() time.Time // clock for durations in since; time.Now if nil

	ring      *Ring
	log       *slog.Logger
	followers atomic.Int64
	done      chan struct{} // closed by Close
	backlogs  chan struct{} // a slot per backlog (non-follow) request being served
	closeOnce sync.Once

	testHookWoken func() // called when a follower is woken, before it reads the ring
}

// Handler returns the handler of GET /v1/events for r. log may be nil.
func Handler(r *Ring, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ring: r, log: log, done: make(chan struct{}), backlogs: make(chan struct{}, MaxBacklogs)}
}

// Close ends every following stream (each sends what it has and returns) and
// refuses new ones with 503. Register it with http.Server.RegisterOnShutdown.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.done) }) }

// Followers is the number of following streams open now.
func (s *Server) Followers() int { return int(s.followers.Load()) }

type request struct {
	after      uint64
	sinceGiven bool
	filter     Filter
	follow     bool
	limit      int
	sse        bool
}

const maxNameLen = 253

// MaxBacklogs bounds the backlog (non-follow) requests served at once; more get 503.
const MaxBacklogs = 16

// maxTypes bounds the distinct types of one filter.
const maxTypes = 16

func (s *Server) parse(r *http.Request) (request, []api.FieldError) {
	q := r.URL.Query()
	var req request
	var errs []api.FieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, api.FieldError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	switch f := q.Get("format"); f {
	case "sse":
		req.sse = true
	case "ndjson":
	case "":
		req.sse = strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	default:
		bad("format", "%q: give sse or ndjson (or leave it out and send Accept: text/event-stream for SSE)", f)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 64)
		if err != nil {
			bad("Last-Event-ID", "%q: give the id of the last event received (a decimal number)", id)
		}
		req.after, req.sinceGiven = n, true
	} else if q.Has("since") {
		n, err := ParseSince(q.Get("since"), now(), s.ring)
		if err != nil {
			bad("since", "%s", err)
		}
		req.after, req.sinceGiven = n, true
	}
	for _, p := range []struct {
		field string
		to    *string
	}{{"region", &req.filter.Region}, {"intent", &req.filter.Intent}, {"node", &req.filter.Node}} {
		v := q.Get(p.field)
		if len(v) > maxNameLen || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0 {
			bad(p.field, "%q: give a name of at most %d printable characters without spaces", v, maxNameLen)
			continue
		}
		*p.to = v
	}
	if v := q.Get("type"); v != "" {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !ValidType(t) {
				bad("type", "%q is not an event type: give a comma-separated list of types, e.g. %s,%s (known: %s)", t, TypePlaced, TypeMigrated, strings.Join(types, ", "))
				continue
			}
			if slices.Contains(req.filter.Types, t) {
				continue
			}
			if len(req.filter.Types) == maxTypes {
				// The filter runs under the ring's lock, which Raft's apply path also
				// takes: keep it short.
				bad("type", "more than %d distinct types: give at most %d", maxTypes, maxTypes)
				break
			}
			req.filter.Types = append(req.filter.Types, t)
		}
	}
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("follow", "%q: give 1 or true to keep the stream open, 0 or false (the default) to end after the backlog", v)
		}
		req.follow = b
	}
	req.limit = DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			bad("limit", "%q: give a number of events from 1 to %d", v, MaxLimit)
		}
		req.limit = n
	}
	return req, errs
}

// ServeHTTP serves GET /v1/events.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		api.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET")
		return
	}
	req, errs := s.parse(r)
	if len(errs) > 0 {
		api.WriteError(w, http.StatusBadRequest, "invalid events query", errs...)
		return
	}
	if !req.follow {
		// A backlog is built in memory and may take the write deadline to drain to a
		// slow reader: bound how many are served at once.
		select {
		case s.backlogs <- struct{}{}:
			defer func() { <-s.backlogs }()
		default:
			w.Header().Set("Retry-After", "1")
			api.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many event backlogs are being served (at most %d at once): try again in a moment", cap(s.backlogs)))
			return
		}
	}
	if req.follow {
		select {
		case <-s.done:
			w.Header().Set("Retry-After", "5")
			api.WriteError(w, http.StatusServiceUnavailable, "the agent is shutting down: try again later or another node")
			return
		default:
		}
		if n := s.followers.Add(1); n > int64(s.maxFollowers()) {
			s.followers.Add(-1)
			w.Header().Set("Retry-After", "5")
			api.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many event streams are following this agent (at most %d): try again later, or without follow", s.maxFollowers()))
			return
		}
		defer s.followers.Add(-1)
	}
	st := &stream{w: w, rc: http.NewResponseController(w), sse: req.sse, timeout: or(s.WriteTimeout, DefaultWriteTimeout)}
	// The deadlines set per write would outlive the request on a kept-alive
	// connection of a server without WriteTimeout: clear them.
	defer func() { _ = st.rc.SetWriteDeadline(time.Time{}) }()
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	if req.sse {
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	if req.sse {
		fmt.Fprintf(&st.buf, "retry: %d\n\n", or(s.Retry, DefaultRetry).Milliseconds())
	}
	err := s.serve(r, st, req)
	if err != nil {
		s.log.Debug("event stream ended", "remote", r.RemoteAddr, "err", err)
	}
}

func (s *Server) serve(r *http.Request, st *stream, req request) error {
	wake := s.ring.Wait() // before the first read: an Add after it closes wake
	evs, missed, cursor := s.ring.since(req.after, req.filter, req.limit)
	if missed != "" && req.sinceGiven {
		st.truncated(s.now(), missed)
	}
	for _, e := range evs {
		st.event(e)
	}
	if err := st.flush(); err != nil || !req.follow {
		return err
	}
	keepalive := time.NewTicker(or(s.Keepalive, DefaultKeepalive))
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-s.done:
			return errors.New("server closing")
		case <-keepalive.C:
			st.keepalive()
		case <-wake:
			if s.testHookWoken != nil {
				s.testHookWoken()
			}
			wake = s.ring.Wait()
			evs, missed, cursor = s.ring.since(cursor, req.filter, 0)
			if missed != "" {
				st.truncated(s.now(), missed)
			}
			for _, e := range evs {
				st.event(e)
			}
		}
		if err := st.flush(); err != nil {
			return err
		}
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) maxFollowers() int {
	if s.MaxFollowers > 0 {
		return s.MaxFollowers
	}
	return DefaultMaxFollowers
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// stream buffers one batch of writes and flushes it with a write deadline.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	sse     bool
	timeout time.Duration
	buf     bytes.Buffer
}

func (st *stream) event(e Event) {
	b, err := json.Marshal(e)
	if err != nil { // an Event always marshals; keep the stream going regardless
		return
	}
	st.message(e.ID, e.Type, b)
}

func (st *stream) message(id uint64, typ string, data []byte) {
	if !st.sse {
		st.buf.Write(data)
		st.buf.WriteByte('\n')
		return
	}
	if id != 0 {
		fmt.Fprintf(&st.buf, "id: %d\n", id)
	}
	fmt.Fprintf(&st.buf, "event: %s\ndata: %s\n\n", typ, data)
}

func (st *stream) truncated(now time.Time, reason string) {
	b, _ := json.Marshal(Event{Time: now.UTC(), Type: TypeTruncated, Reason: "events were missed: " + reason})
	st.message(0, TypeTruncated, b)
}

func (st *stream) keepalive() {
	if st.sse {
		st.buf.WriteString(": keepalive\n\n")
	} else {
		st.buf.WriteByte('\n')
	}
}

// flush writes the batch, if any, and flushes it to the client.
func (st *stream) flush() error {
	if err := st.rc.SetWriteDeadline(time.Now().Add(st.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if st.buf.Len() > 0 {
		_, err := st.w.Write(st.buf.Bytes())
		st.buf.Reset()
		if err != nil {
			return err
		}
	}
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
