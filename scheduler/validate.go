package scheduler

import (
	"fmt"
	"slices"
)

// Validate reports the first problem in the input, naming the field and the fix.
// Plan does not require a valid input (it ignores duplicate names and treats
// negative replicas as zero), but a coordinator should validate what it builds.
func (in *Input) Validate() error {
	if in.Now.IsZero() {
		return fmt.Errorf("now: zero time; pass the coordinator's current time")
	}
	if !validRule(in.Reconcile) {
		return fmt.Errorf("reconcile: unknown rule %q; use keep_replacement (or empty), keep_original, best_score or default (the legacy rule)", in.Reconcile)
	}
	o := in.Offload
	if o.CPUAbove < 0 || o.MemoryAbove < 0 {
		return fmt.Errorf("offload: negative threshold; use a load fraction such as 0.85, or 0 to disable")
	}
	if o.SustainedFor < 0 || o.Cooldown < 0 {
		return fmt.Errorf("offload: negative sustainedFor or cooldown; use 0 or a positive duration")
	}
	nodes := make(map[string]struct{}, len(in.Nodes))
	for i, n := range in.Nodes {
		if n.Name == "" {
			return fmt.Errorf("nodes[%d].name: empty; every node needs its unique name", i)
		}
		if _, dup := nodes[n.Name]; dup {
			return fmt.Errorf("nodes[%d].name: %q appears twice; pass each node once", i, n.Name)
		}
		nodes[n.Name] = struct{}{}
		switch n.Status {
		case StatusAlive, StatusSuspect, StatusDead, StatusLeft:
		default:
			return fmt.Errorf("nodes[%d].status: %q; use alive, suspect, dead or left", i, n.Status)
		}
		if n.Capacity.MilliCPU < 0 || n.Capacity.MemoryBytes < 0 {
			return fmt.Errorf("nodes[%d].capacity: negative; use 0 or more", i)
		}
	}
	wls := make(map[string]struct{}, len(in.Workloads))
	for i, w := range in.Workloads {
		if w.Name == "" {
			return fmt.Errorf("workloads[%d].name: empty; every workload needs its unique name", i)
		}
		if _, dup := wls[w.Name]; dup {
			return fmt.Errorf("workloads[%d].name: %q appears twice; pass each workload once", i, w.Name)
		}
		wls[w.Name] = struct{}{}
		if w.Mode != "" && w.Mode != ModeReplicated && w.Mode != ModeGlobal {
			return fmt.Errorf("workloads[%d].mode: %q; use replicated or global", i, w.Mode)
		}
		if w.Strategy != "" && w.Strategy != StrategyBinpack && w.Strategy != StrategySpread {
			return fmt.Errorf("workloads[%d].strategy: %q; use binpack or spread", i, w.Strategy)
		}
		if !validRule(w.Reconcile) {
			return fmt.Errorf("workloads[%d].reconcile: unknown rule %q; use keep_replacement, keep_original, best_score, default (the legacy rule) or empty for Input.Reconcile", i, w.Reconcile)
		}
		if w.Exclusive && w.Reconcile != "" && w.Reconcile != ReconcileKeepReplacement {
			return fmt.Errorf("workloads[%d].reconcile: %q with exclusive: an exclusive workload always keeps the replacement; leave reconcile empty or use keep_replacement", i, w.Reconcile)
		}
		if w.Replicas < 0 {
			return fmt.Errorf("workloads[%d].replicas: %d is negative; use 0 or more", i, w.Replicas)
		}
		if w.Resources.MilliCPU < 0 || w.Resources.MemoryBytes < 0 {
			return fmt.Errorf("workloads[%d].resources: negative request; use 0 or more", i)
		}
		if w.ReplaceAfter < 0 {
			return fmt.Errorf("workloads[%d].replaceAfter: negative; use 0 to replace at once", i)
		}
		if w.MaxFailures < 0 {
			return fmt.Errorf("workloads[%d].maxFailures: negative; use 0 to never move", i)
		}
		if slices.Contains(w.Regions, "") {
			return fmt.Errorf("workloads[%d].regions: empty region name; list region names or leave empty for all", i)
		}
	}
	ids := make(map[string]struct{}, len(in.Placements))
	for i, p := range in.Placements {
		if p.ID == "" {
			return fmt.Errorf("placements[%d].id: empty; every instance needs its unique id", i)
		}
		if _, dup := ids[p.ID]; dup {
			return fmt.Errorf("placements[%d].id: %q appears twice; instance ids must be unique", i, p.ID)
		}
		ids[p.ID] = struct{}{}
		if p.Failures < 0 {
			return fmt.Errorf("placements[%d].failures: negative; use 0 or more", i)
		}
	}
	return nil
}

func validRule(r ReconcileRule) bool {
	switch r {
	case "", ReconcileKeepReplacement, ReconcileKeepOriginal, ReconcileBestScore, ReconcileLegacy:
		return true
	}
	return false
}
