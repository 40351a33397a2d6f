package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
)

// advertiseHost picks the host peers reach this node at, for gossip and Raft alike:
// --advertise, else the bind host, else (bound to 0.0.0.0) the first private IPv4
// address, as memberlist itself would.
func advertiseHost(cfg Config) (string, error) {
	if cfg.Advertise != "" {
		h, _, _ := net.SplitHostPort(cfg.Advertise)
		return h, nil
	}
	h, _, _ := net.SplitHostPort(cfg.Bind)
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return h, nil
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("bound to %s and no private IPv4 address found to advertise: give --advertise host:port", cfg.Bind)
	}
	return ip, nil
}

// peersOf adapts the gossip fleet view to the region package's peers. A suspect node
// counts as alive: suspicion is not death, and Raft has its own failure detection.
func peersOf(ms []gossip.Member) []region.Peer {
	out := make([]region.Peer, 0, len(ms))
	for _, m := range ms {
		out = append(out, region.Peer{
			ID: m.ID, Name: m.Name, Region: m.Region, RaftAddr: m.RaftAddr, Eligible: m.Eligible,
			Alive: m.Up(), Left: m.Status == gossip.StatusLeft, State: m.State,
		})
	}
	return out
}

// regionLoop feeds the fleet view to the region node and gossips what it publishes:
// at once on a leadership or state change, and every 500 ms. raft.last_index changes
// with every commit: it is gossiped as indexDue says.
func (a *Agent) regionLoop(ctx context.Context) {
	changed, unsubscribe := a.region.Subscribe()
	defer unsubscribe()

	published := map[string]string{}
	indexAt := map[string]time.Time{} // when each last_index key (ours, our witness groups') was gossiped
	for {
		peers := peersOf(a.gossip.Members())
		a.region.UpdatePeers(peers)
		a.witnesses.update(ctx, peers)
		now := a.now()
		current := a.region.PublishedState()
		a.witnesses.published(current)
		for k := range published {
			if _, ok := current[k]; !ok {
				a.gossip.SetState(k, "")
				delete(published, k)
			}
		}
		for k, v := range current {
			if published[k] == v {
				continue
			}
			// The last indexes (ours and our witness groups') change with every commit.
			if strings.HasSuffix(k, "last_index") { // region.KeyLastIndex, and its WitnessKey
				if !indexDue(published[k], v, indexAt[k], now) {
					continue
				}
				indexAt[k] = now
			}
			a.gossip.SetState(k, v)
			published[k] = v
		}
		tick := a.clock.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-changed:
		case <-a.witnesses.kick:
		case <-tick.C():
		}
		tick.Stop()
	}
}

// indexDue reports whether a Raft last index that changed from published (what this
// node gossips now) to current is gossiped at now, the last time being at.
//
// Every record change costs every node of the fleet ~4 KB at 1,000 nodes (see
// gossip/record.go), and a Raft group commits often while it places work: gossiping
// each member's index once a second made 19 of the 23 record changes while 2 intents
// and one workload were placed on 20 nodes. The only reader that needs the value is
// autopilot, which promotes a nonvoter whose gossiped index is within
// region.PromoteMaxLag entries of the leader's; an index gossiped again once it moved
// by a quarter of that keeps a caught-up node within the bound. So: at once when the
// key appears or goes (a node joins or leaves a group) or the index goes back (a
// new log), otherwise when it moved by region.LastIndexStep, at most once a second.
// /v1/regions shows other regions' indexes that much behind.
func indexDue(published, current string, at, now time.Time) bool {
	if published == "" || current == "" {
		return true
	}
	was, err1 := strconv.ParseUint(published, 10, 64)
	is, err2 := strconv.ParseUint(current, 10, 64)
	switch {
	case err1 != nil || err2 != nil || is < was:
		return true
	case now.Sub(at) < time.Second:
		return false
	}
	return is-was >= region.LastIndexStep
}

