package region

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one Node. Registered on Config.Registerer when it is set.
type metrics struct {
	isLeader      prometheus.Gauge
	voters        prometheus.Gauge
	headless      prometheus.Gauge
	lastIndex     prometheus.Gauge
	term          prometheus.Gauge
	leaderChanges prometheus.Counter
	bootstraps    prometheus.Counter
	rejected      prometheus.Counter
	autopilot     *prometheus.CounterVec
	transfers     *prometheus.CounterVec
	foreign       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, region string) (*metrics, error) {
	cl := prometheus.Labels{"region": region}
	m := &metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_is_leader", ConstLabels: cl,
			Help: "1 while this node is its region's coordinator (Raft leader)."}),
		voters: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_voters", ConstLabels: cl,
			Help: "Voters in this node's latest Raft configuration of its region."}),
		headless: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_headless", ConstLabels: cl,
			Help: "1 while this voter sees no leader and a majority of voters gone (loss of quorum)."}),
		lastIndex: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_last_index", ConstLabels: cl,
			Help: "Last Raft log index on this node."}),
		term: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_term", ConstLabels: cl,
			Help: "Current Raft term on this node (each election raises it)."}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_region_leadership_changes_total", ConstLabels: cl,
			Help: "Times this node gained or lost the coordinator role."}),
		bootstraps: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_region_bootstraps_total", ConstLabels: cl,
			Help: "Raft groups this node bootstrapped (0 or 1 in a healthy life)."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_region_rejected_connections_total", ConstLabels: cl,
			Help: "Connections to the Raft port refused (failed authentication, another region, or not murmur)."}),
		autopilot: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_region_autopilot_actions_total", ConstLabels: cl,
			Help: "Configuration changes made by autopilot on this node, by action."}, []string{"action"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_region_leadership_transfers_total", ConstLabels: cl,
			Help: "Leadership transfers tried on graceful stop, by result (ok, failed)."}, []string{"result"}),
		foreign: prometheus.NewGauge(prometheus.GaugeOpts{Name: "murmur_region_foreign_cluster_nodes", ConstLabels: cl,
			Help: "Alive nodes of this region publishing another cluster id (split brain; seen by the leader)."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.isLeader, m.voters, m.headless, m.lastIndex, m.term, m.leaderChanges, m.bootstraps, m.rejected, m.autopilot, m.transfers, m.foreign} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register region metrics: %w (one region.Node per registry)", err)
			}
			return nil, fmt.Errorf("register region metrics: %w", err)
		}
	}
	return m, nil
}
