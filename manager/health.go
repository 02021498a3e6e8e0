package manager

import (
	"time"

	"github.com/raftswarm/raftswarm/api"

	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// reportHealth keeps the gRPC health service (grpc.health.v1.Health on the
// cluster port) in step with Raft: the overall service ("") is SERVING
// while this manager knows a leader (it is in a cluster with quorum), else
// NOT_SERVING. It follows leader changes; the tick bounds how long a
// change missed between two reads (a dropped Raft observation) goes
// unseen. It was 1 s: a wake-up a second on every manager for a safety
// net.
func (m *Manager) reportHealth() {
	t := time.NewTicker(healthResync)
	defer t.Stop()
	for {
		_, ch := m.raft.Leadership()
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if _, addr := m.raft.Leader(); addr != "" {
			st = healthpb.HealthCheckResponse_SERVING
		}
		m.health.SetServingStatus("", st)
		select {
		case <-m.stop:
			m.health.Shutdown()
			return
		case <-ch:
		case <-t.C:
		}
	}
}

// healthResync is reportHealth's safety tick.
const healthResync = 5 * time.Second

// observer adapts a histogram to the orchestrator's and scheduler's
// latency callbacks; nil when metrics are off.
func observer(h prometheus.Observer) func(time.Duration) {
	if h == nil {
		return nil
	}
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// DispatcherStats is the dispatcher's current load (metrics).
func (m *Manager) DispatcherStats() api.DispatcherStats { return m.dispatcher.Stats() }
