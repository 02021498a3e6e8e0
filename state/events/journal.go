package events

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

var (
	// ErrTooOld: the requested start is older than what this manager keeps.
	ErrTooOld = errors.New("events from that far back are no longer kept by this manager")
	// ErrSlow: a subscriber let its queue fill up and was dropped.
	ErrSlow = errors.New("the event stream fell behind: too many events were waiting for this client")
	// ErrClosed: the journal stopped (its manager is shutting down).
	ErrClosed = errors.New("this manager stopped serving events")
)

// Defaults for Config.
const (
	DefaultSize  = 10000
	DefaultQueue = 4096
)

// Config bounds a Journal.
type Config struct {
	Size  int // events kept for --since and resumes; DefaultSize when 0
	Queue int // events queued per subscriber before it is dropped; DefaultQueue when 0
	// Now is the clock, for tests; time.Now when nil.
	Now func() time.Time
}

// Position orders events: by Raft index, then by place in the entry.
type Position struct {
	Index uint64
	Seq   uint32
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Index < q.Index || (p.Index == q.Index && p.Seq < q.Seq)
}

// PositionOf returns ev's position.
func PositionOf(ev *swarmpb.ClusterEvent) Position {
	return Position{Index: ev.GetIndex(), Seq: ev.GetSeq()}
}

