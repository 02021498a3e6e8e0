package state

import (
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The store remembers the request IDs of the batches it applied
// (StoreBatch.request_id) for RequestMemory, at most RequestMax of them, so
// that a write a relay resends after a leader change is applied once: the
// resend succeeds with the first outcome. The memory is part of the
// replicated state (applied in log order, in snapshots), so every replica
// and a new leader agree on it. Both bounds are measured with the entries'
// own times, never a replica's clock.
const (
	RequestMemory = 10 * time.Minute
	RequestMax    = 10000
)

// requestLog is the remembered requests, oldest first.
type requestLog struct {
	byID  map[string]*swarmpb.AppliedRequest
	order []*swarmpb.AppliedRequest
}

func newRequestLog() *requestLog {
	return &requestLog{byID: map[string]*swarmpb.AppliedRequest{}}
}

func (l *requestLog) add(r *swarmpb.AppliedRequest) {
	l.byID[r.Id] = r
	l.order = append(l.order, r)
	drop := 0
	for drop < len(l.order) && (len(l.order)-drop > RequestMax || l.order[drop].At < r.At-int64(RequestMemory)) {
		delete(l.byID, l.order[drop].Id)
		drop++
	}
	if drop > 0 {
		l.order = append([]*swarmpb.AppliedRequest(nil), l.order[drop:]...)
	}
}

// AppliedRequest returns the request applied with this ID, if the store
// still remembers it.
func (s *Store) AppliedRequest(id string) (*swarmpb.AppliedRequest, bool) {
	if id == "" {
		return nil, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.reqs.byID[id]
	if !ok {
		return nil, false
	}
	return &swarmpb.AppliedRequest{Id: r.Id, Index: r.Index, At: r.At, ObjectId: r.ObjectId}, true
}

// actionObjectID is the ID of the object an action writes.
func actionObjectID(a *swarmpb.StoreAction) string {
	switch t := a.GetTarget().(type) {
	case *swarmpb.StoreAction_Cluster:
		return t.Cluster.GetId()
	case *swarmpb.StoreAction_Node:
		return t.Node.GetId()
	case *swarmpb.StoreAction_Service:
		return t.Service.GetId()
	case *swarmpb.StoreAction_Task:
		return t.Task.GetId()
	case *swarmpb.StoreAction_TaskStatus:
		return t.TaskStatus.GetTaskId()
	case *swarmpb.StoreAction_TaskDesired:
		return t.TaskDesired.GetTaskId()
	case *swarmpb.StoreAction_Secret:
		return t.Secret.GetId()
	case *swarmpb.StoreAction_Network:
		return t.Network.GetId()
	case *swarmpb.StoreAction_Config:
		return t.Config.GetId()
	}
	return ""
}
