// Package statetest helps tests of the loops above the store (the
// orchestrator, the scheduling loop) run without Raft. It imports only
// state and proto; only tests import it.
package statetest

import (
	"context"
	"sync"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Applier applies batches straight to a store, in order, each at the next
// index: Raft without replication or the network.
type Applier struct {
	mu    sync.Mutex
	store *state.Store
}

// NewApplier returns an Applier writing to st.
func NewApplier(st *state.Store) *Applier { return &Applier{store: st} }

// Apply applies b at the store's next index and returns that index.
func (a *Applier) Apply(_ context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	idx := a.store.Index() + 1
	_, err := a.store.ApplyBatch(idx, time.Now().UnixNano(), b)
	return idx, err
}
