package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/events"
)

// eventsOf reads a node's whole event ring (NDJSON, no follow).
func eventsOf(addr, query string) ([]events.Event, error) {
	sep := "?"
	if strings.Contains(query, "?") {
		sep = "&"
	}
	resp, err := http.Get("http://" + addr + "/v1/events" + query + sep + "limit=10000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/events: %s", resp.Status)
	}
	var out []events.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("event line %q: %w", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// TestRealEventsExplainEveryDecision: every decision of a placement, a host death
// and an unplaceable workload appears exactly once in the event stream of every node
// that holds the region's log, each with its reason, and `murmur explain` gives the
// reason of a placed instance, of a replacement and of unplaced work.
func TestRealEventsExplainEveryDecision(t *testing.T) {
	ps, _ := startPlant(t, "e", 4)
	byName := map[string]*proc{}
	for _, p := range ps {
		byName[p.name] = p
	}
	postIntent(t, ps[3].http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: web}
spec:
  replicas: 2
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 50m, memory: 16Mi}
`), "")
	postIntent(t, ps[3].http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: cam}
spec:
  replicas: 1
  driver: exec
  command: ["/bin/sleep", "3600"]
  constraints: {labels: {camera: "yes"}}
`), "")
	eventually(t, 30*time.Second, "web running twice", func() bool {
		v, ok := workloadsOf(ps[0].http, "")
		return ok && total(running(v, "web")) == 2 && total(processes(ps, "web")) == 2
	})
	coord, _, _ := agreedCoordinator(ps, "plant", 0)
	v, _ := workloadsOf(ps[0].http, "")
	var victim *proc
	var lost string
	for _, w := range v.Workloads {
		if w.Intent == "web" && w.Node != coord && victim == nil {
			victim, lost = byName[w.Node], w.Instance
		}
	}
	if victim == nil {
		t.Fatalf("no web instance off the coordinator %s: %+v", coord, v.Workloads)
	}
	killHost(t, victim)
	survivors := alive(ps)
	eventually(t, 30*time.Second, "web running twice on the survivors", func() bool {
		v, ok := workloadsOf(survivors[0].http, "")
		return ok && total(running(v, "web")) == 2 && total(processes(survivors, "web")) == 2
	})
	v, _ = workloadsOf(survivors[0].http, "?intent=web")
	var replacement string
	for _, w := range v.Workloads {
		if w.Node != victim.name && w.Cause == "replace" {
			replacement = w.Instance
		}
	}
	if replacement == "" {
		t.Fatalf("no instance with cause replace after %s died: %+v", victim.name, v.Workloads)
	}

	// Every survivor holds the log (3 voters and a standby): each reports every
	// decision once. The stream may lag the table by a moment: wait for the
	// replacement's event, then count.
	for _, p := range survivors {
		var evs []events.Event
		// Two sources: the replacement comes from the applied log, node_dead from this
		// node's own failure detector, which may call the victim dead after the
		// coordinator did (a busy machine). Wait for both.
		eventually(t, 10*time.Second, p.name+" streams the replacement of "+lost+" and "+victim.name+"'s death", func() bool {
			var err error
			evs, err = eventsOf(p.http, "")
			if err != nil {
				return false
			}
			replaced, dead := false, false
			for _, e := range evs {
				replaced = replaced || (e.Type == events.TypeReplaced && e.Instance == replacement)
				dead = dead || (e.Type == events.TypeNodeDead && e.Node == victim.name)
			}
			return replaced && dead
		})
		count := func(match func(events.Event) bool) (n int, reason string) {
			for _, e := range evs {
				if match(e) {
					n++
					reason = e.Reason
				}
			}
			return n, reason
		}
		for _, w := range v.Workloads {
			if w.Instance == replacement {
				continue
			}
			if n, why := count(func(e events.Event) bool { return e.Type == events.TypePlaced && e.Instance == w.Instance }); n != 1 || why == "" {
				t.Errorf("%s: %d placed events for %s (reason %q), want exactly 1 with a reason", p.name, n, w.Instance, why)
			}
		}
		if n, why := count(func(e events.Event) bool { return e.Type == events.TypePlaced && e.Instance == lost }); n != 1 || why == "" {
			t.Errorf("%s: %d placed events for %s (reason %q), want exactly 1 with a reason", p.name, n, lost, why)
		}
		if n, why := count(func(e events.Event) bool { return e.Type == events.TypeReplaced && e.Instance == replacement }); n != 1 || !strings.Contains(why, victim.name) {
			t.Errorf("%s: %d replaced events for %s (reason %q), want exactly 1 naming %s", p.name, n, replacement, why, victim.name)
		}
		// cam is unplaced from the start; its reason changes when a node dies (one
		// node fewer to filter), which is a new decision, but never twice the same.
		var camWhy []string
		for _, e := range evs {
			if e.Type == events.TypeUnplaced && e.Intent == "cam" {
				if len(camWhy) > 0 && camWhy[len(camWhy)-1] == e.Reason {
					t.Errorf("%s: unplaced event for cam repeated with the same reason %q", p.name, e.Reason)
				}
				camWhy = append(camWhy, e.Reason)
			}
		}
		if len(camWhy) == 0 || !strings.Contains(camWhy[0], "camera=yes") {
			t.Errorf("%s: unplaced events for cam %q, want at least one naming the label", p.name, camWhy)
		}
		if n, why := count(func(e events.Event) bool { return e.Type == events.TypeNodeDead && e.Node == victim.name }); n != 1 || why == "" {
			t.Errorf("%s: %d node_dead events for %s (reason %q), want exactly 1", p.name, n, victim.name, why)
		}
		if n, _ := count(func(e events.Event) bool { return e.Type == events.TypeCoordinatorChanged && e.Region == "plant" }); n < 1 {
			t.Errorf("%s: no coordinator_changed event for plant", p.name)
		}
		if got := metricSum(t, p.http, `murmur_events_total{type="replaced"}`); got < 1 {
			t.Errorf("%s: murmur_events_total{type=\"replaced\"} = %v, want >= 1", p.name, got)
		}
		// Filters: one intent, one type.
		only, err := eventsOf(p.http, "?intent=cam&type=unplaced")
		if err != nil || len(only) != len(camWhy) {
			t.Errorf("%s: ?intent=cam&type=unplaced gave %d events (%v), want %d", p.name, len(only), err, len(camWhy))
		}
	}

	out, code := murmurCLI(t, "explain", "web", "--addr", survivors[0].http)
	if code != 0 || !strings.Contains(out, replacement+"  on ") || !strings.Contains(out, "placed to replace a lost instance because") || !strings.Contains(out, victim.name) {
		t.Errorf("murmur explain web (exit %d):\n%s\nwant a line for %s saying it replaces an instance lost with %s", code, out, replacement, victim.name)
	}
	out, code = murmurCLI(t, "explain", "cam", "--addr", survivors[0].http)
	if code != 0 || !strings.Contains(out, "1 not placed") || !strings.Contains(out, "camera=yes") {
		t.Errorf("murmur explain cam (exit %d):\n%s\nwant the unplaced reason with the label", code, out)
	}
	out, code = murmurCLI(t, "explain", "nope", "--addr", survivors[0].http)
	if code == 0 {
		t.Errorf("murmur explain of an unknown intent exited 0:\n%s", out)
	}
}
