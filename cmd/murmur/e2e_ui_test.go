package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/murmur-edge/murmur/agent/ui"
)

// The dashboard (/ui/) in a real browser: headless Chromium driven over the DevTools
// protocol (chromedp) against real agents. The tests skip when no Chromium is
// installed, unless MURMUR_REQUIRE_BROWSER=1 (.ci/run sets it). Screenshots of every
// view go to MURMUR_UI_SCREENSHOTS (a path relative to the repository's root, e.g.
// docs/screenshots to refresh the README's), else to a temporary directory.

// chromiumPath finds the browser, or skips (fails with MURMUR_REQUIRE_BROWSER=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real-browser test; -short skips it")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("MURMUR_REQUIRE_BROWSER") == "1" {
		t.Fatal("MURMUR_REQUIRE_BROWSER=1 and no chromium, chromium-browser or google-chrome on PATH: apt-get install chromium")
	}
	t.Skip("no Chromium on PATH (apt-get install chromium); MURMUR_REQUIRE_BROWSER=1 makes this a failure")
	return ""
}

// browser is one headless Chromium tab and what it saw: console errors, uncaught
// exceptions, error entries of the browser log, and the bytes of every response.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu       sync.Mutex // guards the fields below, written by the tab's event loop
	problems []string
	urls     map[network.RequestID]string
	navStart float64    // when the last document request was sent (protocol seconds)
	finished []response // every response received whole, in order
}

// response is one finished response: its URL path, the bytes received for it
// (headers and encoded body) and when it finished (protocol seconds).
type response struct {
	path  string
	bytes float64
	at    float64
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1280, 860),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, urls: map[network.RequestID]string{}}
	b.dir = os.Getenv("MURMUR_UI_SCREENSHOTS")
	switch {
	case b.dir == "":
		b.dir = t.TempDir()
	case !filepath.IsAbs(b.dir):
		b.dir = filepath.Join("..", "..", b.dir) // relative to the repository, not to cmd/murmur
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx); err != nil { // start the browser, without a deadline
		t.Fatalf("start Chromium: %v", err)
	}
	// Listen calls this in the order the events arrive, before the reply to any
	// later command: whatever happened before a command returned has been seen.
	if err := chromedp.Listen(ctx, b.observe); err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	return b
}

func (b *browser) observe(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, "console."+string(ev.Type)+": "+strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.problems = append(b.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			b.problems = append(b.problems, fmt.Sprintf("browser log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		b.urls[ev.RequestID] = ev.Request.URL
		if ev.Type == network.ResourceTypeDocument {
			b.navStart = ev.Timestamp.Float64()
		}
	case *network.EventLoadingFinished:
		if u, err := url.Parse(b.urls[ev.RequestID]); err == nil {
			b.finished = append(b.finished, response{u.Path, ev.EncodedDataLength, ev.Timestamp.Float64()})
		}
	}
}

// seen returns the problems seen so far. A command runs first, so every event that
// arrived before its reply has been observed.
func (b *browser) seen() []string {
	b.t.Helper()
	b.run("", `1`)
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}

// loadedWithin sums, by URL path, the bytes of the responses that finished within d
// of the last navigation's start.
func (b *browser) loadedWithin(d time.Duration) map[string]float64 {
	b.t.Helper()
	b.run("", `1`)
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]float64{}
	for _, r := range b.finished {
		if r.at <= b.navStart+d.Seconds() {
			out[r.path] += r.bytes
		}
	}
	return out
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// run evaluates a JavaScript expression in the page and returns its JSON value.
func (b *browser) run(what, expr string) []byte {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s (%s): %v", what, expr, err)
	}
	return v
}

// waitUntil waits until the JavaScript expression is truthy in the page, at most
// until the deadline: the page's own requestAnimationFrame polling, no sleeps.
func (b *browser) waitUntil(deadline time.Time, what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, deadline)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0))); err != nil {
		problems := b.seen()
		main, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
		b.t.Fatalf("waiting for %s (%s): %v\nthe page shows:\n%s\nconsole problems: %q", what, expr, err, main, problems)
	}
}

