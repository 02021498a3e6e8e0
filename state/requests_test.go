package state

import (
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// A batch whose request ID was applied is skipped (and succeeds); the
// memory survives a snapshot and is bounded by time, with entry times.
func TestRequestIDAppliedOnce(t *testing.T) {
	s := New()
	now := time.Unix(1000, 0).UnixNano()
	mk := func(id, name string) *swarmpb.StoreBatch {
		b := Batch(Create(&swarmpb.Network{Id: name, Spec: &swarmpb.NetworkSpec{Name: name}}))
		b.RequestId = id
		return b
	}
	if _, err := s.ApplyBatch(1, now, mk("r1/1", "a")); err != nil {
		t.Fatal(err)
	}
	// The resend carries a new object; the store skips it.
	if _, err := s.ApplyBatch(2, now, mk("r1/1", "b")); err != nil {
		t.Fatalf("resend: %v", err)
	}
	var n int
	s.View(func(tx ReadTx) { n = len(tx.ListNetworks()) })
	if n != 1 {
		t.Fatalf("%d networks after a resend, want 1", n)
	}
	r, ok := s.AppliedRequest("r1/1")
	if !ok || r.Index != 1 || r.ObjectId != "a" {
		t.Fatalf("applied request %v %v", r, ok)
	}
	// A failed batch is not remembered: its resend may succeed.
	if _, err := s.ApplyBatch(3, now, mk("r2/1", "a")); err == nil {
		t.Fatal("a duplicate ID was accepted")
	}
	if _, ok := s.AppliedRequest("r2/1"); ok {
		t.Fatal("a failed batch was remembered")
	}

	restored := New()
	if err := restored.Restore(3, s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if _, ok := restored.AppliedRequest("r1/1"); !ok {
		t.Fatal("the snapshot lost the applied requests")
	}
	later := now + int64(RequestMemory) + 1
	if _, err := restored.ApplyBatch(4, later, mk("r3/1", "c")); err != nil {
		t.Fatal(err)
	}
	if _, ok := restored.AppliedRequest("r1/1"); ok {
		t.Fatalf("a request older than %v is still remembered", RequestMemory)
	}
}
