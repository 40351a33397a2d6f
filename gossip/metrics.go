package gossip

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	msgsIn, msgsOut   *prometheus.CounterVec
	bytesIn, bytesOut *prometheus.CounterVec
	decodeErrors      *prometheus.CounterVec
	dropped           *prometheus.CounterVec
	joinFailures      prometheus.Counter
	nameConflicts     prometheus.Counter
	stalls            prometheus.Counter
	suspicions        prometheus.Counter
	notices           *prometheus.CounterVec
}

// membersCollector reports the fleet view's member count by status at scrape time.
type membersCollector struct {
	g    *Gossip
	desc *prometheus.Desc
}

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]float64{StatusAlive: 0, StatusSuspect: 0, StatusDead: 0, StatusLeft: 0}
	for _, m := range c.g.Members() {
		counts[m.Status]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, n, s)
	}
}

func newMetrics(reg prometheus.Registerer, g *Gossip) (*metrics, error) {
	m := &metrics{
		msgsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_messages_received_total", Help: "Gossip messages received, by type (record, broadcast, direct, notice, pushpull).",
		}, []string{"type"}),
		msgsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_messages_sent_total", Help: "Gossip messages sent, by type (record, broadcast, direct, notice, pushpull).",
		}, []string{"type"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_received_bytes_total", Help: "Bytes of gossip messages received, by type.",
		}, []string{"type"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_sent_bytes_total", Help: "Bytes of gossip messages sent, by type.",
		}, []string{"type"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_decode_errors_total", Help: "Gossip payloads that did not decode or were oversized, and were dropped, by type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_dropped_total", Help: "Gossip messages dropped without being decoded, by reason.",
		}, []string{"reason"}),
		joinFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "murmur_gossip_join_failures_total", Help: "Failed attempts to join the fleet through the seeds.",
		}),
		nameConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "murmur_gossip_name_conflicts_total", Help: "Alive messages refused because another address holds the node's name (a rebooted node with a new address, or two nodes sharing a name).",
		}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "murmur_gossip_stalls_total", Help: "Times this process did not run for longer than a probe timeout (frozen, paused, starved of CPU); it re-announces itself alive, at most once per probe interval.",
		}),
		suspicions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "murmur_gossip_suspicions_total", Help: "Members this node marked suspect because its probe of them failed (before memberlist declares them dead, or they refute).",
		}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_gossip_suspicion_notices_total", Help: "Notices that a probe failed, by direction: sent to a member this node suspected once it answered a ping again (after a heal its suspicion broadcast was lost), received from a member that suspected this node (it re-announces itself alive).",
		}, []string{"direction"}),
	}
	members := &membersCollector{g: g, desc: prometheus.NewDesc("murmur_gossip_members", "Members of the fleet view, by status.", []string{"status"}, nil)}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "murmur_gossip_broadcast_queue",
		Help: "murmur's broadcasts (records, announcements) this node still has to relay. A backlog drains at up to GossipNodes packets per gossip interval (~21 KB/s on the LAN profile); after a mass join it can take minutes, and until then gossip runs at that ceiling.",
	}, func() float64 { return float64(g.queuedBroadcasts()) })
	for _, c := range []prometheus.Collector{m.msgsIn, m.msgsOut, m.bytesIn, m.bytesOut, m.decodeErrors, m.dropped, m.joinFailures, m.nameConflicts, m.stalls, m.suspicions, m.notices, members, queued} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every known type is exported from the start, at 0: rate() over a series that
	// appears only with its first message misses that message, and alerts on it see
	// nothing until then.
	for _, t := range []string{"record", "broadcast", "direct", "notice", "pushpull", "meta", "unknown"} {
		m.decodeErrors.WithLabelValues(t)
	}
	for _, t := range []string{"record", "broadcast", "direct", "notice", "pushpull"} {
		m.msgsIn.WithLabelValues(t)
		m.msgsOut.WithLabelValues(t)
		m.bytesIn.WithLabelValues(t)
		m.bytesOut.WithLabelValues(t)
	}
	m.notices.WithLabelValues("sent")
	m.notices.WithLabelValues("received")
	return m, nil
}

func (m *metrics) received(typ string, n int) {
	m.msgsIn.WithLabelValues(typ).Inc()
	m.bytesIn.WithLabelValues(typ).Add(float64(n))
}

func (m *metrics) sent(typ string, n int) {
	m.msgsOut.WithLabelValues(typ).Inc()
	m.bytesOut.WithLabelValues(typ).Add(float64(n))
}
