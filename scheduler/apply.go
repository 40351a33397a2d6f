package scheduler

// Apply returns the placement table after the plan has been carried out: stopped
// instances and the instances replaced by migrations are removed, and new instances
// are appended in action order with State pending, the plan's Generation, and
// StartedAt set to the plan's Now. It models the end state of a migration (new
// running, old stopped); a coordinator that tracks the hand-over in between keeps
// both records until the new instance reports running. placements is not modified.
func (r Result) Apply(placements []Placement) []Placement {
	remove := make(map[string]struct{})
	adds := 0
	for i := range r.Actions {
		a := &r.Actions[i]
		switch a.Kind {
		case ActionStop:
			remove[a.Instance] = struct{}{}
		case ActionMigrate:
			remove[a.Replaces] = struct{}{}
			adds++
		case ActionPlace:
			adds++
		}
	}
	out := make([]Placement, 0, max(len(placements)-len(remove), 0)+adds)
	for _, p := range placements {
		if _, gone := remove[p.ID]; !gone {
			out = append(out, p)
		}
	}
	for i := range r.Actions {
		a := &r.Actions[i]
		if a.Kind == ActionStop {
			continue
		}
		out = append(out, Placement{
			ID: a.Instance, Workload: a.Workload, Node: a.Node, Version: a.Version, SpecHash: a.SpecHash,
			Generation: r.Generation, State: StatePending, StartedAt: r.Now,
			Replaces: a.Replaces, Cause: a.Cause, Reason: a.Reason, Supersedes: a.Supersedes,
		})
	}
	return out
}
