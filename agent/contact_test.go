package agent

import (
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/gossip"
)

func TestContactSource(t *testing.T) {
	members := []gossip.Member{
		{Name: "me", Status: gossip.StatusAlive},
		{Name: "boss", Status: gossip.StatusAlive},
		{Name: "shaky", Status: gossip.StatusSuspect},
		{Name: "gone", Status: gossip.StatusDead},
	}
	held := coordinator.Held{From: "boss", Term: 3, Generation: 7, Instances: 2}
	cases := []struct {
		name, coordinator string
		held              coordinator.Held
		want              string
	}{
		{"coordinator alive", "boss", held, SourceCoordinator},
		{"coordinator suspect still counts", "shaky", held, SourceCoordinator},
		{"this node coordinates", "me", held, SourceCoordinator},
		{"coordinator dead", "gone", held, SourceLastKnown},
		{"coordinator unknown to the view", "stranger", held, SourceLastKnown},
		{"no coordinator", "", held, SourceLastKnown},
		{"no coordinator, nothing held", "", coordinator.Held{}, SourceNone},
		{"an empty assignment from a coordinator is still held", "", coordinator.Held{From: "boss", Term: 1}, SourceLastKnown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := contactSource("me", tc.coordinator, members, tc.held)
			if got != tc.want {
				t.Errorf("source %q (reason %q), want %q", got, reason, tc.want)
			}
			if got != SourceCoordinator && reason == "" {
				t.Error("no reason given for running without a coordinator")
			}
		})
	}
}

func TestContactTrackerKeepsSinceUntilTheSourceChanges(t *testing.T) {
	var tr contactTracker
	t0 := time.Unix(1000, 0)
	if got := tr.observe(t0, SourceLastKnown); !got.Equal(t0) {
		t.Fatalf("first observation since %v, want %v", got, t0)
	}
	if got := tr.observe(t0.Add(5*time.Second), SourceLastKnown); !got.Equal(t0) {
		t.Fatalf("same source: since %v, want it kept at %v", got, t0)
	}
	t1 := t0.Add(9 * time.Second)
	if got := tr.observe(t1, SourceCoordinator); !got.Equal(t1) || tr.current() != SourceCoordinator {
		t.Fatalf("after a change: since %v source %q, want %v %q", got, tr.current(), t1, SourceCoordinator)
	}
}
