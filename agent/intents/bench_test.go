package intents

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/murmur-edge/murmur/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkApplySequential: accepted intents per second on one node through real HTTP,
// one client request at a time, every request a real update (fsync of file and dir).
func BenchmarkApplySequential(b *testing.B) {
	s, err := New(Config{DataDir: b.TempDir(), NodeName: "solo", Logger: quietLogger(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := srv.Client()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := workloadYAML(fmt.Sprintf("w%d", i%50), fmt.Sprintf("/bin/v%d", i))
		resp, err := client.Post(srv.URL+"/v1/intents", "application/yaml", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "intents/s")
}

// BenchmarkPropagation: time from a push to one node until every node of an in-process
// fleet has stored the version (measured by each node's change notification), p50/p99.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{5, 50} {
		for _, eager := range []bool{true, false} {
			b.Run(fmt.Sprintf("nodes=%d/eager=%v/size=small", n, eager), func(b *testing.B) { benchPropagation(b, n, eager, 0) })
		}
	}
	// Bodies above EagerPushBytes: direct announcement, then every node fetches.
	b.Run("nodes=5/eager=true/size=1MiB", func(b *testing.B) { benchPropagation(b, 5, true, 1<<20-600) })
	b.Run("nodes=50/eager=true/size=256KiB", func(b *testing.B) { benchPropagation(b, 50, true, 256<<10) })
}

func benchPropagation(b *testing.B, n int, eager bool, size int) {
	push := 0 // default
	if !eager {
		push = -1 // announcement and fetch only
	}
	net := gossiptest.NewNetwork()
	var svcs []*Service
	var seed string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node-%02d", i)
		var svc *Service
		node := gossiptest.StartWithSetup(b, net, name, nil, func(g *gossip.Gossip) {
			var err error
			svc, err = New(Config{DataDir: b.TempDir(), Gossip: g, Logger: quietLogger(), Registerer: prometheus.NewRegistry(), EagerPushBytes: push})
			if err != nil {
				b.Fatal(err)
			}
			g.Register(gossip.KindIntents, svc.HandleMessage, svc)
		}, seedList(seed)...)
		if seed == "" {
			seed = node.Addr()
		}
		ctx, cancel := contextWithCancel()
		done := make(chan struct{})
		go func() { svc.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		svcs = append(svcs, svc)
	}
	gossiptest.Eventually(b, 120*time.Second, "every node to see the whole fleet", func() bool {
		for _, s := range svcs {
			if gossiptest.CountStatus(s.cfg.Gossip.(*gossip.Gossip), gossip.StatusAlive) != n {
				return false
			}
		}
		return true
	})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		origin := svcs[i%n]
		name := fmt.Sprintf("p%d", i)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last time.Time
		start := time.Now()
		doc := workloadYAML(name, "/bin/true")
		if size > 0 {
			doc = sizedWorkload(name, size)
		}
		res, err := origin.Apply([]byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		v := res[0].Version
		for _, s := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.After(30 * time.Second)
				for {
					ch := s.Changed()
					if r, ok := s.Get(name); ok && policy.Compare(r.Version, v) >= 0 {
						mu.Lock()
						if now := time.Now(); now.After(last) {
							last = now
						}
						mu.Unlock()
						return
					}
					select {
					case <-ch:
					case <-deadline:
						b.Errorf("%s did not store %s within 30s", s.node, name)
						return
					}
				}
			}()
		}
		wg.Wait()
		lat = append(lat, last.Sub(start))
	}
	b.StopTimer()
	if testing.Verbose() {
		b.Logf("latencies in push order: %v", lat)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(pct(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(lat, 99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func pct(xs []time.Duration, p int) time.Duration {
	i := (len(xs)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return xs[i-1]
}

func seedList(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
