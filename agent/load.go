package agent

import (
	"fmt"
	goruntime "runtime"

	"github.com/shirou/gopsutil/v4/mem"
)

// DefaultReserve is what the OS and the agent itself are assumed to use on every node:
// it is part of the node's load even before any workload runs.
func DefaultReserve() Resources { return Resources{MilliCPU: 100, MemoryBytes: 64 << 20} }

// DetectCapacity reads the host's CPU count and memory size.
func DetectCapacity() (Resources, error) {
	vm, err := mem.VirtualMemory()
	if err != nil {
		return Resources{}, fmt.Errorf("detect memory: %w (give --capacity cpu=...,memory=...)", err)
	}
	return Resources{MilliCPU: int64(goruntime.NumCPU()) * 1000, MemoryBytes: int64(vm.Total)}, nil
}

// Usage is what this node's own workloads use right now.
type Usage struct {
	MilliCPU    int64
	MemoryBytes int64
	Instances   int
}

// UsageSource reports the node's workload usage. The runtime's supervisor implements it.
type UsageSource interface {
	Usage() Usage
}

// nodeLoad is (usage + reserve) / capacity for CPU and memory.
func nodeLoad(u Usage, reserve, capacity Resources) (cpu, memory float64) {
	if capacity.MilliCPU > 0 {
		cpu = float64(u.MilliCPU+reserve.MilliCPU) / float64(capacity.MilliCPU)
	}
	if capacity.MemoryBytes > 0 {
		memory = float64(u.MemoryBytes+reserve.MemoryBytes) / float64(capacity.MemoryBytes)
	}
	return cpu, memory
}
