package region

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Witnesses (docs/regions.md, "Small regions"). A region with exactly two eligible
// nodes cannot survive the loss of either with Raft alone: one voter dies with its
// node, two voters need both. Its coordinator completes the voter set with one witness:
// an eligible node of another region that runs a second Raft group for this region on
// its own Raft port (Mux), votes and stores the log, and never hosts the region's
// workloads (placements only ever target nodes of the region). A witness that wins an
// election hands leadership to a voter of the region at once.
//
// A region of one eligible node gets no witness: a witness would take its autonomy
// (two voters, one remote) and give nothing to fail over to.
//
// The gossiped keys of the protocol:
//
//   - KeyWitnessOffer (every node): what the node offers other regions: "off", "any",
//     or "prefer:r1,r2" (any region, these first: --witness-for).
//   - KeyWitnessing (every node): the regions the node is a witness of now.
//   - KeyWitnessWant (the coordinator): the witness ids its region wants. A node listed
//     there starts a group for the region (agent/witness.go); the coordinator adds it
//     as a nonvoter once its Raft port answers for the region, and promotes it once it
//     has caught up.
//   - WitnessKey(region, key): a witness group's own state, so /v1/regions can name a
//     witness that leads, and every node can tell a region is headless.
const (
	KeyWitnessOffer = "raft.witness_offer"
	KeyWitnessing   = "raft.witnessing"
	KeyWitnessWant  = "raft.witness_want"
)

// Values of KeyWitnessOffer.
const (
	OfferOff    = "off"
	OfferAny    = "any"
	offerPrefer = "prefer:"
)

// witnessPrefix starts the gossiped keys of a witness group: raftw/<region>/<key>.
// Region names cannot hold '/'.
const witnessPrefix = "raftw/"

// WitnessKey is the gossiped key under which a witness group of region publishes key
// (one of the Key* constants of a group: KeyState, KeyLeader, ...).
func WitnessKey(region, key string) string {
	return witnessPrefix + region + "/" + strings.TrimPrefix(key, "raft.")
}

// parseWitnessKey splits a WitnessKey into its region and group key.
func parseWitnessKey(k string) (region, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, witnessPrefix)
	if !ok {
		return "", "", false
	}
	region, suffix, ok := strings.Cut(rest, "/")
	if !ok || region == "" || suffix == "" {
		return "", "", false
	}
	return region, "raft." + suffix, true
}

// WitnessGroups returns, from one peer's gossiped state, the state of each witness
// group it runs, by region, under the ordinary group keys.
func WitnessGroups(state map[string]string) map[string]map[string]string {
	var out map[string]map[string]string
	for k, v := range state {
		r, key, ok := parseWitnessKey(k)
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]map[string]string{}
		}
		if out[r] == nil {
			out[r] = map[string]string{}
		}
		out[r][key] = v
	}
	return out
}

// OfferString is the KeyWitnessOffer value for a node: off, or any region with the
// regions of prefer first.
func OfferString(off bool, prefer []string) string {
	switch {
	case off:
		return OfferOff
	case len(prefer) == 0:
		return OfferAny
	}
	return offerPrefer + strings.Join(prefer, ",")
}

// offers reports whether a peer offers to be a witness for region, and whether it
// prefers it.
func offers(p Peer, region string) (ok, preferred bool) {
	v := p.State[KeyWitnessOffer]
	switch {
	case v == OfferOff:
		return false, false
	case strings.HasPrefix(v, offerPrefer):
		return true, slices.Contains(splitList(strings.TrimPrefix(v, offerPrefer)), region)
	}
	// "any", and nodes that publish nothing yet (an older version): any.
	return true, false
}

// witnessCapable: a node of another region that may serve region as a witness.
func witnessCapable(p Peer, region string) bool {
	if p.Region == region || !p.Alive || !p.Eligible || p.RaftAddr == "" || p.ID == "" {
		return false
	}
	ok, _ := offers(p, region)
	return ok
}

