package intents

import (
	"context"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip"
)

// viewOnly is a Gossip whose fleet view the test sets; it sends nothing.
type viewOnly struct{ members []gossip.Member }

func (v *viewOnly) Broadcast(gossip.MessageKind, string, []byte) error     { return nil }
func (v *viewOnly) SendReliable(string, gossip.MessageKind, []byte) error  { return nil }
func (v *viewOnly) ReplyReliable(string, gossip.MessageKind, []byte) error { return nil }
func (v *viewOnly) Members() []gossip.Member                               { return v.members }
func (v *viewOnly) LocalName() string                                      { return "me" }

// A suspect member is not dead: ?wait=fleet must keep waiting for it, and name it when
// the wait times out. Only dead and left members are left out.
func TestWaitFleetCountsSuspectMembers(t *testing.T) {
	view := &viewOnly{members: []gossip.Member{
		{Name: "me", Status: gossip.StatusAlive, Local: true},
		{Name: "busy", Status: gossip.StatusSuspect},
		{Name: "gone", Status: gossip.StatusDead},
		{Name: "quit", Status: gossip.StatusLeft},
	}}
	svc, err := New(Config{DataDir: t.TempDir(), NodeName: "me", Gossip: view, Logger: quietLogger(), EagerPushBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Apply([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: [/bin/true]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	missing := svc.WaitFleet(ctx, res)
	if len(missing) != 1 || missing[0] != "busy" {
		t.Errorf("WaitFleet missing = %v, want [busy]: a suspect member must be waited for, dead and left ones not", missing)
	}
	svc.noteAck("w", "busy", res[0].Version)
	if missing := svc.WaitFleet(context.Background(), res); len(missing) != 0 {
		t.Errorf("after busy acked, WaitFleet missing = %v, want none", missing)
	}
}
