package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

type regionView struct {
	Name        string   `json:"name"`
	Coordinator string   `json:"coordinator"`
	Voters      []string `json:"voters"`
	Witnesses   []string `json:"witnesses"`
	Nodes       int      `json:"nodes"`
	Term        uint64   `json:"term"`
	Headless    bool     `json:"headless"`
}

func regions(addr string) map[string]regionView {
	var res struct {
		Regions []regionView `json:"regions"`
	}
	if err := getJSON(addr, "/v1/regions", &res); err != nil {
		return nil
	}
	out := map[string]regionView{}
	for _, r := range res.Regions {
		out[r.Name] = r
	}
	return out
}

// agreedCoordinator reports the coordinator every listed node names for region, if
// they all name the same one in the same term, with wantVoters voters (0: any number;
// autopilot restores the count only after a dead voter's grace period).
func agreedCoordinator(ps []*proc, name string, wantVoters int) (string, uint64, bool) {
	coord, term := "", uint64(0)
	for i, p := range ps {
		r, ok := regions(p.http)[name]
		if !ok || r.Coordinator == "" || (wantVoters > 0 && len(r.Voters) != wantVoters) {
			return "", 0, false
		}
		if i == 0 {
			coord, term = r.Coordinator, r.Term
		} else if r.Coordinator != coord || r.Term != term {
			return "", 0, false
		}
	}
	return coord, term, true
}

func TestRealRegionElectsFailsOverAndHandsOff(t *testing.T) {
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	ps := []*proc{startAgent(t, "r1", seedPort, "--region", "plant")}
	for i := 2; i <= 5; i++ {
		ps = append(ps, startAgent(t, fmt.Sprintf("r%d", i), freePort(t), "--region", "plant", "--join", seed))
	}
	byName := map[string]*proc{}
	for _, p := range ps {
		byName[p.name] = p
	}
	var coord string
	var term uint64
	eventually(t, 60*time.Second, "all 5 nodes agree on one coordinator with 3 voters", func() bool {
		var ok bool
		coord, term, ok = agreedCoordinator(ps, "plant", 3)
		return ok
	})

	// SIGKILL the coordinator: the survivors agree on a new one, in a later term.
	old := byName[coord]
	if err := old.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rest []*proc
	for _, p := range ps {
		if p != old {
			rest = append(rest, p)
		}
	}
	var coord2 string
	var term2 uint64
	eventually(t, 60*time.Second, "the survivors agree on a new coordinator after SIGKILL of "+coord, func() bool {
		c, tm, ok := agreedCoordinator(rest, "plant", 0)
		coord2, term2 = c, tm
		return ok && c != coord && tm > term
	})

	// Restart the killed voter with its data dir: it rejoins its group, and the region
	// is back to 3 voters. (Without this, a planned stop of a second voter within the
	// dead voter's grace period would leave 1 of 3: no quorum, as Raft requires.)
	back := restartAgent(t, old, old.gossipPort(), "--region", "plant", "--join", seed)
	ps2 := append(append([]*proc{}, rest...), back)
	eventually(t, 60*time.Second, coord+" rejoins and all 5 agree on a coordinator with 3 voters", func() bool {
		_, _, ok := agreedCoordinator(ps2, "plant", 3)
		return ok
	})
	coord2, term2, _ = agreedCoordinator(ps2, "plant", 3)

	// SIGTERM the coordinator: it hands leadership over and exits 0.
	next := byName[coord2]
	if coord2 == old.name {
		next = back
	}
	if err := next.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next.done:
		if next.exitCode != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", coord2, next.exitCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20s of SIGTERM", coord2)
	}
	var last []*proc
	for _, p := range ps2 {
		if p != next {
			last = append(last, p)
		}
	}
	eventually(t, 30*time.Second, "the remaining nodes agree on a new coordinator after the handoff", func() bool {
		c, tm, ok := agreedCoordinator(last, "plant", 0)
		return ok && c != coord2 && tm > term2
	})
	if !strings.Contains(next.logs(), "leadership") {
		t.Errorf("%s's log does not mention handing leadership over", coord2)
	}
}
