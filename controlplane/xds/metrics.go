package xds

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	acks, nacks   *prometheus.CounterVec
	refused       *prometheus.CounterVec
	lag           prometheus.Histogram
	buildErrors   prometheus.Counter
	storeDropped  prometheus.Counter
	storeFailures prometheus.Counter
}

// nodesCollector reports this replica's nodes by state at scrape time, so
// the gauge can never disagree with the API.
type nodesCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c nodesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c nodesCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.s.countStates()
	for _, st := range states {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_xds_acks_total", Help: "Configurations nodes accepted, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_xds_nacks_total", Help: "Configurations nodes rejected, by resource type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_xds_refused_streams_total", Help: "xDS streams closed because the node's identity or metadata was not acceptable, by reason.",
		}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aegis_xds_propagation_seconds",
			Help:    "Time from publishing a tenant configuration to each connected node's ACK of it.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		buildErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_xds_snapshot_errors_total", Help: "Node snapshots not served because a resource failed validation or building.",
		}),
		storeDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_xds_store_dropped_events_total", Help: "ACK/NACK history events not persisted because the write queue was full.",
		}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_xds_store_failures_total", Help: "Failed writes of drift state to the store (retried).",
		}),
	}
	cs := []prometheus.Collector{m.acks, m.nacks, m.refused, m.lag, m.buildErrors, m.storeDropped, m.storeFailures,
		nodesCollector{s: s, desc: prometheus.NewDesc("aegis_xds_nodes", "Nodes known to this replica, by drift state.", []string{"state"}, nil)}}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("xds metrics: %w", err)
		}
	}
	return m, nil
}
