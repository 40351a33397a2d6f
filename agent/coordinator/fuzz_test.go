package coordinator

import (
	"testing"
	"time"

	"github.com/murmur-edge/murmur/policy"
)

// FuzzDecode: the assignment channel carries peers' bytes; Decode must never panic,
// and what it accepts must encode and decode to the same message kind.
func FuzzDecode(f *testing.F) {
	set := []Assigned{{ID: "web-4-0", Intent: "web", Version: policy.Version{Wall: 1, Node: "a"}, Generation: 4}}
	for _, m := range []any{
		Assignment{Region: "r", Cluster: "c", Term: 2, Generation: 4, Node: "n1", Digest: Digest(set), Instances: set, CommittedAt: 1},
		Assignment{Region: "r", Node: "n1", Digest: Digest(nil)},
		Report{Seq: 9, Node: "n1", Region: "r", Digest: "x", Instances: []InstanceReport{{ID: "web-4-0", Intent: "web", Generation: 4, State: "running", Since: time.Unix(5, 0)}}},
		Report{Seq: 10, Node: "n1", Region: "r", Instances: []InstanceReport{{ID: "web-4-0", Intent: "web", Generation: 4, State: "running", MilliCPU: 600, MemoryBytes: 32 << 20}}},
		Query{ID: 3, Intent: "web"},
		Answer{ID: 3, View: View{Region: "r", Workloads: []Workload{{Intent: "web", Instance: "web-4-0"}}}},
		LeaseRequest{Seq: 4, Node: "n1", Region: "r", LeaseMS: 4000},
		LeaseGrant{Seq: 4, Term: 2, Generation: 9, Digest: Digest(set)},
	} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{msgAssignment, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{msgReport, 0x91})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("decode of re-encoded %T: %v", m, err)
		}
		if again[0] != b[0] {
			t.Fatalf("kind changed: %d → %d (%T)", b[0], again[0], m2)
		}
	})
}

func TestDecodeRefuses(t *testing.T) {
	set := []Assigned{{ID: "a", Intent: "w", Generation: 1}}
	bad := map[string]any{
		"wrong digest":  Assignment{Region: "r", Node: "n", Digest: "nope", Instances: set},
		"no node":       Assignment{Region: "r", Digest: Digest(set), Instances: set},
		"duplicate id":  Assignment{Region: "r", Node: "n", Digest: Digest(append(set, set...)), Instances: append(set, set...)},
		"report nobody": Report{Region: "r"},
		"negative cpu":  Report{Node: "n", Instances: []InstanceReport{{ID: "a", MilliCPU: -1}}},
		"negative mem":  Report{Node: "n", Instances: []InstanceReport{{ID: "a", MemoryBytes: -5}}},
		"huge cpu":      Report{Node: "n", Instances: []InstanceReport{{ID: "a", MilliCPU: MaxUsageMilliCPU + 1}}},
		"lease nobody":  LeaseRequest{LeaseMS: 4000},
		"lease zero":    LeaseRequest{Node: "n", LeaseMS: 0},
		"lease huge":    LeaseRequest{Node: "n", LeaseMS: int64(MaxLease/time.Millisecond) + 1},
		"lease tiny":    LeaseRequest{Node: "n", LeaseMS: 10},
	}
	for name, m := range bad {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode accepted %+v", name, m)
		}
	}
	// Usage is optional on the wire: a report without it (an older node) decodes with
	// zero usage, and one with it round-trips.
	in := Report{Node: "n", Instances: []InstanceReport{{ID: "a", State: "running", MilliCPU: 250, MemoryBytes: 1 << 20}, {ID: "b"}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode of a report with usage: %v", err)
	}
	if got := m.(Report).Instances; got[0].MilliCPU != 250 || got[0].MemoryBytes != 1<<20 || got[1].MilliCPU != 0 {
		t.Errorf("usage after a round trip = %+v, want 250m/1Mi and zero", got)
	}
	for _, b := range [][]byte{nil, {1}, {99, 0x80}, append([]byte{1}, make([]byte, MaxMessageBytes)...)} {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(%d bytes, type %v) accepted", len(b), b)
		}
	}
}
