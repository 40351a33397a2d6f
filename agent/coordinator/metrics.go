package coordinator

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	plans       *prometheus.CounterVec
	actions     *prometheus.CounterVec
	planSeconds prometheus.Histogram
	resends     prometheus.Counter
	sendErrors  prometheus.Counter
	// leaseDropped: renewals dropped (not leading, or the queue full); leases granted
	// and refused count the node side (Local).
	leaseDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_coordinator_plans_total",
			Help: "Non-empty plans by outcome: committed, stale (refused, planned again), failed."}, []string{"outcome"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_coordinator_actions_total",
			Help: "Committed placement actions by kind (place, stop, migrate) and cause."}, []string{"kind", "cause"}),
		planSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "murmur_coordinator_plan_seconds",
			Help: "Time to build the input and plan (without the commit).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		resends: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_coordinator_assignment_resends_total",
			Help: "Assignments sent again because the node had not acknowledged them."}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_coordinator_assignment_send_errors_total",
			Help: "Assignment sends that failed (retried)."}),
		leaseDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_coordinator_lease_renewals_dropped_total",
			Help: "Lease renewals of exclusive workloads dropped: this node did not coordinate, or too many waited."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.plans, m.actions, m.planSeconds, m.resends, m.sendErrors, m.leaseDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
