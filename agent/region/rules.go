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
	// Left: the node left the fleet on purpose (gossip status left), as opposed to
	// dead (unreachable, may come back).
	Left  bool
	State map[string]string // gossiped key/values; this package's keys start with "raft."
}

// Keys of the gossiped per-node state this package publishes (PublishedState).
const (
	KeyState     = "raft.state"      // "bootstrapped" once the node has Raft state, else "none"
	KeyCluster   = "raft.cluster"    // the cluster id of the group the node belongs to
	KeyLeader    = "raft.leader"     // the leader's term, only on the leader
	KeyVoters    = "raft.voters"     // comma-separated voter ids, only on the leader
	KeyLastIndex = "raft.last_index" // the node's last Raft log index (gossiped as it moves by LastIndexStep)
	KeyHeadless  = "raft.headless"   // "1" while the node sees its group headless
)

// PromoteMaxLag is how far, in log entries, a nonvoter's gossiped last index may be
// behind the leader's for autopilot to promote it (the caught-up test).
const PromoteMaxLag = 1024

// LastIndexStep is how far a node's last index moves before it is gossiped again:
// a quarter of PromoteMaxLag keeps a caught-up nonvoter promotable, and a busy group
// does not republish its index with every commit (see agent.indexDue).
const LastIndexStep = PromoteMaxLag / 4

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
	// Witnesses are the voters from other regions (witness.go), by name.
	Witnesses []string `json:"witnesses,omitempty"`
	Nodes     int      `json:"nodes"` // alive nodes of the region
	Term      uint64   `json:"term"`
	LastIndex uint64   `json:"last_index"`
	Headless  bool     `json:"headless"`
	// HeadlessSince and HeadlessReason say, when Headless, since when the answering
	// node has seen no coordinator of the region, and why it calls it headless.
	HeadlessSince  time.Time `json:"headless_since,omitzero"`
	HeadlessReason string    `json:"headless_reason,omitempty"`
}

