package api

// DispatcherStats is the dispatcher's current load, for metrics.
type DispatcherStats struct {
	// Active: this manager leads and its dispatcher serves the term.
	Active bool
	// Sessions is the number of open task Session streams.
	Sessions int
	// Tracked is the number of nodes whose heartbeat deadline it watches.
	Tracked int
}

// Stats returns the dispatcher's current figures. Heartbeats themselves
// are counted by the gRPC server metrics (grpc_server_handled_total of
// method Heartbeat), not here.
func (d *Dispatcher) Stats() DispatcherStats {
	d.mu.Lock()
	s := DispatcherStats{Active: d.active, Tracked: len(d.deadlines)}
	sess := d.sessions
	d.mu.Unlock()
	if sess != nil {
		sess.mu.Lock()
		for _, set := range sess.byNode {
			s.Sessions += len(set)
		}
		sess.mu.Unlock()
	}
	return s
}
