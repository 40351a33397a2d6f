package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/logs"
	"github.com/murmur-edge/murmur/runtime"
)

// GET /v1/instances/{id}/logs: an instance's stdout and stderr, from whichever node
// runs it.
//
// Query: stream=stdout|stderr|both (default both); tail=N lines of each stream's
// backlog (default all); max_bytes=N, the backlog's cap per stream (default 1 MiB,
// 1 to 16 MiB): only the last max_bytes of what exists are sent, so an answer
// without follow holds at most max_bytes per stream; follow=1 then keeps sending
// new output until the client goes away or the instance's run ends.
//
// The body is a log stream (logs.ContentType, Docker's multiplexed framing); the
// header X-Murmur-Node names the node that runs the instance. An instance this node
// does not run is looked up in the workloads view of every region (this node's
// first) and its node's output fetched over gossip's reliable channel (agent/logs),
// authenticated like all agent-to-agent traffic: the nodes' HTTP APIs need not be
// reachable from each other. Errors before the first byte of output are the usual
// JSON envelope: 400 bad query, 404 unknown instance or no output kept, 502 the node
// that runs it (or the coordinator of a region that might list it) is dead or does not
// answer, 503 it serves too many streams (or such a region has no coordinator). After
// the first byte, an error ends the stream with a frame of type 3 carrying the message.
//
// Access: a token of role write, not read (acl.go): workloads print secrets.

// Limits of the logs endpoint.
const (
	defaultLogBytes = 1 << 20
	logWriteTimeout = 30 * time.Second // one frame to a slow client
	// maxLogRequests bounds the logs requests a node answers at once: a docker
	// backlog holds up to max_bytes per stream in memory while the engine's log is
	// read to its end.
	maxLogRequests = 32
)

// localLogs serves a session another node opened: this node's supervisor.
func (a *Agent) localLogs(ctx context.Context, id string, opts runtime.LogOptions, sink runtime.LogSink) error {
	if a.sup == nil {
		return fmt.Errorf("%w: node %s is starting", runtime.ErrNoInstance, a.cfg.Name)
	}
	return a.sup.Logs(ctx, id, opts, sink)
}

// parseLogsQuery reads the query of a logs request. Problems name the parameter.
func parseLogsQuery(q url.Values) (logs.Options, []api.FieldError) {
	opts := logs.Options{Stdout: true, Stderr: true, Tail: -1, MaxBytes: defaultLogBytes}
	var bad []api.FieldError
	for k, vs := range q {
		if len(vs) != 1 {
			bad = append(bad, api.FieldError{Field: k, Message: "give it once"})
			continue
		}
		v := vs[0]
		switch k {
		case "stream":
			switch v {
			case "stdout":
				opts.Stderr = false
			case "stderr":
				opts.Stdout = false
			case "both", "":
			default:
				bad = append(bad, api.FieldError{Field: k, Message: fmt.Sprintf("%q: use stdout, stderr or both", v)})
			}
		case "tail":
			if v == "all" || v == "" || v == "-1" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > logs.MaxTail {
				bad = append(bad, api.FieldError{Field: k, Message: fmt.Sprintf("%q: use a number of lines from 0 to %d, or all", v, logs.MaxTail)})
				continue
			}
			opts.Tail = n
		case "max_bytes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 || n > logs.MaxBacklogBytes {
				bad = append(bad, api.FieldError{Field: k, Message: fmt.Sprintf("%q: use 1 to %d bytes (default %d)", v, logs.MaxBacklogBytes, defaultLogBytes)})
				continue
			}
			opts.MaxBytes = n
		case "follow":
			f, err := strconv.ParseBool(v)
			if err != nil {
				bad = append(bad, api.FieldError{Field: k, Message: fmt.Sprintf("%q: use 1 or 0", v)})
				continue
			}
			opts.Follow = f
		default:
			bad = append(bad, api.FieldError{Field: k, Message: "unknown parameter: use stream, tail, max_bytes or follow"})
		}
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Field < bad[j].Field })
	return opts, bad
}

// logWriter writes output as frames of the log stream. The answer's status goes out
// with the first frame, so an error before any output can still be a 4xx or 5xx.
type logWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	node   string // the node that runs the instance
	follow bool
	wrote  bool
}

func (l *logWriter) start() {
	if l.wrote {
		return
	}
	l.wrote = true
	h := l.w.Header()
	h.Set("Content-Type", logs.ContentType)
	h.Set("X-Murmur-Node", l.node)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	l.w.WriteHeader(http.StatusOK)
}

