package agent

import (
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leaderTracker is the node's one list of managers and its best guess at
// the leader, shared by the heartbeat loop, the session loop, the mesh's
// endpoint stream and the status reporter. It starts from the managers
// the node recorded; the heartbeats keep it current and the node records
// what changes (ManagerRecorder).
type leaderTracker struct {
	conns    ConnSource
	recorder ManagerRecorder // nil: nothing recorded

	recMu    sync.Mutex // serialises recording; never held with mu
	recorded []string   // the list last handed to recorder

	mu       sync.Mutex
	managers []string
	addr     string
	// guessed: addr was picked by failed, not confirmed by set since.
	guessed bool
	changed chan struct{} // closed when a leader is set: another, or addr confirmed after failed
}

func newLeaderTracker(conns ConnSource, recorder ManagerRecorder, managers []string) *leaderTracker {
	l := &leaderTracker{conns: conns, recorder: recorder, recorded: slices.Clone(managers),
		managers: slices.Clone(managers), changed: make(chan struct{})}
	if len(managers) > 0 {
		l.addr = managers[0]
	}
	return l
}

// get returns the address to try and a channel closed when another
// manager is found to lead.
func (l *leaderTracker) get() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr, l.changed
}

// set records addr as the leader (it answered as one, or a follower named it).
func (l *leaderTracker) set(addr string) {
	if addr == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.managers, addr) {
		l.managers = append(l.managers, addr)
	}
	// Confirming a guess wakes the loops waiting out a backoff too (task
	// session, endpoints): after a leader's death the heartbeats may find
	// the new leader at the very address failed moved on to.
	if addr != l.addr || l.guessed {
		l.addr, l.guessed = addr, false
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// confirmedLeader reports whether addr is the leader as last confirmed
// (it answered as one, or a follower named it), not a guess of failed.
func (l *leaderTracker) confirmedLeader(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return addr == l.addr && !l.guessed
}

// next returns the manager after addr in the list, "" when there is no
// other.
func (l *leaderTracker) next(addr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.managers) < 2 {
		return ""
	}
	i := slices.Index(l.managers, addr)
	if n := l.managers[(i+1)%len(l.managers)]; n != addr {
		return n
	}
	return ""
}

// failed moves on to the next manager after addr did not answer.
func (l *leaderTracker) failed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if addr != l.addr || len(l.managers) == 0 {
		return
	}
	i := slices.Index(l.managers, addr)
	l.addr = l.managers[(i+1)%len(l.managers)]
	l.guessed = true
}

// setManagers takes in the cluster's manager list (leader first), from a
// heartbeat or a session message, and has the recorder keep it when it
// differs from the list last recorded.
func (l *leaderTracker) setManagers(managers []string) {
	if len(managers) == 0 {
		return
	}
	l.mu.Lock()
	l.managers = slices.Clone(managers)
	if l.addr == "" || !slices.Contains(l.managers, l.addr) {
		l.addr = l.managers[0]
	}
	l.mu.Unlock()
	l.record(managers)
}

// record hands managers to the recorder unless it was the last list
// recorded. Two concurrent calls may record out of order; the next
// heartbeat's list then records again.
func (l *leaderTracker) record(managers []string) {
	l.recMu.Lock()
	defer l.recMu.Unlock()
	if l.recorder == nil || slices.Equal(l.recorded, managers) {
		return
	}
	l.recorded = slices.Clone(managers)
	l.recorder.RecordManagers(slices.Clone(managers))
}

// conn returns a connection to the manager at addr.
func (l *leaderTracker) conn(addr string) (*grpc.ClientConn, error) {
	if l.conns == nil {
		return nil, status.Error(codes.Canceled, "node stopping")
	}
	return l.conns.Conn(addr)
}
