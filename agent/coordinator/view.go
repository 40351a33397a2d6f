package coordinator

import (
	"cmp"
	"slices"
	"time"

	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/scheduler"
)

// Instance states the view shows besides the runtime's own (running, starting,
// backoff, failed, unhealthy, stopped, pending).
const (
	// StateAssigned: committed, the node has not reported it yet.
	StateAssigned = "assigned"
	// StateWaiting: the node has the assignment but not the intent's body yet.
	StateWaiting = "waiting"
	// StateLost: the node is dead or gone; the instance will be replaced.
	StateLost = "lost"
	// StateUnknown: the node is suspect (its last report is shown), or, right after a
	// failover, it has not reported to the new coordinator yet.
	StateUnknown = "unknown"
)

// Workload is one instance as GET /v1/workloads lists it.
type Workload struct {
	Intent     string    `codec:"n" json:"intent"`
	Instance   string    `codec:"i" json:"instance"`
	Node       string    `codec:"d" json:"node"`
	Region     string    `codec:"r" json:"region"`
	State      string    `codec:"s" json:"state"`
	Restarts   int       `codec:"x" json:"restarts"`
	Since      time.Time `codec:"t" json:"since,omitzero"`
	Generation uint64    `codec:"g" json:"generation"`
	Version    string    `codec:"v" json:"version,omitempty"`
	Error      string    `codec:"e,omitempty" json:"error,omitempty"`
	// Cause and Reason say why the instance is on Node: the decision that placed it,
	// as committed with it (the scheduler's filters and scores, the rule that fired).
	Cause  string `codec:"c,omitempty" json:"cause,omitempty"`
	Reason string `codec:"y,omitempty" json:"reason,omitempty"`
}

// Summary is desired against running for one Workload intent in the region.
type Summary struct {
	Intent  string `codec:"n" json:"intent"`
	Desired int    `codec:"d" json:"desired"`
	// Placed counts the instances of the table on nodes that are not dead or gone.
	Placed   int `codec:"p" json:"placed"`
	Running  int `codec:"r" json:"running"`
	Unplaced int `codec:"u,omitempty" json:"unplaced,omitempty"`
	// Reason says why work is unplaced: the scheduler's filter counts ("3 nodes
	// filtered by label camera=yes") or the admission policy that forbids it.
	Reason string `codec:"w,omitempty" json:"reason,omitempty"`
}

// View is a region's workloads as its coordinator sees them.
type View struct {
	Region      string     `codec:"r" json:"region"`
	Coordinator string     `codec:"c" json:"coordinator"`
	Generation  uint64     `codec:"g" json:"generation"`
	Workloads   []Workload `codec:"w" json:"workloads"`
	Intents     []Summary  `codec:"s" json:"intents"`
}

// buildView joins the applied table with the nodes' reports. Pure.
func buildView(regionName, self string, st region.State, nodes map[string]nodeInfo, reports map[string]Report, sums []Summary, intent string, heardFrom uint64) View {
	v := View{Region: regionName, Coordinator: self, Generation: st.Generation, Workloads: []Workload{}, Intents: []Summary{}}
	byID := map[string]InstanceReport{}
	waiting := map[string]bool{}
	for _, r := range reports {
		for _, ir := range r.Instances {
			byID[r.Node+"\x00"+ir.ID] = ir
		}
		for _, id := range r.Waiting {
			waiting[r.Node+"\x00"+id] = true
		}
	}
	running := map[string]int{}
	placed := map[string]int{}
	for _, p := range st.Placements {
		if intent != "" && p.Workload != intent {
			continue
		}
		w := Workload{Intent: p.Workload, Instance: p.ID, Node: p.Node, Region: regionName, Generation: p.Generation,
			Version: p.Version.String(), State: StateAssigned, Since: p.StartedAt, Cause: string(p.Cause), Reason: p.Reason}
		if ir, ok := byID[p.Node+"\x00"+p.ID]; ok && ir.Generation == p.Generation {
			w.State, w.Restarts, w.Since, w.Error = ir.State, ir.Restarts, ir.Since, ir.Error
		} else if waiting[p.Node+"\x00"+p.ID] {
			w.State = StateWaiting
		} else if _, heard := reports[p.Node]; !heard && p.Generation <= heardFrom {
			w.State = StateUnknown // placed before this coordinator led; its node has not reported to it yet
		}
		switch nodes[p.Node].status {
		case scheduler.StatusDead, scheduler.StatusLeft, "":
			w.State = StateLost
		case scheduler.StatusSuspect:
			w.State = StateUnknown
		}
		if w.State != StateLost {
			placed[p.Workload]++
		}
		if w.State == "running" {
			running[p.Workload]++
		}
		v.Workloads = append(v.Workloads, w)
	}
	slices.SortFunc(v.Workloads, func(a, b Workload) int {
		return cmp.Or(cmp.Compare(a.Intent, b.Intent), cmp.Compare(a.Instance, b.Instance))
	})
	for _, s := range sums {
		if intent != "" && s.Intent != intent {
			continue
		}
		s.Placed, s.Running = placed[s.Intent], running[s.Intent]
		v.Intents = append(v.Intents, s)
	}
	return v
}
