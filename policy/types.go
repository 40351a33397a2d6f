package policy

import (
	"encoding/json"
	"fmt"
	"strings"
)

// APIVersion is the only apiVersion this release accepts.
const APIVersion = "murmur/v1"

// Intent kinds.
const (
	KindWorkload = "Workload"
	KindPolicy   = "Policy"
)

// Workload modes.
const (
	ModeReplicated = "replicated"
	ModeGlobal     = "global"
)

// Limits (documented in docs/intents.md).
const (
	MaxIntentBytes        = 1 << 20 // canonical encoding of one intent
	MaxReplicas           = 10000
	MaxLabels             = 64
	MaxRegions            = 100
	MaxListItems          = 1000    // command, env, allowedImages entries
	MaxNameLen            = 63      // DNS label
	MinMemoryBytes        = 6 << 20 // resources.memory: Docker's (and the runtime's) smallest limit
	maxYAMLAliasExpansion = 100000  // nodes an aliased document may add by expansion
)

// Intent is one parsed, defaulted and validated document. Exactly one of Workload and
// Policy is set, matching Kind.
type Intent struct {
	APIVersion string
	Kind       string
	Metadata   Metadata
	Workload   *WorkloadSpec
	Policy     *PolicySpec
	// Signature is the detached signature that came with the document, if any. It is not
	// part of the canonical encoding (it signs it).
	Signature *Signature
}

// Name is Metadata.Name.
func (in *Intent) Name() string { return in.Metadata.Name }

// Metadata names an intent. Name is a DNS label and unique fleet-wide across kinds.
type Metadata struct {
	Name   string            `json:"name" yaml:"name"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels"`
}

// WorkloadSpec is the spec of a Workload: what to run, where, and how many.
type WorkloadSpec struct {
	Mode        string            `json:"mode" yaml:"mode"`
	Replicas    *int              `json:"replicas,omitempty" yaml:"replicas"`
	Regions     []string          `json:"regions,omitempty" yaml:"regions"`
	Driver      string            `json:"driver" yaml:"driver"`
	Command     []string          `json:"command,omitempty" yaml:"command"`
	Image       string            `json:"image,omitempty" yaml:"image"`
	Env         map[string]string `json:"env,omitempty" yaml:"env"`
	Resources   Resources         `json:"resources" yaml:"resources"`
	Constraints Constraints       `json:"constraints" yaml:"constraints"`
	Priority    *int              `json:"priority" yaml:"priority"`
	Restart     Restart           `json:"restart" yaml:"restart"`
	Health      *Health           `json:"health,omitempty" yaml:"health"`
	Disconnect  Disconnect        `json:"disconnect" yaml:"disconnect"`
	// Exclusive makes the workload at-most-once: an instance never runs in two places
	// at once, even across a partition. Each node holds a lease renewed through its
	// region's coordinator and stops its exclusive instances when the lease runs out;
	// the coordinator replaces an instance only once its node's lease has ended, and
	// moves one (drain, update, failures) by stopping it before it starts its
	// successor. False (the default) is at-least-once: replacements start at once.
	// Exclusive is left out of the canonical encoding while false (omitempty), so an
	// intent that does not set it keeps the canonical bytes, hash and signature it had
	// before the field existed.
	Exclusive bool `json:"exclusive,omitempty" yaml:"exclusive"`
}

// Resources is what one instance reserves on its node.
type Resources struct {
	CPU    Quantity `json:"cpu" yaml:"cpu"`
	Memory Quantity `json:"memory" yaml:"memory"`
}

// Constraints restrict the nodes an instance may be placed on.
type Constraints struct {
	Labels map[string]string `json:"labels,omitempty" yaml:"labels"`
}

// Restart is the local supervisor's restart rule.
type Restart struct {
	Policy     string   `json:"policy" yaml:"policy"`
	MaxBackoff Duration `json:"maxBackoff" yaml:"maxBackoff"`
}

