package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
)

type opNode struct {
	id, name, addr, dir string
	n                   *region.Node
	cancel              context.CancelFunc
	done                chan error
}

func (o *opNode) start(t *testing.T, net *region.InmemNetwork, mu *sync.Mutex) {
	t.Helper()
	tr, ctl := net.Add(o.addr, "r")
	n, err := region.New(region.Config{NodeID: o.id, Name: o.name, Region: "r", DataDir: o.dir, Eligible: true,
		SettlePeriod: 200 * time.Millisecond, Tick: 50 * time.Millisecond, HeadlessAfter: 500 * time.Millisecond,
		Transport: tr, Control: ctl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mu.Lock()
	o.n, o.cancel, o.done = n, cancel, make(chan error, 1)
	mu.Unlock()
	go func() { o.done <- n.Run(ctx) }()
}

func (o *opNode) stop(t *testing.T) {
	t.Helper()
	o.cancel()
	if err := <-o.done; err != nil {
		t.Errorf("Run(%s): %v", o.name, err)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// 3 voters, 2 killed for good: `murmur operator recover` on the survivor brings the
// region back with its committed state.
func TestOperatorRecover(t *testing.T) {
	net := region.NewInmemNetwork()
	var mu sync.Mutex // guards alive
	nodes := make([]*opNode, 3)
	alive := map[*opNode]bool{}
	for i := range nodes {
		nodes[i] = &opNode{id: fmt.Sprintf("id-%d", i), name: fmt.Sprintf("n%d", i), addr: fmt.Sprintf("addr-%d", i), dir: t.TempDir()}
		nodes[i].start(t, net, &mu)
		alive[nodes[i]] = true
	}
	stopFeed := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the gossip stand-in
		defer wg.Done()
		for {
			select {
			case <-stopFeed:
				return
			case <-time.After(20 * time.Millisecond):
			}
			mu.Lock()
			var peers []region.Peer
			for _, o := range nodes {
				peers = append(peers, region.Peer{ID: o.id, Name: o.name, Region: "r", RaftAddr: o.addr, Eligible: true, Alive: alive[o], State: o.n.PublishedState()})
			}
			for _, o := range nodes {
				if alive[o] {
					o.n.UpdatePeers(peers)
				}
			}
			mu.Unlock()
		}
	}()
	defer func() { close(stopFeed); wg.Wait() }()

	var leader *opNode
	poll(t, "a leader", func() bool {
		for _, o := range nodes {
			if o.n.IsLeader() {
				leader = o
				return true
			}
		}
		return false
	})
	var cmds []region.Command
	for i := range 30 {
		cmds = append(cmds, region.Place(fmt.Sprintf("w-%d", i), "w", "n0"))
	}
	if _, err := leader.n.Apply(context.Background(), region.Batch(cmds...)); err != nil {
		t.Fatal(err)
	}
	survivor := nodes[0]
	if survivor == leader {
		survivor = nodes[1]
	}
	poll(t, "the survivor has the placements", func() bool { return len(survivor.n.State().Placements) == 30 })
	for _, o := range nodes {
		if o != survivor {
			mu.Lock()
			alive[o] = false
			mu.Unlock()
			net.Down(o.addr)
			o.stop(t)
		}
	}
	poll(t, "headless", func() bool { return survivor.n.PublishedState()[region.KeyHeadless] == "1" })
	mu.Lock()
	alive[survivor] = false
	mu.Unlock()
	survivor.stop(t)

	run := func(args ...string) (string, error) {
		cmd := newOperatorCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	// Bad input names the flag and the fix.
	if _, err := run("recover", "--data-dir", survivor.dir, "--region", "r", "--peer", "nonsense"); err == nil || !strings.Contains(err.Error(), "ID=HOST:PORT") {
		t.Errorf("bad --peer: err = %v", err)
	}
	if _, err := run("recover", "--data-dir", survivor.dir, "--region", "elsewhere", "--peer", survivor.id+"="+survivor.addr); err == nil || !strings.Contains(err.Error(), "belongs to region") {
		t.Errorf("wrong --region: err = %v", err)
	}
	out, err := run("recover", "--data-dir", survivor.dir, "--region", "r")
	if err == nil || !strings.Contains(out, "id-1") || !strings.Contains(out, "id-2") {
		t.Errorf("without --peer: want the stored configuration and an error; got %q, %v", out, err)
	}
	out, err = run("recover", "--data-dir", survivor.dir, "--region", "r", "--peer", survivor.id+"="+survivor.addr)
	if err != nil {
		t.Fatalf("recover: %v\n%s", err, out)
	}

	survivor.start(t, net, &mu)
	mu.Lock()
	alive[survivor] = true
	mu.Unlock()
	poll(t, "the survivor leads", survivor.n.IsLeader)
	poll(t, "the committed state", func() bool { return len(survivor.n.State().Placements) == 30 })
	if _, err := survivor.n.Apply(context.Background(), region.Place("after", "w", "n0")); err != nil {
		t.Errorf("Apply after recovery: %v", err)
	}
	mu.Lock()
	alive[survivor] = false
	mu.Unlock()
	survivor.stop(t)
}
