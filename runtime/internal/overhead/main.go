// Command overhead measures the supervisor's own cost: it runs N exec
// instances of the test workload under one Supervisor (usage sampled every
// 5 s, optional HTTP health checks) and reports the supervising process's
// CPU (getrusage over a steady-state window) and RSS (/proc/self/status).
//
//	make workload && go run ./runtime/internal/overhead -workload bin/workload -n 100 -window 30s
//
// Everything it starts is stopped before it exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/murmur-edge/murmur/runtime"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

func run() error {
	workload := flag.String("workload", "bin/workload", "test workload binary")
	n := flag.Int("n", 100, "instances")
	window := flag.Duration("window", 30*time.Second, "steady-state measurement window")
	health := flag.Bool("health", false, "give every instance an HTTP health check (5s interval)")
	flag.Parse()
	abs, err := os.Getwd()
	if err != nil {
		return err
	}
	wl := *workload
	if !strings.HasPrefix(wl, "/") {
		wl = abs + "/" + wl
	}
	dir, err := os.MkdirTemp("", "murmur-overhead")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ex, err := runtime.NewExecDriver(runtime.ExecConfig{DataDir: dir + "/exec", Node: "bench", Logger: log})
	if err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	sup, err := runtime.New(runtime.Config{
		Node: "bench", DataDir: dir + "/sup", Logger: log,
		Drivers: map[string]runtime.Driver{runtime.DriverExec: ex},
		OnChange: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	specs := make([]runtime.InstanceSpec, *n)
	for i := range specs {
		port := 20000 + i
		specs[i] = runtime.InstanceSpec{ID: "w" + strconv.Itoa(i), Intent: "bench", Generation: 1, Driver: runtime.DriverExec,
			Command: []string{wl, "--sleep", "1h", "--listen", "127.0.0.1:" + strconv.Itoa(port)}}
		if *health {
			specs[i].Health = runtime.HealthSpec{HTTP: fmt.Sprintf("http://127.0.0.1:%d/healthz", port), Interval: 5 * time.Second}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rss0 := rssKB()
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer scancel()
		if err := sup.StopAll(sctx); err != nil {
			fmt.Fprintln(os.Stderr, "overhead: stop all:", err)
		}
		cancel()
		<-done
	}()
	t0 := time.Now()
	if err := sup.SetDesired(specs); err != nil {
		return err
	}
	deadline := time.After(2 * time.Minute)
	for {
		up := 0
		for _, st := range sup.Instances() {
			if st.State == runtime.StateRunning {
				up++
			}
		}
		if up == *n {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			return fmt.Errorf("only %d of %d instances running after 2m", up, *n)
		}
	}
	startAll := time.Since(t0)
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(*window) // the measurement window itself
	cpu1, wall1 := cpuTime(), time.Now()
	u := sup.Usage()
	fmt.Printf("instances=%d health=%v start_all=%v\n", *n, *health, startAll.Round(time.Millisecond))
	fmt.Printf("supervisor_cpu=%.2f%% of one core over %v\n", 100*float64(cpu1-cpu0)/float64(wall1.Sub(wall0)), *window)
	fmt.Printf("supervisor_rss=%d KiB (before start %d KiB)\n", rssKB(), rss0)
	fmt.Printf("instances_usage milliCPU=%d memory=%d MiB\n", u.MilliCPU, u.MemoryBytes>>20)
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssKB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}
