package agent

import (
	"github.com/raftswarm/raftswarm/mesh"
	"github.com/raftswarm/raftswarm/netplane"
)

// Stats is a snapshot of what the agent's metrics report; the node reads
// it at scrape time, so no counter lives on a hot path.
type Stats struct {
	// SessionOpen: a task session with the leader is established (the
	// worker's /readyz).
	SessionOpen bool
	// Mesh is the routing mesh's counters; nil before the mesh starts.
	Mesh *mesh.Stats
	// Services is the data plane's proxy counters per service ID; nil
	// without a data plane.
	Services map[string]netplane.ServiceStats
}

// planeStats is the optional counters method of a data plane
// (netplane.Plane has it; test fakes need not).
type planeStats interface {
	Stats() map[string]netplane.ServiceStats
}

// SessionOpen reports whether a task session with the leader is
// established, without reading the counters (Stats may read the kernel's).
func (a *Agent) SessionOpen() bool { return a.tasks.sessionOpen.Load() }

// Stats returns the agent's current counters. On the kernel path it reads
// the kernel's (mesh.Mesh.Stats: one nft run per second at most).
func (a *Agent) Stats() Stats {
	ta := a.tasks
	s := Stats{SessionOpen: ta.sessionOpen.Load()}
	if m := ta.mesh.Load(); m != nil {
		ms := m.Stats()
		s.Mesh = &ms
	}
	if p, ok := ta.plane.(planeStats); ok {
		s.Services = p.Stats()
	}
	return s
}
