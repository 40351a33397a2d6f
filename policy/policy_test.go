package policy

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "intents", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseExamples(t *testing.T) {
	tests := []struct {
		file  string
		names []string
	}{
		{"workload-exec.yaml", []string{"vision"}},
		{"workload-docker-global.yaml", []string{"node-exporter"}},
		{"policy.yaml", []string{"site-rules"}},
		{"multi.yaml", []string{"depot-rules", "logger"}},
		{"workload.json", []string{"json-example"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ins, err := Parse(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got []string
			for _, in := range ins {
				got = append(got, in.Name())
				// Canonical encodings are fixed points of Parse.
				c, err := Canonical(&in)
				if err != nil {
					t.Fatal(err)
				}
				back, err := DecodeCanonical(c)
				if err != nil {
					t.Fatalf("DecodeCanonical(Canonical(x)): %v\n%s", err, c)
				}
				c2, _ := Canonical(&back)
				if !bytes.Equal(c, c2) {
					t.Errorf("canonical not stable:\n%s\n%s", c, c2)
				}
			}
			if diff := cmp.Diff(tt.names, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultsAndNormalisation(t *testing.T) {
	ins, err := Parse([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: a}\nspec: {driver: exec, command: [x], resources: {cpu: '0.5', memory: 8388608}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := Canonical(&ins[0])
	want := `{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"a"},"spec":{"command":["x"],"constraints":{},"disconnect":{"replaceAfter":"0s"},"driver":"exec","mode":"replicated","priority":50,"replicas":1,"resources":{"cpu":"500m","memory":"8Mi"},"restart":{"maxBackoff":"30s","policy":"always"}}}`
	if string(c) != want {
		t.Errorf("canonical:\n got %s\nwant %s", c, want)
	}
	// Same meaning, different spelling → same hash.
	ins2, err := Parse([]byte(`{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"a"},"spec":{"driver":"exec","command":["x"],"replicas":1,"priority":50,"restart":{"maxBackoff":"30000ms"},"resources":{"cpu":"500m","memory":"8Mi"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := Canonical(&ins2[0])
	if Hash(c) != Hash(c2) {
		t.Errorf("hash differs:\n%s\n%s", c, c2)
	}
}

// TestDisconnectReconcile: spec.disconnect.reconcile defaults to keep_replacement, the
// default is left out of the canonical encoding (so intents written before the field
// existed keep their bytes, hash and signatures), and other rules are part of it.
func TestDisconnectReconcile(t *testing.T) {
	const head = "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: a}\nspec: {driver: exec, command: [x]"
	parse := func(extra string) (Intent, []byte) {
		t.Helper()
		ins, err := Parse([]byte(head + extra + "}\n"))
		if err != nil {
			t.Fatalf("Parse(%q): %v", extra, err)
		}
		c, err := Canonical(&ins[0])
		if err != nil {
			t.Fatal(err)
		}
		return ins[0], c
	}
	unset, cUnset := parse("")
	if got := unset.Workload.Disconnect.Reconcile; got != ReconcileKeepReplacement {
		t.Errorf("defaulted reconcile = %q, want %q", got, ReconcileKeepReplacement)
	}
	const before = `"disconnect":{"replaceAfter":"0s"}`
	if !bytes.Contains(cUnset, []byte(before)) {
		t.Errorf("canonical of an intent without reconcile changed; want it to hold %s:\n%s", before, cUnset)
	}
	explicit, cExplicit := parse(", disconnect: {reconcile: keep_replacement}")
	if Hash(cExplicit) != Hash(cUnset) {
		t.Errorf("explicit default changes the hash:\n%s\n%s", cExplicit, cUnset)
	}
	if diff := cmp.Diff(unset, explicit); diff != "" {
		t.Errorf("explicit default parses differently (-unset +explicit):\n%s", diff)
	}
	for _, rule := range []string{ReconcileKeepOriginal, ReconcileBestScore} {
		in, c := parse(", disconnect: {replaceAfter: 30s, reconcile: " + rule + "}")
		if got := in.Workload.Disconnect.Reconcile; got != rule {
			t.Errorf("reconcile = %q, want %q", got, rule)
		}
		want := `"disconnect":{"reconcile":"` + rule + `","replaceAfter":"30s"}`
		if !bytes.Contains(c, []byte(want)) {
			t.Errorf("canonical does not hold %s:\n%s", want, c)
		}
		back, err := DecodeCanonical(c)
		if err != nil {
			t.Fatalf("DecodeCanonical: %v\n%s", err, c)
		}
		if diff := cmp.Diff(in, back); diff != "" {
			t.Errorf("canonical round trip (-parsed +decoded):\n%s", diff)
		}
		doc, err := Document(&in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(doc)
		if err != nil || len(again) != 1 {
			t.Fatalf("Parse(Document(x)): %v", err)
		}
		if diff := cmp.Diff(in, again[0]); diff != "" {
			t.Errorf("document round trip (-parsed +reparsed):\n%s", diff)
		}
	}
	// A default intent's canonical bytes still decode, and re-encode identically.
	back, err := DecodeCanonical(cUnset)
	if err != nil {
		t.Fatalf("DecodeCanonical(default): %v", err)
	}
	if back.Workload.Disconnect.Reconcile != ReconcileKeepReplacement {
		t.Errorf("decoded default reconcile = %q", back.Workload.Disconnect.Reconcile)
	}
	_, err = Parse([]byte(head + ", disconnect: {reconcile: default}}\n"))
	if err == nil || !strings.Contains(err.Error(), `spec.disconnect.reconcile: unknown rule "default"; want keep_replacement (the default), keep_original or best_score`) {
		t.Errorf("bad rule: err = %v, want it to name spec.disconnect.reconcile and the accepted values", err)
	}
	_, err = Parse([]byte(head + ", disconnect: {reconcile: [keep_original]}}\n"))
	if err == nil || !strings.Contains(err.Error(), "spec.disconnect.reconcile: must be a string") {
		t.Errorf("wrong type: err = %v", err)
	}
}

// TestExclusive: spec.exclusive is opt-in and left out of the canonical encoding while
// false, so intents stored before it existed keep their bytes, hash and signatures;
// set, it is part of the encoding; it refuses reconcile rules that could keep an
// original over its replacement.
func TestExclusive(t *testing.T) {
	// Canonical bytes and hash of testdata/intents/workload-exec.yaml as computed before
	// spec.exclusive existed: they are stored and signed fleet-wide and must not change.
	const (
		storedExec     = `{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"labels":{"team":"cameras"},"name":"vision"},"spec":{"command":["/bin/sleep","3600"],"constraints":{"labels":{"camera":"yes"}},"disconnect":{"replaceAfter":"0s"},"driver":"exec","env":{"LOG_LEVEL":"info"},"health":{"http":"http://127.0.0.1:8080/healthz","interval":"5s","timeout":"2s"},"mode":"replicated","priority":50,"regions":["factory-1"],"replicas":2,"resources":{"cpu":"250m","memory":"64Mi"},"restart":{"maxBackoff":"30s","policy":"always"}}}`
		storedExecHash = "5b9927ca47cbea6d99882229488023d6da47d5055e7fbe910be370ba55bb9bc8"
	)
	exec := string(readTestdata(t, "workload-exec.yaml"))
	for _, tt := range []struct{ name, body string }{
		{"unset", exec},
		{"explicit false", exec + "  exclusive: false\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ins, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if ins[0].Workload.Exclusive {
				t.Error("exclusive = true, want false")
			}
			c, err := Canonical(&ins[0])
			if err != nil {
				t.Fatal(err)
			}
			if string(c) != storedExec {
				t.Errorf("canonical bytes changed:\n got %s\nwant %s", c, storedExec)
			}
			if got := Hash(c); got != storedExecHash {
				t.Errorf("hash = %s, want %s", got, storedExecHash)
			}
			if _, err := DecodeCanonical([]byte(storedExec)); err != nil {
				t.Errorf("stored canonical bytes no longer decode: %v", err)
			}
		})
	}

	const head = "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: a}\nspec: {driver: exec, command: [x]"
	ins, err := Parse([]byte(head + ", exclusive: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	in := ins[0]
	if !in.Workload.Exclusive {
		t.Fatal("exclusive = false, want true")
	}
	c, err := Canonical(&in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(c, []byte(`"exclusive":true`)) {
		t.Errorf("canonical does not hold \"exclusive\":true:\n%s", c)
	}
	back, err := DecodeCanonical(c)
	if err != nil {
		t.Fatalf("DecodeCanonical: %v\n%s", err, c)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Errorf("canonical round trip (-parsed +decoded):\n%s", diff)
	}
	doc, err := Document(&in)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Parse(doc); err != nil || len(again) != 1 || !again[0].Workload.Exclusive {
		t.Errorf("Parse(Document(x)) = %+v, %v; want the exclusive intent back", again, err)
	}

	const refused = "spec.disconnect.reconcile: an exclusive workload always keeps the replacement (its original stopped when its lease ran out): remove reconcile or set keep_replacement"
	tests := []struct {
		name, spec string
		want       string // substring of the error; empty: accepted
	}{
		{"exclusive, no rule", ", exclusive: true", ""},
		{"exclusive, keep_replacement", ", exclusive: true, disconnect: {reconcile: keep_replacement}", ""},
		{"exclusive, keep_original", ", exclusive: true, disconnect: {reconcile: keep_original}", refused},
		{"exclusive, best_score", ", exclusive: true, disconnect: {replaceAfter: 30s, reconcile: best_score}", refused},
		{"exclusive, legacy default", ", exclusive: true, disconnect: {reconcile: default}", refused},
		{"exclusive, unknown rule", ", exclusive: true, disconnect: {reconcile: newest}", `spec.disconnect.reconcile: unknown rule "newest"`},
		{"not exclusive, keep_original", ", exclusive: false, disconnect: {reconcile: keep_original}", ""},
		{"wrong type", ", exclusive: yes", `spec.exclusive: must be true or false (got string "yes")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(head + tt.spec + "}\n"))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Parse: %v, want it accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Parse: err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// JSON bodies are checked the same way.
	_, err = Parse([]byte(`{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"driver":"exec","command":["x"],"exclusive":"true"}}`))
	if err == nil || !strings.Contains(err.Error(), "spec.exclusive: must be true or false") {
		t.Errorf("json string exclusive: err = %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	const head = "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\n"
	tests := []struct {
		name string
		body string
		want []string // substrings of Problems.Error(), all required
	}{
		{"empty body", "", []string{"no intent documents"}},
		{"only comments", "# nothing\n", []string{"no intent documents"}},
		{"empty document", head + "spec: {driver: exec, command: [x]}\n---\n---\n", []string{"document 2 is empty"}},
		{"garbage", "\x00\x01\x02", []string{"not valid YAML"}},
		{"bad json", `{"apiVersion": `, []string{"not valid JSON"}},
		{"json trailing", `{} {}`, []string{"data after the first JSON value"}},
		{"json null", `[null]`, []string{"document 1 is empty"}},
		{"scalar doc", "hello\n", []string{"must be a mapping"}},
		{"unknown kind", "apiVersion: murmur/v1\nkind: Job\nmetadata: {name: w}\nspec: {}\n", []string{`kind: unknown kind "Job"`}},
		{"missing kind", "apiVersion: murmur/v1\nmetadata: {name: w}\nspec: {}\n", []string{"kind: required"}},
		{"bad apiVersion", "apiVersion: v2\nkind: Policy\nmetadata: {name: w}\nspec: {offload: {}}\n", []string{`apiVersion: unsupported version "v2"`}},
		{"unknown top field", head + "spec: {driver: exec, command: [x]}\nstatus: {}\n", []string{"status: unknown field"}},
		{"unknown spec field", head + "spec: {driver: exec, command: [x], colour: blue}\n", []string{"spec.colour: unknown field"}},
		{"unknown nested field", head + "spec: {driver: exec, command: [x], resources: {gpu: 1}}\n", []string{"spec.resources.gpu: unknown field"}},
		{"wrong type replicas", head + "spec: {driver: exec, command: [x], replicas: two}\n", []string{`spec.replicas: must be an integer (got string "two")`}},
		{"wrong type command", head + "spec: {driver: exec, command: /bin/true}\n", []string{"spec.command: must be a list"}},
		{"negative replicas", head + "spec: {driver: exec, command: [x], replicas: -1}\n", []string{"spec.replicas: must be between 0 and 10000 (got -1)"}},
		{"huge replicas", head + "spec: {driver: exec, command: [x], replicas: 99999999999}\n", []string{"spec.replicas: integer 99999999999 is out of range"}},
		{"bad name", "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: Vision_1}\nspec: {driver: exec, command: [x]}\n", []string{`metadata.name: "Vision_1" is not a DNS label`}},
		{"long name", "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: " + strings.Repeat("a", 64) + "}\nspec: {driver: exec, command: [x]}\n", []string{"is not a DNS label"}},
		{"missing name", "apiVersion: murmur/v1\nkind: Workload\nmetadata: {}\nspec: {driver: exec, command: [x]}\n", []string{"metadata.name: required"}},
		{"duplicate names", head + "spec: {driver: exec, command: [x]}\n---\n" + head + "spec: {driver: exec, command: [y]}\n", []string{`documents[1].metadata.name: duplicate name "w"`}},
		{"duplicate key", head + "spec: {driver: exec, driver: docker, command: [x]}\n", []string{"spec.driver: duplicate key"}},
		{"global with replicas", head + "spec: {mode: global, replicas: 2, driver: exec, command: [x]}\n", []string{"spec.replicas: must not be set with mode: global"}},
		{"exec without command", head + "spec: {driver: exec}\n", []string{"spec.command: required with driver: exec"}},
		{"docker without image", head + "spec: {driver: docker}\n", []string{"spec.image: required with driver: docker"}},
		{"bad quantity", head + "spec: {driver: exec, command: [x], resources: {cpu: 1x, memory: 10m}}\n", []string{"spec.resources.cpu:", "spec.resources.memory:"}},
		{"bad duration", head + "spec: {driver: exec, command: [x], restart: {maxBackoff: soon}}\n", []string{"spec.restart.maxBackoff:"}},
		{"bad region", head + "spec: {driver: exec, command: [x], regions: [A, a, a]}\n", []string{`spec.regions[0]: "A" is not a region name`, `spec.regions[2]: region "a" is listed twice`}},
		{"bad health", head + "spec: {driver: exec, command: [x], health: {http: 'ftp://x', interval: 1s, timeout: 2s}}\n", []string{"spec.health.http:", "spec.health.timeout: must not exceed"}},
		{"policy empty", "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: p}\nspec: {}\n", []string{"spec: a Policy needs offload, admission or both"}},
		{"policy bad glob", "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: p}\nspec: {admission: {allowedImages: ['a[']}}\n", []string{"spec.admission.allowedImages[0]"}},
		{"policy bad fraction", "apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: p}\nspec: {offload: {cpuAbove: 1.5}}\n", []string{"spec.offload.cpuAbove: must be a fraction"}},
		{"merge key", head + "spec: {<<: {driver: exec}, command: [x]}\n", []string{"spec.<<: unknown field"}},
		{"json unknown field", `{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"driver":"exec","command":["x"],"foo":1}}`, []string{"spec.foo: unknown field"}},
		{"json wrong type", `{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"driver":"exec","command":["x"],"replicas":"3"}}`, []string{"spec.replicas: must be an integer"}},
		{"json float replicas", `{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"driver":"exec","command":["x"],"replicas":1.5}}`, []string{"spec.replicas: must be an integer"}},
		{"alias bomb", string(readTestdata(t, "bad/alias-bomb.yaml")), []string{"aliases expand to more than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.body)
			}
			if _, ok := err.(Problems); !ok {
				t.Errorf("error is %T, want Problems", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(readTestdata(t, "bad/many-problems.yaml"))
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	// Unknown fields are structural and reported before value checks.
	if len(ps) != 1 || ps[0].Field != "spec.colour" {
		t.Fatalf("structural problems: %v", ps)
	}
	body := strings.Replace(string(readTestdata(t, "bad/many-problems.yaml")), "  colour: blue\n", "", 1)
	_, err = Parse([]byte(body))
	ps, _ = err.(Problems)
	var fields []string
	for _, p := range ps {
		fields = append(fields, p.Field)
	}
	want := []string{"metadata.name", "spec.replicas", "spec.image", "spec.resources.cpu", "spec.resources.memory", "spec.priority", "spec.restart.policy", "spec.restart.maxBackoff"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s\n%v", diff, err)
	}
}

func TestQuantities(t *testing.T) {
	cpu := []struct {
		in   string
		want int64
		err  bool
	}{
		{"250m", 250, false}, {"1", 1000, false}, {"0.5", 500, false}, {"2.25", 2250, false},
		{"1k", 1_000_000, false}, {"0.0001", 0, true}, {"1x", 0, true}, {"-1", 0, true},
		{"", 0, true}, {"1e3", 0, true}, {"1/2", 0, true}, {"99999999999999999999", 0, true},
	}
	for _, tt := range cpu {
		got, err := ParseCPU(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	mem := []struct {
		in   string
		want int64
		err  bool
	}{
		{"64Mi", 64 << 20, false}, {"1Gi", 1 << 30, false}, {"500M", 500_000_000, false},
		{"1.5Gi", 3 << 29, false}, {"1024", 1024, false}, {"1k", 1000, false}, {"1Ki", 1024, false},
		{"10m", 0, true}, {"0.5", 0, true}, {"8Ei", 0, true}, {"7Ei", 7 << 60, false}, {"1 Gi", 0, true},
	}
	for _, tt := range mem {
		got, err := ParseMemory(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	for _, b := range []int64{1, 1000, 1024, 1536 << 20, 500_000_000, 7 << 60, 123456789} {
		s := FormatMemory(b)
		if got, err := ParseMemory(s); err != nil || got != b {
			t.Errorf("ParseMemory(FormatMemory(%d)=%q) = %d, %v", b, s, got, err)
		}
	}
	for _, m := range []int64{1, 250, 1000, 2500, 1_000_000} {
		s := FormatCPU(m)
		if got, err := ParseCPU(s); err != nil || got != m {
			t.Errorf("ParseCPU(FormatCPU(%d)=%q) = %d, %v", m, s, got, err)
		}
	}
}

func TestVersions(t *testing.T) {
	t0 := time.UnixMilli(1732291200123)
	v1 := NextVersion(Version{}, t0, "node-a")
	if v1 != (Version{Wall: 1732291200123, Node: "node-a"}) {
		t.Fatalf("v1 = %v", v1)
	}
	// Same millisecond, or a clock that went backwards: counter moves on.
	v2 := NextVersion(v1, t0.Add(-time.Second), "node-b")
	if v2 != (Version{Wall: 1732291200123, Counter: 1, Node: "node-b"}) || !v1.Less(v2) {
		t.Fatalf("v2 = %v", v2)
	}
	v3 := NextVersion(v2, t0.Add(time.Millisecond), "node-a")
	if !v2.Less(v3) || v3.Counter != 0 {
		t.Fatalf("v3 = %v", v3)
	}
	if got := NextVersion(Version{Wall: 5, Counter: ^uint32(0)}, time.UnixMilli(1), "n"); got != (Version{Wall: 6, Node: "n"}) {
		t.Errorf("counter overflow: %v", got)
	}
	// Node name breaks ties.
	a, b := Version{Wall: 1, Node: "a"}, Version{Wall: 1, Node: "b"}
	if Compare(a, b) != -1 || Compare(b, a) != 1 || Compare(a, a) != 0 {
		t.Error("node tie-break")
	}
	if Observe(b, a) != b || Observe(a, b) != b {
		t.Error("Observe")
	}
	s := v2.String()
	if s != "1732291200123.1@node-b" {
		t.Errorf("String = %q", s)
	}
	if p, err := ParseVersion(s); err != nil || p != v2 {
		t.Errorf("ParseVersion(%q) = %v, %v", s, p, err)
	}
	for _, bad := range []string{"", "1@", "1.2", "x.1@n", "1.x@n", "-1.0@n", "1.99999999999@n"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func TestAdmit(t *testing.T) {
	policies, err := Parse([]byte(`apiVersion: murmur/v1
kind: Policy
metadata: {name: site}
spec:
  regions: [factory-1]
  admission: {allowedDrivers: [docker], allowedImages: ["registry.local/*"], maxMemory: 1Gi, maxCPU: "1"}
---
apiVersion: murmur/v1
kind: Policy
metadata: {name: elsewhere}
spec:
  regions: [depot]
  admission: {allowedDrivers: [exec]}
`))
	if err != nil {
		t.Fatal(err)
	}
	ps := []*Intent{&policies[0], &policies[1]}
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{"ok", "{regions: [factory-1], driver: docker, image: registry.local/vision:1.4, resources: {memory: 1Gi}}", nil},
		{"bad image", "{regions: [factory-1], driver: docker, image: docker.io/evil:1}", []string{"spec.image"}},
		{"nested path not matched", "{regions: [factory-1], driver: docker, image: registry.local/a/b:1}", []string{"spec.image"}},
		{"too big", "{regions: [factory-1], driver: docker, image: registry.local/v:1, resources: {cpu: 1500m, memory: 2Gi}}", []string{"spec.resources.cpu", "spec.resources.memory"}},
		{"all regions hit both", "{driver: exec, command: [x]}", []string{"spec.driver"}},
		{"other region", "{regions: [depot], driver: exec, command: [x], resources: {memory: 8Gi}}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, err := Parse([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: " + tt.spec + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range Admit(&ins[0], ps) {
				got = append(got, p.Field)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignatures(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	pub, priv, err := GenerateSigningKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	ins, err := Parse(readTestdata(t, "workload-exec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := ins[0]
	if err := SignIntent(&in, Version{Wall: 1732291200123, Node: SignerNode(KeyID(pub))}, priv); err != nil {
		t.Fatal(err)
	}
	// The signed document goes through Parse with its signature.
	doc, _ := Document(&in)
	back, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in.Signature, back[0].Signature); diff != "" {
		t.Fatal(diff)
	}
	canonical, _ := Canonical(&in)
	body := SignedMessage(canonical, Version{Wall: 1732291200123, Node: SignerNode(KeyID(pub))})
	trusted := NewTrustedKeys(pub)
	tampered := bytes.Replace(body, []byte("3600"), []byte("3601"), 1)
	tests := []struct {
		name string
		msg  []byte
		sig  *Signature
		keys TrustedKeys
		want error
	}{
		{"good", body, in.Signature, trusted, nil},
		{"no keys configured", body, nil, TrustedKeys{}, nil},
		{"unsigned", body, nil, trusted, ErrUnsigned},
		{"tampered", tampered, in.Signature, trusted, ErrBadSignature},
		{"wrong key", body, Sign(otherPriv, body), trusted, ErrUntrustedKey},
		{"forged with trusted key id", body, &Signature{KeyID: KeyID(pub), Value: Sign(otherPriv, body).Value}, trusted, ErrBadSignature},
		{"garbage value", body, &Signature{KeyID: KeyID(pub), Value: "!!"}, trusted, ErrBadSignature},
		{"two trusted keys", body, Sign(otherPriv, body), NewTrustedKeys(pub, otherPub), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if len(tt.keys) > 0 {
				err = tt.keys.Verify(tt.msg, tt.sig)
			}
			if tt.want == nil && err != nil || tt.want != nil && !errorsIs(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	// Key files round-trip in both formats.
	pemPriv, _ := MarshalPrivateKey(priv)
	pemPub, _ := MarshalPublicKey(pub)
	if k, err := ParsePrivateKey(pemPriv); err != nil || !k.Equal(priv) {
		t.Errorf("PEM private: %v", err)
	}
	if k, err := ParsePublicKey(pemPub); err != nil || !k.Equal(pub) {
		t.Errorf("PEM public: %v", err)
	}
	if k, err := ParsePrivateKey([]byte(b64(seed) + "\n")); err != nil || !k.Equal(priv) {
		t.Errorf("base64 seed: %v", err)
	}
	if k, err := ParsePublicKey([]byte(b64(pub))); err != nil || !k.Equal(pub) {
		t.Errorf("base64 public: %v", err)
	}
	for _, bad := range [][]byte{[]byte("nope"), []byte(b64([]byte("short"))), pemPub} {
		if _, err := ParsePrivateKey(bad); err == nil {
			t.Errorf("ParsePrivateKey(%q) accepted", bad)
		}
	}
	if _, err := ParsePublicKey(pemPriv); err == nil {
		t.Error("ParsePublicKey accepted a private key")
	}
	_ = ed25519.PublicKeySize
}

// TestSignedVersions: the signature covers the version the signer chose, for intents
// and for deletes; changing the version (or presenting an unversioned signature of an
// earlier release) breaks it.
func TestSignedVersions(t *testing.T) {
	pub, priv, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{4}, 32)))
	trusted := NewTrustedKeys(pub)
	signer := SignerNode(KeyID(pub))
	v := Version{Wall: 1732291200123, Counter: 2, Node: signer}
	ins, err := Parse(readTestdata(t, "workload-exec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := ins[0]
	if err := SignIntent(&in, v, priv); err != nil {
		t.Fatal(err)
	}
	if in.Signature.Version != "1732291200123.2@key:"+KeyID(pub) {
		t.Errorf("signature.version = %q", in.Signature.Version)
	}
	canonical, _ := Canonical(&in)
	if got, err := trusted.VerifyVersioned(canonical, in.Signature); err != nil || got != v {
		t.Fatalf("VerifyVersioned = %v, %v; want %v", got, err, v)
	}
	// The signed document round-trips through Parse with its version, and the canonical
	// encoding (hash, stored body) does not hold the version.
	doc, _ := Document(&in)
	back, err := Parse(doc)
	if err != nil || *back[0].Signature != *in.Signature {
		t.Fatalf("Parse(Document) = %+v, %v", back[0].Signature, err)
	}
	if bytes.Contains(canonical, []byte("1732291200123")) {
		t.Errorf("the canonical encoding holds the version: %s", canonical)
	}
	// What is signed holds the version; every change of it breaks the signature.
	if msg := SignedMessage(canonical, v); !bytes.Contains(msg, []byte(`"version":"1732291200123.2@key:`)) || !bytes.HasPrefix(msg, []byte(`{"intent":{"apiVersion"`)) {
		t.Errorf("SignedMessage = %s", msg)
	}
	for _, other := range []Version{
		{Wall: v.Wall + 1, Counter: v.Counter, Node: v.Node},
		{Wall: v.Wall, Counter: v.Counter + 1, Node: v.Node},
		{Wall: v.Wall, Counter: v.Counter, Node: "node-a"},
		{Wall: v.Wall - 1, Counter: v.Counter, Node: v.Node},
	} {
		sig := *in.Signature
		sig.Version = other.String()
		if _, err := trusted.VerifyVersioned(canonical, &sig); !errorsIs(err, ErrBadSignature) {
			t.Errorf("signature moved to version %s: %v, want ErrBadSignature", other, err)
		}
	}
	unversioned := *in.Signature
	unversioned.Version = ""
	if _, err := trusted.VerifyVersioned(canonical, &unversioned); !errorsIs(err, ErrUnversioned) {
		t.Errorf("signature without version: %v, want ErrUnversioned", err)
	}
	// A signature of an earlier release (over the canonical encoding alone) is refused,
	// with or without a version next to it.
	legacy := Sign(priv, canonical)
	if _, err := trusted.VerifyVersioned(canonical, legacy); !errorsIs(err, ErrUnversioned) {
		t.Errorf("earlier release's signature: %v, want ErrUnversioned", err)
	}
	legacy.Version = v.String()
	if _, err := trusted.VerifyVersioned(canonical, legacy); !errorsIs(err, ErrBadSignature) {
		t.Errorf("earlier release's signature with a version: %v, want ErrBadSignature", err)
	}

	// Deletes: the signed bytes hold the name and the version.
	tomb, err := SignTombstone("vision", v, priv)
	if err != nil {
		t.Fatal(err)
	}
	msg := SignedMessage(TombstoneBytes("vision"), v)
	for _, want := range []string{`"name":"vision"`, `"deleted":true`, `"version":"` + v.String() + `"`} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Errorf("signed tombstone bytes %s lack %s", msg, want)
		}
	}
	rec := Record{Name: "vision", Version: v, Deleted: true, Signature: tomb}
	if !bytes.Equal(rec.SignedBytes(), msg) {
		t.Errorf("Record.SignedBytes = %s, want %s", rec.SignedBytes(), msg)
	}
	if got, err := trusted.VerifyVersioned(TombstoneBytes("vision"), tomb); err != nil || got != v {
		t.Errorf("signed delete: %v, %v", got, err)
	}
	if _, err := trusted.VerifyVersioned(TombstoneBytes("other"), tomb); !errorsIs(err, ErrBadSignature) {
		t.Errorf("delete signature used for another name: %v", err)
	}
	moved := *tomb
	moved.Version = Version{Wall: v.Wall + 1, Node: v.Node}.String()
	if _, err := trusted.VerifyVersioned(TombstoneBytes("vision"), &moved); !errorsIs(err, ErrBadSignature) {
		t.Errorf("delete signature moved to another version: %v", err)
	}
	if _, err := trusted.VerifyVersioned(canonical, tomb); !errorsIs(err, ErrBadSignature) {
		t.Errorf("delete signature used for the intent: %v", err)
	}

	// Versions a signer may not choose.
	for _, bad := range []Version{{Wall: 0, Node: signer}, {Wall: 1, Node: ""}, {Wall: 1, Node: "a b"}, {Wall: 1, Node: "key:"}, {Wall: 1, Node: strings.Repeat("a", 129)}} {
		if err := SignIntent(&in, bad, priv); err == nil {
			t.Errorf("SignIntent at %q accepted", bad)
		}
		if _, err := SignTombstone("vision", bad, priv); err == nil {
			t.Errorf("SignTombstone at %q accepted", bad)
		}
	}
	// Documents: signature.version is checked at parse time.
	for _, tt := range []struct{ version, msg string }{
		{"later", "want wall.counter@node"},
		{"01.0@key:ab", "write it as 1.0@key:ab"},
		{"0.0@key:ab", "must be positive"},
		{"1.0@key ab", "letters, digits"},
	} {
		d := strings.Replace(string(doc), `"version":"`+v.String()+`"`, `"version":"`+tt.version+`"`, 1)
		_, err := Parse([]byte(d))
		var ps Problems
		if !errorsAs(err, &ps) || len(ps) != 1 || ps[0].Field != "signature.version" || !strings.Contains(ps[0].Message, tt.msg) {
			t.Errorf("signature.version %q: %v; want one problem at signature.version containing %q", tt.version, err, tt.msg)
		}
	}

	// The signer's next version: above what the node holds, the signer's clock if later.
	now := time.UnixMilli(1732291200123)
	for _, tt := range []struct {
		held, want Version
	}{
		{Version{}, Version{Wall: now.UnixMilli(), Node: signer}},
		{Version{Wall: now.UnixMilli() - 5, Counter: 9, Node: "node-a"}, Version{Wall: now.UnixMilli(), Node: signer}},
		{Version{Wall: now.UnixMilli() + 5000, Counter: 3, Node: "node-z"}, Version{Wall: now.UnixMilli() + 5000, Counter: 4, Node: signer}},
		{Version{Wall: now.UnixMilli(), Counter: 0, Node: signer}, Version{Wall: now.UnixMilli(), Counter: 1, Node: signer}},
	} {
		got := NextSignedVersion(tt.held, now, KeyID(pub))
		if got != tt.want || !tt.held.Less(got) {
			t.Errorf("NextSignedVersion(%v) = %v, want %v", tt.held, got, tt.want)
		}
	}
}

func TestCheckRecord(t *testing.T) {
	_, priv, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	trusted := NewTrustedKeys(priv.Public().(ed25519.PublicKey))
	ins, _ := Parse(readTestdata(t, "policy.yaml"))
	body, _ := Canonical(&ins[0])
	now := time.UnixMilli(1_000_000_000)
	v := Version{Wall: 999_999_000, Node: "key:ops"}
	signed := ins[0]
	if err := SignIntent(&signed, v, priv); err != nil {
		t.Fatal(err)
	}
	tombSig, err := SignTombstone("site-rules", v, priv)
	if err != nil {
		t.Fatal(err)
	}
	good := Record{Name: "site-rules", Kind: KindPolicy, Version: v, Hash: Hash(body), Body: body, Signature: signed.Signature}
	tomb := Record{Name: "site-rules", Version: v, Deleted: true, Hash: Hash(TombstoneBytes("site-rules")), Signature: tombSig}
	mod := func(r Record, f func(*Record)) Record {
		if r.Signature != nil {
			sig := *r.Signature
			r.Signature = &sig
		}
		f(&r)
		return r
	}
	// resign signs r again at its (changed) version, as a trusted signer would.
	resign := func(r *Record) {
		r.Signature = Sign(priv, r.SignedBytes())
		r.Signature.Version = r.Version.String()
	}
	later := func(r *Record) { r.Version.Wall += 1000 }
	tests := []struct {
		name string
		r    Record
		keys TrustedKeys
		want error
	}{
		{"good", good, trusted, nil},
		{"tombstone", tomb, trusted, nil},
		{"unsigned tombstone", mod(tomb, func(r *Record) { r.Signature = nil }), trusted, ErrUnsigned},
		{"unsigned without keys", mod(good, func(r *Record) { r.Signature = nil }), nil, nil},
		{"bad hash", mod(good, func(r *Record) { r.Hash = "00" }), nil, ErrMalformed},
		{"name mismatch", mod(good, func(r *Record) { r.Name = "other" }), nil, ErrMalformed},
		{"kind mismatch", mod(good, func(r *Record) { r.Kind = KindWorkload }), nil, ErrMalformed},
		{"not canonical", mod(good, func(r *Record) { r.Body = IndentJSON(body); r.Hash = Hash(r.Body) }), nil, ErrMalformed},
		{"future", mod(good, func(r *Record) { r.Version.Wall = now.UnixMilli() + 61_000; r.Signature = nil }), nil, ErrFuture},
		{"signed a few minutes ahead", mod(good, func(r *Record) { r.Version.Wall = now.UnixMilli() + 300_000; resign(r) }), trusted, nil},
		{"signed a few minutes ahead, node without keys", mod(good, func(r *Record) { r.Version.Wall = now.UnixMilli() + 300_000; resign(r) }), nil, ErrFuture},
		{"signed beyond the signed skew", mod(good, func(r *Record) { r.Version.Wall = now.UnixMilli() + 25*3600_000; resign(r) }), trusted, ErrFuture},
		{"relay changed the version", mod(good, later), trusted, ErrBadSignature},
		{"relay changed the version, node without keys", mod(good, later), nil, ErrBadSignature},
		{"relay changed both versions", mod(good, func(r *Record) { later(r); r.Signature.Version = r.Version.String() }), trusted, ErrBadSignature},
		{"relay changed a tombstone's version", mod(tomb, later), trusted, ErrBadSignature},
		{"relay changed a tombstone's versions", mod(tomb, func(r *Record) { later(r); r.Signature.Version = r.Version.String() }), trusted, ErrBadSignature},
		{"tombstone signature on the body", mod(good, func(r *Record) { r.Signature = tombSig }), trusted, ErrBadSignature},
		{"unversioned signature (earlier release)", mod(good, func(r *Record) { r.Signature = Sign(priv, body) }), trusted, ErrUnversioned},
		{"unversioned tombstone signature", mod(tomb, func(r *Record) { r.Signature = Sign(priv, TombstoneBytes("site-rules")) }), trusted, ErrUnversioned},
		{"earlier release's signature given a version", mod(good, func(r *Record) { r.Signature = Sign(priv, body); r.Signature.Version = r.Version.String() }), trusted, ErrBadSignature},
		{"no version", mod(good, func(r *Record) { r.Version = Version{} }), nil, ErrMalformed},
		{"tombstone with body", mod(tomb, func(r *Record) { r.Body = body }), nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			_, err := CheckRecord(&r, tt.keys, now, time.Minute, 24*time.Hour)
			if tt.want == nil && err != nil || tt.want != nil && !errorsIs(err, tt.want) {
				t.Errorf("CheckRecord = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestYAMLRender(t *testing.T) {
	ins, _ := Parse(readTestdata(t, "workload-exec.yaml"))
	c, _ := Canonical(&ins[0])
	y, err := YAML(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(y)
	if err != nil {
		t.Fatalf("Parse(YAML(x)): %v\n%s", err, y)
	}
	c2, _ := Canonical(&back[0])
	if !bytes.Equal(c, c2) {
		t.Errorf("YAML round trip:\n%s\n%s", c, c2)
	}
}

// RunHash changes with what an instance runs and with nothing else.
func TestRunHash(t *testing.T) {
	base := func() *WorkloadSpec {
		n := 2
		return &WorkloadSpec{Mode: ModeReplicated, Replicas: &n, Driver: "exec", Command: []string{"/bin/x", "-v"},
			Env: map[string]string{"A": "1", "B": "2", "C": "3"}, Resources: Resources{CPU: "100m", Memory: "64Mi"}}
	}
	h := base().RunHash()
	if len(h) != 16 {
		t.Fatalf("RunHash %q: want 16 hex digits", h)
	}
	same := map[string]func(w *WorkloadSpec){
		"replicas":    func(w *WorkloadSpec) { n := 5; w.Replicas = &n },
		"regions":     func(w *WorkloadSpec) { w.Regions = []string{"r1"} },
		"priority":    func(w *WorkloadSpec) { p := 9; w.Priority = &p },
		"constraints": func(w *WorkloadSpec) { w.Constraints.Labels = map[string]string{"k": "v"} },
		"disconnect":  func(w *WorkloadSpec) { w.Disconnect.ReplaceAfter = "1m" },
		"env order":   func(w *WorkloadSpec) { w.Env = map[string]string{"C": "3", "A": "1", "B": "2"} },
	}
	for name, change := range same {
		w := base()
		change(w)
		if got := w.RunHash(); got != h {
			t.Errorf("%s changed the run hash (%s → %s); the instances run the same thing", name, h, got)
		}
	}
	differs := map[string]func(w *WorkloadSpec){
		"command":   func(w *WorkloadSpec) { w.Command[1] = "-q" },
		"image":     func(w *WorkloadSpec) { w.Image = "x:1" },
		"env":       func(w *WorkloadSpec) { w.Env["A"] = "9" },
		"driver":    func(w *WorkloadSpec) { w.Driver = "docker" },
		"resources": func(w *WorkloadSpec) { w.Resources.Memory = "128Mi" },
		"restart":   func(w *WorkloadSpec) { w.Restart.Policy = "never" },
		"health":    func(w *WorkloadSpec) { w.Health = &Health{HTTP: "/ok"} },
		"exclusive": func(w *WorkloadSpec) { w.Exclusive = true },
	}
	for name, change := range differs {
		w := base()
		change(w)
		if got := w.RunHash(); got == h {
			t.Errorf("%s did not change the run hash %s", name, h)
		}
	}
}
