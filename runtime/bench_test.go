package runtime

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchCrashToRunning kills the running instance b.N times and measures
// the time from the kill to the supervisor reporting the replacement
// running. BackoffBase is 1ns, so the figure is the supervisor's own
// reaction (detect, clean up, start); with the default 1 s first backoff
// add 1 s. StableAfter is 1ns so that every crash is a "first restart".
func benchCrashToRunning(b *testing.B, drivers map[string]Driver, sp InstanceSpec, kill func(ref string) error) {
	h := &harness{changed: make(chan struct{}, 1)}
	sup, err := New(Config{Node: "n1", DataDir: b.TempDir(), Drivers: drivers, BackoffBase: time.Nanosecond, StableAfter: time.Nanosecond, StopGrace: 2 * time.Second,
		OnChange: func() {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = sup.StopAll(sctx)
		cancel()
		<-done
	})
	if err := sup.SetDesired([]InstanceSpec{sp}); err != nil {
		b.Fatal(err)
	}
	waitRunning := func(notRef string) string {
		deadline := time.After(30 * time.Second)
		for {
			for _, st := range sup.Instances() {
				if st.State == StateRunning && st.Ref != notRef && st.Ref != "" {
					return st.Ref
				}
			}
			select {
			case <-h.changed:
			case <-deadline:
				b.Fatalf("instance not running again: %+v", sup.Instances())
			}
		}
	}
	ref := waitRunning("")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := kill(ref); err != nil {
			b.Fatal(err)
		}
		ref = waitRunning(ref)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkExecCrashToRunning(b *testing.B) {
	d, err := NewExecDriver(ExecConfig{DataDir: filepath.Join(b.TempDir(), "exec"), Node: "n1"})
	if err != nil {
		b.Fatal(err)
	}
	benchCrashToRunning(b, map[string]Driver{DriverExec: d}, workSpec("a", "--sleep", "1h"), func(ref string) error {
		pid, _ := strconv.Atoi(ref)
		return syscall.Kill(pid, syscall.SIGKILL)
	})
}

func BenchmarkDockerCrashToRunning(b *testing.B) {
	cli, img := dockerForBench(b)
	d, err := NewDockerDriver(DockerConfig{Client: cli, Node: "n1", Owner: "murmur-bench"})
	if err != nil {
		b.Fatal(err)
	}
	benchCrashToRunning(b, map[string]Driver{DriverDocker: d}, dockSpec(img, "a", "--sleep", "1h"), func(ref string) error {
		return cli.ContainerKill(context.Background(), ref, "KILL")
	})
}
