package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// viewJSON is a GET /v1/workloads answer for region site-a.
const viewJSON = `{"region":"site-a","coordinator":"node-1","generation":7,
 "workloads":[
  {"intent":"camera-feed","instance":"camera-feed-0","node":"node-2","region":"site-a","state":"running","restarts":0,"since":"2025-01-02T10:00:00Z","generation":5,"version":"v1","cause":"replace","reason":"replica 2 of 3, replaces camera-feed-x lost with node node-4; score 0.812 (binpack 0.50, load 0.90), best of 2"},
  {"intent":"camera-feed","instance":"camera-feed-1","node":"node-3","region":"site-a","state":"backoff","restarts":3,"since":"2025-01-02T09:56:48Z","generation":6,"version":"v1","error":"exit status 1"},
  {"intent":"telemetry","instance":"telemetry-node-1","node":"node-1","region":"site-a","state":"assigned","restarts":0,"generation":7,"version":"v2"},
  {"intent":"telemetry","instance":"telemetry-node-2","node":"node-2","region":"site-a","state":"lost","restarts":12,"since":"2024-12-30T07:30:00Z","generation":4,"version":"v2"}],
 "intents":[
  {"intent":"camera-feed","desired":3,"placed":2,"running":1,"unplaced":1,"reason":"3 nodes filtered by label camera=yes"},
  {"intent":"telemetry","desired":2,"placed":2,"running":0}]}`