// Journal follows one store and keeps its recent events; see the package doc.
type Journal struct {
	store *state.Store
	cfg   Config

	mu   sync.Mutex
	ring []kept // circular, len == cfg.Size once full
	head int    // index in ring of the oldest event
	n    int    // events in ring
	// Every event after position from is in the ring (or came later); for
	// times, every event appended after fromTime is. The journal knows
	// nothing before them.
	from     Position
	fromTime int64
	last     Position // the newest event seen
	names    hostnames
	subs     map[*Subscription]struct{}
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// New starts a journal on store. Start it before the store receives its
// first entry (before Raft opens) to keep everything this replica applies.
// Close stops it.
func New(store *state.Store, cfg Config) *Journal {
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j := &Journal{store: store, cfg: cfg, subs: map[*Subscription]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	ch, cancel := j.watch()
	go j.run(ch, cancel)
	return j
}

// watch starts (or restarts, after a Restore) following the store: the
// journal forgets what it had, and starts from the view's index.
func (j *Journal) watch() (<-chan state.Event, func()) {
	return j.store.ViewAndWatch(func(tx state.ReadTx) {
		names := hostnames{}
		for _, n := range tx.ListNodes() {
			names[n.Id] = n.GetDescription().GetHostname()
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		j.names = names
		j.ring, j.head, j.n = nil, 0, 0
		idx := tx.Index()
		// Every event after the view is coming; a store at index 0 has had
		// none, so any position is covered.
		j.from = Position{Index: idx, Seq: math.MaxUint32}
		if idx == 0 {
			j.from = Position{}
		}
		j.last = j.from
		j.fromTime = 0
		if idx > 0 {
			// Entries up to idx happened before now; the journal cannot say
			// which ones were recent.
			j.fromTime = j.cfg.Now().UnixNano()
		}
		for s := range j.subs {
			j.dropLocked(s, fmt.Errorf("%w: this manager replaced its state with a snapshot at index %d; resume on another manager or from a later position", ErrTooOld, idx))
		}
	})
}

func (j *Journal) run(ch <-chan state.Event, cancel func()) {
	defer close(j.done)
	defer func() { cancel() }()
	var seq uint32
	var lastIndex uint64
	for {
		select {
		case <-j.stop:
			return
		case ev, ok := <-ch:
			if !ok {
				// A Restore closed the watch: start over from the new state.
				select {
				case <-j.stop:
					return
				default:
				}
				ch, cancel = j.watch()
				lastIndex, seq = 0, 0
				continue
			}
			if ev.Index != lastIndex {
				lastIndex, seq = ev.Index, 0
			}
			j.add(ev, seq)
			seq++
		}
	}
}

// kept is one event in the ring. Task events, nearly all of them, are kept
// as their facts and described as a ClusterEvent only once someone reads
// them: most are never read (no client follows the stream while 100,000
// tasks are created), and describing each as it was applied cost every
// manager 3-20 % of its CPU in the scale benchmark's phases. Other events
// are rare and described at once.
type kept struct {
	index uint64
	time  int64
	seq   uint32
	kind  state.EventKind
	task  taskFacts
	ce    *swarmpb.ClusterEvent // the description, once made
}

func (k *kept) pos() Position { return Position{Index: k.index, Seq: k.seq} }

// describeLocked returns the ring slot's ClusterEvent, made on first use.
func (j *Journal) describeLocked(k *kept) *swarmpb.ClusterEvent {
	if k.ce == nil {
		k.ce = describeTask(&k.task, k.kind, k.index, k.time, k.seq)
	}
	return k.ce
}

func (j *Journal) add(ev state.Event, seq uint32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	facts, isTask := taskFactsOf(ev, j.names)
	var ce *swarmpb.ClusterEvent
	if !isTask {
		ce = convert(ev, seq, j.names)
	}
	j.names.track(ev)
	if j.ring == nil {
		j.ring = make([]kept, j.cfg.Size)
	}
	if j.n == len(j.ring) {
		old := &j.ring[j.head]
		j.from, j.fromTime = old.pos(), old.time
		j.head = (j.head + 1) % len(j.ring)
		j.n--
	}
	k := &j.ring[(j.head+j.n)%len(j.ring)]
	*k = kept{index: ev.Index, time: ev.Time, seq: seq, kind: ev.Kind, task: facts, ce: ce}
	j.n++
	j.last = k.pos()
	if len(j.subs) == 0 {
		return
	}
	ce = j.describeLocked(k)
	for s := range j.subs {
		if !s.wants(ce) {
			continue
		}
		select {
		case s.ch <- ce:
		default:
			j.dropLocked(s, fmt.Errorf("%w (more than %d); resume from the last event received", ErrSlow, j.cfg.Queue))
		}
	}
}

// Close stops the journal and ends every subscription with ErrClosed.
func (j *Journal) Close() {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		<-j.done
		return
	}
	j.closed = true
	for s := range j.subs {
		j.dropLocked(s, ErrClosed)
	}
	j.mu.Unlock()
	close(j.stop)
	<-j.done
}

// Request says where a subscription starts and what it carries.
type Request struct {
	// After, when set, starts after that position: every kept event after
	// it, then live ones.
	After *Position
	// Since, when non-zero (unix nanoseconds), starts at the kept events
	// appended at or after it. With neither: live events only.
	Since  int64
	Filter Filter
}

// Window describes what a journal keeps, for messages and info.
type Window struct {
	From     Position // every event after From is kept
	FromTime int64    // every event appended after FromTime is kept; 0: since the cluster began
	Last     Position // newest event
	Count    int
}

// Window returns what the journal keeps now.
func (j *Journal) Window() Window {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Window{From: j.from, FromTime: j.fromTime, Last: j.last, Count: j.n}
}

// Subscribe registers a subscriber. The backlog (kept events matching the
// request) and the live events that follow are seamless: nothing is missed
// or repeated between them. It fails with ErrTooOld when the start is
// older than what the journal keeps, and ErrClosed once closed.
func (j *Journal) Subscribe(req Request) (*Subscription, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, ErrClosed
	}
	if req.After != nil {
		after := *req.After
		req.After = &after
	}
	s := &Subscription{j: j, filter: req.Filter, after: req.After, since: req.Since, start: j.last, ch: make(chan *swarmpb.ClusterEvent, j.cfg.Queue), done: make(chan struct{})}
	switch {
	case req.After != nil:
		if req.After.Less(j.from) {
			return nil, fmt.Errorf("%w: it keeps the events after index %d (the last %d at most), and the request starts after index %d; start from a later position, or without one", ErrTooOld, j.from.Index, j.cfg.Size, req.After.Index)
		}
		s.backlog = j.backlogLocked(func(k *kept) bool { return req.After.Less(k.pos()) }, req.Filter)
		s.start = *req.After
	case req.Since != 0:
		if req.Since <= j.fromTime {
			return nil, fmt.Errorf("%w: it keeps the events after %s (the last %d at most, since it started), and the request starts at %s; use a later --since",
				ErrTooOld, time.Unix(0, j.fromTime).UTC().Format(time.RFC3339Nano), j.cfg.Size, time.Unix(0, req.Since).UTC().Format(time.RFC3339Nano))
		}
		s.backlog = j.backlogLocked(func(k *kept) bool { return k.time >= req.Since }, req.Filter)
	}
	j.subs[s] = struct{}{}
	return s, nil
}

func (j *Journal) backlogLocked(after func(*kept) bool, f Filter) []*swarmpb.ClusterEvent {
	var out []*swarmpb.ClusterEvent
	for i := 0; i < j.n; i++ {
		k := &j.ring[(j.head+i)%len(j.ring)]
		if !after(k) {
			continue
		}
		if ev := j.describeLocked(k); f.Match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func (j *Journal) dropLocked(s *Subscription, err error) {
	if _, ok := j.subs[s]; !ok {
		return
	}
	delete(j.subs, s)
	s.err = err
	close(s.done)
}

// Subscription is one subscriber's view of the journal.
type Subscription struct {
	j      *Journal
	filter Filter
	// A replica behind the client (a resume on a lagging manager) still
	// has to apply events the client has seen: live events are checked
	// against the start too.
	after   *Position
	since   int64
	start   Position
	backlog []*swarmpb.ClusterEvent
	ch      chan *swarmpb.ClusterEvent
	done    chan struct{}
	err     error // set before done closes
}

func (s *Subscription) wants(ev *swarmpb.ClusterEvent) bool {
	if s.after != nil && !s.after.Less(PositionOf(ev)) {
		return false
	}
	if s.since != 0 && ev.Time < s.since {
		return false
	}
	return s.filter.Match(ev)
}

// Start is where the subscription starts: it carries the matching events
// after this position (for a Since request, those from that time).
func (s *Subscription) Start() Position { return s.start }

// Backlog returns the kept events the request asked for, oldest first.
// The events are shared: do not modify them.
func (s *Subscription) Backlog() []*swarmpb.ClusterEvent { return s.backlog }

// Events carries live events after the backlog, in order. Read it until
// Done closes; events queued before Done closed are still valid.
func (s *Subscription) Events() <-chan *swarmpb.ClusterEvent { return s.ch }

// Done closes when the subscription ends for a reason other than Cancel:
// see Err.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err says why Done closed: ErrSlow, ErrTooOld (a snapshot restore),
// ErrClosed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Cancel unregisters the subscriber; it may be called more than once.
func (s *Subscription) Cancel() {
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	s.j.dropLocked(s, ErrClosed)
}
