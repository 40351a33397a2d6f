package intents

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/policy"
	"github.com/prometheus/client_golang/prometheus"
)

func single(t *testing.T, dir string, clock *fakeClock, cfg func(*Config)) (*Service, *http.ServeMux) {
	t.Helper()
	c := Config{DataDir: dir, NodeName: "solo", Logger: quietLogger(), Registerer: prometheus.NewRegistry(), Clock: clock.Now}
	if cfg != nil {
		cfg(&c)
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	return s, mux
}

func TestHTTPRejectsMalformed(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, mux := single(t, t.TempDir(), clock, nil)
	policyDoc := "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: rules}\nspec: {admission: {allowedDrivers: [exec], allowedImages: ['registry.local/*'], maxMemory: 256Mi, maxCPU: '1'}}\n"
	if r := do(t, mux, "POST", "/v1/intents", policyDoc); r.status != 200 {
		t.Fatalf("policy: %d %s", r.status, r.body)
	}
	if r := do(t, mux, "POST", "/v1/intents", workloadYAML("taken", "/bin/x")); r.status != 200 {
		t.Fatalf("seed: %d %s", r.status, r.body)
	}
	const h = "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\n"
	bomb, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "intents", "bad", "alias-bomb.yaml"))
	tests := []struct {
		name   string
		method string
		target string
		body   string
		status int
		error  string // substring of "error"
		field  string // a details[].field that must be present ("" = none required)
		msg    string // substring of that detail's message
	}{
		{"empty body", "POST", "/v1/intents", "", 400, "invalid intent", "", "no intent documents"},
		{"garbage bytes", "POST", "/v1/intents", "\x00\xff\xfe{{", 400, "invalid intent", "", "not valid YAML"},
		{"broken json", "POST", "/v1/intents", `{"apiVersion":`, 400, "invalid intent", "", "not valid JSON"},
		{"yaml bomb", "POST", "/v1/intents", string(bomb), 400, "invalid intent", "", "aliases expand"},
		{"empty document", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x]}\n---\n---\n", 400, "invalid intent", "", "document 2 is empty"},
		{"list document", "POST", "/v1/intents", "- a\n- b\n", 400, "invalid intent", "", "must be a mapping"},
		{"unknown kind", "POST", "/v1/intents", "apiVersion: murmur/v1\nkind: Job\nmetadata: {name: w}\nspec: {}\n", 400, "invalid intent", "kind", `unknown kind "Job"`},
		{"wrong apiVersion", "POST", "/v1/intents", "apiVersion: murmur/v2\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: [x]}\n", 400, "invalid intent", "apiVersion", "unsupported version"},
		{"unknown field", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], replica: 2}\n", 400, "invalid intent", "spec.replica", "unknown field"},
		{"unknown top-level field", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x]}\nstatus: ok\n", 400, "invalid intent", "status", "unknown field"},
		{"wrong type", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], replicas: three}\n", 400, "invalid intent", "spec.replicas", "must be an integer"},
		{"wrong type list", "POST", "/v1/intents", h + "spec: {driver: exec, command: {a: b}}\n", 400, "invalid intent", "spec.command", "must be a list"},
		{"negative replicas", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], replicas: -3}\n", 400, "invalid intent", "spec.replicas", "must be between 0 and 10000"},
		{"huge replicas", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], replicas: 10001}\n", 400, "invalid intent", "spec.replicas", "must be between 0 and 10000"},
		{"overflowing replicas", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], replicas: 1e99}\n", 400, "invalid intent", "spec.replicas", "must be an integer"},
		{"name not a DNS label", "POST", "/v1/intents", "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: My_App}\nspec: {driver: exec, command: [x]}\n", 400, "invalid intent", "metadata.name", "not a DNS label"},
		{"name missing", "POST", "/v1/intents", "apiVersion: murmur/v1\nkind: Workload\nmetadata: {}\nspec: {driver: exec, command: [x]}\n", 400, "invalid intent", "metadata.name", "required"},
		{"duplicate names", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x]}\n---\n" + h + "spec: {driver: exec, command: [y]}\n", 400, "invalid intent", "documents[1].metadata.name", "duplicate name"},
		{"missing driver", "POST", "/v1/intents", h + "spec: {command: [x]}\n", 400, "invalid intent", "spec.driver", "required"},
		{"bad quantity", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], resources: {memory: 64MB}}\n", 400, "invalid intent", "spec.resources.memory", "unknown suffix"},
		{"bad duration", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], restart: {maxBackoff: 2 days}}\n", 400, "invalid intent", "spec.restart.maxBackoff", "not a duration"},
		{"duplicate key", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], command: [y]}\n", 400, "invalid intent", "spec.command", "duplicate key"},
		{"json array with null", "POST", "/v1/intents", `[null]`, 400, "invalid intent", "", "empty"},
		{"admission driver", "POST", "/v1/intents", h + "spec: {driver: docker, image: registry.local/a:1}\n", 403, "not admitted", "spec.driver", `not allowed by policy "rules"`},
		{"admission resources", "POST", "/v1/intents", h + "spec: {driver: exec, command: [x], resources: {memory: 1Gi, cpu: '2'}}\n", 403, "not admitted", "spec.resources.memory", "exceeds the maximum 256Mi"},
		{"kind conflict", "POST", "/v1/intents", "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: taken}\nspec: {offload: {}}\n", 409, "another kind", "kind", "stored as a Workload"},
		{"body too large", "POST", "/v1/intents", strings.Repeat("#", 1<<20+1), 413, "request body too large", "", ""},
		{"bad wait", "POST", "/v1/intents?wait=all", workloadYAML("ok", "/bin/x"), 400, "invalid query", "wait", "the only value is fleet"},
		{"bad timeout", "POST", "/v1/intents?wait=fleet&timeout=forever", workloadYAML("ok", "/bin/x"), 400, "invalid query", "timeout", "want a duration"},
		{"get unknown", "GET", "/v1/intents/nope", "", 404, `intent "nope" not found`, "", ""},
		{"get bad format", "GET", "/v1/intents/taken?format=xml", "", 400, "invalid query", "format", "want json or yaml"},
		{"delete unknown", "DELETE", "/v1/intents/nope", "", 404, `intent "nope" not found`, "", ""},
		{"delete bad name", "DELETE", "/v1/intents/Bad_Name", "", 400, "invalid name", "name", "not a DNS label"},
		{"delete bad signature header", "DELETE", "/v1/intents/taken", "", 400, "invalid signature header", "Murmur-Signature", "keyId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.name == "delete bad signature header" {
				hdr = []string{SignatureHeader, "nocolon"}
			}
			before := s.Records()
			r := do(t, mux, tt.method, tt.target, tt.body, hdr...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			var env struct {
				Error   string `json:"error"`
				Details []struct{ Field, Message string }
			}
			if err := json.Unmarshal([]byte(r.body), &env); err != nil {
				t.Fatalf("body is not the error envelope: %v: %s", err, r.body)
			}
			if !strings.Contains(env.Error, tt.error) {
				t.Errorf("error %q does not contain %q", env.Error, tt.error)
			}
			if tt.field != "" || tt.msg != "" {
				found := false
				for _, d := range env.Details {
					if d.Field == tt.field && strings.Contains(d.Message, tt.msg) {
						found = true
					}
				}
				if !found {
					t.Errorf("no detail {field %q, message containing %q} in %s", tt.field, tt.msg, r.body)
				}
			}
			if after := s.Records(); len(after) != len(before) {
				t.Errorf("a rejected request changed the store: %d → %d records", len(before), len(after))
			}
		})
	}
}

