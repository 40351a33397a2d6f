package agenttest

import "testing"

func TestSoleHost(t *testing.T) {
	for _, tt := range []struct {
		procs map[string]int
		want  string
	}{
		{nil, ""},
		{map[string]int{"a": 1}, "a"},
		{map[string]int{"a": 0, "b": 1}, "b"},
		{map[string]int{"a": 2}, ""},
		{map[string]int{"a": 1, "b": 1}, ""},
	} {
		if got := SoleHost(tt.procs); got != tt.want {
			t.Errorf("SoleHost(%v) = %q, want %q", tt.procs, got, tt.want)
		}
	}
}
