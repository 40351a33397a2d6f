package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/logs"
)

func TestParseLogsQuery(t *testing.T) {
	def := logs.Options{Stdout: true, Stderr: true, Tail: -1, MaxBytes: defaultLogBytes}
	with := func(f func(o *logs.Options)) logs.Options { o := def; f(&o); return o }
	ok := map[string]logs.Options{
		"":                                 def,
		"stream=stdout":                    with(func(o *logs.Options) { o.Stderr = false }),
		"stream=stderr&tail=10":            with(func(o *logs.Options) { o.Stdout = false; o.Tail = 10 }),
		"stream=both&tail=all&follow=1":    with(func(o *logs.Options) { o.Follow = true }),
		"tail=0&max_bytes=16777216":        with(func(o *logs.Options) { o.Tail = 0; o.MaxBytes = 16 << 20 }),
		"follow=true&max_bytes=1&tail=-1":  with(func(o *logs.Options) { o.Follow = true; o.MaxBytes = 1 }),
		"follow=0&stream=both&tail=100000": with(func(o *logs.Options) { o.Tail = 100000 }),
	}
	for q, want := range ok {
		v, _ := url.ParseQuery(q)
		got, bad := parseLogsQuery(v)
		if len(bad) > 0 || got != want {
			t.Errorf("%q: %+v %v, want %+v", q, got, bad, want)
		}
	}
	refused := map[string][]string{
		"stream=all":                  {"stream"},
		"tail=-2":                     {"tail"},
		"tail=ten":                    {"tail"},
		"tail=1000001":                {"tail"},
		"max_bytes=0":                 {"max_bytes"},
		"max_bytes=16777217":          {"max_bytes"},
		"follow=maybe":                {"follow"},
		"lines=3":                     {"lines"},
		"tail=1&tail=2":               {"tail"},
		"stream=x&follow=y&since=5m":  {"follow", "since", "stream"},
		"max_bytes=1k&stream=stdout&": {"max_bytes"},
	}
	for q, want := range refused {
		v, _ := url.ParseQuery(q)
		_, bad := parseLogsQuery(v)
		var fields []string
		for _, b := range bad {
			fields = append(fields, b.Field)
			if b.Message == "" {
				t.Errorf("%q: field %s without a message", q, b.Field)
			}
		}
		if diff := cmp.Diff(want, fields); diff != "" {
			t.Errorf("%q: refused fields (-want +got):\n%s", q, diff)
		}
	}
}

// logsAnswer is one GET /v1/instances/{id}/logs, read to its end.
type logsAnswer struct {
	status         int
	node           string
	stdout, stderr string
	errFrame       string
	apiErr         api.Error
}

func getLogs(t *testing.T, addr, id, query string) logsAnswer {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/instances/" + id + "/logs?" + query)
	if err != nil {
		t.Fatalf("GET logs of %s from %s: %v", id, addr, err)
	}
	defer resp.Body.Close()
	a := logsAnswer{status: resp.StatusCode, node: resp.Header.Get("X-Murmur-Node")}
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&a.apiErr); err != nil {
			t.Fatalf("GET logs of %s: HTTP %d without the error envelope: %v", id, resp.StatusCode, err)
		}
		return a
	}
	if ct := resp.Header.Get("Content-Type"); ct != logs.ContentType {
		t.Errorf("Content-Type %q, want %q", ct, logs.ContentType)
	}
	var out, errs strings.Builder
	fr := logs.NewFrameReader(resp.Body)
	for {
		typ, p, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("GET logs of %s: %v", id, err)
		}
		switch typ {
		case logs.FrameStdout:
			out.Write(p)
		case logs.FrameStderr:
			errs.Write(p)
		case logs.FrameError:
			a.errFrame = string(p)
		}
	}
	a.stdout, a.stderr = out.String(), errs.String()
	return a
}

