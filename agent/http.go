package agent

import (
	"net/http"
	"time"

	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/ui"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LoadJSON is a node's load as the API shows it.
type LoadJSON struct {
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
}

// MemberJSON is one entry of GET /v1/members.
type MemberJSON struct {
	Name      string            `json:"name"`
	ID        string            `json:"id,omitempty"`
	Region    string            `json:"region"`
	Addr      string            `json:"addr"`
	Status    string            `json:"status"`
	Since     time.Time         `json:"since,omitempty"`
	Load      LoadJSON          `json:"load"`
	Instances int               `json:"instances"`
	Health    string            `json:"health,omitempty"`
	Labels    map[string]string `json:"labels"`
	Drivers   []string          `json:"drivers,omitempty"`
	Version   string            `json:"version,omitempty"`
}

// StatusJSON is GET /v1/status.
type StatusJSON struct {
	Name          string                   `json:"name"`
	ID            string                   `json:"id"`
	Region        string                   `json:"region"`
	Addr          string                   `json:"addr"`
	HTTP          string                   `json:"http"`
	Raft          string                   `json:"raft"`
	Status        string                   `json:"status"`
	Load          LoadJSON                 `json:"load"`
	Capacity      CapJSON                  `json:"capacity"`
	Reserve       CapJSON                  `json:"reserve"`
	Version       string                   `json:"version"`
	Uptime        string                   `json:"uptime"`
	UptimeSeconds float64                  `json:"uptime_seconds"`
	Drivers       []string                 `json:"drivers"`
	LimitsNote    string                   `json:"limits_note,omitempty"`
	Instances     []runtime.InstanceStatus `json:"instances"`
	Labels        map[string]string        `json:"labels"`
	Security      SecurityJSON             `json:"security"`
	Assignments   AssignmentsJSON          `json:"assignments"`
}

// CapJSON is an amount of resources in the API.
type CapJSON struct {
	MilliCPU    int64 `json:"milli_cpu"`
	MemoryBytes int64 `json:"memory_bytes"`
}

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/members", a.handleMembers)
	mux.HandleFunc("GET /v1/regions", a.handleRegions)
	mux.HandleFunc("GET /v1/regions/{name}/log", a.handleRegionLog)
	mux.HandleFunc("GET /v1/workloads", a.handleWorkloads)
	mux.HandleFunc("GET /v1/instances/{id}/logs", a.handleInstanceLogs) // instancelogs.go
	mux.HandleFunc("GET /v1/audit", a.handleAudit)
	mux.Handle("GET /v1/events", a.eventsAPI) // eventsrc.go feeds it
	a.intents.Register(mux)
	a.registerKeyring(mux) // GET /v1/keyring, POST /v1/keyring/{install,use,remove}: keyring.go
	// The dashboard: static files, served without a token (acl.go); its API calls
	// need one like any client's. "/" leads a browser there.
	mux.Handle(ui.Prefix, ui.New())
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see /ui/ for the dashboard, GET /v1/status, /v1/members, /v1/intents, /v1/regions, /v1/workloads, /v1/instances/{id}/logs, /v1/events, /v1/audit, /metrics, /healthz)")
	})
	// Tokens, roles and the audit of writes: acl.go.
	return a.access.wrap(mux)
}

func (a *Agent) self() gossip.Member {
	for _, m := range a.gossip.Members() {
		if m.Local {
			return m
		}
	}
	return gossip.Member{Name: a.cfg.Name, Status: gossip.StatusAlive}
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	me := a.self()
	up := a.now().Sub(a.started)
	st := StatusJSON{
		Name: a.cfg.Name, ID: a.id.ID, Region: a.cfg.Region, Addr: a.gossip.LocalAddr(),
		HTTP: a.httpAddr, Raft: a.cfg.RaftBind, Status: me.Status,
		Load:     LoadJSON{CPU: me.Load.CPU, Memory: me.Load.Memory},
		Capacity: CapJSON{a.cfg.Capacity.MilliCPU, a.cfg.Capacity.MemoryBytes},
		Reserve:  CapJSON{a.cfg.Reserve.MilliCPU, a.cfg.Reserve.MemoryBytes},
		Version:  Version, Uptime: up.Truncate(time.Second).String(), UptimeSeconds: up.Seconds(),
		Drivers: orEmpty(a.drivers), LimitsNote: a.limitsNote, Instances: a.sup.Instances(), Labels: orEmptyMap(a.cfg.Labels),
		Security: a.securityStatus(), Assignments: a.assignments(),
	}
	if st.Instances == nil {
		st.Instances = []runtime.InstanceStatus{}
	}
	api.WriteJSON(w, http.StatusOK, st)
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms := a.gossip.Members()
	out := make([]MemberJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberJSON{
			Name: m.Name, ID: m.ID, Region: m.Region, Addr: m.Addr, Status: m.Status, Since: m.StatusSince,
			Load: LoadJSON{CPU: m.Load.CPU, Memory: m.Load.Memory}, Instances: m.Instances, Health: m.Health,
			Labels: orEmptyMap(m.Labels), Drivers: m.Drivers, Version: m.Version,
		})
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"members": out})
}

func (a *Agent) registerMetrics() error {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "murmur_build_info", Help: "Build and identity of this agent (value 1)."}, []string{"version", "node", "region"})
	info.WithLabelValues(Version, a.cfg.Name, a.cfg.Region).Set(1)
	load := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_node_load_cpu_ratio", Help: "CPU load of this node: (workload usage + reserve) / capacity."}, func() float64 { return a.self().Load.CPU })
	memLoad := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_node_load_memory_ratio", Help: "Memory load of this node: (workload usage + reserve) / capacity."}, func() float64 { return a.self().Load.Memory })
	lastKnown := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_assignments_last_known",
		Help: "1 while this node runs its last-known (persisted) assignment because no coordinator of its region is reachable."},
		func() float64 { return b2f(a.contact.current() == SourceLastKnown) })
	headless := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "murmur_regions_headless",
		Help: "Regions this node has seen without a coordinator for longer than 5 s (headless), its own included."},
		func() float64 {
			n := 0
			for _, s := range a.regionSummaries() {
				if s.Headless {
					n++
				}
			}
			return float64(n)
		})
	for _, c := range []prometheus.Collector{info, load, memLoad, lastKnown, headless} {
		if err := a.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
