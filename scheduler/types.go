package scheduler

import (
	"time"

	"github.com/murmur-edge/murmur/policy"
)

// NodeStatus is a node's membership status as the gossip layer sees it.
type NodeStatus string

// Node statuses. Any other value is treated like StatusSuspect: the node gets no
// new work and its instances are left alone.
const (
	StatusAlive   NodeStatus = "alive"   // eligible for work
	StatusSuspect NodeStatus = "suspect" // may be failing: no new work, instances kept and counted
	StatusDead    NodeStatus = "dead"    // instances replaced once Workload.ReplaceAfter has passed since DeadSince
	StatusLeft    NodeStatus = "left"    // left gracefully: its instance records are stopped and replaced at once (exclusive ones once its lease ends)
)

// ZoneLabel is the node label that names a node's failure zone. Replicas of one
// workload are spread across zones when the eligible nodes carry more than one value.
const ZoneLabel = "zone"

// Resources is an amount of CPU and memory: a node's capacity or an instance's request.
type Resources struct {
	MilliCPU    int64 `json:"milliCPU,omitempty"`    // thousandths of a core (250 = 250m)
	MemoryBytes int64 `json:"memoryBytes,omitempty"` // bytes
}

// Load is a node's measured utilisation, as fractions of its capacity (0.0–1.0+).
// It is what the node's own workloads use, not what they request.
type Load struct {
	CPU    float64 `json:"cpu,omitempty"`
	Memory float64 `json:"memory,omitempty"`
}

// Node is one member of the region, as the coordinator's fleet view describes it.
type Node struct {
	// Name identifies the node; placements refer to it. Must be unique in Input.Nodes
	// (a later duplicate is ignored).
	Name string `json:"name"`
	// Region the node belongs to. Empty means Input.Region. A node of another region
	// is never chosen (filter "other region").
	Region string `json:"region,omitempty"`
	// Status is the gossip status: alive, suspect, dead or left.
	Status NodeStatus `json:"status"`
	// Capacity is what the scheduler may hand out on the node. Requests of instances
	// placed on it are subtracted; a request that does not fit is filtered
	// ("insufficient cpu", "insufficient memory").
	Capacity Resources `json:"capacity"`
	// Load is the live utilisation. It feeds the "load" scorer and the offload rule.
	Load Load `json:"load,omitempty"`
	// LoadHighSince is when the node's load last rose above the offload threshold and
	// has stayed there since; zero when it is not above. The coordinator keeps this
	// (the scheduler keeps no state between calls). Offload acts once
	// Now - LoadHighSince >= OffloadPolicy.SustainedFor.
	LoadHighSince time.Time `json:"loadHighSince,omitzero"`
	// LastMigrationAt is when an offload migration last moved an instance away from
	// this node; zero if never. At most one offload per node per OffloadPolicy.Cooldown.
	LastMigrationAt time.Time `json:"lastMigrationAt,omitzero"`
	// Labels are the node's key=value labels, matched by Workload.Constraints.
	// The label ZoneLabel ("zone") names the node's failure zone.
	Labels map[string]string `json:"labels,omitempty"`
	// Drivers are the runtime drivers available on the node ("exec", "docker").
	Drivers []string `json:"drivers,omitempty"`
	// Draining nodes get no new work, and their instances are migrated away.
	Draining bool `json:"draining,omitempty"`
	// DeadSince is when the node was declared dead (meaningful when Status is dead).
	// Zero means "unknown": instances on it are replaced at once.
	DeadSince time.Time `json:"deadSince,omitzero"`
}

// Mode says how many instances a workload wants.
type Mode string

// Workload modes.
const (
	ModeReplicated Mode = "replicated" // Replicas instances in the region (also the empty value)
	ModeGlobal     Mode = "global"     // one instance on every eligible node
)

// Strategy chooses the resource scorer.
type Strategy string

// Placement strategies.
const (
	StrategyBinpack Strategy = "binpack" // fill nodes up, keep others free (also the empty value)
	StrategySpread  Strategy = "spread"  // prefer the emptiest node
)