func (b *browser) wait(timeout time.Duration, what, expr string) {
	b.t.Helper()
	b.waitUntil(time.Now().Add(timeout), what, expr)
}

// show goes to a view through its link in the page's navigation.
func (b *browser) show(view string) {
	b.t.Helper()
	b.do("open the "+view+" view", chromedp.Click(chromedp.CSS(`#nav a[data-view="`+view+`"]`)))
	b.wait(5*time.Second, "the "+view+" view", `document.documentElement.dataset.view === "`+view+`"`)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) noProblems() {
	b.t.Helper()
	for _, p := range b.seen() {
		b.t.Errorf("browser console: %s", p)
	}
}

func jsString(s string) string {
	j, _ := json.Marshal(s)
	return string(j)
}

// TestRealUIDashboard opens the dashboard of one of 3 real agents: it lists the 3
// nodes; a pushed workload appears with its instances, its intent with its version;
// a node killed with SIGKILL shows as dead within 3 s without a reload; the event
// feed shows the death live; and the console stays free of errors. It logs the bytes
// and the time of the first load (BENCHMARKS.md).
func TestRealUIDashboard(t *testing.T) {
	b := newBrowser(t) // first: skips before starting agents when there is no browser
	ps, _ := startPlant(t, "ui", 3)
	page := "http://" + ps[0].http + "/ui/"

	b.do("open "+page, chromedp.Navigate(page))
	b.wait(20*time.Second, "the fleet view with 3 alive nodes", `document.querySelectorAll('tr[data-node][data-status="alive"]').length === 3`)
	var names []string
	if err := json.Unmarshal(b.run("node names", `[...document.querySelectorAll('tr[data-node]')].map(r => r.dataset.node).sort()`), &names); err != nil {
		t.Fatal(err)
	}
	if want := []string{"ui1", "ui2", "ui3"}; !slices.Equal(names, want) {
		t.Errorf("the fleet view lists %v, want %v", names, want)
	}
	var timing struct{ FirstRender, DOMContentLoaded, Load float64 }
	if err := json.Unmarshal(b.run("timing", `({firstRender: performance.getEntriesByName('murmur-first-render')[0].startTime,
		domContentLoaded: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
		load: performance.getEntriesByType('navigation')[0].loadEventEnd})`), &timing); err != nil {
		t.Fatal(err)
	}
	// The bytes of the responses received by the first render: the navigation's
	// start in the protocol's clock plus the page's own measure (a few ms late at
	// most, the time from the navigation's start to its request).
	loaded := b.loadedWithin(time.Duration(timing.FirstRender * float64(time.Millisecond)))
	var static, data float64
	for p, n := range loaded {
		if strings.HasPrefix(p, ui.Prefix) {
			static += n
		} else {
			data += n
		}
	}
	t.Logf("first load of %s: %.0f bytes of dashboard files (%d files), %.0f bytes of API answers by the first render; first render with data %.0f ms after navigation start (DOMContentLoaded %.0f ms, load %.0f ms); by path: %v",
		page, static, countPrefix(loaded, ui.Prefix), data, timing.FirstRender, timing.DOMContentLoaded, timing.Load, loaded)

	// A workload pushed to another node appears with its instances.
	stored := postIntent(t, ps[1].http, []byte(fmt.Sprintf(`apiVersion: murmur/v1
kind: Workload
metadata: {name: ui-web}
spec:
  replicas: 2
  driver: exec
  command: [%q, "--sleep", "1h"]
  resources: {cpu: 50m, memory: 16Mi}
`, workloadBin(t))), "")
	b.show("workloads")
	b.wait(30*time.Second, "ui-web with 2 running instances", `document.querySelectorAll('tr[data-instance][data-intent="ui-web"][data-state="running"]').length === 2 &&
		document.querySelector('tr[data-intent="ui-web"][data-running="2"][data-desired="2"]') !== null`)
	b.screenshot("workloads")

	b.show("intents")
	b.wait(10*time.Second, "ui-web at version "+stored[0].Version, `document.querySelector('tr[data-intent="ui-web"]')?.dataset.version === `+jsString(stored[0].Version))
	b.screenshot("intents")

	// The node page of a node that runs an instance, reached through its link: the
	// page's own agent when it runs one (its page also shows its supervisor).
	b.show("workloads")
	var hosts []string
	if err := json.Unmarshal(b.run("the hosts of ui-web", `[...document.querySelectorAll('tr[data-instance][data-intent="ui-web"]')].map(r => r.dataset.node)`), &hosts); err != nil || len(hosts) == 0 {
		t.Fatalf("the hosts of ui-web: %v %v", hosts, err)
	}
	host := hosts[0]
	if slices.Contains(hosts, ps[0].name) {
		host = ps[0].name
	}
	b.do("open the node page of "+host, chromedp.Click(chromedp.CSS(`tr[data-intent="ui-web"] a[href="#/node/`+host+`"]`)))
	b.wait(10*time.Second, host+"'s page with its ui-web instance", `document.documentElement.dataset.view === "node" &&
		document.querySelectorAll('tr[data-instance][data-intent="ui-web"]').length === 1`)
	b.screenshot("node")

	// SIGKILL a node that is neither the page's agent nor the coordinator: the fleet
	// view shows it dead within 3 s, with no reload.
	b.show("fleet")
	coord, _, _ := agreedCoordinator(ps, "plant", 0)
	victim := ps[2]
	if victim.name == coord {
		victim = ps[1]
	}
	killed := time.Now()
	killHost(t, victim)
	b.waitUntil(killed.Add(3*time.Second), victim.name+" dead within 3 s of its SIGKILL", `document.querySelector('tr[data-node=`+jsString(victim.name)+`]')?.dataset.status === "dead"`)
	t.Logf("%s shown dead %d ms after its SIGKILL, without a reload", victim.name, time.Since(killed).Milliseconds())
	b.screenshot("fleet")

	b.show("events")
	b.wait(10*time.Second, "the node_dead event of "+victim.name+" in the feed", `[...document.querySelectorAll('tr[data-event-type="node_dead"]')].some(r => r.textContent.includes(`+jsString(victim.name)+`))`)
	b.screenshot("events")
	if n := b.run("reloads", `performance.getEntriesByType('navigation').length`); string(n) != "1" {
		t.Errorf("%s navigations, want 1: the page must update without a reload", n)
	}
	b.noProblems()
	t.Logf("screenshots in %s", b.dir)
}

