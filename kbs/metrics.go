package kbs

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics carries upstream's metric names (kbs/src/prometheus.rs), so
// existing dashboards and alerts keep working.
type metrics struct {
	reg *prometheus.Registry

	httpRequests      *prometheus.CounterVec
	httpDuration      *prometheus.HistogramVec
	httpRequestSize   *prometheus.HistogramVec
	httpResponseSize  *prometheus.HistogramVec
	activeConnections prometheus.Gauge
	// connectionsRefused counts connections closed at the cap (ours).
	connectionsRefused prometheus.Counter

	resourceReads   *prometheus.CounterVec
	resourceWrites  *prometheus.CounterVec
	resourceDeletes *prometheus.CounterVec

	policyEvaluations prometheus.Counter
	policyApprovals   prometheus.Counter
	policyViolations  prometheus.Counter
	policyErrors      prometheus.Counter

	attestationRequests  prometheus.Counter
	attestationSuccesses *prometheus.CounterVec
	attestationFailures  *prometheus.CounterVec
	attestationErrors    prometheus.Counter

	authRequests  prometheus.Counter
	authSuccesses prometheus.Counter
	authErrors    prometheus.Counter
}

func newMetrics(version string) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{reg: reg}
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kbs_build_info", Help: "KBS build information."}, []string{"version", "implementation"})
	bi.WithLabelValues(version, "go-trustee").Set(1)
	f(bi)
	sizeBuckets := prometheus.ExponentialBuckets(64, 4, 10)
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_http_requests_total", Help: "HTTP requests."}, []string{"endpoint", "method", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kbs_http_request_duration_seconds", Help: "HTTP request duration.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}}, []string{"endpoint", "method"})
	m.httpRequestSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kbs_http_request_size_bytes", Help: "HTTP request size.", Buckets: sizeBuckets}, []string{"endpoint", "method"})
	m.httpResponseSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kbs_http_response_size_bytes", Help: "HTTP response size.", Buckets: sizeBuckets}, []string{"endpoint", "method"})
	m.activeConnections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kbs_http_active_connections", Help: "Open HTTP connections."})
	m.connectionsRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_http_connections_refused_total", Help: "Connections closed at once because http_server.max_connections was reached."})
	m.resourceReads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_resource_reads_total", Help: "Resource reads."}, []string{"resource_path"})
	m.resourceWrites = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_resource_writes_total", Help: "Resource writes."}, []string{"resource_path"})
	m.resourceDeletes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_resource_deletes_total", Help: "Resource deletes."}, []string{"resource_path"})
	m.policyEvaluations = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_policy_evaluations_total", Help: "Resource policy evaluations."})
	m.policyApprovals = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_policy_approvals_total", Help: "Resource policy approvals."})
	m.policyViolations = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_policy_violations_total", Help: "Resource policy denials."})
	m.policyErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_policy_errors_total", Help: "Resource policy evaluation errors."})
	m.attestationRequests = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_attestation_requests_total", Help: "Attestation requests."})
	m.attestationSuccesses = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_attestation_successes_total", Help: "Successful attestations."}, []string{"tee_type"})
	m.attestationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kbs_attestation_failures_total", Help: "Failed attestations."}, []string{"tee_type"})
	m.attestationErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_attestation_errors_total", Help: "Attestation request errors."})
	m.authRequests = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_auth_requests_total", Help: "Auth requests."})
	m.authSuccesses = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_auth_successes_total", Help: "Successful auth requests."})
	m.authErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "kbs_auth_errors_total", Help: "Failed auth requests."})
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.httpRequestSize, m.httpResponseSize, m.activeConnections, m.connectionsRefused,
		m.resourceReads, m.resourceWrites, m.resourceDeletes, m.policyEvaluations, m.policyApprovals, m.policyViolations, m.policyErrors,
		m.attestationRequests, m.attestationSuccesses, m.attestationFailures, m.attestationErrors, m.authRequests, m.authSuccesses, m.authErrors} {
		f(c)
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
