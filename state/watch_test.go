package state

import (
	"fmt"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestViewAndWatchHasNoGap(t *testing.T) {
	const batches = 2000
	s := New()
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-start
		for i := 1; i <= batches; i++ {
			b := create(&swarmpb.Node{Id: fmt.Sprintf("n%05d", i)})
			if i%3 == 0 { // several events sharing one index
				b = join(b, create(task(fmt.Sprintf("t%05d", i), "s", "")))
			}
			if _, err := s.ApplyBatch(uint64(i), 0, b); err != nil {
				t.Error(err)
				return
			}
		}
	})

	const readers = 16
	for r := range readers {
		wg.Go(func() {
			if r == 0 {
				close(start)
			}
			time.Sleep(time.Duration(r) * 200 * time.Microsecond)
			var viewIndex uint64
			seen := map[string]bool{}
			events, cancel := s.ViewAndWatch(func(tx ReadTx) {
				viewIndex = tx.Index()
				for _, n := range tx.ListNodes() {
					seen[n.GetId()] = true
				}
			})
			defer cancel()
			if len(seen) != int(viewIndex) {
				t.Errorf("reader %d: view at %d holds %d nodes", r, viewIndex, len(seen))
				return
			}
			last := viewIndex
			for last < batches {
				ev, ok := <-events
				if !ok {
					t.Errorf("reader %d: channel closed early", r)
					return
				}
				switch {
				case ev.Index == last+1:
					last = ev.Index
				case ev.Index == last && ev.Task() != nil:
					// second event of a batch whose node event came first
				default:
					t.Errorf("reader %d: event at %d after %d (view at %d)", r, ev.Index, last, viewIndex)
					return
				}
				if n := ev.Node(); n != nil {
					if seen[n.GetId()] {
						t.Errorf("reader %d: duplicate %s", r, n.GetId())
					}
					seen[n.GetId()] = true
				}
			}
			if len(seen) != batches {
				t.Errorf("reader %d: reconstructed %d nodes", r, len(seen))
			}
		})
	}
	wg.Wait()
}

func TestCancelClosesAndReleases(t *testing.T) {
	s := New()
	events, cancel := s.Watch()
	mustApply(t, s, create(&swarmpb.Node{Id: "a"}))
	if ev := <-events; ev.Node().GetId() != "a" || ev.Kind != EventCreate {
		t.Fatalf("event %+v", ev)
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
	mustApply(t, s, create(&swarmpb.Node{Id: "b"}))
	if n := len(s.watchers); n != 0 {
		t.Fatalf("%d watchers registered after cancel", n)
	}
}

// A consumer that does not read must never hold up ApplyBatch.
func TestSlowConsumerDoesNotBlockApply(t *testing.T) {
	s := New()
	events, cancel := s.Watch()
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5000 {
			mustApply(t, s, create(&swarmpb.Node{Id: fmt.Sprint(i)}))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ApplyBatch blocked on an unread watcher")
	}
	for i := range 5000 {
		if ev := <-events; ev.Index != uint64(i+1) {
			t.Fatalf("event %d has index %d", i, ev.Index)
		}
	}
}

func TestCancelWhileUndelivered(t *testing.T) {
	s := New()
	_, cancel := s.Watch()
	mustApply(t, s, create(&swarmpb.Node{Id: "a"}, &swarmpb.Node{Id: "b"}))
	cancel() // must not hang with events still queued; goleak checks the goroutine exited
}
