package region

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

func TestTargetVoters(t *testing.T) {
	tests := []struct{ max, eligible, want int }{
		{0, 0, 1}, {0, 1, 1}, {0, 2, 1}, {0, 3, 3}, {0, 4, 3}, {0, 6, 3}, {0, 7, 5}, {0, 50, 5},
		{1, 5, 1}, {3, 2, 1}, {3, 9, 3}, {5, 4, 3}, {5, 5, 5},
	}
	for _, tc := range tests {
		if got := TargetVoters(tc.max, tc.eligible); got != tc.want {
			t.Errorf("TargetVoters(%d, %d) = %d, want %d", tc.max, tc.eligible, got, tc.want)
		}
		if got := TargetVoters(tc.max, tc.eligible); got%2 == 0 {
			t.Errorf("TargetVoters(%d, %d) = %d is even", tc.max, tc.eligible, got)
		}
	}
}

func TestBootstrapListIsOrderIndependent(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	want := BootstrapList(0, ids)
	if len(want) != 5 {
		t.Fatalf("8 eligible nodes: %d voters, want 5", len(want))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		c := slices.Clone(ids)
		r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		if got := BootstrapList(0, append(c, c[0])); !slices.Equal(got, want) {
			t.Fatalf("BootstrapList(%v) = %v, want %v", c, got, want)
		}
	}
	if got := BootstrapList(0, nil); got != nil {
		t.Errorf("empty candidates: %v", got)
	}
}

func srv(id string, voter bool) raft.Server {
	s := raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress("addr-" + id), Suffrage: raft.Nonvoter}
	if voter {
		s.Suffrage = raft.Voter
	}
	return s
}

func TestPlanAutopilot(t *testing.T) {
	now := time.Unix(1000, 0)
	peer := func(id string, alive bool, lastIndex string) Peer {
		return Peer{ID: id, Name: "name-" + id, Region: "r", RaftAddr: "addr-" + id, Eligible: true, Alive: alive, State: map[string]string{KeyLastIndex: lastIndex}}
	}
	region := func(ps ...Peer) map[string]Peer {
		m := map[string]Peer{}
		for _, p := range ps {
			m[p.ID] = p
		}
		return m
	}
	all := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	base := func() apInput {
		return apInput{
			now: now, leaderID: "a", maxVoters: 0, standbys: 0, deadGrace: 30 * time.Second, stable: 2 * time.Second,
			maxLag: 10, lastIndex: 100, names: map[string]string{"a": "name-a", "b": "name-b", "c": "name-c", "old": "name-x"},
			badSince: map[string]time.Time{}, nvSince: map[string]time.Time{}, reachable: all("a", "b", "c", "d", "e"),
		}
	}
	tests := []struct {
		name string
		mod  func(in *apInput)
		want apAction
	}{
		{"healthy 3 voters: nothing", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("c", true, "100"), peer("d", true, ""))
		}, apAction{}},
		{"voter dead within grace: nothing (flap)", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("c", false, "100"), peer("d", true, ""))
			in.badSince["c"] = now.Add(-29 * time.Second)
		}, apAction{}},
		{"voter dead past grace: removed", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("c", false, "100"), peer("d", true, ""))
			in.badSince["c"] = now.Add(-31 * time.Second)
		}, apAction{kind: apRemove, id: "c"}},
		{"below target: add a nonvoter first", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("d", true, ""))
		}, apAction{kind: apAddNonvoter, id: "d", addr: "addr-d"}},
		{"below target: unreachable candidate never added", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("d", true, ""))
			in.reachable = all("a", "b")
		}, apAction{kind: apDemote, id: "b"}},
		{"below target: nonvoter not caught up yet: wait", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("d", false)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("d", true, "50"))
			in.nvSince["d"] = now.Add(-10 * time.Second)
		}, apAction{}},
		{"below target: nonvoter too fresh: wait", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("d", false)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("d", true, "100"))
			in.nvSince["d"] = now.Add(-time.Second)
		}, apAction{}},
		{"below target: caught-up nonvoter promoted", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("d", false)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("d", true, "95"))
			in.nvSince["d"] = now.Add(-3 * time.Second)
		}, apAction{kind: apPromote, id: "d", addr: "addr-d"}},
		{"two voters and nobody else: demote to one", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"))
		}, apAction{kind: apDemote, id: "b"}},
		{"leader never demoted", func(in *apInput) {
			in.leaderID = "b"
			in.servers = []raft.Server{srv("a", true), srv("b", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"))
		}, apAction{kind: apDemote, id: "a"}},
		{"stale identity by address: removed at once", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("old", true)}
			p := peer("new", true, "")
			p.RaftAddr = "addr-old"
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), p)
		}, apAction{kind: apRemove, id: "old"}},
		{"stale identity by name: removed at once", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("old", true)}
			p := peer("new", true, "")
			p.Name = "name-x"
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), p)
		}, apAction{kind: apRemove, id: "old"}},
		{"a better-ranked newcomer does not displace a voter", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("c", true, "100"), peer("d", true, ""), peer("e", true, ""))
		}, apAction{}},
		{"standby added at target", func(in *apInput) {
			in.standbys = 1
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), peer("c", true, "100"), peer("d", true, ""))
		}, apAction{kind: apAddNonvoter, id: "d", addr: "addr-d"}},
		{"ineligible voter past grace: removed", func(in *apInput) {
			in.servers = []raft.Server{srv("a", true), srv("b", true), srv("c", true)}
			c := peer("c", true, "100")
			c.Eligible = false
			in.region = region(peer("a", true, "100"), peer("b", true, "100"), c)
			in.badSince["c"] = now.Add(-time.Minute)
		}, apAction{kind: apRemove, id: "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mod(&in)
			got := planAutopilot(in)
			got.reason = ""
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(apAction{})); d != "" {
				t.Errorf("planAutopilot (-want +got):\n%s", d)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	st := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	peers := []Peer{
		{ID: "1", Name: "a1", Region: "a", Alive: true, State: st(KeyLeader, "7", KeyVoters, "1,2,3", KeyLastIndex, "42")},
		{ID: "2", Name: "a2", Region: "a", Alive: true, State: st(KeyLeader, "6", KeyVoters, "2,9")}, // stale claim, lower term
		{ID: "3", Name: "a3", Region: "a", Alive: false, State: st(KeyLeader, "9")},                  // dead: ignored
		{ID: "4", Name: "b1", Region: "b", Alive: true, State: st(KeyHeadless, "1")},
		{ID: "5", Name: "b2", Region: "b", Alive: true},
		{ID: "6", Name: "c1", Region: "c", Alive: true, State: st(KeyLeader, "x")},
	}
	got := Summarize(peers)
	want := []RegionSummary{
		{Name: "a", Coordinator: "a1", Voters: []string{"a1", "a2", "a3"}, Nodes: 2, Term: 7, LastIndex: 42},
		{Name: "b", Voters: []string{}, Nodes: 2, Headless: true},
		{Name: "c", Voters: []string{}, Nodes: 1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Summarize (-want +got):\n%s", d)
	}
	if got := Summarize(nil); len(got) != 0 {
		t.Errorf("Summarize(nil) = %v", got)
	}
}

func ExampleTargetVoters() {
	for _, n := range []int{1, 2, 3, 6, 7} {
		fmt.Print(TargetVoters(0, n), " ")
	}
	// Output: 1 1 3 3 5
}