func countPrefix(m map[string]float64, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// TestRealUIToken: against an agent that enforces tokens, the page asks for one,
// and a read token is enough to see the fleet.
func TestRealUIToken(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	const read = "dashboard-read-0123456789"
	acl := filepath.Join(dir, "acl.yaml")
	if err := os.WriteFile(acl, []byte("tokens:\n  - {id: dash, role: read, secret: "+read+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, "tok1", freePort(t), "--acl-file", acl)
	eventually(t, 15*time.Second, "the API answers", func() bool { return getJSONWith(p.http, "/v1/status", read, &map[string]any{}) == nil })

	b.do("open the dashboard", chromedp.Navigate("http://"+p.http+"/ui/"))
	b.wait(10*time.Second, "the token form", `!document.getElementById('auth').hidden`)
	b.screenshot("token")
	b.do("give the read token",
		chromedp.SendKeys(chromedp.ID("token"), read),
		chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)))
	b.wait(10*time.Second, "the fleet after the token", `document.getElementById('auth').hidden && document.querySelector('tr[data-node="tok1"][data-status="alive"]') !== null`)
	b.show("events")
	b.wait(10*time.Second, "the event stream live with the token", `document.getElementById('conn').textContent.includes('events live')`)
	var stored string
	if err := json.Unmarshal(b.run("the stored token", `sessionStorage.getItem('murmur.token') + '|' + localStorage.getItem('murmur.token')`), &stored); err != nil {
		t.Fatal(err)
	}
	if stored != read+"|null" {
		t.Errorf("token storage %q, want it in sessionStorage only (the box was not ticked)", stored)
	}
	// The requests made before the token are refused with 401, which the browser
	// logs as failed loads; nothing else may be in the console.
	for _, pr := range b.seen() {
		if !strings.Contains(pr, "status of 401") {
			t.Errorf("browser console: %s", pr)
		}
	}
}

