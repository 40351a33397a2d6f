package agent

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// GoMetricsBridge carries memberlist's and raft's go-metrics into Prometheus. Those
// libraries emit to go-metrics' process-wide sink, so cmd/murmur installs Sink with
// metrics.NewGlobal once; agents then serve Gatherer next to their own registry.
type GoMetricsBridge struct {
	Sink     metrics.MetricSink
	Gatherer prometheus.Gatherer
}

// NewGoMetricsBridge builds the sink and a gatherer that renames what the sink exposes
// so that `promtool check metrics` accepts it: snake_case names, counters ending in
// _total, and a help text that says where the metric comes from.
func NewGoMetricsBridge() (*GoMetricsBridge, error) {
	reg := prometheus.NewRegistry()
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 5 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("go-metrics prometheus sink: %w", err)
	}
	return &GoMetricsBridge{Sink: sink, Gatherer: lintedGatherer{reg}}, nil
}

// GoMetricsConfig is the go-metrics configuration murmur uses: no service prefix, no
// hostname, no runtime metrics (the Go collector has them).
func GoMetricsConfig() *metrics.Config {
	c := metrics.DefaultConfig("")
	c.EnableHostname = false
	c.EnableRuntimeMetrics = false
	c.EnableServiceLabel = false
	return c
}

type lintedGatherer struct{ g prometheus.Gatherer }

func (l lintedGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := l.g.Gather()
	out := make([]*dto.MetricFamily, 0, len(mfs))
	for _, mf := range mfs {
		mf = proto.Clone(mf).(*dto.MetricFamily)
		name := snakeCase(mf.GetName())
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			name += "_total"
		}
		mf.Name = proto.String(name)
		mf.Help = proto.String("go-metrics " + strings.ReplaceAll(mf.GetHelp(), "\n", " ") + " (bridged from memberlist/raft)")
		out = append(out, mf)
	}
	return out, err
}

// snakeCase turns go-metrics names like memberlist_probeNode into memberlist_probe_node.
func snakeCase(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		if unicode.IsUpper(r) {
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
			continue
		}
		if r == '-' || r == '.' {
			r = '_'
		}
		b.WriteRune(r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	return b.String()
}
