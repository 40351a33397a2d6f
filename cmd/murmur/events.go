package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/murmur-edge/murmur/agent/events"
	"github.com/spf13/cobra"
)

// eventsOptions are the flags of `murmur events`.
type eventsOptions struct {
	follow                      bool
	since, region, intent, node string
	types                       []string
	limit                       int
}

// eventsClient streams GET /v1/events and prints it.
type eventsClient struct {
	cf          *clientFlags
	http        *http.Client
	out, errOut io.Writer
	loc         *time.Location   // of the printed times
	now         func() time.Time // the date is printed for events of another day
	idle        time.Duration    // no byte for this long: the connection is dead (the agent sends keepalives every 15 s)
	minBackoff  time.Duration    // first reconnection delay, doubled up to maxBackoff
	maxBackoff  time.Duration
}

func newEventsCmd(cf *clientFlags) *cobra.Command { return newEventsCmdWith(cf, nil) }

// newEventsCmdWith lets tests adjust the client (timings, clock).
func newEventsCmdWith(cf *clientFlags, adjust func(*eventsClient)) *cobra.Command {
	var o eventsOptions
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the decisions of the fleet with their reasons: placements, migrations, stops, node deaths, coordinator changes",
		Long: `Show the events one agent recorded, oldest first: every placement, replacement,
migration, stop and unplaced instance its region's coordinator decided, and every
node death, return or departure and coordinator change it saw, each with its reason.

An agent keeps its newest events in memory (4096 by default); without --since the
newest are shown (at most --limit). With -f the command keeps following new events
until Ctrl-C, and reconnects from the last event seen when the connection drops,
saying so on stderr, as it does when events were missed.`,
		Example: `  murmur events
  murmur events -f --region factory-1
  murmur events --since 10m --type placed,migrated,stopped
  murmur events --node n1 --since 2025-01-02T15:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.checkOutput(); err != nil {
				return err
			}
			for _, t := range o.types {
				if !events.ValidType(t) {
					return usageError{fmt.Errorf("invalid --type %q: give event types such as %s", t, strings.Join(events.Types(), ","))}
				}
			}
			if o.limit < 0 || o.limit > events.MaxLimit {
				return usageError{fmt.Errorf("invalid --limit %d: give a number from 1 to %d (0: the agent's default, %d)", o.limit, events.MaxLimit, events.DefaultLimit)}
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.ResponseHeaderTimeout = 30 * time.Second
			c := &eventsClient{
				cf: cf, http: &http.Client{Transport: tr}, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(),
				loc: time.Local, now: time.Now,
				idle: 3 * events.DefaultKeepalive, minBackoff: 250 * time.Millisecond, maxBackoff: 5 * time.Second,
			}
			if adjust != nil {
				adjust(c)
			}
			return c.run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep following new events until Ctrl-C")
	f.StringVar(&o.since, "since", "", "start after this event id, at this RFC 3339 time, or this long ago (e.g. 10m)")
	f.StringVar(&o.region, "region", "", "only events of this region")
	f.StringVar(&o.intent, "intent", "", "only events of this intent")
	f.StringVar(&o.node, "node", "", "only events about this node (including migrations away from it)")
	f.StringSliceVar(&o.types, "type", nil, "only these event types, comma-separated: "+strings.Join(events.Types(), ","))
	f.IntVar(&o.limit, "limit", 0, fmt.Sprintf("at most this many past events (default: the agent's, %d; at most %d)", events.DefaultLimit, events.MaxLimit))
	cf.register(f)
	return cmd
}

// run streams the events; with follow it reconnects until ctx ends. Ctrl-C is a
// clean exit.
func (c *eventsClient) run(ctx context.Context, o eventsOptions) error {
	var (
		last      uint64 // id of the newest event seen
		seen      bool
		connected bool // a stream was opened at least once
	)
	backoff := c.minBackoff
	for attempt := 0; ; attempt++ {
		q := url.Values{}
		for k, v := range map[string]string{"region": o.region, "intent": o.intent, "node": o.node, "type": strings.Join(o.types, ",")} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if o.limit > 0 {
			q.Set("limit", strconv.Itoa(o.limit))
		}
		switch {
		case seen: // resume: everything after the last event seen, as much as the agent has
			q.Set("since", strconv.FormatUint(last, 10))
			q.Set("limit", strconv.Itoa(events.MaxLimit))
		case o.since != "":
			q.Set("since", o.since)
		}
		if o.follow {
			q.Set("follow", "1")
		}
		opened := false
		err := c.stream(ctx, q, func() {
			opened = true
			if attempt > 0 {
				fmt.Fprintf(c.errOut, "murmur: reconnected to %s\n", c.cf.baseURL())
			}
		}, func(e events.Event, raw []byte) error {
			if e.Type == events.TypeTruncated {
				fmt.Fprintf(c.errOut, "murmur: %s\n", printable(e.Reason))
				if c.cf.Output != "json" {
					return nil
				}
			} else {
				last, seen = e.ID, true
			}
			if c.cf.Output == "json" {
				_, err := fmt.Fprintf(c.out, "%s\n", raw)
				return err
			}
			_, err := fmt.Fprintln(c.out, formatEvent(e, c.loc, c.now()))
			return err
		})
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		var ue usageError
		var we writeError
		if !o.follow || errors.As(err, &ue) || errors.As(err, &we) || (!connected && !opened) {
			return err
		}
		connected = connected || opened
		if opened {
			backoff = c.minBackoff
		}
		why := "the agent ended the stream"
		if err != nil {
			why = err.Error()
		}
		from := "the start"
		if seen {
			from = "event " + strconv.FormatUint(last, 10)
		}
		fmt.Fprintf(c.errOut, "murmur: lost the event stream (%s); reconnecting in %s from %s\n", why, backoff, from)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

// writeError is a failure to print (stdout closed): no reconnection helps.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// stream makes one GET /v1/events request and hands each event to each until the
// stream ends (nil) or fails. opened is called once the agent answered 200.
func (c *eventsClient) stream(ctx context.Context, q url.Values, opened func(), each func(events.Event, []byte) error) error {
	u := c.cf.baseURL() + "/v1/events?" + q.Encode()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return usageError{fmt.Errorf("invalid --addr %q: %w", c.cf.Addr, err)}
	}
	req.Header.Set("Accept", "application/x-ndjson")
	if c.cf.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cf.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w (is an agent running there? see --addr)", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return answerError(resp, u)
	}
	opened()
	// A connection that went silent (a cut network does not always reset it) is
	// dead after idle: the agent sends a keepalive every 15 s while following.
	var idle atomic.Bool
	watchdog := time.AfterFunc(c.idle, func() { idle.Store(true); cancel() })
	defer watchdog.Stop()
	dec := events.NewDecoder(&activityReader{r: resp.Body, touch: func() { watchdog.Reset(c.idle) }}, false)
	for {
		e, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if idle.Load() {
				return fmt.Errorf("no data from the agent for %s", c.idle)
			}
			return fmt.Errorf("read events from %s: %w", c.cf.baseURL(), err)
		}
		if err := each(e, dec.Raw()); err != nil {
			return writeError{err}
		}
	}
}

// answerError turns a non-200 answer into an error with the agent's message and
// field details; 4xx answers are usage errors (exit 2).
func answerError(resp *http.Response, u string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return httpError(http.MethodGet, u, resp.StatusCode, b)
}

// activityReader calls touch after every read that returned bytes.
type activityReader struct {
	r     io.Reader
	touch func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.touch()
	}
	return n, err
}

// formatEvent is one line of `murmur events`:
//
//	15:04:05.000  placed      web-12-0  on n2  (replace)  replaces web-3-1  web-3-1 was lost with node n1
//
// time (with the date for events of another day than now), type, what the event is
// about and where, the cause, and the reason. Text from the agent is escaped when
// it is not printable.
func formatEvent(e events.Event, loc *time.Location, now time.Time) string {
	t := e.Time.In(loc)
	layout := "15:04:05.000"
	if y, m, d := t.Date(); now.In(loc).Format("2006-01-02") != fmt.Sprintf("%04d-%02d-%02d", y, m, d) {
		layout = "2006-01-02 15:04:05.000"
	}
	parts := []string{t.Format(layout), fmt.Sprintf("%-10s", printable(e.Type))}
	add := func(format string, a ...any) {
		for _, v := range a {
			if s, ok := v.(string); ok && s == "" {
				return
			}
		}
		for i, v := range a {
			if s, ok := v.(string); ok {
				a[i] = printable(s)
			}
		}
		parts = append(parts, fmt.Sprintf(format, a...))
	}
	switch {
	case e.Type == events.TypeCoordinatorChanged:
		add("region %s", e.Region)
		add("coordinator %s", e.Node)
		if e.Term > 0 {
			add("term %d", e.Term)
		}
	case e.Type == events.TypeHeadless:
		add("region %s", e.Region)
	case e.Instance == "" && e.Intent == "" && e.Node != "": // node_dead, node_alive, node_left
		add("node %s", e.Node)
		add("region %s", e.Region)
	default:
		subject := e.Instance
		if subject == "" {
			subject = e.Intent
		}
		add("%s", subject)
		switch {
		case e.Count == 1:
			add("1 instance")
		case e.Count > 1:
			add("%d instances", e.Count)
		}
		switch {
		case e.From != "" && e.Node != "":
			add("from %s to %s", e.From, e.Node)
		case e.From != "":
			add("from %s", e.From)
		default:
			add("on %s", e.Node)
		}
	}
	add("(%s)", e.Cause)
	add("replaces %s", e.Replaces)
	add("%s", e.Reason)
	return strings.Join(parts, "  ")
}
