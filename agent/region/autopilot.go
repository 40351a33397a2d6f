package region

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// The leader's side of voter management: autopilot (planAutopilot in rules.go is the
// pure rule; this carries it out) and a witness leader's handover (witness.go).

// autopilot runs planAutopilot on the leader and carries out its one action. It
// returns the witnesses the region wants (KeyWitnessWant).
func (n *Node) autopilot(ctx context.Context, r *raft.Raft, ctl Control, ls *loopState, servers []raft.Server, region, others map[string]Peer, names map[string]string, now time.Time) []string {
	// A node publishing another cluster id belongs to another group (split brain):
	// never absorb it (its applied state would silently differ from ours); report it.
	ours := n.fsm.ClusterID()
	var cands []string
	foreign := 0
	for _, p := range sortedPeers(region) {
		if c := p.State[KeyCluster]; p.Alive && p.ID != n.cfg.NodeID && ours != "" && c != "" && c != ours {
			foreign++
			if !ls.warnedForeign[p.ID] {
				ls.warnedForeign[p.ID] = true
				n.log.Error("node of this region is in another raft cluster (split brain): not adding it; wipe its data-dir/raft to let it join",
					"node", p.Name, "id", p.ID, "its_cluster", c, "our_cluster", ours)
			}
			continue
		}
		if p.Alive && p.Eligible && p.RaftAddr != "" {
			cands = append(cands, p.ID)
		}
	}
	n.m.foreign.Set(float64(foreign))
	in := apInput{
		name: n.cfg.Region, now: now, leaderID: n.cfg.NodeID, servers: servers, region: region, others: others, names: names,
		badSince: ls.badSince, nvSince: ls.nvSince,
		lastIndex: r.LastIndex(), maxVoters: n.cfg.Voters, standbys: n.cfg.Standbys,
		deadGrace: n.cfg.DeadGrace, stable: n.cfg.PromoteAfter, maxLag: PromoteMaxLag,
	}
	// Witness candidates, minus those that were wanted and never answered for the
	// region within witnessAnswer (a node that refuses the duty, or cannot reach us):
	// they are passed over for witnessRetry, so the next candidate gets its turn.
	peers := make([]Peer, 0, len(others))
	for _, p := range others {
		peers = append(peers, p)
	}
	for _, id := range RankWitnesses(n.cfg.Region, peers) {
		if t, ok := ls.witnessFailed[id]; ok && now.Sub(t) < witnessRetry {
			continue
		}
		in.witnesses = append(in.witnesses, id)
	}
	want := wantWitnesses(in)
	probeMap := make(map[string]Peer, len(region)+len(want))
	maps.Copy(probeMap, region)
	for _, id := range want {
		if p, ok := others[id]; ok {
			probeMap[id] = p
			cands = append(cands, id)
		}
	}
	in.reachable = n.probe(ctx, ctl, ls, probeMap, cands, now)
	for id, since := range ls.wantedSince {
		if !slices.Contains(want, id) {
			delete(ls.wantedSince, id)
		} else if in.reachable[id] {
			ls.wantedSince[id] = now
		} else if now.Sub(since) > witnessAnswer && !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
			n.log.Warn("witness candidate did not answer for the region: trying the next one", "node", cmp.Or(names[id], id), "waited", now.Sub(since).Round(time.Second))
			ls.witnessFailed[id] = now
			delete(ls.wantedSince, id)
		}
	}
	for _, id := range want {
		if _, ok := ls.wantedSince[id]; !ok {
			ls.wantedSince[id] = now
		}
	}
	a := planAutopilot(in)
	if a.kind == apNone {
		return want
	}
	const timeout = 2 * time.Second
	var err error
	switch a.kind {
	case apRemove:
		err = r.RemoveServer(raft.ServerID(a.id), 0, timeout).Error()
	case apAddNonvoter:
		err = r.AddNonvoter(raft.ServerID(a.id), raft.ServerAddress(a.addr), 0, timeout).Error()
		if err == nil {
			ls.nvSince[a.id] = now
		}
	case apPromote:
		err = r.AddVoter(raft.ServerID(a.id), raft.ServerAddress(a.addr), 0, timeout).Error()
	case apDemote:
		err = r.DemoteVoter(raft.ServerID(a.id), 0, timeout).Error()
	}
	name := cmp.Or(names[a.id], a.id)
	if err != nil {
		n.log.Warn("autopilot action failed", "action", a.kind.String(), "node", name, "id", a.id, "reason", a.reason, "err", err)
		return want
	}
	n.m.autopilot.WithLabelValues(a.kind.String()).Inc()
	n.log.Info("autopilot", "action", a.kind.String(), "node", name, "id", a.id, "reason", a.reason)
	n.poke()
	return want
}

// A wanted witness must answer for the region within witnessAnswer, or it is passed
// over for witnessRetry.
const (
	witnessAnswer = 15 * time.Second
	witnessRetry  = 2 * time.Minute
)

// handOver is a witness leader's duty: give leadership to a voter of the region as soon
// as one answers on its Raft port (tried at most once a second, the voters in turn).
// Until then the witness holds the term; the region's coordinator loop does not run on
// it, so placements wait for a local leader.
func (n *Node) handOver(ctx context.Context, r *raft.Raft, ctl Control, ls *loopState, servers []raft.Server, region map[string]Peer, now time.Time) {
	if now.Before(ls.retryAt) {
		return
	}
	ls.retryAt = now.Add(time.Second)
	for _, s := range servers {
		p, ok := region[string(s.ID)]
		if !ok || s.Suffrage != raft.Voter || !p.Alive {
			continue
		}
		// Gossip may still call a cut-off node alive: ask it first, so a transfer to
		// it does not hold the lead for a whole transfer timeout.
		pctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.ControlTimeout*3/10)
		resp, err := ctl.Call(pctx, string(s.Address), ControlRequest{Kind: CtlProbe, From: n.cfg.NodeID})
		cancel()
		if err != nil || !resp.OK {
			continue
		}
		if err := r.LeadershipTransferToServer(s.ID, s.Address).Error(); err != nil {
			n.log.Info("witness: leadership transfer failed", "to", p.Name, "err", err)
			return
		}
		n.log.Info("witness: handed leadership to a voter of the region", "to", p.Name)
		return
	}
}