// Workload is one workload targeting the region, translated from an intent and the
// policies in force.
type Workload struct {
	// Name identifies the workload; placements refer to it. Unique in Input.Workloads
	// (a later duplicate is ignored).
	Name string `json:"name"`
	// Version of the workload's spec: the intent's version (policy.Version, the
	// fleet-wide order of updates to one name). Instances whose Placement.Version is
	// lower are replaced (migrated) by instances of the new version.
	Version policy.Version `json:"version,omitzero"`
	// SpecHash identifies what an instance of this version runs (policy
	// WorkloadSpec.RunHash). An instance of an older Version whose Placement.SpecHash
	// equals it runs the same thing and is not migrated (a change of replicas, or the
	// same spec written again); "" on either side compares by Version alone.
	SpecHash string `json:"specHash,omitempty"`
	// Regions the workload targets; empty means every region. When Input.Region is not
	// among them, all its instances are stopped.
	Regions []string `json:"regions,omitempty"`
	// Mode is replicated (default) or global.
	Mode Mode `json:"mode,omitempty"`
	// Replicas is the desired instance count in replicated mode (ignored for global).
	Replicas int `json:"replicas,omitempty"`
	// Driver is the runtime driver the workload needs; nodes must list it in Drivers.
	// Empty means any node.
	Driver string `json:"driver,omitempty"`
	// Resources is the per-instance request, subtracted from node capacity.
	Resources Resources `json:"resources"`
	// Constraints are labels a node must carry with exactly these values.
	Constraints map[string]string `json:"constraints,omitempty"`
	// Priority orders workloads: higher ones are placed first and may preempt
	// (stop) instances of strictly lower priority when the region lacks capacity.
	// Offload moves the lowest-priority instance of a hot node first.
	Priority int `json:"priority,omitempty"`
	// ReplaceAfter is disconnect.replaceAfter: how long an instance on a dead node
	// keeps counting as running before it is replaced. Zero replaces at once.
	ReplaceAfter time.Duration `json:"replaceAfter,omitempty"`
	// MaxFailures is the restart-failure threshold: an instance whose
	// Placement.Failures reaches it is moved to another node. Zero never moves.
	MaxFailures int `json:"maxFailures,omitempty"`
	// Strategy is binpack (default) or spread.
	Strategy Strategy `json:"strategy,omitempty"`
	// Reconcile is the workload's rule for surplus instances (spec.disconnect.reconcile).
	// Empty means Input.Reconcile, and keep_replacement when that is empty too.
	// Ignored for an exclusive workload, which always keeps the replacement.
	Reconcile ReconcileRule `json:"reconcile,omitempty"`
	// Exclusive makes the workload at-most-once (spec.exclusive): an instance must
	// never run in two places at once. Its instances on a dead, left or gone node
	// count as running until the node's lease (Input.Leases) has ended, and are then
	// stopped and replaced; they are never moved make-before-break (a move stops the
	// old instance, and a later plan places its successor once the stop is confirmed);
	// offload never moves them; and no instance is started while as many as desired
	// may still run. See the package documentation, "Exclusive workloads".
	Exclusive bool `json:"exclusive,omitempty"`
}

// OffloadPolicy is the region's offload rule (Policy spec.offload). A zero threshold
// disables that dimension; both zero disables offload and the threshold filter.
type OffloadPolicy struct {
	// CPUAbove is the cpu load fraction above which a node counts as hot.
	CPUAbove float64 `json:"cpuAbove,omitempty"`
	// MemoryAbove is the memory load fraction above which a node counts as hot.
	MemoryAbove float64 `json:"memoryAbove,omitempty"`
	// SustainedFor is how long a node must stay hot (see Node.LoadHighSince) before
	// an instance is moved away.
	SustainedFor time.Duration `json:"sustainedFor,omitempty"`
	// Cooldown is the least time between two offload migrations from one node (see
	// Node.LastMigrationAt).
	Cooldown time.Duration `json:"cooldown,omitempty"`
}