// Health is an optional HTTP health check.
type Health struct {
	HTTP     string   `json:"http" yaml:"http"`
	Interval Duration `json:"interval" yaml:"interval"`
	Timeout  Duration `json:"timeout" yaml:"timeout"`
}

// Disconnect says how long a coordinator waits before replacing instances of a node
// declared dead, and which instances stay when the node comes back.
type Disconnect struct {
	ReplaceAfter Duration `json:"replaceAfter" yaml:"replaceAfter"`
	// Reconcile is the rule that picks the instances to stop when, after a heal, both
	// the original and its replacement run: keep_replacement (the default),
	// keep_original or best_score (see the scheduler package). Default fills it; the
	// canonical encoding leaves the default out (see MarshalJSON), so an intent that
	// does not set it keeps the canonical bytes, hash and signature it had before the
	// field existed.
	Reconcile string `json:"reconcile,omitempty" yaml:"reconcile"`
}

// Reconcile rules (spec.disconnect.reconcile). The scheduler documents what each keeps.
const (
	ReconcileKeepReplacement = "keep_replacement"
	ReconcileKeepOriginal    = "keep_original"
	ReconcileBestScore       = "best_score"
	// reconcileLegacy is the scheduler's legacy rule; intents never accept it.
	reconcileLegacy = "default"
)

// MarshalJSON encodes d with Reconcile left out when it is the default
// (DefaultReconcile). Canonical encodings made before the field existed had no
// reconcile key, and the default must keep them byte for byte: their hashes and
// signatures are stored and exchanged fleet-wide, and nodes that do not know the field
// can still decode the intents that do not change it. Parse fills the default back in.
func (d Disconnect) MarshalJSON() ([]byte, error) {
	type plain Disconnect // same fields, without this method
	if d.Reconcile == DefaultReconcile {
		d.Reconcile = ""
	}
	return json.Marshal(plain(d))
}

// PolicySpec is the spec of a Policy: rules for the regions it names.
type PolicySpec struct {
	Regions   []string   `json:"regions,omitempty" yaml:"regions"`
	Offload   *Offload   `json:"offload,omitempty" yaml:"offload"`
	Admission *Admission `json:"admission,omitempty" yaml:"admission"`
}

// Offload is when a coordinator moves work off an overloaded node.
type Offload struct {
	CPUAbove     *float64 `json:"cpuAbove" yaml:"cpuAbove"`
	MemoryAbove  *float64 `json:"memoryAbove" yaml:"memoryAbove"`
	SustainedFor Duration `json:"sustainedFor" yaml:"sustainedFor"`
	Cooldown     Duration `json:"cooldown" yaml:"cooldown"`
}

// Admission restricts which Workloads a node accepts.
type Admission struct {
	AllowedDrivers []string `json:"allowedDrivers,omitempty" yaml:"allowedDrivers"`
	AllowedImages  []string `json:"allowedImages,omitempty" yaml:"allowedImages"`
	MaxCPU         Quantity `json:"maxCPU,omitempty" yaml:"maxCPU"`
	MaxMemory      Quantity `json:"maxMemory,omitempty" yaml:"maxMemory"`
}

// CPUMilli returns the validated CPU request in millicores (0 if invalid).
func (w *WorkloadSpec) CPUMilli() int64 { v, _ := ParseCPU(string(w.Resources.CPU)); return v }

// MemoryBytes returns the validated memory request in bytes (0 if invalid).
func (w *WorkloadSpec) MemoryBytes() int64 {
	v, _ := ParseMemory(string(w.Resources.Memory))
	return v
}

// ReplicaCount returns Replicas, or 0 when unset (mode global).
func (w *WorkloadSpec) ReplicaCount() int {
	if w.Replicas == nil {
		return 0
	}
	return *w.Replicas
}

// Problem is one thing wrong with a request: the field path and what to fix.
type Problem struct {
	Field   string
	Message string
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// Problems is every problem found in a request; it is the error type returned by
// Parse, Validate and Admit.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

func (ps *Problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