func TestStoreDurableReloadAndNoRollback(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, mux := single(t, dir, clock, nil)
	r := do(t, mux, "POST", "/v1/intents", workloadYAML("a", "/bin/x")+"---\n"+workloadYAML("b", "<&>"))
	if r.status != 200 {
		t.Fatal(r.body)
	}
	if _, err := s.Delete("b", nil); err != nil {
		t.Fatal(err)
	}
	// A restart (new Service on the same dir) sees exactly the same records.
	s2, mux2 := single(t, dir, clock, nil)
	if got, want := s2.Records(), s.Records(); len(got) != 2 || got[0].Version != want[0].Version || got[1].Version != want[1].Version || !got[1].Deleted {
		t.Fatalf("reload: %+v, want %+v", got, want)
	}
	// The clock survives the restart: a new update gets a higher version even if the
	// wall clock went backwards.
	clock.Add(-time.Hour)
	do(t, mux2, "POST", "/v1/intents", workloadYAML("a", "/bin/y"))
	a2, _ := s2.Get("a")
	if a1, _ := s.Get("a"); !a1.Version.Less(a2.Version) {
		t.Errorf("version after restart %s is not above %s", a2.Version, a1.Version)
	}
	// GET as YAML parses back to the same intent.
	y := do(t, mux2, "GET", "/v1/intents/a?format=yaml", "")
	ins, err := policy.Parse([]byte(y.body))
	if err != nil || len(ins) != 1 {
		t.Fatalf("GET yaml does not parse: %v\n%s", err, y.body)
	}
	if c, _ := policy.Canonical(&ins[0]); policy.Hash(c) != a2.Hash {
		t.Error("GET yaml is not the stored intent")
	}

	// No rollback by replay: the older record and an equal version with other content
	// are both ignored.
	old, _ := s.Get("a")
	s2.storeRemote(&old)
	if cur, _ := s2.Get("a"); cur.Version != a2.Version {
		t.Errorf("replayed older version replaced the stored one")
	}
	evil := a2
	other := strings.Replace(string(a2.Body), "/bin/y", "/bin/z", 1)
	evil.Body, evil.Hash = []byte(other), policy.Hash([]byte(other))
	s2.storeRemote(&evil)
	if cur, _ := s2.Get("a"); cur.Hash != a2.Hash {
		t.Errorf("equal version with other content replaced the stored one")
	}

	// A corrupt file is set aside, the rest loads.
	if err := os.WriteFile(filepath.Join(dir, "intents", "c.json"), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "intents", ".a.123.tmp"), []byte("partial"), 0o600)
	s3, _ := single(t, dir, clock, nil)
	if n := len(s3.Records()); n != 2 {
		t.Errorf("after a corrupt file: %d records, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "intents", "c.json.corrupt")); err != nil {
		t.Errorf("corrupt file not set aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "intents", ".a.123.tmp")); err == nil {
		t.Error("leftover temp file not removed")
	}
}

func TestTombstoneGC(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, _ := single(t, dir, clock, func(c *Config) { c.TombstoneTTL = 48 * time.Hour })
	if _, err := s.Apply([]byte(workloadYAML("a", "/bin/x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete("a", nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(47 * time.Hour)
	s.collectGarbage()
	if r, ok := s.Get("a"); !ok || !r.Deleted {
		t.Fatal("tombstone collected before its TTL")
	}
	clock.Add(2 * time.Hour)
	s.collectGarbage()
	if _, ok := s.Get("a"); ok {
		t.Fatal("tombstone kept after its TTL")
	}
	if _, err := os.Stat(filepath.Join(dir, "intents", "a.json")); !os.IsNotExist(err) {
		t.Errorf("tombstone file still on disk: %v", err)
	}
	// The name can be reused afterwards.
	if res, err := s.Apply([]byte(workloadYAML("a", "/bin/x"))); err != nil || res[0].Result != "created" {
		t.Errorf("reuse: %v %v", res, err)
	}
}

func TestTrustKeyFilesAndLive(t *testing.T) {
	dir := t.TempDir()
	pub, priv := key(t, 5)
	pemPub, _ := policy.MarshalPublicKey(pub)
	kf := filepath.Join(dir, "trusted.pub")
	os.WriteFile(kf, pemPub, 0o600)
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, mux := single(t, dir, clock, func(c *Config) { c.TrustKeyFiles = []string{kf} })
	if r := do(t, mux, "POST", "/v1/intents", workloadYAML("w", "/bin/x")); r.status != 403 {
		t.Errorf("unsigned with trust key: %d", r.status)
	}
	pol := "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: p}\nspec: {offload: {cpuAbove: 0.5}}\n"
	body := signedDoc(t, workloadYAML("w", "/bin/x"), priv, signedAt(priv, clock.Now().UnixMilli())) + "\n" + signedDoc(t, pol, priv, signedAt(priv, clock.Now().UnixMilli()))
	if r := do(t, mux, "POST", "/v1/intents", "["+strings.Replace(body, "}\n{", "},{", 1)+"]"); r.status != 200 {
		t.Fatalf("signed: %d %s", r.status, r.body)
	}
	ws, ps := s.Live()
	if len(ws) != 1 || len(ps) != 1 || ws[0].Workload.Driver != "exec" || *ps[0].Policy.Offload.CPUAbove != 0.5 {
		t.Errorf("Live = %v, %v", ws, ps)
	}
	if _, err := New(Config{DataDir: dir, NodeName: "x", TrustKeyFiles: []string{filepath.Join(dir, "missing")}}); err == nil {
		t.Error("missing trust key file accepted")
	}
}

func TestCallbacksNeverBlock(t *testing.T) {
	clock := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	s, _ := single(t, t.TempDir(), clock, nil)
	// The service is not running: nothing drains the queue, callbacks must still return.
	for i := 0; i < cap(s.inbox)+10; i++ {
		s.HandleMessage("peer", []byte{msgAck})
	}
	if got := counter(t, s.m.dropped); got != 10 {
		t.Errorf("dropped %v by count, want 10", got)
	}
	s2, _ := single(t, t.TempDir(), clock, nil)
	big := make([]byte, 4<<20)
	for i := 0; i < 20; i++ {
		s2.MergeRemoteState("peer", big)
	}
	if got := counter(t, s2.m.dropped); got != 20-maxInboxBytes/(4<<20) {
		t.Errorf("dropped %v by bytes, want %d", got, 20-maxInboxBytes/(4<<20))
	}
}