// TestUIEscapesHostileData serves the embedded dashboard with an API that answers
// hostile names and reasons (no agent validates what this fake one answers): the page
// shows them as text and runs nothing.
func TestUIEscapesHostileData(t *testing.T) {
	b := newBrowser(t)
	const evil = `<img src=x onerror="window.pwned=1">`
	evilJS := jsString(evil)
	name := `n1"><script>window.pwned=2</script>`
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, ui.New())
	answer := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux.HandleFunc("GET /v1/status", answer(map[string]any{"name": name, "region": evil, "instances": []any{}}))
	mux.HandleFunc("GET /v1/members", answer(map[string]any{"members": []any{map[string]any{
		"name": name, "region": evil, "addr": evil, "status": evil, "load": map[string]any{"cpu": 0.5, "memory": 2},
		"labels": map[string]string{evil: evil}}}}))
	mux.HandleFunc("GET /v1/regions", answer(map[string]any{"regions": []any{map[string]any{"name": evil, "coordinator": name, "voters": []string{name, evil}, "witnesses": []string{evil}}}}))
	mux.HandleFunc("GET /v1/intents", answer(map[string]any{"intents": []any{map[string]any{"name": evil, "kind": evil, "version": evil, "signedBy": evil, "origin": name}}}))
	mux.HandleFunc("GET /v1/workloads", answer(map[string]any{"region": evil, "coordinator": name, "workloads": []any{map[string]any{
		"intent": evil, "instance": evil, "node": name, "state": evil, "reason": evil, "error": evil}},
		"intents": []any{map[string]any{"intent": evil, "desired": 1, "running": 0, "unplaced": 1, "reason": evil}}}))
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		e := map[string]any{"id": 1, "time": "2030-01-02T03:04:05Z", "type": "unplaced", "region": evil, "node": name, "intent": evil, "reason": evil}
		_ = json.NewEncoder(w).Encode(e)
		w.(http.Flusher).Flush()
		select { // a follower: keep the stream open
		case <-r.Context().Done():
		case <-stop:
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})

	b.do("open the dashboard", chromedp.Navigate(srv.URL+"/ui/"))
	b.wait(10*time.Second, "the hostile node listed", `document.querySelector('tr[data-node]')?.dataset.node === `+jsString(name))
	for _, view := range []string{"fleet", "workloads", "events", "intents"} {
		b.show(view)
		b.wait(10*time.Second, "the hostile text in the "+view+" view", `document.getElementById('main').textContent.includes(`+evilJS+`)`)
	}
	b.do("open the hostile node's page", chromedp.Click(chromedp.CSS(`#main a[href^="#/node/"]`)))
	b.wait(10*time.Second, "the node page", `document.documentElement.dataset.view === "node" && document.getElementById('main').textContent.includes(`+evilJS+`)`)
	if got := string(b.run("injected elements", `[window.pwned ?? null, document.querySelectorAll('#main img, #main script').length]`)); got != "[null,0]" {
		t.Errorf("window.pwned and injected elements = %s, want [null,0]: data was rendered as HTML", got)
	}
	b.noProblems()
}
