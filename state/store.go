package state

import (
	"errors"
	"fmt"
	"sync"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Store is the in-memory replicated state. ApplyBatch, SetIndex and Restore
// are meant to be called by the Raft FSM only, serially; everything else is
// safe for concurrent use.
type Store struct {
	mu    sync.RWMutex
	index uint64
	d     *data
	reqs  *requestLog // applied request IDs (requests.go)
	specs specCache   // for shareTaskSpec; used under mu (write)

	// watchMu guards watchers. It is taken inside mu (read or write), never
	// the other way round, so registering under a read lock cannot race with
	// publishing under the write lock.
	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
}

func New() *Store {
	return &Store{d: newData(), reqs: newRequestLog(), watchers: make(map[*watcher]struct{})}
}

// Index returns the last Raft index applied, whether or not its batch
// succeeded.
func (s *Store) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// SetIndex records a Raft entry that carries no store batch. An index that
// does not move forward is ignored: Index never goes backwards outside
// Restore.
func (s *Store) SetIndex(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index > s.index {
		s.index = index
	}
}

// ApplyBatch applies every action of b, or none of them, as the Raft entry at
// index, with now (unix nanoseconds) as the write time. now comes from the
// caller rather than the clock because every replica must store the same
// timestamps; the proposer should put it in the entry.
//
// Actions are validated in order against the state as left by the earlier
// actions of the same batch, so a batch may create and then update an object,
// or delete a service and give its name to a new one. A failed batch still
// consumes index. The returned events are in action order and are also
// delivered to watchers.
func (s *Store) ApplyBatch(index uint64, now int64, b *swarmpb.StoreBatch) ([]Event, error) {
	return s.applyBatch(index, now, b, false)
}

// ApplyDecodedBatch is ApplyBatch for a batch decoded for this call alone,
// as the Raft FSM does: the store takes its objects as they are instead of
// copying each one, so applying an entry of 2,000 tasks allocates them
// once, not twice. The caller must not use b or its objects afterwards.
func (s *Store) ApplyDecodedBatch(index uint64, now int64, b *swarmpb.StoreBatch) ([]Event, error) {
	return s.applyBatch(index, now, b, true)
}

func (s *Store) applyBatch(index uint64, now int64, b *swarmpb.StoreBatch, owned bool) ([]Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.index {
		return nil, fmt.Errorf("apply batch at index %d: store is already at index %d: %w", index, s.index, ErrInvalid)
	}
	s.index = index

	actions := b.GetActions()
	if len(actions) == 0 {
		return nil, nil
	}
	if id := b.GetRequestId(); id != "" {
		if _, done := s.reqs.byID[id]; done {
			// A resend of a request applied before: it succeeds with
			// the first outcome and changes nothing.
			return nil, nil
		}
	}
	tx := newTxn(s.d, index, now)
	tx.owned = owned
	tx.specs = &s.specs
	events := make([]Event, 0, len(actions))
	for i, a := range actions {
		ev, err := tx.stageAction(a)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("apply batch at index %d, action %d: %w", index, i, err)
		}
		ev.Time = now
		events = append(events, ev)
	}
	tx.commit()
	if id := b.GetRequestId(); id != "" {
		s.reqs.add(&swarmpb.AppliedRequest{Id: id, Index: index, At: now, ObjectId: actionObjectID(actions[0])})
	}
	s.publish(events)
	return events, nil
}