// RankWitnesses orders the nodes that could be witnesses of region, best first. The
// choice is deterministic (every node computes the same order from the same view):
//
//  1. nodes that prefer the region (--witness-for) first;
//  2. then nodes that are witnesses of fewer regions now, so the duty spreads;
//  3. then by a hash of region and node id, so regions with equal choices spread over
//     different nodes instead of all picking the same one.
//
// Only alive, coordinator-eligible nodes of other regions that do not refuse the duty
// (--witness=false) are candidates.
func RankWitnesses(region string, peers []Peer) []string {
	type cand struct {
		id   string
		pref bool
		load int
		rank uint64
	}
	var cs []cand
	for _, p := range peers {
		if !witnessCapable(p, region) {
			continue
		}
		_, pref := offers(p, region)
		load := len(splitList(p.State[KeyWitnessing]))
		if slices.Contains(splitList(p.State[KeyWitnessing]), region) {
			load-- // already ours: do not count our own duty against it
		}
		cs = append(cs, cand{p.ID, pref, load, rank(region + "/" + p.ID)})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.pref != b.pref {
			if a.pref {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.load, b.load), cmp.Compare(a.rank, b.rank), strings.Compare(a.id, b.id))
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
}

// WitnessTargets is the voter layout of a region with `eligible` eligible nodes of its
// own (voters counted as eligible while they are in the configuration) under
// --voters maxVoters: how many local voters and how many witnesses. Only a region of
// exactly two eligible nodes borrows a witness (and not with --voters 1).
func WitnessTargets(maxVoters, eligible int) (local, witnesses int) {
	if eligible == 2 && maxVoters != 1 {
		return 2, 1
	}
	return TargetVoters(maxVoters, eligible), 0
}

// wantedBy returns the witness ids a region's coordinator publishes in KeyWitnessWant.
func wantedBy(p Peer) []string { return splitList(p.State[KeyWitnessWant]) }

// WitnessDuties returns the regions whose coordinator (an alive peer leading its own
// region) wants node id as a witness, with the coordinator's term.
func WitnessDuties(id string, peers []Peer) map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range peers {
		if !p.Alive || p.ID == id {
			continue
		}
		term, err := strconv.ParseUint(p.State[KeyLeader], 10, 64)
		if err != nil || term == 0 || !slices.Contains(wantedBy(p), id) {
			continue
		}
		if term > out[p.Region] {
			out[p.Region] = term
		}
	}
	return out
}

// MaxWitnessDuties bounds the witness groups one node runs: each costs a Raft group's
// heartbeats and a copy of the region's log.
const MaxWitnessDuties = 4

// RetireAfter is how long a witness group must be unwanted before it stops: its region
// has a coordinator whose voters and wanted witnesses leave this node out.
const RetireAfter = 30 * time.Second

// WitnessDuty tracks which witness groups a node should run (the agent's witness
// manager, and the test fleets). Not safe for concurrent use: one loop owns it.
type WitnessDuty struct {
	self     string               // this node's id
	region   string               // this node's own region
	offered  bool                 // false: --witness=false (or not eligible)
	unneeded map[string]time.Time // region → since when its coordinator leaves us out
}

// NewWitnessDuty returns the tracker of node id of region home.
func NewWitnessDuty(id, home string, offered bool) *WitnessDuty {
	return &WitnessDuty{self: id, region: home, offered: offered, unneeded: map[string]time.Time{}}
}

// Update returns the regions whose witness group should start (a coordinator wants
// this node, up to MaxWitnessDuties) and those that should stop, given the groups
// running now. A group stops once, for RetireAfter, an alive coordinator of its
// region has neither listed this node among its voters nor wanted it. A group whose
// region shows no coordinator keeps running: it may be the vote the region needs.
func (d *WitnessDuty) Update(peers []Peer, running []string, now time.Time) (start, stop []string) {
	duties := WitnessDuties(d.self, peers)
	// The coordinator of each region, as gossip shows it (highest term).
	type lead struct {
		term   uint64
		voters []string
		want   []string
	}
	leads := map[string]lead{}
	note := func(r string, st map[string]string) {
		term, err := strconv.ParseUint(st[KeyLeader], 10, 64)
		if err != nil || term == 0 || term < leads[r].term {
			return
		}
		leads[r] = lead{term, splitList(st[KeyVoters]), splitList(st[KeyWitnessWant])}
	}
	for _, p := range peers {
		if !p.Alive || p.ID == d.self {
			continue
		}
		note(p.Region, p.State)
		for r, st := range WitnessGroups(p.State) {
			note(r, st)
		}
	}
	for _, r := range running {
		l, ok := leads[r]
		needed := !ok || slices.Contains(l.voters, d.self) || slices.Contains(l.want, d.self) || duties[r] > 0
		if needed {
			delete(d.unneeded, r)
			continue
		}
		since, ok := d.unneeded[r]
		if !ok {
			d.unneeded[r] = now
			continue
		}
		if now.Sub(since) >= RetireAfter {
			stop = append(stop, r)
			delete(d.unneeded, r)
		}
	}
	if d.offered {
		n := len(running)
		rs := make([]string, 0, len(duties))
		for r := range duties {
			rs = append(rs, r)
		}
		slices.Sort(rs)
		for _, r := range rs {
			if r == d.region || slices.Contains(running, r) || n >= MaxWitnessDuties {
				continue
			}
			start = append(start, r)
			n++
		}
	}
	return start, stop
}
