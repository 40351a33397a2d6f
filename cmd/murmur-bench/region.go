package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// regionView is the part of one region of GET /v1/regions the bench reads.
type regionView struct {
	Name        string   `json:"name"`
	Coordinator string   `json:"coordinator"`
	Voters      []string `json:"voters"`
	Nodes       int      `json:"nodes"`
	Term        uint64   `json:"term"`
}

// decodeRegion parses a /v1/regions answer and returns the region named want.
func decodeRegion(body []byte, want string) (regionView, error) {
	var out struct {
		Regions []regionView `json:"regions"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return regionView{}, fmt.Errorf("decode /v1/regions: %w", err)
	}
	for _, r := range out.Regions {
		if r.Name == want {
			return r, nil
		}
	}
	return regionView{}, fmt.Errorf("decode /v1/regions: no region %q in the answer", want)
}

// agreedCoordinator returns the coordinator every view names, when all of them name
// the same one, it is not exclude, and (wantVoters > 0) each view lists wantVoters
// voters. ok is false otherwise, also for no views.
func agreedCoordinator(views []regionView, exclude string, wantVoters int) (string, bool) {
	if len(views) == 0 {
		return "", false
	}
	c := views[0].Coordinator
	if c == "" || c == exclude {
		return "", false
	}
	for _, v := range views {
		if v.Coordinator != c {
			return "", false
		}
		if wantVoters > 0 && len(v.Voters) != wantVoters {
			return "", false
		}
	}
	return c, true
}

// region returns a's view of the bench's region ("default": agents run without --region).
func (f *fleet) region(ctx context.Context, a *agentProc) (regionView, error) {
	body, err := f.get(ctx, a, "/v1/regions")
	if err != nil {
		return regionView{}, err
	}
	return decodeRegion(body, "default")
}

// get fetches path from a and returns the body of a 200 answer.
func (f *fleet) get(ctx context.Context, a *agentProc, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.httpBase()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s of %s: %w", path, a.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s of %s: %w", path, a.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpStatusError{resp.StatusCode, fmt.Sprintf("GET %s of %s: HTTP %d: %s", path, a.name, resp.StatusCode, bytes.TrimSpace(body))}
	}
	return body, nil
}

type httpStatusError struct {
	code int
	msg  string
}

func (e *httpStatusError) Error() string { return e.msg }

// waitCoordinator polls every observer until all name the same coordinator (not
// exclude) with wantVoters voters, bounded by timeout. It fails early if an observer's
// process exits.
func (f *fleet) waitCoordinator(ctx context.Context, observers []*agentProc, exclude string, wantVoters int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(max(f.opts.Poll, 50*time.Millisecond))
	defer tick.Stop()
	var last string
	for {
		views := make([]regionView, 0, len(observers))
		for _, o := range observers {
			if f.exited(o) {
				return "", fmt.Errorf("agent %s exited; log tail:\n%s", o.name, logTail(o, 2000))
			}
			v, err := f.region(ctx, o)
			if err != nil {
				if ctx.Err() == nil { // keep what was seen before the deadline cut this poll
					last = err.Error()
				}
				break
			}
			views = append(views, v)
		}
		if len(views) == len(observers) {
			if c, ok := agreedCoordinator(views, exclude, wantVoters); ok {
				return c, nil
			}
			last = describeViews(observers, views)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", fmt.Errorf("no agreed coordinator with %d voters after %s: %s", wantVoters, timeout, last)
			}
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

func describeViews(observers []*agentProc, views []regionView) string {
	var b strings.Builder
	for i, v := range views {
		fmt.Fprintf(&b, "%s sees coordinator %q term %d voters %v; ", observers[i].name, v.Coordinator, v.Term, v.Voters)
	}
	return b.String()
}

// coordWatch is the outcome of watchNewCoordinator.
type coordWatch struct {
	all   time.Duration // t0 → every observer names the same new coordinator
	first time.Duration // t0 → the first observer names a coordinator other than old
	coord string
	term  uint64
	trail string // per observer: the coordinators it named, in order, with the time of each change
}

// watchNewCoordinator polls every observer in parallel, every f.opts.Poll, until all
// of them name the same coordinator other than old (each observer's latest answer
// counts). Bounded by timeout.
func (f *fleet) watchNewCoordinator(ctx context.Context, observers []*agentProc, old string, t0 time.Time, timeout time.Duration) (coordWatch, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu     sync.Mutex // guards latest, res, done
		latest = make([]regionView, len(observers))
		have   = make([]bool, len(observers))
		res    = coordWatch{first: -1}
		done   bool
		trails = make([][]string, len(observers))
	)
	var wg sync.WaitGroup
	for i, o := range observers {
		wg.Go(func() {
			tick := time.NewTicker(f.opts.Poll)
			defer tick.Stop()
			for {
				v, err := f.region(ctx, o)
				now := time.Since(t0)
				if err == nil {
					mu.Lock()
					if !have[i] || latest[i].Coordinator != v.Coordinator || latest[i].Term != v.Term {
						if len(trails[i]) < 8 {
							trails[i] = append(trails[i], fmt.Sprintf("%q/t%d@%s", v.Coordinator, v.Term, ms(now)))
						}
					}
					latest[i], have[i] = v, true
					if res.first < 0 && v.Coordinator != "" && v.Coordinator != old {
						res.first = now
					}
					all := true
					for _, h := range have {
						all = all && h
					}
					if all && !done {
						if c, ok := agreedCoordinator(latest, old, 0); ok {
							res.all, res.coord, res.term, done = now, c, v.Term, true
							cancel()
						}
					}
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var tb strings.Builder
	for i, o := range observers {
		fmt.Fprintf(&tb, "%s: %s; ", o.name, strings.Join(trails[i], " → "))
	}
	res.trail = tb.String()
	if !done {
		if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
			return res, fmt.Errorf("no new coordinator agreed within %s: %s", timeout, describeViews(observers, latest))
		}
		return res, fmt.Errorf("watch coordinator: %w", context.Cause(ctx))
	}
	return res, nil
}

// runCoordinatorLoss is failover (sig = SIGKILL) and handoff (sig = SIGTERM): stop the
// current coordinator, time until every survivor names the same new one, restart it
// and wait for a full, agreed fleet again.
func runCoordinatorLoss(ctx context.Context, f *fleet, out io.Writer, name string, sig syscall.Signal, count int) error {
	o := f.opts
	sigName := "SIGKILL"
	if sig == syscall.SIGTERM {
		sigName = "SIGTERM"
	}
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	coord, err := f.waitCoordinator(ctx, as, "", o.Voters, o.ConvergeTimout)
	if err != nil {
		return err
	}
	f.log.Info("coordinator agreed", "coordinator", coord)
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	byName := map[string]*agentProc{}
	for _, a := range as {
		byName[a.name] = a
	}
	var allT, firstT, exitT, restoreT []time.Duration
	for k := range count {
		victim := byName[coord]
		if victim == nil {
			return fmt.Errorf("run %d: coordinator %q is not one of the fleet's agents", k, coord)
		}
		var observers []*agentProc
		for _, a := range as {
			if a != victim {
				observers = append(observers, a)
			}
		}
		load := loadavg()
		t0 := time.Now()
		type watchRes struct {
			w   coordWatch
			err error
		}
		wc := make(chan watchRes, 1)
		go func() {
			w, err := f.watchNewCoordinator(ctx, observers, coord, t0, o.EventTimeout)
			wc <- watchRes{w, err}
		}()
		stopErr := f.stop(victim, sig, 10*time.Second)
		exited := time.Since(t0)
		r := <-wc
		if stopErr != nil {
			return fmt.Errorf("run %d: %w", k, stopErr)
		}
		if r.err != nil {
			return fmt.Errorf("run %d, %s of coordinator %s: %w", k, sigName, coord, r.err)
		}
		allT, exitT = append(allT, r.w.all), append(exitT, exited)
		if r.w.first >= 0 {
			firstT = append(firstT, r.w.first)
		}

		t1 := time.Now()
		if err := f.start(victim, observers[0].gossipAddr()); err != nil {
			return err
		}
		if err := f.waitAllAlive(ctx, as, names(as), o.RestoreTimeout); err != nil {
			return fmt.Errorf("run %d: restart of %s: %w", k, victim.name, err)
		}
		next, err := f.waitCoordinator(ctx, as, "", o.Voters, o.RestoreTimeout)
		if err != nil {
			return fmt.Errorf("run %d: after restart of %s: %w", k, victim.name, err)
		}
		restore := time.Since(t1)
		restoreT = append(restoreT, restore)
		fmt.Fprintf(out, "%s %2d: %s %s (exited after %s); first survivor names %s after %s, all %d survivors after %s (term %d); restarted, %d voters agreed after %s loadavg=%s\n",
			name, k, sigName, coord, ms(exited), r.w.coord, ms(r.w.first), len(observers), ms(r.w.all), r.w.term, o.Voters, ms(restore), load)
		if r.w.all > o.Trail {
			fmt.Fprintf(out, "    slow run %d, what each survivor named: %s\n", k, r.w.trail)
		}
		coord = next
	}
	a, fi, ex, rs := summarize(allT), summarize(firstT), summarize(exitT), summarize(restoreT)
	fmt.Fprintf(out, "\n### %s: %d-node region, %d × %s of the coordinator (poll %s, p99 nearest-rank)\n\n", name, o.Nodes, count, sigName, o.Poll)
	fmt.Fprintf(out, "| measure | n | p50 | p99 | max | mean |\n|---|---|---|---|---|---|\n")
	row := func(label string, s summary) {
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s |\n", label, s.N, ms(s.P50), ms(s.P99), ms(s.Max), ms(s.Mean))
	}
	row(fmt.Sprintf("%s → EVERY survivor's /v1/regions names the same new coordinator", sigName), a)
	row(fmt.Sprintf("%s → first survivor names a new coordinator", sigName), fi)
	row(fmt.Sprintf("%s → the coordinator's process exited", sigName), ex)
	row(fmt.Sprintf("restart → all %d alive and agreeing on a coordinator with %d voters", o.Nodes, o.Voters), rs)
	return nil
}

// parseSize parses a byte count: a plain integer or one with the suffix Ki or Mi
// (1024-based), e.g. "0", "512", "64Ki", "1Mi".
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	switch {
	case strings.HasSuffix(t, "Ki"):
		mult, t = 1<<10, strings.TrimSuffix(t, "Ki")
	case strings.HasSuffix(t, "Mi"):
		mult, t = 1<<20, strings.TrimSuffix(t, "Mi")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a non-negative integer with an optional Ki or Mi suffix, e.g. 64Ki", s)
	}
	if n > (1<<30)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// intentYAML returns a small Workload intent named name; pad > 0 adds an env value of
// pad bytes so the body is at least that much larger.
func intentYAML(name string, pad int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: %s}\n", name)
	b.WriteString("spec:\n  replicas: 1\n  driver: exec\n  command: [\"/bin/sleep\", \"60\"]\n  resources: {cpu: 10m, memory: 8Mi}\n")
	if pad > 0 {
		b.WriteString("  env: {PAD: \"")
		b.Write(bytes.Repeat([]byte("x"), pad))
		b.WriteString("\"}\n")
	}
	return b.Bytes()
}

// appliedVersion finds name's version in a POST /v1/intents answer.
func appliedVersion(body []byte, name string) (string, error) {
	var out struct {
		Intents []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"intents"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("decode POST /v1/intents answer: %w", err)
	}
	for _, it := range out.Intents {
		if it.Name == name {
			if it.Version == "" {
				return "", fmt.Errorf("POST /v1/intents answer: intent %q without a version", name)
			}
			return it.Version, nil
		}
	}
	return "", fmt.Errorf("POST /v1/intents answer: intent %q not listed", name)
}

// storedVersion parses GET /v1/intents/{name} and returns the stored version.
func storedVersion(body []byte) (string, error) {
	var out struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("decode GET /v1/intents/{name}: %w", err)
	}
	return out.Version, nil
}

// push POSTs body to a and returns the version the answer gives for name.
func (f *fleet) push(ctx context.Context, a *agentProc, name string, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.EventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.httpBase()+"/v1/intents", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("POST /v1/intents to %s: %w", a.name, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("POST /v1/intents to %s: %w", a.name, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/intents to %s: HTTP %d: %s", a.name, resp.StatusCode, bytes.TrimSpace(rb))
	}
	return appliedVersion(rb, name)
}

func runIntents(ctx context.Context, f *fleet, out io.Writer) error {
	o := f.opts
	as, err := startFleet(ctx, f, o.Nodes)
	if err != nil {
		return err
	}
	if err := settle(ctx, f, o.Settle); err != nil {
		return err
	}
	var allT, firstT, rttT []time.Duration
	bodyLen := 0
	for p := range o.Pushes {
		target := as[p%len(as)]
		name := fmt.Sprintf("bench-%d", p)
		body := intentYAML(name, o.Size)
		bodyLen = len(body)
		load := loadavg()
		t0 := time.Now()
		version, err := f.push(ctx, target, name, body)
		rtt := time.Since(t0)
		if err != nil {
			return fmt.Errorf("push %d: %w", p, err)
		}
		path := "/v1/intents/" + url.PathEscape(name)
		got, err := f.watchVersion(ctx, as, path, version, t0, o.EventTimeout)
		if err != nil {
			return fmt.Errorf("push %d (%s version %s via %s): %w", p, name, version, target.name, err)
		}
		all, first := slowest(got, 0), fastest(got, 0)
		allT, firstT, rttT = append(allT, all), append(firstT, first), append(rttT, rtt)
		fmt.Fprintf(out, "push %2d %s via %s: POST %s, stored on all %d nodes after %s (first %s) loadavg=%s\n",
			p, name, target.name, ms(rtt), len(as), ms(all), ms(first), load)
	}
	a, fi, rt := summarize(allT), summarize(firstT), summarize(rttT)
	fmt.Fprintf(out, "\n### intents: %d-node fleet, %d pushes of a %d-byte YAML body, rotating over the nodes (poll %s, p99 nearest-rank)\n\n", o.Nodes, o.Pushes, bodyLen, o.Poll)
	fmt.Fprintf(out, "| measure | n | p50 | p99 | max | mean |\n|---|---|---|---|---|---|\n")
	row := func(label string, s summary) {
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s |\n", label, s.N, ms(s.P50), ms(s.P99), ms(s.Max), ms(s.Mean))
	}
	row("before POST → the version stored on EVERY node (GET /v1/intents/{name})", a)
	row("before POST → stored on the first node", fi)
	row("POST /v1/intents round trip (stored durably on the receiving node)", rt)
	return nil
}

// watchVersion polls path on every node in parallel, every f.opts.Poll, until each
// answers with version. got[i][0] is t0 → node i's first matching answer.
func (f *fleet) watchVersion(ctx context.Context, nodes []*agentProc, path, version string, t0 time.Time, timeout time.Duration) ([][]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	got := make([][]time.Duration, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		got[i] = make([]time.Duration, 1)
		wg.Go(func() {
			tick := time.NewTicker(f.opts.Poll)
			defer tick.Stop()
			var last string
			for {
				body, err := f.get(ctx, n, path)
				now := time.Since(t0)
				if err == nil {
					v, derr := storedVersion(body)
					if derr == nil && v == version {
						got[i][0] = now
						return
					}
					last = fmt.Sprintf("version %q (err %v)", v, derr)
				} else {
					last = err.Error()
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("node %s: %w (last: %s)", n.name, ctx.Err(), last)
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
	return got, errors.Join(errs...)
}