// TestInstanceLogsThroughAnyNode runs a workload that prints on both streams on one
// node of an in-process fleet of 3 and reads its output through every node's API:
// the local node serves it from the exec driver's files, the others fetch it from
// that node (agent/logs over the in-memory gossip network). Then it follows a stream
// through another node, and asks for an unknown instance and one whose node is cut
// off.
func TestInstanceLogsThroughAnyNode(t *testing.T) {
	f := startInprocFleet(t, 3, "site")
	const intent = "chatty"
	postIntent(t, f.nodes[0].http, `apiVersion: murmur/v1
kind: Workload
metadata: {name: chatty}
spec:
  replicas: 1
  driver: exec
  command: ["/bin/sh", "-c", "echo hello-out; echo hello-err >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]
  resources: {cpu: 50m, memory: 16Mi}
`)
	var id, runner string
	eventuallyFleet(t, f, 20*time.Second, "chatty running", func() bool {
		v, ok := workloadsOf(f.nodes[0].http)
		if !ok {
			return false
		}
		for iid, w := range instancesOf(v, intent) {
			if w.State == "running" {
				id, runner = iid, w.Node
				return true
			}
		}
		return false
	})
	t.Logf("%s runs on %s", id, runner)
	// Its first lines are on disk once the process has written them.
	eventuallyFleet(t, f, 10*time.Second, "hello-out and tick 0 written", func() bool {
		a := getLogs(t, f.node(runner).http, id, "stream=stdout")
		return strings.HasPrefix(a.stdout, "hello-out\ntick 0\n")
	})

	for _, nd := range f.nodes {
		a := getLogs(t, nd.http, id, "tail=all")
		if a.status != http.StatusOK || a.node != runner {
			t.Fatalf("via %s: HTTP %d from node %q (%+v), want 200 from %s", nd.name, a.status, a.node, a.apiErr, runner)
		}
		if !strings.HasPrefix(a.stdout, "hello-out\ntick 0\n") || a.stderr != "hello-err\n" || a.errFrame != "" {
			t.Errorf("via %s: stdout %.40q, stderr %q, error %q", nd.name, a.stdout, a.stderr, a.errFrame)
		}
		a = getLogs(t, nd.http, id, "stream=stderr")
		if a.stdout != "" || a.stderr != "hello-err\n" {
			t.Errorf("via %s, stderr only: stdout %.40q, stderr %q", nd.name, a.stdout, a.stderr)
		}
		a = getLogs(t, nd.http, id, "stream=stdout&tail=1")
		if strings.Count(a.stdout, "\n") != 1 || !strings.HasPrefix(a.stdout, "tick ") {
			t.Errorf("via %s, tail=1: %q, want one tick line", nd.name, a.stdout)
		}
		a = getLogs(t, nd.http, id, "stream=stdout&max_bytes=8")
		if len(a.stdout) > 8 || !strings.HasPrefix(a.stdout, "tick ") {
			t.Errorf("via %s, max_bytes=8: %q, want at most 8 bytes, whole lines", nd.name, a.stdout)
		}
	}

	// Follow through another node: new lines come as they are written; the serving
	// node stops reading once the client goes away.
	var via *inprocNode
	for _, nd := range f.nodes {
		if nd.name != runner {
			via = nd
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+via.http+"/v1/instances/"+id+"/logs?stream=stdout&tail=1&follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	fr := logs.NewFrameReader(resp.Body)
	var followed strings.Builder
	for strings.Count(followed.String(), "\n") < 6 {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatalf("follow via %s: %v after %q", via.name, err, followed.String())
		}
		if typ != logs.FrameStdout {
			t.Fatalf("follow via %s: frame type %d %q", via.name, typ, p)
		}
		followed.Write(p)
	}
	lines := strings.Split(strings.TrimSpace(followed.String()), "\n")
	for i := 1; i < len(lines); i++ {
		var a, b int
		if _, err := fmt.Sscanf(lines[i-1], "tick %d", &a); err != nil {
			t.Fatalf("follow: line %q: %v", lines[i-1], err)
		}
		if _, err := fmt.Sscanf(lines[i], "tick %d", &b); err != nil || b != a+1 {
			t.Errorf("follow via %s: %q after %q: want consecutive ticks", via.name, lines[i], lines[i-1])
		}
	}
	cancel()
	resp.Body.Close()
	serving := f.node(runner).agent.logs
	eventuallyFleet(t, f, 10*time.Second, "the serving node ends the session", func() bool { return serving.Sessions() == 0 })

	// Unknown instance: 404 naming it, from any node.
	a := getLogs(t, via.http, "nobody-7", "")
	if a.status != http.StatusNotFound || !strings.Contains(a.apiErr.Error, `"nobody-7"`) {
		t.Errorf("unknown instance: HTTP %d %q, want 404 naming it", a.status, a.apiErr.Error)
	}
	a = getLogs(t, via.http, "bad%20id", "")
	if a.status != http.StatusBadRequest || len(a.apiErr.Details) == 0 || a.apiErr.Details[0].Field != "instance" {
		t.Errorf("bad instance id: HTTP %d %+v, want 400 naming the field", a.status, a.apiErr)
	}
	a = getLogs(t, via.http, id, "tail=lots")
	if a.status != http.StatusBadRequest || len(a.apiErr.Details) == 0 || a.apiErr.Details[0].Field != "tail" {
		t.Errorf("bad tail: HTTP %d %+v, want 400 naming tail", a.status, a.apiErr)
	}

	// A node answering as many logs requests as it takes says so.
	for i := 0; i < maxLogRequests; i++ {
		via.agent.logSlots <- struct{}{}
	}
	a = getLogs(t, via.http, id, "")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.apiErr.Error, via.name) {
		t.Errorf("all logs slots taken: HTTP %d %q, want 503 naming %s", a.status, a.apiErr.Error, via.name)
	}
	for i := 0; i < maxLogRequests; i++ {
		<-via.agent.logSlots
	}

	// The node that runs it is cut off: 502 naming it (as the node that runs the
	// instance, or as the region's coordinator that the lookup could not ask).
	f.partition(f.node(runner))
	a = getLogs(t, via.http, id, "")
	if a.status != http.StatusBadGateway || (a.node != runner && a.node != "") || !strings.Contains(a.apiErr.Error, runner) {
		t.Errorf("cut-off node: HTTP %d from %q: %q, want 502 naming %s", a.status, a.node, a.apiErr.Error, runner)
	}
	t.Logf("cut-off node: %s", a.apiErr.Error)
	f.heal()

	// A follower on the node itself ends when that agent stops (it would otherwise
	// hold the HTTP server's shutdown).
	rn := f.node(runner)
	resp, err = http.Get("http://" + rn.http + "/v1/instances/" + id + "/logs?stream=stdout&tail=0&follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fr = logs.NewFrameReader(resp.Body)
	if _, _, err := fr.Next(); err != nil { // following: a tick came
		t.Fatalf("follow on %s: %v", runner, err)
	}
	rn.cancel()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := fr.Next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the follower on %s still streams 10 s after its agent was told to stop", runner)
	}
	select {
	case err := <-rn.done:
		rn.done <- err // for the fleet's cleanup
		if err != nil {
			t.Errorf("agent %s: Run = %v", runner, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s did not stop within 20 s", runner)
	}
}

// FuzzParseLogsQuery: the query of GET /v1/instances/{id}/logs comes from users; its
// parser must never panic, and what it accepts must be options the wire accepts.
func FuzzParseLogsQuery(f *testing.F) {
	for _, q := range []string{"", "stream=stdout&tail=10", "follow=1&max_bytes=4096", "tail=all&stream=both", "tail=-1", "x=%zz", "tail=99999999999999999999"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		opts, bad := parseLogsQuery(v)
		if len(bad) > 0 {
			return
		}
		if err := opts.Check(); err != nil {
			t.Fatalf("query %q accepted as %+v, which the wire refuses: %v", raw, opts, err)
		}
		if opts.MaxBytes < 1 {
			t.Fatalf("query %q accepted without a cap: %+v", raw, opts)
		}
	})
}
