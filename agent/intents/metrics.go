package intents

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	stored         *prometheus.GaugeVec
	applied        *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	rejectedRemote *prometheus.CounterVec
	received       *prometheus.CounterVec
	stores         prometheus.Counter
	fetches        prometheus.Counter
	dropped        prometheus.Counter
	sendErrors     prometheus.Counter
	gc             prometheus.Counter
	lag            prometheus.Histogram
}

// newMetrics builds the service's metrics and registers them, with the store's
// scrape-time digest (storeCollector over s), on reg unless reg is nil.
func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		stored: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "murmur_intents_stored",
			Help: "Intents in this node's store, by kind (tombstone: deleted intents kept for the TTL)."}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_intents_applied_total",
			Help: "Intents accepted through this node's API, by result (created, updated, deleted)."}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_intents_api_rejected_total",
			Help: "API requests rejected, by reason (invalid, signature, admission, conflict, stale, version, full)."}, []string{"reason"}),
		rejectedRemote: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_intents_gossip_rejected_total",
			Help: "Intent versions received from peers and rejected, by reason (signature, invalid, future, full)."}, []string{"reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_intents_messages_received_total",
			Help: "Intent dissemination messages received, by type."}, []string{"type"}),
		stores: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_intents_replicated_total",
			Help: "Intent versions received from peers and stored."}),
		fetches: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_intents_fetches_total",
			Help: "Fetch requests sent to peers for intent bodies."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_intents_dropped_total",
			Help: "Intent messages dropped because a queue was full (anti-entropy repairs)."}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_intents_send_errors_total",
			Help: "Reliable sends to peers that failed."}),
		gc: prometheus.NewCounter(prometheus.CounterOpts{Name: "murmur_intents_tombstones_collected_total",
			Help: "Tombstones removed after their TTL."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "murmur_intents_replication_lag_seconds",
			Help: "From a version's timestamp (the accepting node's clock; the signer's for a signed intent) to this node storing it from a peer. " +
				"Includes the clock difference of the two nodes; a node repaired after being cut off observes how long it missed the version.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600}}),
	}
	// The label values the service uses are exported from the start, at 0: rate() and
	// increase() over a series born with its first event miss that event.
	for _, r := range []string{"created", "updated", "deleted"} {
		m.applied.WithLabelValues(r)
	}
	for _, r := range []string{"invalid", "signature", "admission", "conflict", "stale", "version", "full"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"signature", "invalid", "future", "full"} {
		m.rejectedRemote.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	sc := &storeCollector{s: s,
		digest: prometheus.NewDesc("murmur_intents_digest",
			"Digest of this node's intent store: every intent and tombstone at its version (tombstones past the TTL left out), as a number below 2^53. "+
				"Nodes that hold the same intents show the same value; count(count_values(...)) > 1 across the fleet means the stores have not converged.", nil, nil),
		newest: prometheus.NewDesc("murmur_intents_newest_version_timestamp_seconds",
			"Timestamp of the newest intent version (or tombstone) in this node's store, in Unix seconds; 0 when it is empty. "+
				"The fleet's maximum minus a node's value is how far that node lags behind the newest write.", nil, nil),
	}
	for _, c := range []prometheus.Collector{m.stored, m.applied, m.rejected, m.rejectedRemote, m.received, m.stores, m.fetches, m.dropped, m.sendErrors, m.gc, m.lag, sc} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("intents: register metrics: %w", err)
		}
	}
	return m, nil
}

// storeCollector reports the store's digest and newest version at scrape time.
type storeCollector struct {
	s              *Service
	digest, newest *prometheus.Desc
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.digest; ch <- c.newest }

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	d, newest := c.s.storeDigest(c.s.cfg.Clock())
	ch <- prometheus.MustNewConstMetric(c.digest, prometheus.GaugeValue, float64(d&(1<<53-1)))
	ch <- prometheus.MustNewConstMetric(c.newest, prometheus.GaugeValue, float64(newest)/1000)
}

// storeDigest is the XOR of entryHash over the store (the push/pull digest's summary
// in one bucket) and the newest version's wall clock (Unix ms), as of now. Tombstones
// past the TTL are left out: each node's GC removes them at its own moment within
// GCInterval, and the stores agree on everything else.
func (s *Service) storeDigest(now time.Time) (digest uint64, newestMillis int64) {
	cutoff := now.Add(-s.cfg.TombstoneTTL).UnixMilli()
	snap := s.snap.Load()
	for _, name := range snap.names {
		rec := snap.byName[name].rec
		if rec.Deleted && rec.Version.Wall <= cutoff {
			continue
		}
		digest ^= entryHash(name, rec.Version)
		newestMillis = max(newestMillis, rec.Version.Wall)
	}
	return digest, newestMillis
}
