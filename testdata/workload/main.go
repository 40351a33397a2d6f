// Command workload is murmur's test workload: a tiny static program that the
// runtime tests, benchmarks and the demo run under both drivers (exec and a
// FROM scratch Docker image). It can sleep, serve a health endpoint, turn
// unhealthy, exit with a chosen code after a delay, burn CPU and hold memory.
//
//	workload --sleep 1h
//	workload --listen 127.0.0.1:0 --port-file /tmp/port --unhealthy-file /tmp/sick
//	workload --exit-code 3 --exit-after 2s
//	workload --burn-cpu 0.5 --alloc 32Mi
//	workload --probe http://127.0.0.1:8080/healthz   (exit 0 when healthy; for exec health checks)
//	workload --beat-dir /tmp/beats --beat-every 20ms  (at-most-once checks: see below)
//
// With --beat-dir it writes DIR/<MURMUR_INSTANCE>-<MURMUR_EPOCH>.beats: a line
// "netns <net namespace>" (the /proc/self/ns/net link, on Linux: which host of a
// namespace lab ran it), a line "start <unix ns>" when it starts, then "beat <unix ns>"
// every --beat-every until it ends (and "stop <unix ns>" on SIGTERM). A checker reads
// each file's first and last times as the interval the instance ran (give or take one
// beat) and compares them.
//
// It exits 0 on SIGTERM unless --ignore-term is set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("workload", flag.ContinueOnError)
	sleep := fs.Duration("sleep", 0, "run for this long, then exit 0 (0: until signalled)")
	listen := fs.String("listen", "", "serve GET /healthz on this address (host:port, port 0 picks one)")
	portFile := fs.String("port-file", "", "write the bound listen address to this file")
	unhealthyFile := fs.String("unhealthy-file", "", "/healthz answers 503 while this file exists")
	unhealthyAfter := fs.Duration("unhealthy-after", 0, "/healthz answers 503 once this long has passed (0: never)")
	exitCode := fs.Int("exit-code", 0, "exit status used with --exit-after")
	exitAfter := fs.Duration("exit-after", 0, "exit with --exit-code after this long (0: never)")
	burn := fs.Float64("burn-cpu", 0, "burn this fraction of one core (0..1)")
	alloc := fs.String("alloc", "", "allocate and touch this much memory (e.g. 32Mi, 1Gi, 1000000)")
	ignoreTerm := fs.Bool("ignore-term", false, "ignore SIGTERM (to exercise the SIGKILL path)")
	probe := fs.String("probe", "", "GET this URL once; exit 0 on 2xx, 1 otherwise")
	beatDir := fs.String("beat-dir", "", "write start/beat/stop times to DIR/<MURMUR_INSTANCE>-<MURMUR_EPOCH>.beats")
	beatEvery := fs.Duration("beat-every", 20*time.Millisecond, "period of --beat-dir beats")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *probe != "" {
		return doProbe(*probe)
	}
	if *burn < 0 || *burn > 1 {
		fmt.Fprintln(os.Stderr, "workload: --burn-cpu must be between 0 and 1")
		return 2
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGINT)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}

	var hold []byte
	if *alloc != "" {
		n, err := parseSize(*alloc)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: --alloc: %v\n", err)
			return 2
		}
		hold = make([]byte, n)
		for i := 0; i < len(hold); i += 4096 {
			hold[i] = 1
		}
	}

	start := time.Now()
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: listen: %v\n", err)
			return 2
		}
		if *portFile != "" {
			tmp := *portFile + ".tmp"
			if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644); err != nil || os.Rename(tmp, *portFile) != nil {
				fmt.Fprintf(os.Stderr, "workload: write port file: %v\n", err)
				return 2
			}
		}
		var served atomic.Int64
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			sick := *unhealthyAfter > 0 && time.Since(start) >= *unhealthyAfter
			if *unhealthyFile != "" {
				if _, err := os.Stat(*unhealthyFile); err == nil {
					sick = true
				}
			}
			if sick {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	if *burn > 0 {
		go burnCPU(ctx, *burn)
	}
	var beats *os.File
	if *beatDir != "" {
		name := os.Getenv("MURMUR_INSTANCE") + "-" + os.Getenv("MURMUR_EPOCH") + ".beats"
		f, err := os.OpenFile(filepath.Join(*beatDir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: --beat-dir: %v\n", err)
			return 2
		}
		beats = f
		defer f.Close()
		if ns, err := os.Readlink("/proc/self/ns/net"); err == nil {
			fmt.Fprintf(f, "netns %s\n", ns)
		}
		fmt.Fprintf(f, "start %d\n", time.Now().UnixNano())
		go func() {
			t := time.NewTicker(*beatEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					fmt.Fprintf(f, "beat %d\n", now.UnixNano())
				}
			}
		}()
	}
	fmt.Printf("workload: started pid=%d\n", os.Getpid())

	var exitC, sleepC <-chan time.Time
	if *exitAfter > 0 {
		exitC = time.After(*exitAfter)
	}
	if *sleep > 0 {
		sleepC = time.After(*sleep)
	}
	select {
	case <-exitC:
		fmt.Printf("workload: exiting with %d\n", *exitCode)
		return *exitCode
	case <-sleepC:
		return 0
	case s := <-sigs:
		fmt.Printf("workload: %v\n", s)
		_ = hold
		if beats != nil {
			cancel()
			fmt.Fprintf(beats, "stop %d\n", time.Now().UnixNano())
		}
		return 0
	}
}

// burnCPU spins for frac of every 10 ms slice.
func burnCPU(ctx context.Context, frac float64) {
	const slice = 10 * time.Millisecond
	busy := time.Duration(float64(slice) * frac)
	for ctx.Err() == nil {
		t0 := time.Now()
		for time.Since(t0) < busy {
		}
		time.Sleep(slice - busy)
	}
}

func doProbe(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}

func parseSize(s string) (int, error) {
	mult := 1
	for suffix, m := range map[string]int{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative size like 32Mi")
	}
	return n * mult, nil
}
