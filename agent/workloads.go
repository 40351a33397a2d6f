package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/gossip"
)

// send delivers a payload of the assignment channel to node: a direct call for this
// node, gossip's reliable channel (TCP) for the others. Assignments, reports and
// queries are small, must arrive whole and in order per send, and every node already
// listens there; the HTTP API may be loopback-only. See docs/workloads.md.
func (a *Agent) send(node string, payload []byte) error {
	if node == a.cfg.Name {
		a.handleAssign(node, payload)
		return nil
	}
	return a.gossip.SendReliable(node, gossip.KindAssign, payload)
}

// reply answers a node that just sent this node a query: gossip's reliable channel,
// also when this node's gossip still holds the asker dead (see gossip.ReplyReliable).
func (a *Agent) reply(node string, payload []byte) error {
	if node == a.cfg.Name {
		a.handleAssign(node, payload)
		return nil
	}
	return a.gossip.ReplyReliable(node, gossip.KindAssign, payload)
}

// viewReady is the coordinator's gate before it plans: a majority of the region's
// Raft voters are alive in this node's gossip view. A voter that just restarted can
// win an election before gossip brought it the fleet; its empty view would make every
// other node look gone. (Not gossip's Joined: that waits for a seed, and the seeds
// may be the nodes that died.)
func (a *Agent) viewReady() bool {
	v, ok := a.region.LocalView()
	if !ok || len(v.Voters) == 0 {
		return false
	}
	up := map[string]bool{}
	for _, m := range a.gossip.Members() {
		// Any region: a witness voter gossips its own region (witness.go).
		if m.Up() {
			up[m.ID] = true
		}
	}
	n := 0
	for _, id := range v.Voters {
		if up[id] {
			n++
		}
	}
	return n >= len(v.Voters)/2+1
}

func (a *Agent) handleAssign(from string, payload []byte) {
	if l := a.local.Load(); l != nil {
		l.HandleMessage(from, payload)
	}
}

// handleWorkloads answers GET /v1/workloads: this node's region (or ?region=) as its
// coordinator sees it, asked over the assignment channel when that is another node.
func (a *Agent) handleWorkloads(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	reg := q.Get("region")
	if reg == "" {
		reg = a.cfg.Region
	}
	v, status, err := a.regionView(r.Context(), reg, q.Get("intent"))
	if err != nil {
		api.WriteError(w, status, err.Error())
		return
	}
	api.WriteJSON(w, http.StatusOK, v)
}

// regionView is region reg's workloads (of intent, or all) as its coordinator sees
// them: this node's coordinator when it leads reg, else asked over the assignment
// channel. A failure comes with the HTTP status that answers it.
func (a *Agent) regionView(ctx context.Context, reg, intent string) (coordinator.View, int, error) {
	if reg == a.cfg.Region {
		if v, ok := a.coord.View(intent); ok {
			return v, http.StatusOK, nil
		}
	}
	known := slices.ContainsFunc(a.gossip.Members(), func(m gossip.Member) bool { return m.Region == reg })
	if !known {
		return coordinator.View{}, http.StatusNotFound, errors.New("no node of region " + reg + " is known: see GET /v1/regions for the regions of the fleet")
	}
	to := a.coordinatorOf(reg)
	l := a.local.Load()
	if to == "" || l == nil {
		return coordinator.View{}, http.StatusServiceUnavailable, errors.New("region " + reg + " has no coordinator right now (see GET /v1/regions); its nodes keep running their last assignments")
	}
	if to == a.cfg.Name {
		return coordinator.View{}, http.StatusServiceUnavailable, errors.New("this node is becoming region " + reg + "'s coordinator; try again in a moment")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := l.Query(ctx, to, intent)
	if err != nil {
		return coordinator.View{}, http.StatusBadGateway, errors.New("ask the coordinator of region " + reg + ": " + err.Error())
	}
	return v, http.StatusOK, nil
}
