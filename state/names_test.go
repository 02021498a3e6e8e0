package state_test

import (
	"errors"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Networks, secrets and configs have unique names, enforced by the store
// (not only by the API, whose check-then-write could race), in one batch as
// across batches, and rebuilt from a snapshot.
func TestUniqueObjectNames(t *testing.T) {
	s := state.New()
	apply := func(idx uint64, b *swarmpb.StoreBatch) error {
		_, err := s.ApplyBatch(idx, 1, b)
		return err
	}
	net := func(id, name string) *swarmpb.Network {
		return &swarmpb.Network{Id: id, Spec: &swarmpb.NetworkSpec{Name: name}}
	}
	if err := apply(1, state.Batch(state.Create(net("n1", "appnet")), state.Create(&swarmpb.Secret{Id: "s1", Name: "appnet"}), state.Create(&swarmpb.Config{Id: "c1", Name: "appnet"}))); err != nil {
		t.Fatalf("same name across kinds: %v", err)
	}
	if err := apply(2, state.Batch(state.Create(net("n2", "appnet")))); !errors.Is(err, state.ErrNameConflict) {
		t.Fatalf("duplicate network name: %v", err)
	}
	if err := apply(3, state.Batch(state.Create(net("n3", "x")), state.Create(net("n4", "x")))); !errors.Is(err, state.ErrNameConflict) {
		t.Fatalf("duplicate in one batch: %v", err)
	}
	if err := apply(4, state.Batch(state.Create(&swarmpb.Secret{Id: "s2", Name: "appnet"}))); !errors.Is(err, state.ErrNameConflict) {
		t.Fatalf("duplicate secret name: %v", err)
	}
	var n1 *swarmpb.Network
	s.View(func(tx state.ReadTx) { n1 = tx.GetNetworkByName("appnet") })
	if n1.GetId() != "n1" {
		t.Fatalf("GetNetworkByName = %v", n1)
	}
	if err := apply(5, state.Batch(state.Delete(n1))); err != nil {
		t.Fatal(err)
	}
	if err := apply(6, state.Batch(state.Create(net("n5", "appnet")))); err != nil {
		t.Fatalf("name reused after delete: %v", err)
	}
	snap := s.Snapshot()
	r := state.New()
	if err := r.Restore(6, snap); err != nil {
		t.Fatal(err)
	}
	r.View(func(tx state.ReadTx) {
		if tx.GetNetworkByName("appnet").GetId() != "n5" || tx.GetSecretByName("appnet").GetId() != "s1" || tx.GetConfigByName("appnet").GetId() != "c1" {
			t.Fatalf("restored names: %v %v %v", tx.GetNetworkByName("appnet"), tx.GetSecretByName("appnet"), tx.GetConfigByName("appnet"))
		}
	})
}
