package region

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func voterOther(t *testing.T, leader *tnode, tns []*tnode) *tnode {
	t.Helper()
	v, _ := configOf(leader)
	for _, tn := range tns {
		if tn != leader && slices.Contains(v, tn.id) {
			return tn
		}
	}
	t.Fatal("no follower voter")
	return nil
}

func TestVoterRestartedWithDataDirRejoins(t *testing.T) {
	f := newFleet(t, func(c *Config) { c.DeadGrace = time.Minute })
	tns := startRegion(f, "r", 3, true)
	leader := f.waitStable("r", 3, 15*time.Second)
	applyPlacements(t, leader, "a", 10)
	victim := voterOther(t, leader, tns)
	before, _ := configOf(leader)
	waitFor(t, 5*time.Second, "the victim applied the first placements", func() (bool, string) {
		return len(victim.n.State().Placements) == 10, ""
	})
	// A file snapshot on disk: the restart goes through FileSnapshotStore + FSM.Restore.
	if err := victim.n.raftPtr().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	f.kill(victim)
	applyPlacements(t, leader, "b", 10) // committed by the two others while it is down
	f.start(victim)
	waitFor(t, 10*time.Second, "the restarted voter caught up", func() (bool, string) {
		n := len(victim.n.State().Placements)
		return n == 20, fmt.Sprintf("%d placements", n)
	})
	if after, _ := configOf(leader); !slices.Equal(before, after) {
		t.Errorf("voters changed from %v to %v across a restart", before, after)
	}
	if got := bootstraps([]*tnode{victim}); got != 0 {
		t.Errorf("restarted node bootstrapped again")
	}
}

func TestWipedDataDirReplacesStaleIdentity(t *testing.T) {
	// A long grace period: only the stale-identity rule can explain a quick swap.
	f := newFleet(t, func(c *Config) { c.DeadGrace = time.Minute })
	tns := startRegion(f, "r", 3, true)
	leader := f.waitStable("r", 3, 15*time.Second)
	victim := voterOther(t, leader, tns)
	f.kill(victim)
	reborn := &tnode{id: "id-new-" + victim.name, name: victim.name, region: "r", addr: victim.addr, eligible: true, dir: t.TempDir()}
	f.mu.Lock()
	f.nodes = slices.DeleteFunc(f.nodes, func(tn *tnode) bool { return tn == victim }) // memberlist keeps one record per name
	f.nodes = append(f.nodes, reborn)
	f.mu.Unlock()
	f.start(reborn)
	waitFor(t, 15*time.Second, "the stale id replaced by the new one", func() (bool, string) {
		ls := f.leaders("r")
		if len(ls) != 1 {
			return false, "no single leader"
		}
		v, nv := configOf(ls[0])
		all := append(slices.Clone(v), nv...)
		return len(v) == 3 && slices.Contains(v, reborn.id) && !slices.Contains(all, victim.id), fmt.Sprintf("voters %v nonvoters %v", v, nv)
	})
}

func TestQuorumLossHeadlessThenRecover(t *testing.T) {
	f := newFleet(t, func(c *Config) { c.DeadGrace = time.Minute })
	tns := startRegion(f, "r", 3, true)
	leader := f.waitStable("r", 3, 15*time.Second)
	applyPlacements(t, leader, "w", 25)
	want := leader.n.State().Placements
	// Keep a follower as the survivor; kill the two others for good.
	survivor := voterOther(t, leader, tns)
	waitFor(t, 5*time.Second, "the survivor applied the placements", func() (bool, string) {
		return len(survivor.n.State().Placements) == 25, ""
	})
	for _, tn := range tns {
		if tn != survivor {
			f.kill(tn)
		}
	}
	waitFor(t, 10*time.Second, "the survivor reports headless", func() (bool, string) {
		st := survivor.n.PublishedState()
		return st[KeyHeadless] == "1" && metricValue(survivor.n.m.headless) == 1, fmt.Sprint(st)
	})
	var peers []Peer
	for _, tn := range tns {
		peers = append(peers, Peer{ID: tn.id, Name: tn.name, Region: "r", Alive: tn == survivor, State: tn.n.PublishedState()})
	}
	if s := Summarize(peers); len(s) != 1 || !s[0].Headless || s[0].Coordinator != "" {
		t.Errorf("summary = %+v, want headless region without coordinator", s)
	}
	f.stopGraceful(survivor)

	if err := Recover(survivor.dir, "other-region", []raft.Server{{ID: raft.ServerID(survivor.id), Address: raft.ServerAddress(survivor.addr)}}, nil); err == nil || !strings.Contains(err.Error(), "belongs to region") {
		t.Errorf("Recover with the wrong region: err = %v", err)
	}
	if err := Recover(survivor.dir, "r", []raft.Server{{ID: raft.ServerID(survivor.id), Address: raft.ServerAddress(survivor.addr)}}, nil); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	servers, err := LastConfiguration(survivor.dir, "r", nil)
	if err != nil || len(servers) != 1 || servers[0].ID != raft.ServerID(survivor.id) {
		t.Fatalf("LastConfiguration after recover = %v, %v", servers, err)
	}
	f.start(survivor)
	waitFor(t, 10*time.Second, "the survivor leads", func() (bool, string) {
		return survivor.n.IsLeader(), fmt.Sprint(survivor.n.PublishedState())
	})
	waitFor(t, 5*time.Second, "the committed state", func() (bool, string) {
		return len(survivor.n.State().Placements) == len(want), ""
	})
	got := survivor.n.State().Placements
	for k, p := range want {
		if got[k] != p {
			t.Errorf("placement %s = %+v, want %+v", k, got[k], p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := survivor.n.Apply(ctx, Place("after", "w", "n")); err != nil {
		t.Errorf("Apply after recovery: %v", err)
	}
	if st := survivor.n.PublishedState(); st[KeyHeadless] != "" {
		t.Errorf("still headless after recovery: %v", st)
	}
}
