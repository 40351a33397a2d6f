package coordinator

import (
	"time"

	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/scheduler"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	plans       *prometheus.CounterVec
	actions     *prometheus.CounterVec
	planSeconds prometheus.Histogram
	resends     prometheus.Counter
	sendErrors  prometheus.Counter
	// leaseDropped: renewals dropped (not leading, or the queue full); leases granted
	// and refused count the node side (Local).
	leaseDropped prometheus.Counter
	// replaceSeconds: from a node's death in the fleet view to the commit of a
	// replacement for one of its instances (observeReplacements).
	replaceSeconds prometheus.Histogram
}

// actionPairs are the kind and cause pairs scheduler/types.go documents; they are
// exported at 0 from the start so that rate() over them sees the first action. A pair
// not listed here still counts, from its first action on.
var actionPairs = map[scheduler.ActionKind][]scheduler.Cause{
	scheduler.ActionPlace: {scheduler.CauseMissing, scheduler.CauseReplace, scheduler.CauseGlobal},
	scheduler.ActionStop: {scheduler.CauseRemoved, scheduler.CauseNodeGone, scheduler.CauseSurplus, scheduler.CauseIneligible,
		scheduler.CausePreempted, scheduler.CauseDrain, scheduler.CauseFailing, scheduler.CauseUpdate},
	scheduler.ActionMigrate: {scheduler.CauseIneligible, scheduler.CauseDrain, scheduler.CauseFailing, scheduler.CauseUpdate, scheduler.CauseOffload},
}

// newMetrics builds the coordinator's metrics and registers them, with the per-intent
// workload gauges read from c's view at scrape time, on reg unless reg is nil.
func newMetrics(reg prometheus.Registerer, c *Coordinator) (*metrics, error) {
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
		replaceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "murmur_coordinator_replacement_seconds",
			Help: "From a node's death (or departure) in this coordinator's fleet view to the commit of a replacement for one of its instances, one observation per instance. " +
				"Failure detection comes before it; disconnect.replaceAfter is included.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60, 300}}),
	}
	for _, o := range []string{"committed", "stale", "failed"} {
		m.plans.WithLabelValues(o)
	}
	for kind, causes := range actionPairs {
		for _, cause := range causes {
			m.actions.WithLabelValues(string(kind), string(cause))
		}
	}
	if reg == nil {
		return m, nil
	}
	cl := prometheus.Labels{"region": c.cfg.Region}
	wc := &workloadCollector{c: c,
		desired: prometheus.NewDesc("murmur_coordinator_desired_instances",
			"Instances of each Workload intent the region should run (replicas, or one per eligible node for a global workload). Exported by the region's coordinator only.", []string{"intent"}, cl),
		placed: prometheus.NewDesc("murmur_coordinator_placed_instances",
			"Instances of each Workload intent in the region's placement table on nodes that are not dead or gone. Exported by the region's coordinator only.", []string{"intent"}, cl),
		running: prometheus.NewDesc("murmur_coordinator_running_instances",
			"Placed instances of each Workload intent that their node reports running (its health check passed, if it has one). Exported by the region's coordinator only.", []string{"intent"}, cl),
		unplaced: prometheus.NewDesc("murmur_coordinator_unplaced_instances",
			"Instances of each Workload intent the coordinator could not place (no node fits, or a policy forbids it; GET /v1/workloads says why). Exported by the region's coordinator only.", []string{"intent"}, cl),
	}
	for _, col := range []prometheus.Collector{m.plans, m.actions, m.planSeconds, m.resends, m.sendErrors, m.leaseDropped, m.replaceSeconds, wc} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// workloadCollector exports the coordinator's view of desired against running per
// Workload intent (View's summaries) at scrape time, while this node coordinates.
type workloadCollector struct {
	c                                  *Coordinator
	desired, placed, running, unplaced *prometheus.Desc
}

func (w *workloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.desired
	ch <- w.placed
	ch <- w.running
	ch <- w.unplaced
}

func (w *workloadCollector) Collect(ch chan<- prometheus.Metric) {
	v, ok := w.c.View("")
	if !ok {
		return // not coordinating: the coordinator of the region exports them
	}
	for _, s := range v.Intents {
		ch <- prometheus.MustNewConstMetric(w.desired, prometheus.GaugeValue, float64(s.Desired), s.Intent)
		ch <- prometheus.MustNewConstMetric(w.placed, prometheus.GaugeValue, float64(s.Placed), s.Intent)
		ch <- prometheus.MustNewConstMetric(w.running, prometheus.GaugeValue, float64(s.Running), s.Intent)
		ch <- prometheus.MustNewConstMetric(w.unplaced, prometheus.GaugeValue, float64(s.Unplaced), s.Intent)
	}
}

// replacedAfter is how long before at the node of the lost instance id (in the table
// st) died or left in the fleet view members; ok is false when the node is not dead or
// left there (gone from the view, or back), or the time is unknown.
func replacedAfter(st region.State, members []gossip.Member, id string, at time.Time) (d time.Duration, ok bool) {
	lost, found := st.Placements[id]
	if !found {
		return 0, false
	}
	for _, m := range members {
		if m.Name != lost.Node {
			continue
		}
		if (m.Status != gossip.StatusDead && m.Status != gossip.StatusLeft) || m.StatusSince.IsZero() || at.Before(m.StatusSince) {
			return 0, false
		}
		return at.Sub(m.StatusSince), true
	}
	return 0, false
}
