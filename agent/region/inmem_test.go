package region

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Partition cuts Raft RPCs and control calls between two sets of endpoints, both
// ways, leaves the links inside each set alone, survives a re-Add, and Heal restores
// every link between up endpoints (a Down one stays down).
func TestInmemNetworkPartitionAndHeal(t *testing.T) {
	net := NewInmemNetwork()
	addrs := []string{"a", "b", "c", "d"}
	trs := map[string]raft.Transport{}
	ctls := map[string]Control{}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	add := func(addr string) {
		trs[addr], ctls[addr] = net.Add(addr, "r")
		ctls[addr].Serve(func(ControlRequest) ControlResponse { return ControlResponse{OK: true} })
		// Answer every RPC, so a connected call returns at once.
		go func(ch <-chan raft.RPC) {
			for {
				select {
				case <-done:
					return
				case rpc := <-ch:
					rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
				}
			}
		}(trs[addr].Consumer())
	}
	for _, a := range addrs {
		add(a)
	}
	rpcOK := func(from, to string) bool {
		var resp raft.RequestVoteResponse
		return trs[from].RequestVote(raft.ServerID(to), raft.ServerAddress(to), &raft.RequestVoteRequest{}, &resp) == nil
	}
	callOK := func(from, to string) bool {
		resp, err := ctls[from].Call(context.Background(), to, ControlRequest{Kind: CtlProbe})
		return err == nil && resp.OK
	}
	check := func(stage string, want map[[2]string]bool) {
		t.Helper()
		for _, x := range addrs {
			for _, y := range addrs {
				if x == y {
					continue
				}
				w := want[[2]string{x, y}]
				if got := rpcOK(x, y); got != w {
					t.Errorf("%s: raft RPC %s→%s ok = %v, want %v", stage, x, y, got, w)
				}
				if got := callOK(x, y); got != w {
					t.Errorf("%s: control call %s→%s ok = %v, want %v", stage, x, y, got, w)
				}
			}
		}
	}
	links := func(up func(x, y string) bool) map[[2]string]bool {
		m := map[[2]string]bool{}
		for _, x := range addrs {
			for _, y := range addrs {
				m[[2]string{x, y}] = up(x, y)
			}
		}
		return m
	}
	side := map[string]int{"a": 0, "b": 0, "c": 1, "d": 1}
	all := links(func(x, y string) bool { return true })
	split := links(func(x, y string) bool { return side[x] == side[y] })

	check("before", all)
	net.Partition([]string{"a", "b"}, []string{"c", "d"})
	check("partitioned", split)
	add("c") // a restart inside the partition stays cut
	check("c re-added while partitioned", split)
	net.Heal()
	check("healed", all)

	net.Down("d")
	net.Partition([]string{"a"}, []string{"b", "c", "d"})
	net.Heal()
	check("healed with d down", links(func(x, y string) bool { return x != "d" && y != "d" }))
}

// A Raft leader cut from the other two voters loses leadership, the other two elect
// one of their own, and after the heal the region has one leader again that commits.
func TestInmemPartitionLeaderFailsOver(t *testing.T) {
	f := newFleet(t, nil)
	for _, name := range []string{"n1", "n2", "n3"} {
		f.start(f.add(name, "r1", true, ""))
	}
	old := f.waitStable("r1", 3, 15*time.Second)
	var others []string
	for _, tn := range f.running("r1") {
		if tn != old {
			others = append(others, tn.addr)
		}
	}
	f.net.Partition([]string{old.addr}, others)
	waitFor(t, 10*time.Second, "a new leader among the other two, the old one stepped down", func() (bool, string) {
		ls := f.leaders("r1")
		if len(ls) != 1 || ls[0] == old {
			names := []string{}
			for _, l := range ls {
				names = append(names, l.name)
			}
			return false, "leaders [" + strings.Join(names, ",") + "]"
		}
		return true, ""
	})
	if _, err := f.leaders("r1")[0].n.Apply(context.Background(), Place("p1", "w", "n1")); err != nil {
		t.Errorf("the majority's leader cannot commit: %v", err)
	}
	f.net.Heal()
	leader := f.waitStable("r1", 3, 15*time.Second)
	if _, err := leader.n.Apply(context.Background(), Place("p2", "w", "n1")); err != nil {
		t.Errorf("the leader after the heal cannot commit: %v", err)
	}
	waitFor(t, 10*time.Second, "the healed node applies the majority's entries", func() (bool, string) {
		_, ok := old.n.State().Placements["p2"]
		return ok, ""
	})
}
