package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestDecodeRegion(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    regionView
		wantErr string
	}{
		{"leader known", `{"regions":[{"name":"default","coordinator":"n03","voters":["n00","n03","n04"],"nodes":5,"term":2,"last_index":4,"headless":false}]}`,
			regionView{Name: "default", Coordinator: "n03", Voters: []string{"n00", "n03", "n04"}, Nodes: 5, Term: 2}, ""},
		{"no leader yet", `{"regions":[{"name":"default","coordinator":"","voters":[],"nodes":5}]}`,
			regionView{Name: "default", Voters: []string{}, Nodes: 5}, ""},
		{"picks the named region", `{"regions":[{"name":"a","coordinator":"x"},{"name":"default","coordinator":"y"}]}`,
			regionView{Name: "default", Coordinator: "y"}, ""},
		{"region missing", `{"regions":[{"name":"eu"}]}`, regionView{}, `no region "default"`},
		{"empty list", `{"regions":[]}`, regionView{}, `no region "default"`},
		{"not json", `<html>`, regionView{}, "decode /v1/regions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRegion([]byte(tt.body), "default")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAgreedCoordinator(t *testing.T) {
	v := func(c string, voters int) regionView {
		return regionView{Coordinator: c, Voters: make([]string, voters)}
	}
	tests := []struct {
		name       string
		views      []regionView
		exclude    string
		wantVoters int
		want       string
		ok         bool
	}{
		{"no views", nil, "", 0, "", false},
		{"all agree", []regionView{v("n1", 3), v("n1", 3), v("n1", 3)}, "", 3, "n1", true},
		{"one disagrees", []regionView{v("n1", 3), v("n2", 3), v("n1", 3)}, "", 3, "", false},
		{"one has none", []regionView{v("n1", 3), v("", 0)}, "", 0, "", false},
		{"all none", []regionView{v("", 0), v("", 0)}, "", 0, "", false},
		{"excluded old coordinator", []regionView{v("n1", 3), v("n1", 3)}, "n1", 0, "", false},
		{"new one agreed", []regionView{v("n2", 3), v("n2", 3)}, "n1", 0, "n2", true},
		{"too few voters", []regionView{v("n1", 3), v("n1", 2)}, "", 3, "", false},
		{"voters ignored when 0", []regionView{v("n1", 3), v("n1", 2)}, "", 0, "n1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := agreedCoordinator(tt.views, tt.exclude, tt.wantVoters)
			if got != tt.want || ok != tt.ok {
				t.Errorf("agreedCoordinator = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0", 0, false},
		{"512", 512, false},
		{"64Ki", 64 << 10, false},
		{" 1Mi ", 1 << 20, false},
		{"", 0, true},
		{"-1", 0, true},
		{"64KB", 0, true},
		{"Ki", 0, true},
		{"2048Mi", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestIntentYAML checks the body is the YAML document the agent expects, with the
// padding in spec.env.PAD.
func TestIntentYAML(t *testing.T) {
	for _, pad := range []int{0, 1, 64 << 10} {
		body := intentYAML("bench-7", pad)
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Replicas int               `yaml:"replicas"`
				Driver   string            `yaml:"driver"`
				Command  []string          `yaml:"command"`
				Env      map[string]string `yaml:"env"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("pad %d: %v", pad, err)
		}
		if doc.APIVersion != "murmur/v1" || doc.Kind != "Workload" || doc.Metadata.Name != "bench-7" ||
			doc.Spec.Replicas != 1 || doc.Spec.Driver != "exec" || len(doc.Spec.Command) != 2 {
			t.Errorf("pad %d: unexpected document %+v", pad, doc)
		}
		if len(doc.Spec.Env["PAD"]) != pad {
			t.Errorf("pad %d: PAD has %d bytes", pad, len(doc.Spec.Env["PAD"]))
		}
	}
}

func TestAppliedAndStoredVersion(t *testing.T) {
	v, err := appliedVersion([]byte(`{"intents":[{"name":"other","version":"9"},{"name":"bench-1","kind":"Workload","version":"3-abc","result":"created"}]}`), "bench-1")
	if err != nil || v != "3-abc" {
		t.Errorf("appliedVersion = %q, %v", v, err)
	}
	for _, body := range []string{`{"intents":[]}`, `{"intents":[{"name":"bench-1"}]}`, `nope`} {
		if _, err := appliedVersion([]byte(body), "bench-1"); err == nil {
			t.Errorf("appliedVersion(%s): want error", body)
		}
	}
	v, err = storedVersion([]byte(`{"name":"bench-1","version":"3-abc","intent":{}}`))
	if err != nil || v != "3-abc" {
		t.Errorf("storedVersion = %q, %v", v, err)
	}
	if _, err := storedVersion([]byte(`[`)); err == nil {
		t.Error("storedVersion of bad JSON: want error")
	}
}

func TestMainCoordinator(t *testing.T) {
	tests := []struct {
		name     string
		in       map[string]int
		want     string
		n, total int
	}{
		{"none", map[string]int{}, "", 0, 0},
		{"only empty", map[string]int{"": 5}, "", 0, 5},
		{"most samples wins", map[string]int{"": 2, "n1": 3, "n2": 590}, "n2", 590, 595},
		{"tie takes smaller name", map[string]int{"n3": 4, "n1": 4}, "n1", 4, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, n, total := mainCoordinator(tt.in)
			if c != tt.want || n != tt.n || total != tt.total {
				t.Errorf("mainCoordinator = %q %d %d; want %q %d %d", c, n, total, tt.want, tt.n, tt.total)
			}
		})
	}
}

func FuzzDecodeRegion(f *testing.F) {
	f.Add([]byte(`{"regions":[{"name":"default","coordinator":"n03","voters":["n00"],"term":2}]}`))
	f.Add([]byte(`{"regions":null}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRegion(b, "default")
		if err == nil && r.Name != "default" {
			t.Fatalf("decoded region %q, asked for default", r.Name)
		}
		_, _ = appliedVersion(b, "x")
		_, _ = storedVersion(b)
	})
}