func decodeView(t *testing.T, s string) workloadsView {
	t.Helper()
	var v workloadsView
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWriteWorkloadSummary(t *testing.T) {
	for _, tc := range []struct {
		name, view, want string
	}{
		{
			name: "unplaced with reason",
			view: viewJSON,
			want: "" +
				"INTENT       DESIRED  RUNNING  PLACED  UNPLACED  REASON\n" +
				"camera-feed  3        1        2       1         3 nodes filtered by label camera=yes\n" +
				"telemetry    2        0        2       0         -\n",
		},
		{
			name: "no intents",
			view: `{"region":"site-b","coordinator":"node-4","workloads":[],"intents":[]}`,
			want: "INTENT  DESIRED  RUNNING  PLACED  UNPLACED  REASON\n",
		},
		{
			name: "forbidden by admission: nothing placed",
			view: `{"intents":[{"intent":"vision","desired":2,"placed":0,"running":0,"unplaced":2,"reason":"admission: driver docker is not allowed"}]}`,
			want: "" +
				"INTENT  DESIRED  RUNNING  PLACED  UNPLACED  REASON\n" +
				"vision  2        0        0       2         admission: driver docker is not allowed\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeWorkloadSummary(&out, decodeView(t, tc.view)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("summary table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteWorkloadInstances(t *testing.T) {
	now := time.Date(2025, 1, 2, 10, 0, 45, 0, time.UTC)
	for _, tc := range []struct {
		name, view, want string
	}{
		{
			name: "states, restarts and ages",
			view: viewJSON,
			want: "" +
				"INTENT       INSTANCE          NODE    STATE     RESTARTS  AGE    GENERATION  WHY\n" +
				"camera-feed  camera-feed-0     node-2  running   0         45s    5           replace: replica 2 of 3, replaces camera-feed-x lost with node node-4; score 0.812 (binpack 0.50, load 0.90), best of 2\n" +
				"camera-feed  camera-feed-1     node-3  backoff   3         3m57s  6           -\n" +
				"telemetry    telemetry-node-1  node-1  assigned  0         -      7           -\n" +
				"telemetry    telemetry-node-2  node-2  lost      12        3d2h   4           -\n" +
				"camera-feed  -                 -       unplaced  -         -      -           1 not placed: 3 nodes filtered by label camera=yes\n",
		},
		{
			name: "no instances",
			view: `{"region":"site-b","workloads":[],"intents":[]}`,
			want: "INTENT  INSTANCE  NODE  STATE  RESTARTS  AGE  GENERATION  WHY\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeWorkloadInstances(&out, decodeView(t, tc.view), now); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("wide table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2025, 1, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since time.Time
		want  string
	}{
		{time.Time{}, "-"},
		{now.Add(time.Second), "0s"}, // a node's clock ahead of ours
		{now, "0s"},
		{now.Add(-59*time.Second - 900*time.Millisecond), "59s"},
		{now.Add(-time.Minute), "1m0s"},
		{now.Add(-(59*time.Minute + 59*time.Second)), "59m59s"},
		{now.Add(-(2*time.Hour + 5*time.Minute + 30*time.Second)), "2h5m"},
		{now.Add(-(3*24*time.Hour + 4*time.Hour + 59*time.Minute)), "3d4h"},
	} {
		if got := age(now, tc.since); got != tc.want {
			t.Errorf("age(now, now%+v) = %q, want %q", tc.since.Sub(now), got, tc.want)
		}
	}
}

// fakeAPI answers one path with a fixed status and body and records the queries it got.
type fakeAPI struct {
	mu      sync.Mutex
	queries []url.Values
}

func (f *fakeAPI) serve(t *testing.T, path string, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.Query())
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeAPI) lastQuery() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return nil
	}
	return f.queries[len(f.queries)-1]
}

// runRoot runs the real root command against addr.
func runRoot(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--addr", addr))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestGetWorkloadsCommand(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		status    int
		body      string
		wantQuery url.Values
		wantOut   []string // substrings of the output, in order
		wantErr   string   // substring of the error; "" = success
		wantUsage bool     // the error is bad input (exit 2)
	}{
		{
			name: "summary by default", args: []string{"get", "workloads"},
			status: 200, body: viewJSON, wantQuery: url.Values{},
			wantOut: []string{"INTENT", "UNPLACED", "REASON", "\ncamera-feed", "3 nodes filtered by label camera=yes", "\ntelemetry"},
		},
		{
			name: "wide with region and intent", args: []string{"get", "workloads", "-o", "wide", "--region", "site-b", "--intent", "camera-feed"},
			status: 200, body: viewJSON, wantQuery: url.Values{"region": {"site-b"}, "intent": {"camera-feed"}},
			wantOut: []string{"INSTANCE", "NODE", "STATE", "AGE", "GENERATION", "\ncamera-feed  camera-feed-0     node-2  running"},
		},
		{
			name: "json is the raw answer", args: []string{"get", "workloads", "-o", "json"},
			status: 200, body: viewJSON, wantQuery: url.Values{},
			wantOut: []string{`"region": "site-a"`, `"coordinator": "node-1"`, `"error": "exit status 1"`},
		},
		{
			name: "region without coordinator", args: []string{"get", "workloads", "--region", "site-b"},
			status: 503, body: `{"error":"region site-b has no coordinator right now"}`, wantQuery: url.Values{"region": {"site-b"}},
			wantErr: "region site-b has no coordinator right now (HTTP 503)",
		},
		{
			name: "unknown region", args: []string{"get", "workloads", "--region", "mars"},
			status: 404, body: `{"error":"no node of region mars is known"}`, wantQuery: url.Values{"region": {"mars"}},
			wantErr: "no node of region mars is known (HTTP 404)", wantUsage: true,
		},
		{
			name: "bad output format", args: []string{"get", "workloads", "-o", "yaml"},
			wantErr: `invalid --output "yaml"`, wantUsage: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{}
			srv := api.serve(t, "/v1/workloads", tc.status, tc.body)
			out, err := runRoot(t, srv.URL, tc.args...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("%v: %v\n%s", tc.args, err, out)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%v: error %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				var ue usageError
				if got := errors.As(err, &ue); got != tc.wantUsage {
					t.Errorf("%v: usage error (exit 2) = %v, want %v", tc.args, got, tc.wantUsage)
				}
			}
			if diff := cmp.Diff(tc.wantQuery, api.lastQuery()); diff != "" {
				t.Errorf("%v: query (-want +got):\n%s", tc.args, diff)
			}
			rest := out
			for _, w := range tc.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%v: output lacks %q (in order):\n%s", tc.args, w, out)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestMembersTableShowsInstances(t *testing.T) {
	body := `{"members":[
	 {"name":"node-1","region":"site-a","addr":"127.0.0.1:7946","status":"alive","load":{"cpu":0.5,"memory":0.25},"instances":3,"labels":{"zone":"a","demo":"yes"}},
	 {"name":"node-2","region":"site-b","addr":"127.0.0.1:7956","status":"dead","load":{"cpu":0,"memory":0},"instances":0,"labels":{}}]}`
	want := "" +
		"NAME    REGION  ADDR            STATUS  CPU  MEMORY  INSTANCES  LABELS\n" +
		"node-1  site-a  127.0.0.1:7946  alive   50%  25%     3          demo=yes,zone=a\n" +
		"node-2  site-b  127.0.0.1:7956  dead    0%   0%      0          -\n"
	srv := (&fakeAPI{}).serve(t, "/v1/members", 200, body)
	out, err := runRoot(t, srv.URL, "members")
	if err != nil {
		t.Fatalf("members: %v\n%s", err, out)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("members table (-want +got):\n%s", diff)
	}
}

func TestExplainLines(t *testing.T) {
	v := decodeView(t, viewJSON)
	ex, ok := explain(v, "camera-feed")
	if !ok {
		t.Fatal("camera-feed not found in the view")
	}
	var out bytes.Buffer
	if err := writeExplanations(&out, ex); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"camera-feed-0  on node-2 [site-a] (running): placed to replace a lost instance because replica 2 of 3, replaces camera-feed-x lost with node node-4; score 0.812 (binpack 0.50, load 0.90), best of 2\n" +
		"camera-feed-1  on node-3 [site-a] (backoff): placed (no reason recorded: placed by an earlier murmur version)\n" +
		"camera-feed  [site-a] 1 not placed: 3 nodes filtered by label camera=yes\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("explain (-want +got):\n%s", d)
	}
	if _, ok := explain(v, "nope"); ok {
		t.Error("an intent the region does not know was explained")
	}
}