// Summarize builds the /v1/regions answer from every peer of the fleet (with their
// gossiped state). The coordinator of a region is its alive peer claiming leadership
// (KeyLeader, or a witness group's WitnessKey(region, KeyLeader)) with the highest
// term. A region is headless when it has no coordinator and one of its alive nodes or
// witnesses reports KeyHeadless. Witnesses are the voters of other regions. Regions
// are sorted by name.
func Summarize(peers []Peer) []RegionSummary {
	type acc struct {
		sum    RegionSummary
		leader map[string]string // the leader's group state
		lid    string
		head   bool
	}
	regions := map[string]*acc{}
	names := map[string]string{}
	regionOf := map[string]string{}
	get := func(r string) *acc {
		a := regions[r]
		if a == nil {
			a = &acc{sum: RegionSummary{Name: r, Voters: []string{}}}
			regions[r] = a
		}
		return a
	}
	claim := func(a *acc, id string, st map[string]string) {
		if st[KeyHeadless] == "1" {
			a.head = true
		}
		term, err := strconv.ParseUint(st[KeyLeader], 10, 64)
		if err != nil || term == 0 {
			return
		}
		if a.leader == nil || term > a.sum.Term || (term == a.sum.Term && id < a.lid) {
			a.leader, a.lid, a.sum.Term = st, id, term
		}
	}
	for i := range peers {
		p := &peers[i]
		if p.Name != "" {
			names[p.ID] = p.Name
		}
		regionOf[p.ID] = p.Region
		a := get(p.Region)
		if !p.Alive {
			continue
		}
		a.sum.Nodes++
		claim(a, p.ID, p.State)
		for r, st := range WitnessGroups(p.State) {
			claim(get(r), p.ID, st)
		}
	}
	out := make([]RegionSummary, 0, len(regions))
	for _, a := range regions {
		if a.leader != nil {
			a.sum.Coordinator = cmp.Or(names[a.lid], a.lid)
			a.sum.LastIndex, _ = strconv.ParseUint(a.leader[KeyLastIndex], 10, 64)
			for _, id := range splitList(a.leader[KeyVoters]) {
				a.sum.Voters = append(a.sum.Voters, cmp.Or(names[id], id))
				if r, ok := regionOf[id]; ok && r != a.sum.Name {
					a.sum.Witnesses = append(a.sum.Witnesses, cmp.Or(names[id], id))
				}
			}
			slices.Sort(a.sum.Voters)
			slices.Sort(a.sum.Witnesses)
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
	name      string // the region
	now       time.Time
	leaderID  string
	servers   []raft.Server
	region    map[string]Peer   // alive or not, this region only, by id
	others    map[string]Peer   // nodes of other regions (possible or current witnesses), by id
	witnesses []string          // witness candidates, best first (RankWitnesses, minus those that failed)
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

// healthy: the server can hold its seat (serverHealthy).
func (in *apInput) healthy(id string) bool { return serverHealthy(in.region, in.others, in.name, id) }

// serverHealthy is the one health rule of a group's servers, as seen through gossip:
// a node of the region is alive, eligible and has a Raft address; a witness (a node of
// another region, in others) is alive, eligible, still offers the duty, and says it
// runs a group of this region (raft.witnessing). Without the last, a witness whose
// group failed (say, a damaged log) would hold a voter seat it cannot fill.
func serverHealthy(region, others map[string]Peer, name, id string) bool {
	if p, ok := region[id]; ok {
		return p.Alive && p.Eligible && p.RaftAddr != ""
	}
	p, ok := others[id]
	return ok && witnessCapable(p, name) && slices.Contains(splitList(p.State[KeyWitnessing]), name)
}

// isWitness: a server of another region.
func (in *apInput) isWitness(id string) bool {
	_, local := in.region[id]
	_, other := in.others[id]
	return other && !local
}

// ready: a nonvoter healthy and reachable for `stable`, with a gossiped last index
// within maxLag of the leader's.
func (in *apInput) ready(id string) bool {
	since, ok := in.nvSince[id]
	if !ok || in.now.Sub(since) < in.stable || !in.reachable[id] {
		return false
	}
	var st map[string]string
	if p, ok := in.region[id]; ok {
		st = p.State
	} else if p, ok := in.others[id]; ok {
		st = WitnessGroups(p.State)[in.name]
	}
	li, err := strconv.ParseUint(st[KeyLastIndex], 10, 64)
	return err == nil && li+in.maxLag >= in.lastIndex
}

// planAutopilot is the autopilot rule, run by the leader. It returns at most one
// configuration change (Raft applies them one at a time; the next tick asks again), in
// this priority order:
//
//  1. a stale identity (a server whose address or name now belongs to an alive node
//     with another id: that node was restarted with a wiped data dir) is removed;
//  2. a voter unhealthy (not alive or not eligible; a witness also when it stopped
//     offering the duty) for longer than deadGrace is removed;
//  3. a nonvoter unhealthy for longer than deadGrace is removed;
//  4. with fewer local voters than the target (WitnessTargets), the best-ranked
//     caught-up local nonvoter (healthy and reachable for `stable`, gossiped last index
//     >= leader's - maxLag) is promoted, or else the best-ranked healthy reachable node
//     outside the group is added as a nonvoter. A region of two eligible nodes promotes
//     its second local voter only once its witness votes, so it never sits at two
//     voters of its own;
//  5. with fewer witnesses than the target, a caught-up witness nonvoter is promoted,
//     or else the best witness candidate whose Raft port answers for the region is
//     added as a nonvoter;
//  6. a witness the region no longer needs (it has enough eligible nodes of its own, all
//     voting) is removed;
//  7. with an even number of voters and nothing to promote, the worst-ranked non-leader
//     local voter is demoted (never sit at 2 or 4 voters); above the maximum, likewise;
//  8. with local voters at target and fewer than `standbys` healthy nonvoters, the
//     best-ranked healthy reachable local node outside the group is added as a
//     nonvoter so a caught-up replacement is ready.
//
// The target counts voters still in the configuration as eligible, so a voter that is
// merely flapping (back before deadGrace) never shrinks the set, and a new node with a
// better rank never displaces a working voter (hysteresis).
func planAutopilot(in apInput) apAction {
	var voters, nonvoters []raft.Server
	inConfig := map[string]bool{}
	localVoters, witnessVoters := 0, 0
	for _, s := range in.servers {
		inConfig[string(s.ID)] = true
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
			if in.isWitness(string(s.ID)) {
				witnessVoters++
			} else {
				localVoters++
			}
		} else {
			nonvoters = append(nonvoters, s)
		}
	}
	// 1. stale identities.
	for _, s := range in.servers {
		id := string(s.ID)
		if id == in.leaderID || in.healthy(id) || in.isWitness(id) {
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
		if id == in.leaderID {
			return false
		}
		if in.healthy(id) {
			return false
		}
		since, ok := in.badSince[id]
		return ok && in.now.Sub(since) >= in.deadGrace
	}
	// 2, 3. dead servers.
	for _, group := range [][]raft.Server{voters, nonvoters} {
		for _, s := range group {
			if bad(string(s.ID)) {
				reason := "unhealthy for longer than the dead grace period"
				if in.isWitness(string(s.ID)) {
					reason = "witness " + reason
				}
				return apAction{kind: apRemove, id: string(s.ID), reason: reason}
			}
		}
	}
	eligible := localVoters
	var candidates []string // healthy, reachable, local, outside the voter set
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
	localTarget, witnessTarget := WitnessTargets(in.maxVoters, eligible)
	var promotable, pendingNV []string
	for _, id := range candidates {
		if !inConfig[id] {
			continue
		}
		pendingNV = append(pendingNV, id)
		if in.ready(id) {
			promotable = append(promotable, id)
		}
	}
	var witnessNV []raft.Server // witness nonvoters in the configuration
	for _, s := range nonvoters {
		if in.isWitness(string(s.ID)) {
			witnessNV = append(witnessNV, s)
		}
	}
	// 4. local voters below target.
	wantLocal := localTarget
	if witnessTarget > 0 && witnessVoters == 0 {
		wantLocal = 1 // the witness votes first: a region never sits at two voters of its own
	}
	if localVoters < wantLocal {
		if len(promotable) > 0 {
			return apAction{kind: apPromote, id: promotable[0], addr: in.region[promotable[0]].RaftAddr, reason: "voters below target " + strconv.Itoa(localTarget+witnessTarget)}
		}
		if len(pendingNV) == 0 {
			for _, id := range candidates {
				if !inConfig[id] {
					return apAction{kind: apAddNonvoter, id: id, addr: in.region[id].RaftAddr, reason: "replacement for a missing voter"}
				}
			}
		}
	}
	// 5. witness below target.
	if witnessVoters < witnessTarget {
		for _, s := range witnessNV {
			if in.healthy(string(s.ID)) && in.ready(string(s.ID)) {
				return apAction{kind: apPromote, id: string(s.ID), addr: string(s.Address), reason: "witness: the region has 2 eligible nodes"}
			}
		}
		if len(witnessNV) == 0 {
			for _, id := range in.witnesses {
				if !inConfig[id] && in.reachable[id] {
					return apAction{kind: apAddNonvoter, id: id, addr: in.others[id].RaftAddr, reason: "witness: the region has 2 eligible nodes"}
				}
			}
		}
	}
	// 6. witnesses no longer needed: none once the local voters stand at their target
	// without one; beyond the one a region of two needs, the extras.
	for _, s := range in.servers {
		id := string(s.ID)
		if !in.isWitness(id) || id == in.leaderID {
			continue
		}
		var surplus bool
		switch {
		case witnessTarget == 0:
			surplus = localVoters >= localTarget
		case s.Suffrage == raft.Voter:
			surplus = witnessVoters > witnessTarget
		default:
			surplus = witnessVoters >= witnessTarget
		}
		if surplus {
			return apAction{kind: apRemove, id: id, reason: "witness no longer needed: " + strconv.Itoa(eligible) + " eligible nodes in the region"}
		}
	}
	// 7. even count (nothing to promote) or above the maximum.
	max := TargetVoters(in.maxVoters, 1<<20)
	pendingWitness := witnessVoters < witnessTarget && len(witnessNV) > 0
	if (len(voters)%2 == 0 && len(pendingNV) == 0 && !pendingWitness) || len(voters) > max {
		if len(voters) > 1 {
			v := slices.Clone(voters)
			slices.SortFunc(v, func(a, b raft.Server) int { return byRank(string(b.ID), string(a.ID)) })
			for _, s := range v {
				if string(s.ID) != in.leaderID && !in.isWitness(string(s.ID)) {
					return apAction{kind: apDemote, id: string(s.ID), reason: "voter count " + strconv.Itoa(len(voters)) + " is even or above the maximum"}
				}
			}
		}
	}
	// 8. standbys.
	if localVoters >= wantLocal && len(pendingNV) < in.standbys {
		for _, id := range candidates {
			if !inConfig[id] {
				return apAction{kind: apAddNonvoter, id: id, addr: in.region[id].RaftAddr, reason: "standby"}
			}
		}
	}
	return apAction{}
}

// wantWitnesses is the KeyWitnessWant list of a leader: the witnesses in the
// configuration (so they keep their groups), plus, while the region needs one and none
// is joining, the best candidate (so it starts a group the leader can then add).
func wantWitnesses(in apInput) []string {
	var want []string
	witnessVoters, joining := 0, false
	eligible := 0
	for _, s := range in.servers {
		id := string(s.ID)
		if in.isWitness(id) {
			want = append(want, id)
			if s.Suffrage == raft.Voter {
				witnessVoters++
			} else if in.healthy(id) {
				joining = true
			}
		} else if s.Suffrage == raft.Voter {
			eligible++
		}
	}
	for _, p := range in.region {
		if in.healthy(p.ID) && !slices.ContainsFunc(in.servers, func(s raft.Server) bool { return string(s.ID) == p.ID && s.Suffrage == raft.Voter }) {
			eligible++
		}
	}
	if _, w := WitnessTargets(in.maxVoters, eligible); witnessVoters < w && !joining {
		for _, id := range in.witnesses {
			if !slices.Contains(want, id) {
				want = append(want, id)
				break
			}
		}
	}
	slices.Sort(want)
	return want
}

func sortedPeers(m map[string]Peer) []Peer {
	out := make([]Peer, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return byRank(a.ID, b.ID) })
	return out
}

// clusterEvidence says why region already has a Raft cluster, as far as the fleet view
// shows ("" when it shows none): a node of the region other than self that publishes
// Raft state or a cluster id, alive or dead (not one that left), or a live node of
// another region that is its witness. A node that sees any of this must wait to be
// added, never bootstrap: a second cluster would split the region for good.
func clusterEvidence(self, region string, regionPeers, others map[string]Peer) string {
	for _, p := range sortedPeers(regionPeers) {
		if p.ID == self || p.Left {
			continue
		}
		if p.State[KeyState] == StateBootstrapped || p.State[KeyCluster] != "" {
			how := "is already in a cluster"
			if !p.Alive {
				how = "is in a cluster (unreachable now, so it may be cut off or restarting)"
			}
			return "node " + cmp.Or(p.Name, p.ID) + " " + how + ": waiting to be added by its leader"
		}
	}
	// Every other region's nodes, on every tick: no sort, no split unless the node
	// witnesses some region (the first by rank is named, as sortedPeers would).
	var witness *Peer
	for _, p := range others {
		w := p.State[KeyWitnessing]
		if !p.Alive || w == "" || !strings.Contains(w, region) || (witness != nil && byRank(p.ID, witness.ID) > 0) {
			continue
		}
		if slices.Contains(splitList(w), region) {
			witness = &p
		}
	}
	if witness != nil {
		return "node " + cmp.Or(witness.Name, witness.ID) + " of region " + witness.Region + " is a witness of this region, so the region has a cluster: waiting to be added by its leader"
	}
	return ""
}
