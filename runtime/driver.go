package runtime

import (
	"context"
	"time"
)

// Driver runs instances of one kind. The supervisor is its only consumer;
// every method may be called concurrently for different handles.
type Driver interface {
	// Name is "exec" or "docker".
	Name() string
	// Start launches spec and returns its handle. Errors that retrying cannot
	// fix (missing binary, missing image, bad limits) wrap ErrInvalidSpec.
	Start(ctx context.Context, spec InstanceSpec) (Handle, error)
	// Wait blocks until the instance exits (returning its exit status) or
	// ctx ends (returning ctx.Err()). It never stops the instance.
	Wait(ctx context.Context, h Handle) (ExitStatus, error)
	// Stop stops the instance (SIGTERM, then SIGKILL after grace) and frees
	// what the driver holds for it (container, records, cgroup). Stopping an
	// instance that already exited or is gone is not an error.
	Stop(ctx context.Context, h Handle, grace time.Duration) error
	// List returns every instance this driver started for this node that
	// still exists (running or exited but not yet cleaned up).
	List(ctx context.Context) ([]Handle, error)
	// Usage reports cumulative CPU time and current memory of the instance.
	Usage(ctx context.Context, h Handle) (Usage, error)
}

// InContainerExecer is implemented by drivers whose exec health probes run
// inside the instance (docker) rather than on the node.
type InContainerExecer interface {
	ExecIn(ctx context.Context, h Handle, argv []string) (exitCode int, err error)
}

// Handle identifies one started instance; it is what adoption finds again.
type Handle struct {
	Driver     string `json:"driver"`
	InstanceID string `json:"instanceID"`
	Intent     string `json:"intent"`
	Generation uint64 `json:"generation"`
	SpecHash   string `json:"specHash"`
	// Ref is the driver's own reference: the pid (exec) or container id.
	Ref string `json:"ref"`
	// Exec only: pid, its start time (clock ticks since boot, /proc/<pid>/stat
	// field 22) and the boot id, so a recycled pid is never mistaken for it.
	PID       int    `json:"pid,omitempty"`
	StartTick uint64 `json:"startTick,omitempty"`
	BootID    string `json:"bootID,omitempty"`
	// Running is set by List: false when the instance exists but has exited.
	Running bool `json:"-"`
	// StartedAt is when the instance was started, if known.
	StartedAt time.Time `json:"startedAt"`
	// LimitsNote explains limits that could not be enforced ("" if enforced
	// or none requested).
	LimitsNote string `json:"limitsNote,omitempty"`
}

// ExitStatus is how an instance ended.
type ExitStatus struct {
	// Code is the exit status; -1 when unknown (an adopted exec process is
	// not our child, so its status cannot be collected) or killed by signal.
	Code int
	// Signal names the signal that killed it, if any.
	Signal string
	// OOMKilled is set when the engine reports an out-of-memory kill.
	OOMKilled bool
}

// Usage is a sample of an instance's resource use.
type Usage struct {
	// CPUTime is the cumulative CPU time consumed; the supervisor turns
	// successive samples into milli-CPU.
	CPUTime     time.Duration
	MemoryBytes int64
}