// regionSummaries is the /v1/regions view: gossip for every region, corrected for
// this node's own region by its Raft view when it is a member of the group.
func (a *Agent) regionSummaries() []region.RegionSummary {
	peers, cached := a.summaries.of(a.gossip.Members())
	sums := slices.Clone(cached) // the cached summaries are shared: their slices are never written
	if sums == nil {
		sums = []region.RegionSummary{}
	}
	// For its own region a member of the Raft group knows the coordinator from Raft
	// itself, within a heartbeat of an election; gossip may take a push/pull round to
	// bring it (seconds when a broadcast misses a node). Other regions, and nodes
	// outside the group, go by gossip.
	if v, ok := a.region.LocalView(); ok {
		names := make(map[string]string, len(peers))
		regionOf := make(map[string]string, len(peers))
		for _, p := range peers {
			names[p.ID], regionOf[p.ID] = p.Name, p.Region
		}
		nameOf := func(id string) string {
			if n := names[id]; n != "" {
				return n
			}
			return id
		}
		for i := range sums {
			if sums[i].Name != a.cfg.Region || v.Term < sums[i].Term {
				continue
			}
			sums[i].Coordinator, sums[i].Term, sums[i].LastIndex, sums[i].Headless = nameOf(v.LeaderID), v.Term, v.LastIndex, false
			sums[i].Voters, sums[i].Witnesses = make([]string, 0, len(v.Voters)), nil
			for _, id := range v.Voters {
				sums[i].Voters = append(sums[i].Voters, nameOf(id))
				if r, ok := regionOf[id]; ok && r != a.cfg.Region {
					sums[i].Witnesses = append(sums[i].Witnesses, nameOf(id))
				}
			}
			slices.Sort(sums[i].Voters)
			slices.Sort(sums[i].Witnesses)
		}
	}
	return a.headless.observe(sums, a.now())
}

// summaryCache keeps what regionSummaries derives from one gossip snapshot: its peers
// and their region summaries. Members returns the same slice until the fleet view
// changes, and the event loop, the HTTP API and every message to the coordinator ask
// for the summaries: on a 1,000-node fleet summarizing every node on each call was a
// tenth of a simulated fleet's CPU (issue 14).
type summaryCache struct {
	mu    sync.Mutex
	ms    []gossip.Member
	peers []region.Peer
	sums  []region.RegionSummary
}

// of returns the peers and summaries of ms, computed once per snapshot. Both are
// shared: read them, never modify them.
func (c *summaryCache) of(ms []gossip.Member) ([]region.Peer, []region.RegionSummary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(ms) == 0 || len(ms) != len(c.ms) || &ms[0] != &c.ms[0] {
		c.ms, c.peers = ms, peersOf(ms)
		c.sums = region.Summarize(c.peers)
	}
	return c.peers, c.sums
}

// coordinatorOf is the name of region r's coordinator as this node knows it ("" when
// none is known).
func (a *Agent) coordinatorOf(r string) string {
	if r == a.cfg.Region && a.coord.Leading() {
		return a.cfg.Name
	}
	for _, s := range a.regionSummaries() {
		if s.Name == r {
			return s.Coordinator
		}
	}
	return ""
}

func (a *Agent) handleRegions(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusOK, map[string]any{"regions": a.regionSummaries()})
}

// handleRegionLog lists the last committed commands this node applied for a region
// whose Raft group it runs (its own, or one it is a witness for): index, term and a
// digest of each. Any two nodes listing an index must list the same entry; a fault
// campaign compares them across voters.
func (a *Agent) handleRegionLog(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n := a.region
	if name != a.cfg.Region {
		n = a.witnesses.groupOf(name)
	}
	if n == nil {
		api.WriteError(w, http.StatusNotFound, fmt.Sprintf("node %s runs no Raft group for region %q: ask a node of that region (murmur get regions lists them)", a.cfg.Name, name))
		return
	}
	out := map[string]any{"region": name, "node": a.cfg.Name, "cluster": n.ClusterID(), "entries": n.Recent()}
	if v, ok := n.LocalView(); ok {
		out["term"], out["lastIndex"] = v.Term, v.LastIndex
	}
	api.WriteJSON(w, http.StatusOK, out)
}