func (l *logWriter) frame(typ byte, p []byte) error {
	l.start()
	if err := l.rc.SetWriteDeadline(time.Now().Add(logWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := logs.WriteFrame(l.w, typ, p); err != nil {
		return err
	}
	if l.follow {
		if err := l.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	return nil
}

func (l *logWriter) sink(s runtime.LogStream, p []byte) error {
	typ := logs.FrameStdout
	if s == runtime.LogStderr {
		typ = logs.FrameStderr
	}
	return l.frame(typ, p)
}

// fail answers err: the JSON envelope with status before any output, else a final
// error frame.
func (l *logWriter) fail(status int, msg string) {
	if !l.wrote {
		if l.node != "" {
			l.w.Header().Set("X-Murmur-Node", l.node)
		}
		api.WriteError(l.w, status, msg)
		return
	}
	_ = l.frame(logs.FrameError, []byte(msg))
}

func (a *Agent) handleInstanceLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	opts, bad := parseLogsQuery(r.URL.Query())
	if !runtime.ValidInstanceID(id) {
		bad = append([]api.FieldError{{Field: "instance", Message: fmt.Sprintf("%.80q is not an instance id (letters, digits, '.', '_' and '-', at most 128): 'murmur get workloads -o wide' lists them", id)}}, bad...)
	}
	if len(bad) > 0 {
		api.WriteError(w, http.StatusBadRequest, "bad logs request", bad...)
		return
	}
	select {
	case a.logSlots <- struct{}{}:
		defer func() { <-a.logSlots }()
	default:
		api.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("node %s answers %d logs requests already; try again later", a.cfg.Name, maxLogRequests))
		return
	}
	defer func() { _ = http.NewResponseController(w).SetWriteDeadline(time.Time{}) }()
	lw := &logWriter{w: w, rc: http.NewResponseController(w), node: a.cfg.Name, follow: opts.Follow}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(a.logsDone, cancel)() // the server shuts down
	err := a.sup.Logs(ctx, id, opts.LogOptions(), lw.sink)
	switch {
	case err == nil || ctx.Err() != nil:
		lw.start() // an empty answer is an answer
		return
	case errors.Is(err, runtime.ErrNoInstance) && !lw.wrote:
		// Not here: the node the workloads views name.
	case errors.Is(err, runtime.ErrNoLogs) || errors.Is(err, runtime.ErrNoInstance):
		lw.fail(http.StatusNotFound, err.Error())
		return
	default:
		lw.fail(http.StatusInternalServerError, fmt.Sprintf("read the output of %q on node %s: %v", id, a.cfg.Name, err))
		return
	}
	node, status, err := a.locateInstance(ctx, id)
	if err != nil {
		lw.node = node
		lw.fail(status, err.Error())
		return
	}
	lw.node = node
	err = a.logs.Stream(ctx, node, id, opts, lw.sink)
	switch {
	case err == nil || ctx.Err() != nil:
		lw.start()
	case errors.Is(err, logs.ErrNoInstance), errors.Is(err, logs.ErrNoLogs):
		lw.fail(http.StatusNotFound, err.Error())
	case errors.Is(err, logs.ErrBusy):
		lw.fail(http.StatusServiceUnavailable, err.Error())
	default: // unreachable, or the node's own failure
		lw.fail(http.StatusBadGateway, fmt.Sprintf("output of %q from node %s: %v", id, node, err))
	}
}

// locateInstance finds the node that runs instance id in the workloads views: this
// node's region first, then every other region of the fleet view. It fails with 404
// when no view lists it, 502 when its node is dead or gone, and, when it is in no
// view that answered while some region could not be asked, with that region's
// failure: 502 its coordinator did not answer (named), 503 it has none.
func (a *Agent) locateInstance(ctx context.Context, id string) (string, int, error) {
	regions := []string{a.cfg.Region}
	for _, m := range a.gossip.Members() {
		if !slices.Contains(regions, m.Region) {
			regions = append(regions, m.Region)
		}
	}
	sort.Strings(regions[1:])
	var unasked []string
	unaskedStatus := 0
	for _, reg := range regions {
		v, status, err := a.regionView(ctx, reg, "")
		if err != nil {
			if ctx.Err() != nil {
				return "", http.StatusServiceUnavailable, ctx.Err()
			}
			unasked = append(unasked, err.Error())
			if status == http.StatusBadGateway || unaskedStatus == 0 {
				unaskedStatus = status
			}
			continue
		}
		for _, w := range v.Workloads {
			if w.Instance != id {
				continue
			}
			for _, m := range a.gossip.Members() {
				if m.Name == w.Node && !m.Up() {
					return w.Node, http.StatusBadGateway, fmt.Errorf("instance %q ran on node %s, which is %s; region %s's coordinator replaces its instances (see GET /v1/workloads?region=%s)", id, w.Node, m.Status, reg, reg)
				}
			}
			if w.Node == a.cfg.Name {
				return w.Node, http.StatusNotFound, fmt.Errorf("instance %q is assigned to node %s (this one) but has not started here yet (state %s)", id, w.Node, w.State)
			}
			return w.Node, http.StatusOK, nil
		}
	}
	if len(unasked) > 0 {
		// It may be in a region that did not answer: not a 404.
		return "", unaskedStatus, fmt.Errorf("instance %q is in no region that answered, and not every region could be asked: %s", id, strings.Join(unasked, "; "))
	}
	return "", http.StatusNotFound, fmt.Errorf("no instance %q in the fleet: see GET /v1/workloads?region=R (murmur get workloads -o wide) for instance ids", id)
}