// ReconcileRule decides which instances to stop when more run than desired, as after
// a partition heals and a node comes back with instances that were replaced.
type ReconcileRule string

// Reconcile rules. Under every rule, instances on dead nodes (within their
// ReplaceAfter) go first; then keep_replacement and keep_original decide each pair of
// a lost original and the replacement that Supersedes it; then instances on alive
// nodes are kept before those on suspect ones; the remaining ties are broken by the
// rule's order and instance ID. Whatever
// the rule, a surplus instance that runs is stopped only once the instances kept in
// its place report running (see Plan: the number of running instances never drops
// below the desired count, or below what runs now if that is less).
const (
	// ReconcileKeepReplacement (also the empty value) keeps the newest instances
	// (highest Generation, then latest StartedAt): after a heal, the replacements
	// placed while the node was away stay and the originals stop.
	ReconcileKeepReplacement ReconcileRule = "keep_replacement"
	// ReconcileKeepOriginal keeps the oldest instances (lowest Generation, then
	// earliest StartedAt).
	ReconcileKeepOriginal ReconcileRule = "keep_original"
	// ReconcileBestScore keeps the instances on the best-scoring nodes (the
	// workload's strategy blended with live load, as for a placement), then the
	// newest, as keep_replacement.
	ReconcileBestScore ReconcileRule = "best_score"
	// ReconcileLegacy is the rule that was the default before keep_replacement, still
	// accepted as "default": keep the replacement unless the original is healthy and
	// older. Healthy running instances are kept first, the oldest of them first; among
	// the others the newest is kept first.
	ReconcileLegacy ReconcileRule = "default"
)

// InstanceState is what the node last reported about an instance.
type InstanceState string

// Instance states. All of them count as a running instance of the workload; the
// supervisor restarts failed ones locally.
const (
	StatePending InstanceState = "pending" // assigned, not yet reported running
	StateRunning InstanceState = "running"
	StateFailed  InstanceState = "failed" // exited; the node's supervisor is restarting it
)

