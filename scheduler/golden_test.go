package scheduler

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite scheduler/testdata/*.golden from the current planner")

// duration reads "30s"-style strings in golden inputs.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = duration(v)
	return nil
}

// goldenWorkload and goldenInput shadow the time.Duration fields with readable strings.
type goldenWorkload struct {
	Workload
	ReplaceAfter duration `json:"replaceAfter"`
}

type goldenOffload struct {
	OffloadPolicy
	SustainedFor duration `json:"sustainedFor"`
	Cooldown     duration `json:"cooldown"`
}

type goldenInput struct {
	Input
	Workloads []goldenWorkload `json:"workloads"`
	Offload   goldenOffload    `json:"offload"`
}

func loadGolden(t *testing.T, path string) Input {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Comment string      `json:"comment"`
		Input   goldenInput `json:"input"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	in := doc.Input.Input
	in.Workloads = nil
	for _, gw := range doc.Input.Workloads {
		w := gw.Workload
		w.ReplaceAfter = time.Duration(gw.ReplaceAfter)
		in.Workloads = append(in.Workloads, w)
	}
	in.Offload = doc.Input.Offload.OffloadPolicy
	in.Offload.SustainedFor = time.Duration(doc.Input.Offload.SustainedFor)
	in.Offload.Cooldown = time.Duration(doc.Input.Offload.Cooldown)
	if err := in.Validate(); err != nil {
		t.Fatalf("%s: invalid input: %v", path, err)
	}
	return in
}

// TestGolden plans every scenario in testdata/*.json and compares the rendered plan,
// and the plan after applying it once, with testdata/<name>.golden.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden scenarios in testdata")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			in := loadGolden(t, f)
			r := Plan(in)
			checkPlan(t, in, r)
			next := settle(in, r)
			r2 := Plan(next)
			checkPlan(t, next, r2)
			got := render(r) + "--- next plan after applying it ---\n" + render(r2)
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./scheduler -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (rerun with -update after checking):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}
