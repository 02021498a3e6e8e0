package api

import (
	"context"
	"fmt"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// contendedRaft lets another write to node n1 (a client's, or the
// dispatcher's status write) land just before each of its first `left`
// applies, so each of those applies is out of sequence.
type contendedRaft struct {
	Raft
	store *state.Store
	mu    sync.Mutex
	left  int
}

func (r *contendedRaft) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	r.mu.Lock()
	if r.left > 0 {
		r.left--
		var n *swarmpb.Node
		r.store.View(func(tx state.ReadTx) { n = proto.Clone(tx.GetNode("n1")).(*swarmpb.Node) })
		if _, err := r.Raft.Apply(ctx, state.Batch(state.Update(n))); err != nil {
			r.mu.Unlock()
			return 0, fmt.Errorf("competing write: %w", err)
		}
	}
	r.mu.Unlock()
	return r.Raft.Apply(ctx, b)
}

// Eight clients adding a label each to one node all succeed, and every
// label is there: adding a label commutes with the other writes, so a
// conflict is re-read and retried. Before, updateNode gave up after five
// retries and the clients saw "update out of sequence"; here 48 competing
// writes (six per client, the old budget) make every client conflict
// that often.
func TestConcurrentNodeLabelAddsAllSucceed(t *testing.T) {
	s, st := validationServer(t, 0, false)
	const clients = 8
	s.Raft = &contendedRaft{Raft: s.Raft, store: st, left: clients * 6}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = s.UpdateNode(context.Background(), &swarmpb.UpdateNodeRequest{
				Node: "n1", LabelAdd: map[string]string{fmt.Sprintf("k%d", i): "v"}})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	st.View(func(tx state.ReadTx) {
		labels := tx.GetNode("n1").GetSpec().GetLabels()
		for i := 0; i < clients; i++ {
			if labels[fmt.Sprintf("k%d", i)] != "v" {
				t.Errorf("label k%d missing: %v", i, labels)
			}
		}
	})
}
