package metrics

import (
	"errors"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
)

// Namespace prefixes every raftswarm series.
const Namespace = "raftswarm"

// Registry is one daemon's metrics: a Prometheus registry with the Go
// runtime, process and Raft collectors, the control API's gRPC server
// metrics, and the counters that components increment. A nil *Registry is
// valid and records nothing, so components take one unconditionally.
type Registry struct {
	reg  *prometheus.Registry
	grpc map[string]*grpcprom.ServerMetrics // by listener (ListenerCluster, ListenerSocket)

	// LeaderComponentFailures counts leader-only components (orchestrator,
	// scheduler, dispatcher, role manager, ...) that failed while this
	// manager led, by component.
	LeaderComponentFailures *prometheus.CounterVec
	// LeaderWorkRestarts counts restarts of a term's leader work after a
	// failure.
	LeaderWorkRestarts prometheus.Counter
	// ReconcileSeconds is the orchestrator's time to reconcile a service.
	ReconcileSeconds prometheus.Histogram
	// SchedulingSeconds is the scheduler's time for one scheduling pass.
	SchedulingSeconds prometheus.Histogram
}

// New returns a registry holding the Go runtime and process collectors,
// the process-wide Raft sink and the gRPC server metrics.
func New() *Registry {
	r := &Registry{
		reg:  prometheus.NewRegistry(),
		grpc: map[string]*grpcprom.ServerMetrics{},
		LeaderComponentFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "leader_component_failures_total",
			Help: "Leader-only components that failed (returned an error) while this manager led, by component.",
		}, []string{"component"}),
		LeaderWorkRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "leader_work_restarts_total",
			Help: "Restarts of the leader-only work after one of its components failed.",
		}),
		ReconcileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "orchestrator", Name: "reconcile_seconds",
			Help:    "Time the orchestrator took to reconcile one service (read, plan, commit).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		SchedulingSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "scheduler", Name: "scheduling_seconds",
			Help:    "Time the scheduler took for one pass over the pending tasks (place and commit).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
	}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.LeaderComponentFailures,
		r.LeaderWorkRestarts,
		r.ReconcileSeconds,
		r.SchedulingSeconds,
	)
	for _, l := range []string{ListenerCluster, ListenerSocket} {
		labels := prometheus.Labels{"listener": l}
		m := grpcprom.NewServerMetrics(
			grpcprom.WithServerCounterOptions(grpcprom.WithConstLabels(labels)),
			grpcprom.WithServerHandlingTimeHistogram(
				grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
				grpcprom.WithHistogramConstLabels(labels),
			))
		r.grpc[l] = m
		r.reg.MustRegister(m)
	}
	if sink, err := raftSink(); err == nil {
		r.reg.MustRegister(sink)
	}
	return r
}

// Register adds collectors (MustRegister: a duplicate is a programming
// error); nothing on a nil Registry.
func (r *Registry) Register(cs ...prometheus.Collector) {
	if r == nil {
		return
	}
	r.reg.MustRegister(cs...)
}

// Registerer is the underlying registerer, for libraries that take one;
// nil on a nil Registry.
func (r *Registry) Registerer() prometheus.Registerer {
	if r == nil {
		return nil
	}
	return r.reg
}

// Gatherer is the underlying gatherer (tests read it directly).
func (r *Registry) Gatherer() prometheus.Gatherer {
	if r == nil {
		return prometheus.Gatherers{}
	}
	return r.reg
}

// The gRPC servers of a daemon, told apart by the listener label of the
// grpc_server_* series.
const (
	// ListenerCluster is a manager's cluster port (TLS): agents, other
	// managers, and Control calls forwarded by followers.
	ListenerCluster = "cluster"
	// ListenerSocket is the local socket swarmctl talks to.
	ListenerSocket = "socket"
)

// GRPCServerOptions are the interceptors recording per-method counts,
// latency and status codes of the gRPC server on listener (grpc_server_*
// series, from go-grpc-middleware's Prometheus provider). Put them before
// other interceptors so refused calls are counted too. None on a nil
// Registry.
func (r *Registry) GRPCServerOptions(listener string) []grpc.ServerOption {
	if r == nil {
		return nil
	}
	m := r.grpc[listener]
	if m == nil {
		panic("metrics: unknown gRPC listener " + listener)
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	}
}

// ObserveSince records time since start in h; nothing on a nil histogram
// (a component whose Registry is nil).
func ObserveSince(h prometheus.Observer, start time.Time) {
	if h == nil {
		return
	}
	h.Observe(time.Since(start).Seconds())
}

// ComponentFailed counts a failed leader component; nothing on a nil
// Registry.
func (r *Registry) ComponentFailed(component string) {
	if r == nil {
		return
	}
	r.LeaderComponentFailures.WithLabelValues(component).Inc()
}

// WorkRestarted counts a restart of the leader work; nothing on nil.
func (r *Registry) WorkRestarted() {
	if r == nil {
		return
	}
	r.LeaderWorkRestarts.Inc()
}

// Reconcile returns the orchestrator's latency histogram, nil on a nil
// Registry.
func (r *Registry) Reconcile() prometheus.Observer {
	if r == nil {
		return nil
	}
	return r.ReconcileSeconds
}

// Scheduling returns the scheduler's latency histogram, nil on a nil
// Registry.
func (r *Registry) Scheduling() prometheus.Observer {
	if r == nil {
		return nil
	}
	return r.SchedulingSeconds
}

var (
	sinkOnce sync.Once
	sink     *gmprom.PrometheusSink
	sinkErr  error
)

// raftSink installs, once per process, a go-metrics Prometheus sink as
// go-metrics' global (what hashicorp/raft reports to) and returns it. The
// sink is registered in a private registry only to satisfy its
// constructor; each daemon's Registry registers it again as a collector.
func raftSink() (*gmprom.PrometheusSink, error) {
	sinkOnce.Do(func() {
		s, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			// Series not updated for this long disappear (a former leader's
			// replication timings, for example).
			Expiration: 5 * time.Minute,
			Registerer: prometheus.NewRegistry(),
			Name:       "raftswarm_raft_sink",
		})
		if err != nil {
			sinkErr = err
			return
		}
		cfg := gometrics.DefaultConfig(Namespace)
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableServiceLabel = false
		cfg.EnableRuntimeMetrics = false // the Go collector reports these
		cfg.TimerGranularity = time.Millisecond
		if _, err := gometrics.NewGlobal(cfg, s); err != nil {
			sinkErr = err
			return
		}
		sink = s
	})
	if sink == nil && sinkErr == nil {
		sinkErr = errors.New("raft metrics sink unavailable")
	}
	return sink, sinkErr
}
