package agent

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/murmur-edge/murmur/runtime"
)

// supervisor is what the agent needs of the local supervisor.
type supervisor interface {
	Run(ctx context.Context) error
	SetDesired(specs []runtime.InstanceSpec) error
	Desired() []runtime.InstanceSpec
	Instances() []runtime.InstanceStatus
	Usage() runtime.NodeUsage
	Logs(ctx context.Context, id string, opts runtime.LogOptions, sink runtime.LogSink) error
}

// startRuntime detects the working drivers and builds the supervisor. Docker counts
// only when the engine answers a ping.
func (a *Agent) startRuntime(ctx context.Context) (supervisor, []string, string, error) {
	if ds := a.deps.Drivers; ds != nil {
		sup, err := runtime.New(runtime.Config{
			Node: a.cfg.Name, DataDir: filepath.Join(a.cfg.DataDir, "runtime"), Drivers: ds,
			Logger: a.log, Registerer: a.reg, Clock: a.clock, OnChange: a.instancesChanged,
		})
		if err != nil {
			return nil, nil, "", err
		}
		return sup, slices.Sorted(maps.Keys(ds)), "", nil
	}
	ex, err := runtime.NewExecDriver(runtime.ExecConfig{DataDir: filepath.Join(a.cfg.DataDir, "runtime", "exec"), Node: a.cfg.Name, Logger: a.log})
	if err != nil {
		return nil, nil, "", err
	}
	drivers := map[string]runtime.Driver{runtime.DriverExec: ex}
	detectCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	names := runtime.DetectDrivers(detectCtx, nil, 2*time.Second)
	cancel()
	if slices.Contains(names, runtime.DriverDocker) {
		dk, err := runtime.NewDockerDriver(runtime.DockerConfig{Node: a.cfg.Name, Logger: a.log})
		if err != nil {
			a.log.Warn("docker engine answers but its driver failed; running exec only", "err", err)
			names = slices.DeleteFunc(names, func(s string) bool { return s == runtime.DriverDocker })
		} else {
			drivers[runtime.DriverDocker] = dk
		}
	}
	note := ""
	if ok, why := ex.LimitsEnforced(); !ok {
		note = "exec limits not enforced: " + why
		a.log.Warn("exec workloads run without CPU/memory limits", "reason", why)
	}
	sup, err := runtime.New(runtime.Config{
		Node: a.cfg.Name, DataDir: filepath.Join(a.cfg.DataDir, "runtime"), Drivers: drivers,
		Logger: a.log, Registerer: a.reg, Clock: a.clock, OnChange: a.instancesChanged,
	})
	if err != nil {
		return nil, nil, "", err
	}
	return sup, names, note, nil
}

// instancesChanged is the supervisor's OnChange: the node side reports the change.
func (a *Agent) instancesChanged() {
	if l := a.local.Load(); l != nil {
		l.NotifyInstances()
	}
}

// supervisorUsage adapts the supervisor to the load sampler.
type supervisorUsage struct{ s supervisor }

func (u supervisorUsage) Usage() Usage {
	nu := u.s.Usage()
	running := 0
	for _, st := range u.s.Instances() {
		switch st.State {
		case runtime.StateRunning, runtime.StateStarting, runtime.StateUnhealthy:
			running++
		}
	}
	return Usage{MilliCPU: nu.MilliCPU, MemoryBytes: nu.MemoryBytes, Instances: running}
}