// Placement is one instance in the region's placement table (the Raft state).
type Placement struct {
	// ID identifies the instance; unique in the table.
	ID string `json:"id"`
	// Workload is the workload's name.
	Workload string `json:"workload"`
	// Node is the name of the node the instance is assigned to.
	Node string `json:"node"`
	// Version is the Workload.Version the instance runs.
	Version policy.Version `json:"version,omitzero"`
	// SpecHash is the Workload.SpecHash the instance runs ("" in older tables).
	SpecHash string `json:"specHash,omitempty"`
	// Generation is the plan generation (Input.Generation, e.g. a Raft index) that
	// created this placement. Lower is older; reconciliation uses it.
	Generation uint64 `json:"generation,omitempty"`
	// State is the last reported state.
	State InstanceState `json:"state,omitempty"`
	// StartedAt is when the instance was placed or last started; breaks Generation ties.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Failures counts consecutive failed starts on this node (reset when healthy).
	Failures int `json:"failures,omitempty"`
	// Healthy is the last health-check result (true when the workload has no check and runs).
	Healthy bool `json:"healthy,omitempty"`
	// Replaces is, while a migration hands over, the instance this one replaces. The
	// coordinator keeps it and stops the old instance once this one runs; Plan ignores
	// it (the coordinator leaves the old instance out of the input meanwhile).
	Replaces string `json:"replaces,omitempty"`
	// Cause and Reason are those of the action that created the placement (Result.Apply
	// stamps them). The coordinator commits them with the placement, so whoever leads
	// next can still say why the instance is where it is. Plan ignores both.
	Cause  Cause  `json:"cause,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Usage is the instance's measured use (its node's latest report), for the
	// offload rule: a move must leave the target under the threshold with what the
	// instance really uses, not only what it requests. Zero when unknown. Input only:
	// never committed.
	Usage Resources `json:"usage,omitzero" codec:"-"`
	// Supersedes is, for an instance placed to replace a lost one (cause replace), the
	// ID of the instance it replaced. After a heal, when both run, the reconcile rule
	// keeps one of the pair (keep_replacement: this one; keep_original: the other)
	// before it compares ages. Committed with the placement. Never set for an exclusive
	// workload: its lost instance was known stopped (lease ended) when it was replaced,
	// and its record was removed in the same plan.
	Supersedes string `json:"supersedes,omitempty"`
	// Stopping marks a record the coordinator adds for an instance of an exclusive
	// workload whose stop was committed but which its node may still run: its node
	// has not confirmed the stop yet, or still reports it running.
	// It counts as a running instance of its workload (it occupies one of the desired
	// slots, and its node's resources) while its node is alive or suspect, or, on a
	// dead, left or gone node, for as long as an instance there would count (see
	// Input.Leases). Plan never emits an action for it (no stop, migrate or
	// replacement), never counts it as surplus, and never places an instance on its
	// node for a global workload while it is there. (Plan honours it for any
	// workload, treating the instance as exclusive.) Input only: never committed.
	Stopping bool `json:"stopping,omitempty" codec:"-"`
}

// Input is everything Plan decides from. Plan reads it and never modifies it.
type Input struct {
	// Region is the region being planned. Workloads that do not target it have their
	// instances stopped; nodes of another region are never chosen.
	Region string `json:"region,omitempty"`
	// Now is the time of the plan; the scheduler reads no clock.
	Now time.Time `json:"now"`
	// Seed breaks ties and orders candidate nodes. The same Seed and input give the
	// same plan; changing it per plan spreads load among equal nodes.
	Seed uint64 `json:"seed,omitempty"`
	// Generation is stamped on new placements and is part of their IDs
	// (<workload>-<generation>-<ordinal>). Pass a number that grows with each applied
	// plan, such as the Raft index the plan will be committed at.
	Generation uint64 `json:"generation,omitempty"`
	// Nodes are the region's nodes, every status included. A node missing from the
	// list is "gone": its instance records are stopped and replaced.
	Nodes []Node `json:"nodes"`
	// Workloads are the workloads that target the region.
	Workloads []Workload `json:"workloads"`
	// Placements is the current placement table.
	Placements []Placement `json:"placements,omitempty"`
	// Offload is the region's offload policy; zero disables offload.
	Offload OffloadPolicy `json:"offload,omitzero"`
	// Reconcile is the region-wide rule for surplus instances, for workloads whose own
	// Workload.Reconcile is empty; empty means ReconcileKeepReplacement.
	Reconcile ReconcileRule `json:"reconcile,omitempty"`
	// Leases maps a node name to the time until which that node may still be running
	// the exclusive instances assigned to it: its lease, renewed through the
	// coordinator; a node that cannot renew stops its exclusive instances before the
	// lease ends. Only exclusive workloads (and Stopping records) read it. A node
	// absent from the map holds no lease: its exclusive instances count as stopped once
	// the node is lost. Input only.
	Leases map[string]time.Time `json:"leases,omitempty"`
}

// ActionKind is what the coordinator must do for an action.
type ActionKind string

// Action kinds.
const (
	// ActionPlace starts a new instance Instance of Workload on Node.
	ActionPlace ActionKind = "place"
	// ActionStop stops instance Instance on Node and removes its record.
	ActionStop ActionKind = "stop"
	// ActionMigrate starts new instance Instance on Node, and once it runs stops the
	// instance Replaces on From and removes its record.
	ActionMigrate ActionKind = "migrate"
)

// Cause is the machine-readable reason for an action.
type Cause string

// Causes.
const (
	CauseMissing    Cause = "missing"    // place: fewer instances than desired
	CauseReplace    Cause = "replace"    // place: replaces instances lost with a dead, left or gone node
	CauseGlobal     Cause = "global"     // place: global workload missing on an eligible node
	CauseRemoved    Cause = "removed"    // stop: workload deleted or no longer targets the region
	CauseNodeGone   Cause = "node-gone"  // stop: record on a node that left or is gone from the region, or (exclusive) on a dead node whose lease ended
	CauseSurplus    Cause = "surplus"    // stop: more instances than desired (scale down, partition heal)
	CauseIneligible Cause = "ineligible" // stop (global, exclusive) or migrate: node no longer matches, or is draining
	CausePreempted  Cause = "preempted"  // stop: evicted for a higher-priority workload
	CauseDrain      Cause = "drain"      // migrate (stop, exclusive): node is draining
	CauseFailing    Cause = "failing"    // migrate (stop, exclusive): failures reached Workload.MaxFailures
	CauseUpdate     Cause = "update"     // migrate (stop, exclusive): instance runs an older Workload.Version
	CauseOffload    Cause = "offload"    // migrate: node load above the threshold for SustainedFor
)

// Action is one step of a plan.
type Action struct {
	Kind  ActionKind `json:"kind"`
	Cause Cause      `json:"cause"`
	// Workload is the workload's name.
	Workload string `json:"workload"`
	// Instance is the new instance's ID (place, migrate) or the stopped one (stop).
	Instance string `json:"instance"`
	// Node is where the new instance starts (place, migrate) or where the stopped one runs.
	Node string `json:"node"`
	// Version is the Workload.Version the new instance runs (place, migrate).
	Version policy.Version `json:"version,omitzero"`
	// SpecHash is the Workload.SpecHash the new instance runs (place, migrate).
	SpecHash string `json:"specHash,omitempty"`
	// Replaces is the instance a migration stops once the new one runs.
	Replaces string `json:"replaces,omitempty"`
	// From is the node of Replaces (migrate).
	From string `json:"from,omitempty"`
	// Supersedes is the lost instance a replacement replaces (cause replace); it is
	// recorded on the new placement (Placement.Supersedes). Empty for exclusive
	// workloads.
	Supersedes string `json:"supersedes,omitempty"`
	// Reason explains the action to an operator.
	Reason string `json:"reason"`
}

// FilterCount is how many nodes one feasibility filter rejected.
type FilterCount struct {
	Filter string `json:"filter"`
	Nodes  int    `json:"nodes"`
}

// Unplaced is work the plan could not place, and why.
type Unplaced struct {
	// Workload is the workload's name.
	Workload string `json:"workload"`
	// Instance is set when an existing instance could not be moved (drain, failing,
	// update, offload); it keeps running where it is.
	Instance string `json:"instance,omitempty"`
	// Count is how many instances could not be placed (1 for a move).
	Count int `json:"count"`
	// NodesEvaluated is how many nodes of the region were considered.
	NodesEvaluated int `json:"nodesEvaluated"`
	// Filtered counts the nodes each filter rejected, in filter-chain order; each node
	// is counted once, by the first filter that rejected it.
	Filtered []FilterCount `json:"filtered,omitempty"`
	// Reason renders the above: "3 nodes filtered by label camera=yes, 2 by insufficient memory".
	Reason string `json:"reason"`
}

// Result is a plan: the actions to commit and the work that could not be placed.
type Result struct {
	// Now and Generation echo the input; Apply stamps them on new placements.
	Now        time.Time `json:"now"`
	Generation uint64    `json:"generation,omitempty"`
	// Actions in the order they were decided: stops found while reading the table
	// (deleted workloads, nodes left or gone, exclusive instances whose lost node's
	// lease ended), surplus stops, then each workload by
	// priority (highest first, then name) with its preemption stops, migrations and
	// placements, then offload migrations.
	Actions []Action `json:"actions,omitempty"`
	// Unplaced lists what could not be placed or moved.
	Unplaced []Unplaced `json:"unplaced,omitempty"`
	// RecheckAt is the earliest future time at which the same input would give a
	// different plan (a dead node's replaceAfter expiring, the lease of a lost node
	// holding exclusive instances ending, a hot node reaching sustainedFor or leaving
	// its cooldown). Zero when nothing is pending.
	RecheckAt time.Time `json:"recheckAt,omitzero"`
}

// Empty reports whether the plan has no actions.
func (r Result) Empty() bool { return len(r.Actions) == 0 }
