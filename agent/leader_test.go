package agent

import (
	"slices"
	"sync"
	"testing"
)

type recordedLists struct {
	mu    sync.Mutex
	lists [][]string
}

func (r *recordedLists) RecordManagers(m []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists = append(r.lists, m)
}

// The tracker is the node's one manager list: whoever brings a new list
// (heartbeat or session), the node records it once; a hint moves the
// leader guess, a failure moves on to the next manager.
func TestLeaderTrackerRecordsAndRotates(t *testing.T) {
	rec := &recordedLists{}
	l := newLeaderTracker(nil, rec, []string{"m1", "m2"})
	if addr, _ := l.get(); addr != "m1" {
		t.Fatalf("leader = %q, want the first recorded manager m1", addr)
	}
	l.setManagers([]string{"m1", "m2"}) // as recorded: nothing to record
	_, changed := l.get()
	l.set("m3") // a follower names a leader the list lacks
	select {
	case <-changed:
	default:
		t.Fatal("setting another leader did not signal the change")
	}
	if addr, _ := l.get(); addr != "m3" {
		t.Fatalf("leader = %q after the hint, want m3", addr)
	}
	l.setManagers([]string{"m3", "m1", "m2"})
	l.setManagers([]string{"m3", "m1", "m2"}) // the session brings the same list
	if want := [][]string{{"m3", "m1", "m2"}}; !slices.EqualFunc(rec.lists, want, slices.Equal) {
		t.Fatalf("recorded %v, want %v", rec.lists, want)
	}
	l.failed("m1") // not the current guess: no move
	if addr, _ := l.get(); addr != "m3" {
		t.Fatalf("leader = %q after another manager failed, want m3", addr)
	}
	l.failed("m3")
	if addr, _ := l.get(); addr != "m1" {
		t.Fatalf("leader = %q after m3 failed, want the next one, m1", addr)
	}
	if _, err := l.conn("m1"); err == nil {
		t.Fatal("conn without a connection source succeeded")
	}
}

// After a leader's death the heartbeats may find the new leader at the
// very address failed moved on to: confirming that guess wakes the loops
// waiting out a backoff on the change channel (task session, endpoints),
// which otherwise slept up to 2 s more; confirming it again does not.
func TestLeaderTrackerConfirmedGuessSignals(t *testing.T) {
	l := newLeaderTracker(nil, nil, []string{"m1", "m2"})
	l.failed("m1") // the leader died: try m2
	addr, changed := l.get()
	if addr != "m2" {
		t.Fatalf("leader = %q after m1 failed, want m2", addr)
	}
	l.set("m2") // m2 answered as the leader
	select {
	case <-changed:
	default:
		t.Fatal("confirming the guessed leader did not signal the change")
	}
	_, changed = l.get()
	l.set("m2") // the next heartbeat: nothing new
	select {
	case <-changed:
		t.Fatal("a leader confirmed again signalled a change")
	default:
	}
}
