package region

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is one node of the fleet as this node sees it through gossip. The agent builds it
// from gossip.Member (ID, Name, Region, RaftAddr, Eligible, Alive = Status == "alive",
// State = Member.State).
type Peer struct {
	ID       string // stable node id (the Raft ServerID)
	Name     string
	Region   string
	RaftAddr string // host:port of the node's Raft transport (the Raft ServerAddress)
	Eligible bool   // --coordinator-eligible
	Alive    bool
	State    map[string]string // gossiped key/values; this package's keys start with "raft."
}

// Keys of the gossiped per-node state this package publishes (PublishedState).
const (
	KeyState     = "raft.state"      // "bootstrapped" once the node has Raft state, else "none"
	KeyCluster   = "raft.cluster"    // the cluster id of the group the node belongs to
	KeyLeader    = "raft.leader"     // the leader's term, only on the leader
	KeyVoters    = "raft.voters"     // comma-separated voter ids, only on the leader
	KeyLastIndex = "raft.last_index" // the node's last Raft log index
	KeyHeadless  = "raft.headless"   // "1" while the node sees its group headless
)

// Values of KeyState.
const (
	StateNone         = "none"
	StateBootstrapped = "bootstrapped"
)

// rank orders peers for voter choice: FNV-1a 64 of the node id, ties broken by id. A
// hash rather than the id itself so the order does not follow how ids were minted
// (e.g. time-ordered ids would always favour the oldest nodes).
func rank(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

func byRank(a, b string) int {
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// AutoVoters is the default voter target: 3, or 5 when the region has at least
// LargeRegion eligible nodes.
const LargeRegion = 7

// TargetVoters is the number of voters a region should have: the largest odd number
// not above max and not above the number of eligible nodes (1, 3 or 5 in practice).
// max <= 0 means automatic: 3, or 5 when eligible >= LargeRegion.
func TargetVoters(max, eligible int) int {
	if max <= 0 {
		max = 3
		if eligible >= LargeRegion {
			max = 5
		}
	}
	t := min(max, eligible)
	if t < 1 {
		return 1
	}
	if t%2 == 0 {
		t--
	}
	return t
}

// BootstrapList is the voter list the bootstrap rule picks from candidates (the ids of
// alive, eligible, reachable nodes of the region, self included): the first
// TargetVoters(max, len) of them in rank order. Every node computes it; a bootstrap
// happens only when all members of the list computed the same list.
func BootstrapList(max int, candidates []string) []string {
	c := slices.Clone(candidates)
	slices.SortFunc(c, byRank)
	c = slices.Compact(c)
	if len(c) == 0 {
		return nil
	}
	return c[:TargetVoters(max, len(c))]
}

// lowestID is the member of list that calls BootstrapCluster.
func lowestID(list []string) string {
	return slices.Min(list)
}

// RegionSummary is one region of GET /v1/regions.
type RegionSummary struct {
	Name        string   `json:"name"`
	Coordinator string   `json:"coordinator"` // node name of the leader; "" when none is known
	Voters      []string `json:"voters"`      // node names (ids when the name is unknown)
	Nodes       int      `json:"nodes"`       // alive nodes of the region
	Term        uint64   `json:"term"`
	LastIndex   uint64   `json:"last_index"`
	Headless    bool     `json:"headless"`
	// HeadlessSince and HeadlessReason say, when Headless, since when the answering
	// node has seen no coordinator of the region, and why it calls it headless.
	HeadlessSince  time.Time `json:"headless_since,omitzero"`
	HeadlessReason string    `json:"headless_reason,omitempty"`
}

// Summarize builds the /v1/regions answer from every peer of the fleet (with their
// gossiped state). The coordinator of a region is its alive peer claiming leadership
// (KeyLeader) with the highest term. A region is headless when it has no coordinator
// and one of its alive nodes reports KeyHeadless. Regions are sorted by name.
func Summarize(peers []Peer) []RegionSummary {
	type acc struct {
		sum    RegionSummary
		leader *Peer
		head   bool
	}
	regions := map[string]*acc{}
	names := map[string]string{}
	for i := range peers {
		p := &peers[i]
		if p.Name != "" {
			names[p.ID] = p.Name
		}
		a := regions[p.Region]
		if a == nil {
			a = &acc{sum: RegionSummary{Name: p.Region, Voters: []string{}}}
			regions[p.Region] = a
		}
		if !p.Alive {
			continue
		}
		a.sum.Nodes++
		if p.State[KeyHeadless] == "1" {
			a.head = true
		}
		term, err := strconv.ParseUint(p.State[KeyLeader], 10, 64)
		if err != nil || term == 0 {
			continue
		}
		if a.leader == nil || term > a.sum.Term || (term == a.sum.Term && p.ID < a.leader.ID) {
			a.leader, a.sum.Term = p, term
		}
	}
	out := make([]RegionSummary, 0, len(regions))
	for _, a := range regions {
		if l := a.leader; l != nil {
			a.sum.Coordinator = cmp.Or(l.Name, l.ID)
			a.sum.LastIndex, _ = strconv.ParseUint(l.State[KeyLastIndex], 10, 64)
			for _, id := range splitList(l.State[KeyVoters]) {
				a.sum.Voters = append(a.sum.Voters, cmp.Or(names[id], id))
			}
			slices.Sort(a.sum.Voters)
		} else {
			a.sum.Headless = a.head
		}
		out = append(out, a.sum)
	}
	slices.SortFunc(out, func(a, b RegionSummary) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// apAction is one configuration change autopilot asks for.
type apAction struct {
	kind   apKind
	id     string
	addr   string
	reason string
}

type apKind int

const (
	apNone apKind = iota
	apRemove
	apAddNonvoter
	apPromote
	apDemote
)

func (k apKind) String() string {
	return [...]string{"none", "remove", "add-nonvoter", "promote", "demote"}[k]
}

// apInput is everything the autopilot rule looks at. It is built by the leader's loop.
type apInput struct {
	now       time.Time
	leaderID  string
	servers   []raft.Server
	region    map[string]Peer   // alive or not, this region only, by id
	names     map[string]string // id → last known name (outlives the peer's gossip record)
	badSince  map[string]time.Time
	nvSince   map[string]time.Time // when a server was first seen as a nonvoter
	reachable map[string]bool      // probe results for candidate ids (absent = not probed)
	lastIndex uint64               // the leader's last log index
	maxVoters int                  // Config.Voters (0 = automatic)
	standbys  int
	deadGrace time.Duration
	stable    time.Duration // how long a nonvoter must be healthy before promotion
	maxLag    uint64
}

// healthy: alive, eligible, with a Raft address, as seen through gossip.
func (in *apInput) healthy(id string) bool {
	p, ok := in.region[id]
	return ok && p.Alive && p.Eligible && p.RaftAddr != ""
}

// planAutopilot is the autopilot rule, run by the leader. It returns at most one
// configuration change (Raft applies them one at a time; the next tick asks again), in
// this priority order:
//
//  1. a stale identity (a server whose address or name now belongs to an alive node
//     with another id: that node was restarted with a wiped data dir) is removed;
//  2. a voter unhealthy (not alive or not eligible) for longer than deadGrace is removed;
//  3. a nonvoter unhealthy for longer than deadGrace is removed;
//  4. with fewer voters than the target, the best-ranked caught-up nonvoter (healthy and
//     reachable for `stable`, gossiped last index >= leader's - maxLag) is promoted, or
//     else the best-ranked healthy reachable node outside the group is added as a
//     nonvoter;
//  5. with an even number of voters and nothing to promote, the worst-ranked non-leader
//     voter is demoted (never sit at 2 or 4 voters); above the maximum, likewise;
//  6. with voters at target and fewer than `standbys` healthy nonvoters, the
//     best-ranked healthy reachable node outside the group is added as a nonvoter so a
//     caught-up replacement is ready.
//
// The target counts voters still in the configuration as eligible, so a voter that is
// merely flapping (back before deadGrace) never shrinks the set, and a new node with a
// better rank never displaces a working voter (hysteresis).
func planAutopilot(in apInput) apAction {
	var voters, nonvoters []raft.Server
	inConfig := map[string]bool{}
	for _, s := range in.servers {
		inConfig[string(s.ID)] = true
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
		} else {
			nonvoters = append(nonvoters, s)
		}
	}
	// 1. stale identities.
	for _, s := range in.servers {
		id := string(s.ID)
		if id == in.leaderID || in.healthy(id) {
			continue
		}
		for _, p := range sortedPeers(in.region) {
			if p.ID == id || !p.Alive {
				continue
			}
			if (p.RaftAddr != "" && p.RaftAddr == string(s.Address)) || (in.names[id] != "" && in.names[id] == p.Name) {
				return apAction{kind: apRemove, id: id, reason: "stale identity: " + cmp.Or(p.Name, p.ID) + " now runs with id " + p.ID}
			}
		}
	}
	bad := func(id string) bool {
		if id == in.leaderID || in.healthy(id) {
			return false
		}
		since, ok := in.badSince[id]
		return ok && in.now.Sub(since) >= in.deadGrace
	}
	// 2, 3. dead servers.
	for _, group := range [][]raft.Server{voters, nonvoters} {
		for _, s := range group {
			if bad(string(s.ID)) {
				return apAction{kind: apRemove, id: string(s.ID), reason: "unhealthy for longer than the dead grace period"}
			}
		}
	}
	eligible := len(voters)
	var candidates []string // healthy, reachable, outside the voter set
	for _, p := range sortedPeers(in.region) {
		if !in.healthy(p.ID) {
			continue
		}
		isVoter := slices.ContainsFunc(voters, func(s raft.Server) bool { return string(s.ID) == p.ID })
		if !isVoter {
			eligible++
			if in.reachable[p.ID] {
				candidates = append(candidates, p.ID)
			}
		}
	}
	target := TargetVoters(in.maxVoters, eligible)
	ready := func(id string) bool {
		since, ok := in.nvSince[id]
		if !ok || in.now.Sub(since) < in.stable {
			return false
		}
		li, err := strconv.ParseUint(in.region[id].State[KeyLastIndex], 10, 64)
		return err == nil && li+in.maxLag >= in.lastIndex
	}
	var promotable, pendingNV []string
	for _, id := range candidates {
		if !inConfig[id] {
			continue
		}
		pendingNV = append(pendingNV, id)
		if ready(id) {
			promotable = append(promotable, id)
		}
	}
	// 4. below target.
	if len(voters) < target {
		if len(promotable) > 0 {
			return apAction{kind: apPromote, id: promotable[0], addr: in.region[promotable[0]].RaftAddr, reason: "voters below target " + strconv.Itoa(target)}
		}
		if len(pendingNV) == 0 {
			for _, id := range candidates {
				if !inConfig[id] {
					return apAction{kind: apAddNonvoter, id: id, addr: in.region[id].RaftAddr, reason: "replacement for a missing voter"}
				}
			}
		}
	}
	// 5. even count (nothing to promote) or above the maximum.
	max := TargetVoters(in.maxVoters, 1<<20)
	if (len(voters)%2 == 0 && len(pendingNV) == 0) || len(voters) > max {
		if len(voters) > 1 {
			v := slices.Clone(voters)
			slices.SortFunc(v, func(a, b raft.Server) int { return byRank(string(b.ID), string(a.ID)) })
			for _, s := range v {
				if string(s.ID) != in.leaderID {
					return apAction{kind: apDemote, id: string(s.ID), reason: "voter count " + strconv.Itoa(len(voters)) + " is even or above the maximum"}
				}
			}
		}
	}
	// 6. standbys.
	if len(voters) >= target && len(pendingNV) < in.standbys {
		for _, id := range candidates {
			if !inConfig[id] {
				return apAction{kind: apAddNonvoter, id: id, addr: in.region[id].RaftAddr, reason: "standby"}
			}
		}
	}
	return apAction{}
}

func sortedPeers(m map[string]Peer) []Peer {
	out := make([]Peer, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return byRank(a.ID, b.ID) })
	return out
}
