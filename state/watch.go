package state

import "sync"

// watcher buffers events without bound so that publishing, which runs under
// the store's write lock, never waits for a consumer. A goroutine per watcher
// moves the buffer onto the channel, because a channel is what consumers
// select on and a bounded channel alone would either block Raft apply or
// drop events.
type watcher struct {
	mu      sync.Mutex
	pending []Event

	notify   chan struct{} // capacity 1: "pending is non-empty"
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed once the goroutine has closed out
	out      chan Event
}

// watchBuffer is how many events wait in a watcher's channel.
const watchBuffer = 4096

func newWatcher() *watcher {
	w := &watcher{
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		// A buffer lets a consumer drain a burst (10,000 task writes) in
		// one pass instead of waking once per event.
		out: make(chan Event, watchBuffer),
	}
	go w.run()
	return w
}

func (w *watcher) push(events []Event) {
	w.mu.Lock()
	w.pending = append(w.pending, events...)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) close() { w.stopOnce.Do(func() { close(w.stop) }) }

func (w *watcher) run() {
	defer close(w.done)
	defer close(w.out)
	for {
		select {
		case <-w.stop:
			return
		case <-w.notify:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		w.mu.Unlock()
		for i := range batch {
			// Checked first so that a stopped watcher does not keep delivering
			// to a consumer that happens to still be reading.
			select {
			case <-w.stop:
				return
			default:
			}
			select {
			case w.out <- batch[i]:
				batch[i] = Event{} // let delivered objects be collected
			case <-w.stop:
				return
			}
		}
	}
}

// publish runs under the write lock, after the batch is committed.
func (s *Store) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		w.push(events)
	}
}

// ViewAndWatch runs fn on a consistent view and returns a channel carrying,
// in order, every event applied after that view: with tx.Index() as the
// starting point, no event is missed and none is repeated. The channel is
// closed by cancel, and also by Restore, which replaces the whole state:
// consumers should then call ViewAndWatch again. cancel may be called more
// than once and from any goroutine; once it returns the channel is closed.
// The same locking rule as View applies to fn.
func (s *Store) ViewAndWatch(fn func(tx ReadTx)) (events <-chan Event, cancel func()) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if fn != nil {
		fn(readTx{d: s.d, index: s.index})
	}
	// Registering while still holding the read lock is what makes the view
	// and the stream seamless: no batch can commit in between.
	w := newWatcher()
	s.watchMu.Lock()
	s.watchers[w] = struct{}{}
	s.watchMu.Unlock()
	return w.out, func() {
		s.watchMu.Lock()
		delete(s.watchers, w)
		s.watchMu.Unlock()
		w.close()
		<-w.done
	}
}

// Watch returns every event applied from now on; see ViewAndWatch.
func (s *Store) Watch() (events <-chan Event, cancel func()) {
	return s.ViewAndWatch(nil)
}

// closeWatchers runs under the write lock. Events still queued are dropped:
// they describe a state that no longer exists.
func (s *Store) closeWatchers() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		w.close()
		delete(s.watchers, w)
	}
}
