package intents

import (
	"fmt"

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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.stored, m.applied, m.rejected, m.rejectedRemote, m.received, m.stores, m.fetches, m.dropped, m.sendErrors, m.gc} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("intents: register metrics: %w", err)
		}
	}
	return m, nil
}
